from __future__ import annotations

import math
import time

import numpy as np
import pytest
from rich.console import Console

from emucamp.progress import ProgressSnapshot, format_duration, try_read
from emucamp.simulator import SimResult
from emucamp.storage import CampaignStore, StepRecord

SPEC = {
    "campaign": {"name": "progress-demo"},
    "stop": {"max_simulations": 10, "target_std": 0.05},
}


def result(i: int, status: str, finished_at: float) -> SimResult:
    return SimResult(
        sample_id=i,
        inputs={"a": 0.1 * i},
        outputs={"u": float(i)} if status == "ok" else {},
        status=status,  # type: ignore[arg-type]
        error="" if status == "ok" else "boom",
        started_at=finished_at - 1.0,
        finished_at=finished_at,
        worker="host:1",
    )


@pytest.fixture
def half_done_store(tmp_path):
    """10-simulation budget: 4 finished over the last 8 s (1 failed), 2 in flight, one step."""
    store = CampaignStore.create(tmp_path / "p.zarr", ["a"], ["u"], SPEC)
    store.add_pending(np.linspace(0, 1, 6)[:, None], 0, "initial")
    now = time.time()
    store.record_many([result(i, "ok" if i else "failed", now - 8 + 2 * i) for i in range(4)])
    store.add_step(
        StepRecord(
            n=3,
            time=now,
            fit_seconds=0.1,
            max_rel_std=np.array([0.2]),
            mean_rel_std=np.array([0.1]),
            loo_nrmse=np.array([0.3]),
            loo_coverage=np.array([0.9]),
            lengthscales=np.ones((1, 1)),
        )
    )
    yield store
    store.close()


def test_snapshot_counts_rate_and_eta_from_the_store(half_done_store):
    snap = ProgressSnapshot.read(half_done_store.path, since=time.time() - 10.0)
    assert (snap.finished, snap.in_flight, snap.budget) == (4, 2, 10)
    assert snap.counts == {"pending": 2, "ok": 3, "failed": 1, "timeout": 0}
    assert snap.running  # this process holds the writer lock
    assert snap.state == "running"
    # 4 results in the 10 s since the run started: 0.4 per second, 6 left -> 15 s.
    assert snap.rate == pytest.approx(0.4, rel=0.05)
    assert snap.eta == pytest.approx(6 / snap.rate)
    assert "rel. std 0.2 of u (target 0.05)" in snap.uncertainty
    assert "LOO NRMSE 0.3" in snap.uncertainty and "n = 3" in snap.uncertainty


def test_the_uncertainty_shown_is_the_statistic_target_std_bounds(tmp_path):
    spec = {**SPEC, "stop": {**SPEC["stop"], "target_std_statistic": "rms"}}
    store = CampaignStore.create(tmp_path / "rms.zarr", ["a"], ["u"], spec)
    store.add_step(
        StepRecord(3, time.time(), 0.1, np.array([0.2]), np.array([0.1]), np.array([0.3]),
                   np.array([0.9]), np.ones((1, 1)))
    )  # fmt: skip
    snap = ProgressSnapshot.read(store.path)
    store.close()
    assert "RMS rel. std 0.1 of u (target 0.05)" in snap.uncertainty


def test_interrupted_and_stopped_campaigns_are_told_apart(half_done_store):
    path = half_done_store.path
    half_done_store.close()  # the writer is gone without a stop reason: interrupted
    snap = ProgressSnapshot.read(path)
    assert not snap.running and snap.state.startswith("not running: interrupted")
    assert snap.eta == 0.0
    with CampaignStore.open(path, mode="a") as store:
        store.set_stop("target_std", "uncertainty target met")
    snap = ProgressSnapshot.read(path)
    assert not snap.running and snap.state == "stopped: uncertainty target met"


def test_since_counts_elapsed_time_from_this_run(half_done_store):
    since = time.time() - 100.0
    snap = ProgressSnapshot.read(half_done_store.path, since=since)
    assert snap.elapsed == pytest.approx(100.0, abs=2.0)


def test_renderable_shows_the_figures(half_done_store):
    console = Console(width=120, record=True)
    console.print(ProgressSnapshot.read(half_done_store.path, since=time.time() - 10).renderable())
    text = console.export_text()
    assert "progress-demo" in text and "4/10 simulations" in text
    assert "2 in flight" in text and "1 failed" in text and "left at the budget" in text


def test_a_store_that_is_not_there_reads_as_none_for_the_live_display(tmp_path):
    assert try_read(tmp_path / "nothing.zarr") is None


def test_snapshot_is_json_able(half_done_store):
    import json

    snap = ProgressSnapshot.read(half_done_store.path, since=time.time() - 10.0)
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["finished"] == 4 and data["state"] == "running" and data["eta"] > 0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0:00"), (83, "1:23"), (3725, "1:02:05"), (math.nan, "-")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
