"""Screening campaigns end to end: select from a pool, classify all of it, export the hits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emucamp.campaign import Campaign
from emucamp.cli import app
from emucamp.errors import SpecError, StoreError
from emucamp.executors import PoolExecutor
from emucamp.spec import parse_spec
from emucamp.storage import CampaignStore

sys.path.insert(0, str(Path(__file__).parents[1] / "sims"))
from campaign_sims import smooth2d_np


@pytest.fixture
def pool_csv(tmp_path: Path) -> Path:
    """A 50 x 50 grid of 'materials' with ids; the truth is smooth2d."""
    g = np.linspace(0.0, 1.0, 50)
    x1, x2 = (a.ravel() for a in np.meshgrid(g, g))
    path = tmp_path / "pool.csv"
    ids = [f"m{i:04d}" for i in range(len(x1))]
    pd.DataFrame({"name": ids, "x1": x1, "x2": x2}).to_csv(path, index=False)
    return path


def screening_spec(tmp_path: Path, sims_dir: Path, pool_path: Path, **over: Any):
    data: dict[str, Any] = {
        "campaign": {"name": "screen", "store": str(tmp_path / "s.zarr"), "seed": 0},
        "simulator": {"function": "campaign_sims:smooth2d"},
        "parameters": {"x1": {}, "x2": {}},  # bounds from the pool
        "outputs": {"y": {}},
        "pool": {"path": str(pool_path), "id": "name"},
        "goal": {"output": "y", "below": 1.2},
        # Instant simulations stand in for expensive ones: each model chooses at most a
        # quarter of its n, as slow simulations would let it (else the count of runs follows
        # the loop's speed).
        "design": {"initial": 8, "strategy": "straddle", "model_lag": 0.25},
        "stop": {"max_simulations": 150, "screening_confidence": 0.99},
        "execution": {"workers": 2, "per_task": 2},
    }
    for key, value in over.items():
        data[key] = value
    return parse_spec(data, base_dir=sims_dir)


def run(spec):
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, workers=2) as ex:
        return campaign.run(ex)


def test_screening_labels_the_pool_with_few_simulations(tmp_path, sims_dir, pool_csv):
    outcome = run(screening_spec(tmp_path, sims_dir, pool_csv))
    assert outcome.rule == "screening_confidence", outcome.reason
    store = CampaignStore.open(tmp_path / "s.zarr")
    cand = store.candidates()
    truth = smooth2d_np(cand["features"]) < 1.2
    accuracy = float(np.mean((cand["passes"] == 1) == truth))
    assert accuracy >= 0.99
    simulated = cand["sample"] >= 0
    assert simulated.sum() == store.counts()["ok"] < 0.05 * len(truth)  # a few % of 2,500
    X = store.inputs()
    assert len(np.unique(X, axis=0)) == len(X)  # no candidate simulated twice
    assert store.screening["min_confidence"] >= 0.99
    # Every simulated row is a pool row, and the store knows which.
    np.testing.assert_array_equal(cand["features"][simulated], X[cand["sample"][simulated]])
    ds = store.to_xarray()
    assert ds.sizes["candidate"] == 2500 and "candidate_p_pass" in ds

    out = tmp_path / "hits.csv"
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "s.zarr"), "--passing", "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    hits = pd.read_csv(out)
    assert list(hits.columns[:3]) == ["name", "x1", "x2"]
    assert {"y_mean", "y_std", "p_pass", "passes", "simulated"} <= set(hits.columns)
    assert len(hits) == int((cand["passes"] == 1).sum()) and hits["passes"].all()
    assert hits["name"].str.match(r"m\d{4}").all()
    status = CliRunner().invoke(app, ["status", str(tmp_path / "s.zarr")])
    assert "Pool: 2500 candidates" in status.stdout


def test_top_k_finds_the_true_top_k(tmp_path, sims_dir, pool_csv):
    spec = screening_spec(
        tmp_path,
        sims_dir,
        pool_csv,
        goal={"output": "y", "top_k": 10, "top": "largest"},
        stop={"max_simulations": 120, "screening_confidence": 0.95},
    )
    outcome = run(spec)
    assert outcome.rule in ("screening_confidence", "max_simulations")
    cand = CampaignStore.open(tmp_path / "s.zarr").candidates()
    true_top = set(np.argsort(-smooth2d_np(cand["features"]))[:10])
    assert set(np.flatnonzero(cand["passes"] == 1)) == true_top


def test_random_order_baseline_and_a_pool_that_runs_out(tmp_path, sims_dir):
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"x1": np.linspace(0, 1, 12), "x2": np.linspace(1, 0, 12)}).to_csv(
        path, index=False
    )
    spec = screening_spec(
        tmp_path, sims_dir, path,
        pool={"path": str(path)},
        design={"initial": 4, "strategy": "random"},
        stop={"max_simulations": 50},
    )  # fmt: skip
    outcome = run(spec)
    assert outcome.rule == "pool_exhausted"
    store = CampaignStore.open(tmp_path / "s.zarr")
    assert store.counts()["ok"] == 12 and len(np.unique(store.inputs(), axis=0)) == 12


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"pool": None}, "parameters.x1: low and high are required"),
        ({"goal": {"output": "z", "below": 1.0}}, "goal.output 'z' is not a declared output"),
        ({"goal": {"output": "y", "below": 1.0, "above": 2.0}}, "exactly one of below, above"),
        ({"goal": None}, "'straddle' needs a [goal]"),
        (
            {"goal": None, "design": {"strategy": "random"}, "stop": {"screening_accuracy": 0.9}},
            "stop.screening_accuracy needs a [goal]",
        ),
        ({"design": {"strategy": "integrated-variance"}}, "does not select from a pool"),
        ({"pool": {"path": "nowhere.csv"}}, "pool file not found"),
        ({"parameters": {"x1": {"low": 0.2, "high": 1.0}, "x2": {}}}, "column 'x1' spans [0, 1]"),
    ],
)
def test_bad_screening_specs_are_named(tmp_path, sims_dir, pool_csv, over, message):
    with pytest.raises(SpecError) as err:
        spec = screening_spec(tmp_path, sims_dir, pool_csv, **over)
        Campaign.open(spec).close()
    assert message in str(err.value)
    assert not (tmp_path / "s.zarr").exists()  # nothing written


def test_a_screening_campaign_resumes_on_its_pool_and_refuses_another(tmp_path, sims_dir, pool_csv):
    stop = {"max_simulations": 20}
    first = run(screening_spec(tmp_path, sims_dir, pool_csv, stop=stop))
    assert first.counts["ok"] == 20
    more = run(screening_spec(tmp_path, sims_dir, pool_csv, stop={"max_simulations": 36}))
    assert more.counts["ok"] == 36 and more.simulated == 16  # nothing simulated twice
    store = CampaignStore.open(tmp_path / "s.zarr")
    assert len(np.unique(store.inputs(), axis=0)) == 36
    assert (store.candidates()["sample"] >= 0).sum() == 36

    other = tmp_path / "other.csv"
    pd.read_csv(pool_csv).iloc[:-1].to_csv(other, index=False)  # one candidate fewer
    with pytest.raises(StoreError, match="differs from"):
        run(screening_spec(tmp_path, sims_dir, other, stop={"max_simulations": 40}))
    untouched = CampaignStore.open(tmp_path / "s.zarr")
    assert untouched.counts()["ok"] == 36 and untouched.spec["pool"]["path"] == str(pool_csv)


def test_max_variance_over_a_pool_without_a_goal_emulates_the_pool(tmp_path, sims_dir, pool_csv):
    spec = screening_spec(
        tmp_path, sims_dir, pool_csv,
        goal=None,
        design={"initial": 8, "strategy": "max-variance"},
        stop={"max_simulations": 40, "target_std": 0.02},
    )  # fmt: skip
    outcome = run(spec)
    assert outcome.rule in ("target_std", "max_simulations")
    store = CampaignStore.open(tmp_path / "s.zarr")
    cand = store.candidates()
    assert np.isnan(cand["p_pass"]).all() and (cand["passes"] == -1).all()  # no goal, no class
    truth = smooth2d_np(cand["features"])
    rmse = np.sqrt(np.mean((cand["mean"][:, 0] - truth) ** 2))
    assert rmse / truth.std() < 0.05  # the pool's estimates are the emulator's
    assert set(map(tuple, store.inputs())) <= set(map(tuple, cand["features"]))  # pool rows only
