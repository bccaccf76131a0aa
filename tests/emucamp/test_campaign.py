"""The engine-free campaign loop on real executors (threads, a multi-process Dask cluster)."""

from __future__ import annotations

import gc
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emucamp.campaign import Campaign, CampaignObserver
from emucamp.emulators.gp import load_emulator, warm_up
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


def meets_rms_target(step, target: float) -> bool:
    """What ``target_std`` (statistic ``rms``) asks of a retraining: RMS std and LOO NRMSE."""
    return bool(np.all(step.mean_rel_std <= target) and np.all(step.loo_nrmse <= target))


def test_campaign_stops_when_the_uncertainty_target_holds(make_spec, call_log, tmp_path):
    # Instant simulations standing in for expensive ones (see the screening tests): without
    # the cap, the runs to the target follow the loop's speed, and 60 was sometimes not enough.
    spec = make_spec(stop={"target_std": 0.05, "max_simulations": 60}, design={"model_lag": 0.25})

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
    assert steps[-1].n == n and meets_rms_target(steps[-1], 0.05)
    assert recorder.steps and recorder.steps[-1] == n
    assert held_out_nrmse(tmp_path / "t.zarr") < 0.05
    origins = list(store.to_xarray()["origin"].values)
    assert origins[:6] == ["initial"] * 6 and "max-variance" in origins[6:]


def test_an_uncertainty_target_is_rechecked_on_the_model_of_every_result(make_spec, tmp_path):
    # The quick runs meet the target while a slow run near (1, 1) is still out; its result
    # (a bump the quick ones never saw) takes the model of all results back over it.
    spec = make_spec(
        simulator={"function": "campaign_sims:slow_corner_bump"},
        stop={"target_std": 0.05, "max_simulations": 40},
    )

    class Retrainings(CampaignObserver):
        def __init__(self) -> None:
            self.met: list[tuple[int, bool]] = []

        def on_step(self, step, campaign):
            self.met.append((step.n, meets_rms_target(step, 0.05)))

    retrainings = Retrainings()
    outcome = run(spec, retrainings)
    store = CampaignStore.open(tmp_path / "t.zarr")
    n = store.n_samples
    assert store.counts()["ok"] == n
    met = [i for i, (_, held) in enumerate(retrainings.met) if held]
    lost = [i for i, (_, held) in enumerate(retrainings.met) if not held]
    assert met and lost and met[0] < lost[-1], retrainings.met  # met, then lost again
    final = store.steps()[-1]
    assert final.n == n == retrainings.met[-1][0]
    if outcome.rule == "target_std":
        assert meets_rms_target(final, 0.05)
    else:  # never met again within the budget
        assert outcome.rule == "max_simulations" and n == 40


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
    X = np.column_stack([ds["x1"].values, ds["x2"].values])
    assert len(np.unique(X, axis=0)) == len(X)  # a failed input is never proposed again


def test_too_many_failures_stop_the_campaign_with_the_commonest_error(make_spec, tmp_path):
    spec = make_spec(simulator={"function": "campaign_sims:always_fails"})
    outcome = run(spec)
    assert outcome.rule == "max_failure_rate"
    assert "RuntimeError: mesh generation failed" in outcome.reason
    # The rule may judge after 10; what is still submitted then is drained: the initial
    # design is queued one pack per worker ahead (2 workers, packs of 1).
    assert 10 <= outcome.counts["failed"] <= 13
    assert outcome.counts["pending"] == 0


def test_sobol_baseline_ignores_the_model(make_spec, tmp_path):
    outcome = run(make_spec(design={"strategy": "sobol"}, stop={"max_simulations": 12}))
    assert outcome.counts["ok"] == 12
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray()
    np.testing.assert_allclose(
        np.column_stack([ds["x1"].values, ds["x2"].values]),
        CampaignStore.open(tmp_path / "t.zarr").inputs(),
    )
    assert set(ds["origin"].values[6:]) == {"sobol"}


@pytest.fixture
def two_worker_client():
    """A client of a local cluster of two one-thread worker processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def test_campaign_on_a_multi_process_dask_cluster(make_spec, call_log, two_worker_client):
    spec = make_spec(design={"strategy": "integrated-variance"}, stop={"max_simulations": 14})
    with Campaign.open(spec) as campaign:
        outcome = campaign.run(DaskExecutor(two_worker_client, campaign.runner))
    assert outcome.counts["ok"] == 14
    pids = {c["pid"] for c in calls(call_log)}
    assert len(pids) == 2  # both worker processes simulated
    assert len(calls(call_log)) == 14


def test_a_pack_keeps_the_records_it_streamed_when_its_worker_dies(
    make_spec, call_log, tmp_path, monkeypatch
):
    import dask
    from distributed import Client, LocalCluster

    # The third simulation kills its worker process, in the middle of the first pack (4).
    monkeypatch.setenv("EMUCAMP_TEST_KILL", str(tmp_path / "killed"))
    spec = make_spec(
        simulator={"function": "campaign_sims:kills_its_worker_on_third_call"},
        design={"initial": 8},
        stop={"max_simulations": 8},
        execution={"workers": 1, "per_task": 4},
    )
    with (
        # No rerun of a pack whose worker died: it fails at once, with KilledWorker.
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
        Campaign.open(spec) as campaign,
    ):  # fmt: skip
        campaign.run(DaskExecutor(client, campaign.runner))
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    status = [str(s) for s in ds["status"].values]
    # The two runs that ended before the kill were streamed and are kept; the pack's
    # future failed every job, which before streaming meant all four.
    assert status[:4] == ["ok", "ok", "failed", "failed"]
    assert all("KilledWorker" in str(e) for e in ds["error"].values[2:4])
    assert np.isfinite(ds["y"].values[:2]).all()
    assert (tmp_path / "killed").exists()


def test_a_pack_whose_records_all_came_streamed_is_not_fetched(
    make_spec, call_log, tmp_path, two_worker_client
):
    """Its result would add nothing, and fetching it is a round trip in the loop's thread."""

    class FetchCounting(DaskExecutor):
        def __init__(self, client, runner):
            super().__init__(client, runner)
            self.packs = 0
            self.fetched = 0

        def submit(self, jobs):
            self.packs += 1
            future, executor = super().submit(jobs), self

            class Counted:
                def add_done_callback(self, fn):
                    future.add_done_callback(lambda _f: fn(self))

                def result(self):
                    executor.fetched += 1
                    return future.result()

                def cancel(self):
                    return future.cancel()

            return Counted()

    spec = make_spec(design={"initial": 8}, stop={"max_simulations": 24},
                     execution={"workers": 2, "per_task": 4})  # fmt: skip
    with Campaign.open(spec) as campaign:
        executor = FetchCounting(two_worker_client, campaign.runner)
        outcome = campaign.run(executor)
    assert outcome.counts["ok"] == 24 and len(calls(call_log)) == 24
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    assert np.isfinite(ds["y"].values).all()
    # A pack's end can overtake its last streamed record; then it is fetched, as before.
    assert executor.packs >= 6 and executor.fetched < executor.packs


class CountingExecutor(PoolExecutor):
    """The thread pool, also noting the size of every pack it is given."""

    def __init__(self, runner, workers):
        super().__init__(runner, workers)
        self.packs: list[list[int]] = []

    def submit(self, jobs):
        self.packs.append([j.sample_id for j in jobs])
        return super().submit(jobs)


def worker_gaps(store: Path, after: float = -np.inf) -> list[float]:
    """Seconds each worker waited between its simulations while the budget was not spent.

    Only gaps that start at or after ``after`` (epoch seconds) are counted.
    """
    ds = CampaignStore.open(store).to_xarray().load()
    start = ds["started_at"].values.astype("datetime64[ns]").astype(np.int64) / 1e9
    end = ds["finished_at"].values.astype("datetime64[ns]").astype(np.int64) / 1e9
    gaps = []
    workers = ds["worker"].values
    for worker in set(workers):
        mine = sorted(zip(start[workers == worker], end[workers == worker], strict=True))
        gaps += [s1 - e0 for (_, e0), (s1, _) in itertools.pairwise(mine) if e0 >= after]
    return gaps


def test_auto_sends_the_design_a_pack_a_worker_when_records_stream(make_spec, tmp_path):
    spec = make_spec(design={"initial": 8}, stop={"max_simulations": 12},
                     execution={"workers": 2, "per_task": "auto"})  # fmt: skip
    with Campaign.open(spec) as campaign, CountingExecutor(campaign.runner, 2) as ex:
        assert campaign.run(ex).counts["ok"] == 12
    assert ex.packs[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]], ex.packs
    assert sorted(i for p in ex.packs for i in p) == list(range(12))


def test_packs_run_several_simulations_per_task_and_record_each(make_spec, call_log, tmp_path):
    spec = make_spec(execution={"workers": 2, "per_task": 3}, stop={"max_simulations": 20})
    with Campaign.open(spec) as campaign, CountingExecutor(campaign.runner, 2) as ex:
        outcome = campaign.run(ex)
    assert outcome.counts["ok"] == 20
    sizes = [len(p) for p in ex.packs]
    assert sum(sizes) == 20 and max(sizes) == 3
    assert sorted(i for p in ex.packs for i in p) == list(range(20))  # each once
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    for pack in ex.packs:  # a pack runs in one task: one worker, one after another
        assert len({ds["worker"].values[i] for i in pack}) == 1
    assert len(calls(call_log)) == 20


def test_auto_pack_size_follows_simulation_and_refill_times():
    from emucamp.campaign import _PackSizer
    from emucamp.simulator import SimResult

    def result(seconds: float) -> SimResult:
        return SimResult(0, {}, started_at=100.0, finished_at=100.0 + seconds)

    sizer = _PackSizer("auto")
    # Until something is measured only the planned design goes out, one simulation a pack
    # (so the first model is fitted as soon as two results are in), as far as slots allow.
    assert sizer.sizes(room=100, free=16, workers=4, planned=10) == [1] * 10
    assert sizer.sizes(room=100, free=8, workers=4, planned=10) == [1] * 8
    assert sizer.slots(workers=4, planned=10) == 8 and sizer.slots(workers=4) == 4
    # Records streamed one by one: a pack's first result does not wait for the pack, so
    # the design goes out a pack a worker (one task start each, no boundary between runs).
    streamed = _PackSizer("auto", streamed=True)
    assert streamed.sizes(room=100, free=8, workers=4, planned=10) == [3, 3, 2, 2]
    assert streamed.sizes(room=100, free=8, workers=4, planned=3) == [1, 1, 1]
    assert streamed.sizes(room=5, free=2, workers=4, planned=10) == [3, 2]
    assert streamed.sizes(room=100, free=8, workers=4, planned=0) == []
    sizer.observed([result(0.5)], gap=0.1)  # the worker waited 0.1 s before this pack
    assert sizer.size == 10  # 0.1 s <= 2 % of 10 x 0.5 s
    for _ in range(30):  # times are smoothed: a lasting change moves the size
        sizer.observed([result(50.0)], gap=0.1)
    assert sizer.size == 1  # slow simulations: one per task is enough
    for _ in range(60):
        sizer.observed([result(1e-4)] * 4, gap=0.1)
    assert sizer.size == 256  # capped
    assert sizer.queue and sizer.slots(workers=4) == 8  # the gap shows: queue one per worker
    # Simulations far shorter than the wait before a pack: never split below one wait.
    assert sizer.sizes(room=40, free=8, workers=4) == [40]
    # Guided self-scheduling: no pack above an equal share of what is left, among the packs
    # the workers hold: one each here (the wait is under 2 % of one run: nothing queued),
    guided = _PackSizer(100)
    guided.observed([result(0.5)], gap=0.005)
    assert not guided.queue
    assert guided.sizes(room=40, free=8, workers=4) == [10, 8, 6, 4, 3, 3, 2, 1]
    # two each (one running, one queued) here, never below the wait (3 runs of 0.5 s).
    queued = _PackSizer(100)
    queued.observed([result(0.5)], gap=1.5)
    assert queued.queue
    assert queued.sizes(room=40, free=8, workers=4) == [5, 5, 4, 4, 3, 3, 3, 3]
    # Wherever packing pays, a pack is queued too: auto sizes the pack so the wait is 2 % of
    # it, and each pack boundary would still cost a worker that wait.
    packing = _PackSizer("auto")
    packing.observed([result(0.5)], gap=0.05)
    assert packing.size == 5 and packing.queue
    fixed = _PackSizer(4)
    fixed.observed([result(1e-4)])
    assert fixed.size == 4
    slow = _PackSizer(1)
    slow.observed([result(3600.0)], gap=0.3)
    assert not slow.queue and slow.slots(workers=4) == 4  # hours-long runs: never queued


def test_gap_before_a_pack_is_measured_on_its_worker_clock():
    from emucamp.campaign import _gap_before
    from emucamp.simulator import SimResult

    ends: dict[str, float] = {}
    first = [SimResult(0, {}, started_at=10.5, finished_at=11.0, worker="w1")]
    assert _gap_before(first, submitted=10.0, ends=ends) == 0.5  # from submit: first pack
    second = [
        SimResult(1, {}, started_at=11.2, finished_at=12.0, worker="w1"),
        SimResult(2, {}, started_at=12.0, finished_at=13.0, worker="w1"),
    ]
    # queued before w1 finished: measured from w1's last end, not from the submission
    assert _gap_before(second, submitted=10.1, ends=ends) == pytest.approx(0.2)
    assert ends == {"w1": 13.0}
    assert _gap_before([SimResult(3, {}, status="failed", worker="w1")], 0.0, ends) is None


def test_no_model_free_picks_while_the_first_model_is_coming(make_spec, tmp_path):
    """The initial design's first result comes back alone, before a model can be fitted.

    The slot it frees must wait for the model (fitted once two results are in) rather than
    take a model-free Sobol point.
    """
    spec = make_spec(
        simulator={"function": "campaign_sims:staggered"},
        design={"initial": 2, "strategy": "max-variance"},
        stop={"max_simulations": 24},
        execution={"workers": 2, "per_task": "auto"},
    )
    outcome = run(spec)
    assert outcome.counts["ok"] == 24
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    origins = list(ds["origin"].values)
    assert origins[:2] == ["initial"] * 2
    assert set(origins[2:]) == {"max-variance"}, origins


def test_the_first_model_is_fitted_on_more_results_than_dimensions(make_spec, tmp_path):
    """A 4-D GP fitted on two or three results has lengthscales that say little.

    With instant simulations the design's results outrun the first fit, so that model
    would choose the next picks: it waits for five results (dimensions + 1) instead.
    """
    spec = make_spec(
        simulator={"function": "campaign_sims:smooth4d"},
        parameters={"x3": {"low": 0.0, "high": 1.0}, "x4": {"low": 0.0, "high": 1.0}},
        design={"initial": 10, "strategy": "max-variance"},
        stop={"max_simulations": 30},
        execution={"workers": 2, "per_task": "auto"},
    )
    outcome = run(spec)
    assert outcome.counts["ok"] == 30
    steps = CampaignStore.open(tmp_path / "t.zarr").steps()
    assert steps and steps[0].n >= 5, [s.n for s in steps]


def test_model_lag_caps_what_one_model_chooses_while_its_successor_fits(make_spec, tmp_path):
    """Instant simulations outrun the fits; left alone, one model chose 22-42 of these 60
    picks. Under ``model_lag = 0.25`` each model's picks stay within max(workers, n / 4),
    plus one refill."""
    workers = 2
    spec = make_spec(
        simulator={"function": "campaign_sims:smooth4d"},
        parameters={"x3": {"low": 0.0, "high": 1.0}, "x4": {"low": 0.0, "high": 1.0}},
        design={"initial": 10, "strategy": "max-variance", "model_lag": 0.25},
        stop={"max_simulations": 60},
        execution={"workers": workers},
    )
    assert run(spec).counts["ok"] == 60
    store = CampaignStore.open(tmp_path / "t.zarr")
    ds = store.to_xarray().load()
    chosen = ds["iteration"].values[ds["origin"].values == "max-variance"]
    steps = store.steps()
    for k, count in zip(*np.unique(chosen, return_counts=True), strict=True):
        n = steps[k - 1].n  # the k-th model swapped in
        assert count <= max(workers, math.ceil(0.25 * n)) + workers, (k, n, count)


def test_frequent_refits_store_every_step_but_not_every_model(make_spec, tmp_path, monkeypatch):
    """Cheap simulations bring a refit every fraction of a second: each retraining's
    diagnostics are stored, its model only once the last save is 20 times its cost old.
    The model the store ends with has seen every result."""
    saved: list[int] = []
    save = CampaignStore.save_emulator

    def counted(self, state):
        saved.append(len(state.X))
        return save(self, state)

    monkeypatch.setattr(CampaignStore, "save_emulator", counted)
    # model_lag makes the refits come back to back, however fast selection is against a fit
    # on a loaded machine (unlimited, one model once chose 34 of the 40: three refits).
    spec = make_spec(
        stop={"max_simulations": 40}, execution={"workers": 2}, design={"model_lag": 0.25}
    )
    assert run(spec).counts["ok"] == 40
    store = CampaignStore.open(tmp_path / "t.zarr")
    steps = [step.n for step in store.steps()]
    assert steps[-1] == 40 and len(steps) >= 4
    assert len(saved) < len(steps), (saved, steps)
    assert saved[-1] == 40 and load_emulator(tmp_path / "t.zarr").n == 40


def test_refits_run_beside_the_workers_and_lose_nothing(make_spec, call_log, tmp_path, monkeypatch):
    """Each refit takes over 2 s here; simulations take 0.05 s and must not wait for it.

    (Only the first model is waited for, once the initial design is done.)
    """
    from emucamp.emulators.gp import GPEmulator

    slow_fit = GPEmulator.fit

    def fit(self, X, Y, warm_start=None):
        import time

        if warm_start is not None:
            time.sleep(2.0)
        return slow_fit(self, X, Y, warm_start)

    monkeypatch.setattr(GPEmulator, "fit", fit)
    monkeypatch.setenv("EMUCAMP_TEST_DELAY", "0.05")
    spec = make_spec(stop={"max_simulations": 40}, execution={"workers": 2})
    outcome = run(spec)
    assert outcome.counts["ok"] == 40 and len(calls(call_log)) == 40
    store = CampaignStore.open(tmp_path / "t.zarr")
    steps = [s.n for s in store.steps()]
    assert steps == sorted(steps) and steps[-1] == 40  # results that came meanwhile are kept
    assert len(steps) < 20  # fewer fits than results: fits ran while simulations went on
    # After the first model (which the loop waits for, by design), no worker waited for any
    # of the slowed refits: a wait would be a gap of 2 s or more. (Selection alone takes
    # ~10-70 ms; the margin is for a loaded 2-core machine.)
    gaps = worker_gaps(tmp_path / "t.zarr", after=store.steps()[0].time)
    assert len(gaps) > 20 and max(gaps) < 1.5


def test_extra_outputs_are_kept_in_the_store_and_ignored_by_the_emulator(make_spec, tmp_path):
    outcome = run(make_spec(simulator={"function": "campaign_sims:with_extras"}))
    assert outcome.counts["ok"] == 40
    store = CampaignStore.open(tmp_path / "t.zarr")
    extras = store.extra_outputs()
    assert set(extras) == {"iterations", "residual"}
    assert np.all(extras["iterations"] == 7.0)
    X = store.inputs()
    assert np.allclose(extras["residual"], np.abs(X[:, 0] - X[:, 1]) * 1e-6)
    emulator = load_emulator(tmp_path / "t.zarr")
    assert emulator.outputs == ["y"] and emulator.n == 40  # trained on the declared output


def test_isolated_hanging_simulations_time_out_and_the_campaign_goes_on(
    make_spec, tmp_path, monkeypatch
):
    monkeypatch.setenv("EMUCAMP_TEST_LOG", str(tmp_path / "pid"))
    spec = make_spec(
        simulator={"function": "campaign_sims:hangs", "isolate": True, "timeout": 1.0},
        stop={"max_simulations": 12, "max_failure_rate": 0.5, "failure_rate_after": 4},
    )
    outcome = run(spec)
    assert outcome.rule == "max_failure_rate"
    assert "timeout" in outcome.reason
    assert outcome.counts["timeout"] >= 4 and outcome.counts["pending"] == 0


def test_a_grey_box_campaign_meets_its_target_with_fewer_simulations(make_spec, tmp_path):
    from campaign_sims import physics

    X_test = np.random.default_rng(4).random((400, 2))
    y_test = np.array([physics(*x) for x in X_test])
    used = {}
    for name, emulator in (("black", {}), ("grey", {"prior_mean": "campaign_sims:physics_prior"})):
        spec = make_spec(
            campaign={"name": name, "store": str(tmp_path / f"{name}.zarr")},
            simulator={"function": "campaign_sims:physics"},
            # The black box meets the target after 42-55 runs (12 runs of this spec): the
            # budget leaves room, or a slow trajectory fails the test for the wrong reason.
            stop={"max_simulations": 80, "target_std": 0.02},
            emulator=emulator,
            # Instant simulations standing in for expensive ones (see the screening tests).
            design={"model_lag": 0.25},
        )
        outcome = run(spec)
        assert outcome.rule == "target_std"
        used[name] = CampaignStore.open(tmp_path / f"{name}.zarr").counts()["ok"]
        mean, _ = load_emulator(tmp_path / f"{name}.zarr").predict(X_test)
        assert np.sqrt(np.mean((mean[:, 0] - y_test) ** 2)) / y_test.std() < 0.03, name
    assert used["grey"] <= 0.6 * used["black"], used


def test_a_non_positive_result_of_a_positive_output_is_a_failed_run(make_spec, tmp_path):
    spec = make_spec(
        simulator={"function": "campaign_sims:physics"},  # < 0 for x1 in about (0.55, 1)
        outputs={"y": {"positive": True}},
        stop={"max_simulations": 10, "max_failure_rate": 1.0},
    )
    run(spec)
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    failed = ds["status"].values == "failed"
    assert failed.any() and not failed.all()
    assert all("declared positive but is" in e for e in ds["error"].values[failed])
    assert (ds["y"].values[~failed] > 0).all()


def field_spec(tmp_path: Path, sims_dir: Path, function: str, **over: Any) -> CampaignSpec:
    """A campaign over a field output ``curve`` (50 values) and a scalar ``area``."""
    return parse_spec(merge({
        "campaign": {"name": "t", "store": str(tmp_path / "t.zarr"), "seed": 1},
        "simulator": {"function": function},
        "parameters": {"x1": {"low": 0.0, "high": 1.0}, "x2": {"low": 0.0, "high": 1.0}},
        "outputs": {"curve": {"shape": [50]}, "area": {}},
        "design": {"initial": 6},
        "execution": {"workers": 2},
    }, over), base_dir=sims_dir)  # fmt: skip


def test_a_field_output_campaign_records_whole_fields_and_emulates_them(tmp_path, sims_dir):
    from campaign_sims import profile_np

    from emucamp.report import write_report

    spec = field_spec(tmp_path, sims_dir, "campaign_sims:profile",
                      stop={"max_simulations": 40, "target_std": 0.02})  # fmt: skip
    outcome = run(spec)
    assert outcome.rule == "target_std", outcome.reason
    store = CampaignStore.open(tmp_path / "t.zarr")
    ds = store.to_xarray()
    assert ds["curve"].dims == ("sample", "curve_index") and ds.sizes["curve_index"] == 50
    X, Y = store.completed()
    assert Y.shape == (len(X), 51) and np.isfinite(Y).all()
    t = np.linspace(0.0, 1.0, 50)
    np.testing.assert_allclose(Y[:, :50], [profile_np(a, b, t) for a, b in X])
    assert store.steps()[-1].max_rel_std.shape == (2,)  # one figure per declared output

    X_test = np.random.default_rng(5).random((200, 2))
    truth = np.array([profile_np(a, b, t) for a, b in X_test])
    mean, std = load_emulator(tmp_path / "t.zarr").predict(X_test)
    assert np.sqrt(np.mean((mean[:, :50] - truth) ** 2)) / truth.std() < 0.02
    assert (std[:, :50] > 0).all()
    state = store.load_emulator_state()
    assert state.meta["fields"]["curve"]["retained"] >= 0.999  # recorded with the emulator
    write_report(tmp_path / "t.zarr", tmp_path / "report")
    assert (tmp_path / "report" / "field-curve.png").is_file()


def test_a_field_of_the_wrong_size_is_a_failed_run_naming_it(tmp_path, sims_dir):
    spec = field_spec(tmp_path, sims_dir, "campaign_sims:short_profile",
                      stop={"max_simulations": 3, "max_failure_rate": 1.0},
                      design={"initial": 3})  # fmt: skip
    run(spec)
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    assert set(ds["status"].values) == {"failed"}
    assert all("'curve' has shape (40,), declared (50,)" in e for e in ds["error"].values)


def test_rerunning_a_campaign_that_met_its_target_reuses_its_model(make_spec, tmp_path):
    spec = make_spec(stop={"target_std": 0.05, "max_simulations": 60}, design={"model_lag": 0.25})
    first = run(spec)
    store = CampaignStore.open(tmp_path / "t.zarr")
    steps, samples = store.n_steps, store.n_samples
    for _ in range(2):  # no refit that could land a hair across the target
        again = run(spec)
        assert (again.rule, again.simulated) == (first.rule, 0)
    store = CampaignStore.open(tmp_path / "t.zarr")
    assert (store.n_steps, store.n_samples) == (steps, samples)
    # Changed emulator settings are a reason to refit.
    refit = run(make_spec(stop={"target_std": 0.05, "max_simulations": 60},
                          design={"model_lag": 0.25}, emulator={"noise_floor": 1e-4}))  # fmt: skip
    assert CampaignStore.open(tmp_path / "t.zarr").n_steps > steps and refit.rule


def test_a_finished_campaign_stays_finished_when_its_final_model_sits_across_the_target(
    make_spec, tmp_path
):
    """A stored final model across the target (its recheck's fit failed) changes nothing."""
    from dataclasses import replace

    spec = make_spec(stop={"target_std": 0.05, "max_simulations": 60}, design={"model_lag": 0.25})
    first = run(spec)
    assert first.rule == "target_std"
    with CampaignStore.open(tmp_path / "t.zarr", mode="a") as store:
        last = store.steps()[-1]
        store.add_step(replace(last, loo_nrmse=np.full_like(last.loo_nrmse, 0.2)))
        samples = store.n_samples
    again = run(spec)  # same results, model and stop settings: nothing to do
    assert (again.rule, again.simulated) == ("target_std", 0)
    assert CampaignStore.open(tmp_path / "t.zarr").n_samples == samples
    # A tightened target is a reason to go on.
    tighter = run(
        make_spec(stop={"target_std": 0.01, "max_simulations": 60}, design={"model_lag": 0.25})
    )
    assert tighter.simulated > 0


def test_results_that_arrive_between_refits_are_conditioned_into_selection(make_spec, tmp_path):
    """Until the next refit takes them, finished runs count as pending for the strategy."""
    from emucamp.emulators.strategies import SobolStrategy
    from emucamp.simulator import SimResult

    spec = make_spec(stop={"max_simulations": 8})
    run(spec)

    class RecordingStrategy:  # our own seam: what the strategy is handed
        name, needs_model = "recording", True

        def __init__(self) -> None:
            self.pending: np.ndarray | None = None

        def select(self, emulator, n, pending=None):
            self.pending = pending
            return np.full((n, 2), 0.5)

    with Campaign.open(spec) as campaign:
        run_ids = campaign.store.ids("ok")
        fresh = np.array([[0.11, 0.22], [0.33, 0.44]])
        new_ids = campaign.store.add_pending(fresh, iteration=9, origin="test")
        results = [
            SimResult(i, {"x1": x[0], "x2": x[1]}, {"y": 1.0}, started_at=1.0, finished_at=2.0)
            for i, x in zip(new_ids, fresh, strict=True)
        ]
        campaign.store.record_many(results)
        campaign.emulator = load_emulator(tmp_path / "t.zarr")  # fitted on the first 8
        campaign._trained = frozenset(run_ids)
        strategy = RecordingStrategy()
        campaign._select(strategy, SobolStrategy(campaign.space, 1), 1)
    assert strategy.pending is not None
    np.testing.assert_allclose(strategy.pending, fresh)  # only the two the model has not seen


class RefillWatcher(CampaignObserver):
    """At each model-chosen submission, notes what the store holds.

    With ``fail_at = k``, the k-th submission made while results were unwritten raises.
    """

    def __init__(self, fail_at: int | None = None):
        self.refills = 0
        self.unwritten_picks = 0  # submissions whose own rows were not in the store yet
        self.with_unrecorded = 0  # submissions made while finished results were unwritten
        self.unrecorded: set[int] = set()  # those results, at the latest submission
        self.fail_at = fail_at

    def on_submit(self, jobs, campaign):
        if campaign.emulator is None:
            return  # the initial design: written before it is submitted
        self.refills += 1
        store = campaign.store
        self.unwritten_picks += min(j.sample_id for j in jobs) >= store.n_samples
        in_flight = {i for _, ids in campaign.in_flight.values() for i in ids}
        self.unrecorded = set(store.ids("pending")) - in_flight
        self.with_unrecorded += bool(self.unrecorded)
        if self.unrecorded and self.with_unrecorded == self.fail_at:
            raise RuntimeError("the loop is interrupted here")


def test_a_refill_goes_out_before_the_results_that_freed_it_are_written(
    make_spec, tmp_path, monkeypatch
):
    """A worker's next input waits only for its selection: the finished results' records
    and the new rows are written after the submission (on a busy machine each write takes
    0.1-0.5 s). The rows still carry the time they were submitted."""
    monkeypatch.setenv("EMUCAMP_TEST_DELAY", "0.02")
    spec = make_spec(stop={"max_simulations": 30}, execution={"workers": 2})
    watcher = RefillWatcher()
    outcome = run(spec, watcher)
    assert outcome.counts["ok"] == 30
    assert watcher.refills > 5
    assert watcher.unwritten_picks == watcher.refills
    assert watcher.with_unrecorded > watcher.refills // 2, vars(watcher)
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    assert list(ds["sample"].values) == list(range(30))
    submitted = ds["submitted_at"].values.astype("datetime64[ns]").astype(np.int64)
    started = ds["started_at"].values.astype("datetime64[ns]").astype(np.int64)
    assert (submitted <= started).all()


def test_a_refit_trains_on_the_results_in_hand_before_they_are_written(
    make_spec, tmp_path, monkeypatch
):
    """A model waits only for its fit: the results that make a refit due train it before
    their records are written (each write took 0.06-0.36 s on a busy 2-core machine).
    What the fit saw of them is what the store holds once they are written."""
    seen: list[tuple[np.ndarray, np.ndarray, list[int], int]] = []
    snapshot = Campaign._snapshot

    def watched(self, *in_hand):
        X, Y, ids = snapshot(self, *in_hand)
        seen.append((X, Y, ids, self.store.counts()["ok"]))
        return X, Y, ids

    monkeypatch.setattr(Campaign, "_snapshot", watched)
    monkeypatch.setenv("EMUCAMP_TEST_DELAY", "0.02")
    spec = make_spec(stop={"max_simulations": 30}, execution={"workers": 2})
    assert run(spec).counts["ok"] == 30
    ahead = [(ids, written) for _, _, ids, written in seen if len(ids) > written]
    # The first fit at least: it is due the moment the results in hand reach its count.
    assert ahead and len(ahead[0][0]) >= 3, [(len(i), w) for _, _, i, w in seen]
    store = CampaignStore.open(tmp_path / "t.zarr")
    X_all, ids_all = store.inputs(), store.ids("ok")
    ds = store.to_xarray().load()
    for X, Y, ids, _ in seen:
        assert len(set(ids)) == len(ids) and set(ids) <= set(ids_all)
        np.testing.assert_array_equal(X, X_all[ids])
        np.testing.assert_array_equal(Y[:, 0], ds["y"].values[ids])


class RoundWatcher(CampaignObserver):
    """Notes, at each model-chosen submission, the pack's first id and the store's rows."""

    def __init__(self):
        self.submits: list[tuple[int, int, int]] = []  # (first id, rows stored, model)

    def on_submit(self, jobs, campaign):
        if campaign.emulator is not None:
            first = min(j.sample_id for j in jobs)
            self.submits.append((first, campaign.store.n_samples, campaign._iteration))


def test_a_rounds_picks_are_written_together_once_its_packs_are_out(
    make_spec, tmp_path, monkeypatch
):
    """Several packs chosen in one round, one selection each: the later ones wait for no
    store write (0.04-0.05 s each on 2 cores), since the round's rows are written once all
    of its packs are out; each selection still sees the round's earlier picks as pending.
    The rows keep their own submission times."""
    monkeypatch.setattr("emucamp.campaign._SELECT_BATCH", 1)  # a selection per pack
    monkeypatch.setenv("EMUCAMP_TEST_DELAY", "0.05")
    pending_seen: list[int] = []
    select = Campaign._select

    def watched(self, strategy, sobol, k, unwritten=()):
        pending_seen.append(sum(len(x) for x in unwritten))
        return select(self, strategy, sobol, k, unwritten)

    monkeypatch.setattr(Campaign, "_select", watched)
    spec = make_spec(stop={"max_simulations": 30}, execution={"workers": 4})
    watcher = RoundWatcher()
    assert run(spec, watcher).counts["ok"] == 30
    # A pack whose id starts past the rows stored plus its own: an earlier pack of its
    # round was out and not yet written.
    behind = [(first, rows) for first, rows, _ in watcher.submits if first > rows]
    assert behind, watcher.submits
    assert max(pending_seen) >= 1
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    assert list(ds["sample"].values) == list(range(30))
    X = np.column_stack([ds["x1"].values, ds["x2"].values])
    assert len(np.unique(X.round(12), axis=0)) == 30  # no input chosen twice
    submitted = ds["submitted_at"].values.astype("datetime64[ns]").astype(np.int64)
    started = ds["started_at"].values.astype("datetime64[ns]").astype(np.int64)
    assert (submitted <= started).all()
    first, _ = behind[0]
    assert submitted[first] > submitted[first - 1] or first == 0


def test_the_first_models_results_are_written_after_its_fit(make_spec, tmp_path, monkeypatch):
    """While the first model fits, the workers wait for it alone: the records of results
    that come in meanwhile are written once it is in (their write raced the fit for the
    flow's GIL: 0.75 s against 0.28 s, traced), and none is lost."""
    warm_up()  # else the fitting thread's warm-up may outlast the design
    fit = Campaign._fit
    during: list[tuple[float, float, int, int]] = []

    def slow_first(self, snapshot, warm, save=True):
        first, began, before = self.emulator is None, time.time(), self.store.counts()["ok"]
        if first:
            time.sleep(0.5)  # the design's other runs end meanwhile
        fitted = fit(self, snapshot, warm, save)
        if first:
            during.append((began, time.time(), before, self.store.counts()["ok"]))
        return fitted

    monkeypatch.setattr(Campaign, "_fit", slow_first)
    monkeypatch.setenv("EMUCAMP_TEST_DELAY", "0.05")
    spec = make_spec(
        design={"initial": 16, "strategy": "max-variance"},
        stop={"max_simulations": 24},
        execution={"workers": 2},
    )
    assert run(spec).counts["ok"] == 24
    (began, ended, before, after), *_ = during
    ds = CampaignStore.open(tmp_path / "t.zarr").to_xarray().load()
    finished = ds["finished_at"].values.astype("datetime64[ns]").astype(np.int64) / 1e9
    assert ((finished > began) & (finished < ended)).sum() >= 3  # results came in meanwhile
    assert before == after, during  # and none was written before the model was in


class SaveWatcher(CampaignObserver):
    """Orders model-chosen submissions against the stores of the models that chose them."""

    def __init__(self, events: list[tuple[str, int]]):
        self.events = events

    def on_submit(self, jobs, campaign):
        if campaign.emulator is not None:
            self.events.append(("submit", id(campaign.emulator)))


def test_a_model_is_stored_after_the_refills_it_chose(make_spec, tmp_path, monkeypatch):
    """A new model's store write (diagnostics, the model itself) starts only once the
    refills it chose are out: in the fitting thread it slowed their selection
    (0.09 s -> 0.42 s, traced)."""
    events: list[tuple[str, int]] = []
    save = Campaign._save

    def watched(self, fitted, model=True):
        events.append(("save", id(fitted.emulator)))
        return save(self, fitted, model)

    monkeypatch.setattr(Campaign, "_save", watched)
    monkeypatch.setenv("EMUCAMP_TEST_DELAY", "0.1")  # a model for a few picks, not all
    spec = make_spec(stop={"max_simulations": 30}, execution={"workers": 2})
    assert run(spec, SaveWatcher(events)).counts["ok"] == 30
    saved = {it: i for i, (kind, it) in enumerate(events) if kind == "save"}
    # The first model always chooses at once: every worker is waiting for it. (A later one
    # may be stored before it chooses anything, when no worker was free in its round.)
    kind, first_model = events[0]
    assert kind == "submit" and first_model in saved
    assert events.index(("save", first_model)) > 1, [(k, id_ % 1000) for k, id_ in events]
    assert sum(kind == "submit" for kind, it in events[: saved[first_model]]) >= 2
    assert CampaignStore.open(tmp_path / "t.zarr").n_steps == len(saved)


class FreezeWatcher(CampaignObserver):
    """Notes the collector's frozen object count at each submission."""

    def __init__(self):
        self.frozen: list[int] = []

    def on_submit(self, jobs, campaign):
        self.frozen.append(gc.get_freeze_count())


def test_the_run_keeps_what_lived_before_it_out_of_the_collectors_scans(make_spec, tmp_path):
    """A full collection of the flow process's objects took 0.26-0.32 s and stalled every
    worker's first start: they are frozen for the run, and thawed after it; a freeze that
    was there before (a pre-fork server's) is left as it was."""
    assert gc.get_freeze_count() == 0
    watcher = FreezeWatcher()
    assert run(make_spec(stop={"max_simulations": 12}), watcher).counts["ok"] == 12
    assert watcher.frozen and min(watcher.frozen) > 1000, watcher.frozen[:3]
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        watcher = FreezeWatcher()
        spec = make_spec(stop={"max_simulations": 12}, campaign={"store": str(tmp_path / "u")})
        assert run(spec, watcher).counts["ok"] == 12
        # Nothing more frozen (frozen objects freed since then leave the count), none thawed.
        assert watcher.frozen and max(watcher.frozen) <= before
        assert gc.get_freeze_count() > before // 2
    finally:
        gc.unfreeze()


def test_results_finished_before_an_interrupted_refill_are_kept(make_spec, tmp_path):
    """The loop dies while submitting a refill: the results that freed its slot, not yet
    written then, are written on the way out, and a rerun finishes the campaign."""
    spec = make_spec(stop={"max_simulations": 30}, execution={"workers": 2})
    watcher = RefillWatcher(fail_at=2)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(spec, watcher)
    assert watcher.unrecorded  # the failing submission came before these were written
    store = CampaignStore.open(tmp_path / "t.zarr")
    assert watcher.unrecorded <= set(store.ids("ok"))
    ds = store.to_xarray().load()
    assert np.isfinite(ds["y"].values[sorted(watcher.unrecorded)]).all()
    assert run(spec).counts["ok"] == 30
