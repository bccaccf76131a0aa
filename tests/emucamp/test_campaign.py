"""The engine-free campaign loop on real executors (threads, a multi-process Dask cluster)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emucamp.campaign import Campaign, CampaignObserver
from emucamp.emulators.gp import load_emulator
from emucamp.executors import DaskExecutor, PoolExecutor
from emucamp.spec import CampaignSpec, parse_spec
from emucamp.storage import CampaignStore

sys.path.insert(0, str(Path(__file__).parents[1] / "sims"))
from campaign_sims import smooth2d_np


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


@pytest.fixture
def make_spec(tmp_path, sims_dir):
    def make(**over: Any) -> CampaignSpec:
        base = {
            "campaign": {"name": "t", "store": str(tmp_path / "t.zarr"), "seed": 1},
            "simulator": {"function": "campaign_sims:logged"},
            "parameters": {"x1": {"low": 0.0, "high": 1.0}, "x2": {"low": 0.0, "high": 1.0}},
            "outputs": {"y": {}},
            "design": {"initial": 6, "strategy": "max-variance"},
            "stop": {"max_simulations": 40},
            "execution": {"workers": 2},
        }
        return parse_spec(merge(base, over), base_dir=sims_dir)

    return make


@pytest.fixture
def call_log(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("EMUCAMP_TEST_LOG", str(path))
    return path


def calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(spec: CampaignSpec, observer: CampaignObserver | None = None):
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, workers=2) as ex:
        return campaign.run(ex, observer)


def held_out_nrmse(store: Path) -> float:
    X = np.random.default_rng(7).random((500, 2))
    mean, _ = load_emulator(store).predict(X)
    truth = smooth2d_np(X)
    return float(np.sqrt(np.mean((mean[:, 0] - truth) ** 2)) / truth.std())


def test_campaign_stops_when_the_uncertainty_target_holds(make_spec, call_log, tmp_path):
    spec = make_spec(stop={"target_std": 0.05, "max_simulations": 60})

    class Recorder(CampaignObserver):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_step(self, step, campaign):
            self.steps.append(step.n)

    recorder = Recorder()
    outcome = run(spec, recorder)
    assert outcome.rule == "target_std"
    store = CampaignStore.open(tmp_path / "t.zarr")
    assert store.stop_rule == "target_std" and "uncertainty target met" in store.stop_reason
    n = store.n_samples
    assert 6 < n < 60
    assert store.counts() == {"pending": 0, "ok": n, "failed": 0, "timeout": 0}
    assert len(calls(call_log)) == n  # every simulation ran exactly once
    steps = store.steps()
    assert steps[-1].n == n and steps[-1].max_rel_std[0] <= 0.05
    assert recorder.steps and recorder.steps[-1] == n
    assert held_out_nrmse(tmp_path / "t.zarr") < 0.05
    origins = list(store.to_xarray()["origin"].values)
    assert origins[:6] == ["initial"] * 6 and "max-variance" in origins[6:]


def test_rerun_resumes_without_repeating_completed_simulations(make_spec, call_log, tmp_path):
    first = run(make_spec(stop={"max_simulations": 10}))
    assert first.rule == "max_simulations" and first.simulated == 10
    seen = [(c["x1"], c["x2"]) for c in calls(call_log)]
    assert len(seen) == 10

    second = run(make_spec(stop={"max_simulations": 16}))
    assert second.rule == "max_simulations" and second.simulated == 6
    later = [(c["x1"], c["x2"]) for c in calls(call_log)][10:]
    assert len(later) == 6 and not set(later) & set(seen)
    store = CampaignStore.open(tmp_path / "t.zarr")
    assert store.n_samples == 16 and store.counts()["ok"] == 16
    ds = store.to_xarray()
    assert list(ds["sample"].values) == list(range(16))

    third = run(make_spec(stop={"max_simulations": 16}))  # nothing left to do
    assert third.simulated == 0 and third.rule == "max_simulations"
    assert len(calls(call_log)) == 16


def test_inputs_left_pending_by_a_crash_run_exactly_once_on_resume(make_spec, call_log, tmp_path):
    spec = make_spec(stop={"max_simulations": 12})
    with Campaign.open(spec) as campaign:  # a campaign that recorded inputs, then died
        ids = campaign.store.add_pending(np.array([[0.11, 0.22], [0.33, 0.44]]), 0, "initial")
    assert ids == [0, 1]
    outcome = run(spec)
    log = calls(call_log)
    assert [(c["x1"], c["x2"]) for c in log].count((0.11, 0.22)) == 1
    assert [(c["x1"], c["x2"]) for c in log].count((0.33, 0.44)) == 1
    store = CampaignStore.open(tmp_path / "t.zarr")
    assert store.counts()["pending"] == 0 and store.n_samples == 12 == len(log)
    assert outcome.simulated == 12


def test_failed_simulations_are_recorded_and_the_campaign_goes_on(make_spec, tmp_path):
    spec = make_spec(
        simulator={"function": "campaign_sims:fails_on_right", "retries": 1},
        stop={"max_simulations": 20, "max_failure_rate": 0.9},
    )
    outcome = run(spec)
    assert outcome.rule == "max_simulations"
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    failed = ds["status"].values == "failed"
    assert failed.any() and (~failed).any()
    assert np.all(ds["x1"].values[failed] > 0.75)
    assert all("FloatingPointError: solver diverged" in e for e in ds["error"].values[failed])
    assert np.all(ds["attempt"].values[failed] == 2)  # retried once, then recorded
    emulator = load_emulator(tmp_path / "t.zarr")
    assert emulator.n == int((~failed).sum())  # trained on ok results only


def test_too_many_failures_stop_the_campaign_with_the_commonest_error(make_spec, tmp_path):
    spec = make_spec(simulator={"function": "campaign_sims:always_fails"})
    outcome = run(spec)
    assert outcome.rule == "max_failure_rate"
    assert "RuntimeError: mesh generation failed" in outcome.reason
    # The rule may judge after 10; the one still running then (2 workers) is drained.
    assert 10 <= outcome.counts["failed"] <= 11


def test_sobol_baseline_ignores_the_model(make_spec, tmp_path):
    outcome = run(make_spec(design={"strategy": "sobol"}, stop={"max_simulations": 12}))
    assert outcome.counts["ok"] == 12
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray()
    np.testing.assert_allclose(
        np.column_stack([ds["x1"].values, ds["x2"].values]),
        CampaignStore.open(tmp_path / "t.zarr").inputs(),
    )
    assert set(ds["origin"].values[6:]) == {"sobol"}


def test_campaign_on_a_multi_process_dask_cluster(make_spec, call_log, tmp_path):
    from distributed import Client, LocalCluster

    spec = make_spec(design={"strategy": "integrated-variance"}, stop={"max_simulations": 14})
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
        Campaign.open(spec) as campaign,
    ):  # fmt: skip
        outcome = campaign.run(DaskExecutor(client, campaign.runner))
    assert outcome.counts["ok"] == 14
    pids = {c["pid"] for c in calls(call_log)}
    assert len(pids) == 2  # both worker processes simulated
    assert len(calls(call_log)) == 14
