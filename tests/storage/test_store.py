from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emucamp.errors import StoreError, StoreLockedError
from emucamp.simulator import SimResult
from emucamp.storage import SCHEMA_VERSION, CampaignStore, EmulatorState, StepRecord

PARAMS = ["a", "b"]
OUTPUTS = ["u", "v"]


@pytest.fixture
def store(tmp_path):
    s = CampaignStore.create(tmp_path / "c.zarr", PARAMS, OUTPUTS, {"campaign": {"name": "c"}})
    yield s
    s.close()


def ok_result(i: int, a: float, b: float, u: float, v: float, attempt: int = 1) -> SimResult:
    return SimResult(
        sample_id=i,
        inputs={"a": a, "b": b},
        outputs={"u": u, "v": v},
        status="ok",
        started_at=1_700_000_000.0 + i,
        finished_at=1_700_000_001.5 + i,
        worker="host:1",
        attempt=attempt,
    )


def step(n: int, m: int = 2, d: int = 2) -> StepRecord:
    return StepRecord(
        n=n,
        time=1_700_000_000.0,
        fit_seconds=0.25,
        max_rel_std=np.full(m, 0.1 * n),
        mean_rel_std=np.full(m, 0.05),
        loo_nrmse=np.full(m, 0.2),
        loo_coverage=np.full(m, 0.95),
        lengthscales=np.arange(m * d, dtype=float).reshape(m, d),
    )


def test_pending_then_record_round_trips_through_reopen_and_xarray(store, tmp_path):
    ids = store.add_pending(np.array([[0.1, 1.0], [0.2, 2.0], [0.3, 3.0]]), 0, "initial")
    assert ids == [0, 1, 2]
    store.record(ok_result(1, 0.2, 2.0, 5.0, 6.0, attempt=2))
    store.record(
        SimResult(2, {"a": 0.3, "b": 3.0}, status="failed", error="ValueError: boom", attempt=1)
    )
    store.close()

    again = CampaignStore.open(tmp_path / "c.zarr")
    assert again.status() == ["pending", "ok", "failed"]
    assert again.counts() == {"pending": 1, "ok": 1, "failed": 1, "timeout": 0}
    X, Y = again.completed()
    np.testing.assert_array_equal(X, [[0.2, 2.0]])
    np.testing.assert_array_equal(Y, [[5.0, 6.0]])
    assert again.pending_ids() == [0]

    ds = xr.open_zarr(tmp_path / "c.zarr", consolidated=False)
    assert ds.sizes["sample"] == 3
    assert list(ds["status"].values) == ["pending", "ok", "failed"]
    assert ds["error"].values[2] == "ValueError: boom"
    assert int(ds["attempt"].values[1]) == 2
    assert math.isnan(float(ds["u"].values[2]))  # failed rows carry no outputs
    assert np.issubdtype(ds["finished_at"].dtype, np.datetime64)  # CF time units decode
    assert list(ds["origin"].values) == ["initial"] * 3


def test_rows_written_after_their_submission_keep_its_time(store, tmp_path):
    """The campaign submits picks first and writes their rows after: the row keeps the
    submission's time, and the ids are the next numbers, as the loop assumed."""
    store.add_pending(np.array([[0.1, 1.0]]), 0, "initial")
    submitted = 1_700_000_123.25
    assert store.n_samples == 1
    ids = store.add_pending(np.array([[0.2, 2.0], [0.3, 3.0]]), 1, "max-variance", submitted)
    assert ids == [1, 2]
    stamps = CampaignStore.open(tmp_path / "c.zarr").timestamps()["submitted_at"]
    assert list(stamps[1:]) == [submitted, submitted]
    assert abs(stamps[0] - time.time()) < 60  # no time given: the write's


def test_rows_written_together_keep_each_their_own_submission_time(store, tmp_path):
    """A round of packs is written in one go after the last is out: each row keeps the
    time its own pack went."""
    times = np.array([1_700_000_000.5, 1_700_000_000.5, 1_700_000_001.75])
    ids = store.add_pending(np.array([[0.1, 1.0], [0.2, 2.0], [0.3, 3.0]]), 1, "sobol", times)
    assert ids == [0, 1, 2]
    stamps = CampaignStore.open(tmp_path / "c.zarr").timestamps()["submitted_at"]
    np.testing.assert_array_equal(stamps, times)


def test_steps_and_coordinates_are_readable_with_xarray(store, tmp_path):
    store.add_step(step(5))
    store.add_step(step(9))
    ds = store.to_xarray()
    assert list(ds["step_n"].values) == [5, 9]
    assert list(ds["output"].values) == OUTPUTS
    assert list(ds["parameter"].values) == PARAMS
    assert ds["step_lengthscale"].dims == ("step", "output", "parameter")
    np.testing.assert_allclose(ds["step_max_rel_std"].sel(output="v").values, [0.5, 0.9])
    assert [s.n for s in store.steps()] == [5, 9]


def test_stop_reason_and_spec_are_kept(store, tmp_path):
    store.set_stop("target_std", "uncertainty target met")
    store.close()
    ro = CampaignStore.open(tmp_path / "c.zarr")
    assert (ro.stop_rule, ro.stop_reason) == ("target_std", "uncertainty target met")
    assert ro.spec == {"campaign": {"name": "c"}}
    assert ro.attrs["schema_version"] == SCHEMA_VERSION
    assert ro.summary()["stop_reason"] == "uncertainty target met"


def test_emulator_state_round_trip_replaces_the_previous_one(store, tmp_path):
    with pytest.raises(StoreError, match="no fitted emulator"):
        store.load_emulator_state()
    first = EmulatorState(np.ones((3, 2)), np.zeros((3, 2)), {"w": np.arange(4.0)}, {"k": 1})
    store.save_emulator(first)
    second = EmulatorState(
        np.full((4, 2), 2.0), np.ones((4, 2)), {"w": np.arange(3.0), "z": np.eye(2)}, {"k": 2}
    )
    store.save_emulator(second)
    loaded = CampaignStore.open(tmp_path / "c.zarr").load_emulator_state()
    np.testing.assert_array_equal(loaded.X, second.X)
    np.testing.assert_array_equal(loaded.params["z"], np.eye(2))
    assert loaded.meta == {"k": 2}
    groups = [name for name, _ in zarr.open_group(tmp_path / "c.zarr", mode="r").groups()]
    assert len(groups) == 1  # the older emulator is gone once the new one is whole


def test_rows_appended_past_the_committed_count_are_trimmed_on_open(store, tmp_path):
    store.add_pending(np.array([[0.1, 1.0]]), 0, "initial")
    store.close()
    # A crash between appending arrays and committing n_samples leaves ragged arrays.
    g = zarr.open_group(tmp_path / "c.zarr", mode="r+")
    g["a"].append(np.array([9.0]))
    g["status"].append(np.array(["pending"], dtype=object))
    with pytest.raises(ValueError):
        xr.open_zarr(tmp_path / "c.zarr", consolidated=False).load()
    CampaignStore.open(tmp_path / "c.zarr", mode="a").close()
    ds = xr.open_zarr(tmp_path / "c.zarr", consolidated=False)
    assert ds.sizes["sample"] == 1


def test_second_writer_is_refused_and_reader_is_not(store, tmp_path):
    with pytest.raises(StoreLockedError, match="in use by another campaign"):
        CampaignStore.open(tmp_path / "c.zarr", mode="a")
    assert CampaignStore.open(tmp_path / "c.zarr", mode="r").n_samples == 0


def test_lock_left_by_a_dead_process_is_taken_over(store, tmp_path):
    store.close()
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(proc.stdout)
    lock = tmp_path / "c.zarr.lock"
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": dead_pid, "since": 0}))
    reopened = CampaignStore.open(tmp_path / "c.zarr", mode="a")
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    reopened.close()
    assert not lock.exists()


def test_newer_schema_is_refused_with_a_message(store, tmp_path):
    store.close()
    g = zarr.open_group(tmp_path / "c.zarr", mode="r+")
    g.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match="newer emucamp"):
        CampaignStore.open(tmp_path / "c.zarr")


def test_open_or_create_refuses_a_store_of_another_campaign(store, tmp_path):
    store.close()
    with pytest.raises(StoreError, match="parameters"):
        CampaignStore.open_or_create(tmp_path / "c.zarr", ["a", "c"], OUTPUTS)
    reopened, created = CampaignStore.open_or_create(tmp_path / "c.zarr", PARAMS, OUTPUTS)
    assert not created
    reopened.close()


def test_missing_and_foreign_paths_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="no campaign store"):
        CampaignStore.open(tmp_path / "nope.zarr")
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not an emucamp campaign store"):
        CampaignStore.open(tmp_path / "plain.zarr")
    CampaignStore.create(tmp_path / "x.zarr", PARAMS, OUTPUTS).close()
    with pytest.raises(StoreError, match="already exists"):
        CampaignStore.create(tmp_path / "x.zarr", PARAMS, OUTPUTS)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(-1e6, 1e6),
            st.floats(-1e6, 1e6),
            st.sampled_from(["ok", "failed", "timeout", "pending"]),
            st.floats(-1e3, 1e3),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_sequence_of_records_reads_back_identically(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("prop") / "p.zarr"
    with CampaignStore.create(path, PARAMS, OUTPUTS) as s:
        X = np.array([[a, b] for a, b, _, _ in rows])
        s.add_pending(X, 0, "initial")
        for i, (a, b, status, y) in enumerate(rows):
            if status == "pending":
                continue
            s.record(SimResult(i, {"a": a, "b": b}, {"u": y, "v": -y}, status=status, error=status))
    ds = xr.open_zarr(path, consolidated=False).load()
    np.testing.assert_array_equal(ds["a"].values, X[:, 0])
    assert list(ds["status"].values) == [r[2] for r in rows]
    for i, (_, _, status, y) in enumerate(rows):
        if status == "ok":
            assert ds["u"].values[i] == y and ds["v"].values[i] == -y
        else:
            assert math.isnan(ds["u"].values[i])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(st.integers(0, 519), min_size=1, max_size=24), min_size=1, max_size=4)
)
def test_batches_of_results_in_any_order_land_in_their_own_rows(tmp_path_factory, batches):
    # Ids out of order, with gaps, repeated, and on both sides of a chunk boundary (512).
    path = tmp_path_factory.mktemp("batches") / "b.zarr"
    expected: dict[int, float] = {}
    with CampaignStore.create(path, PARAMS, OUTPUTS) as s:
        s.add_pending(np.zeros((520, 2)), 0, "initial")
        for b, ids in enumerate(batches):
            results = [
                SimResult(i, {}, {"u": 1000.0 * b + k, "v": -float(i)}, worker=f"w{b}-{k}")
                for k, i in enumerate(ids)
            ]
            s.record_many(results)
            expected.update({i: 1000.0 * b + k for k, i in enumerate(ids)})  # the last wins
    ds = xr.open_zarr(path, consolidated=False).load()
    reopened = CampaignStore.open(path)
    done = sorted(expected)
    assert reopened.ids("ok") == done
    assert [int(i) for i in np.flatnonzero(ds["status"].values == "ok")] == done
    np.testing.assert_array_equal(ds["u"].values[done], [expected[i] for i in done])
    np.testing.assert_array_equal(ds["v"].values[done], [-float(i) for i in done])
    untouched = np.setdiff1d(np.arange(520), done)
    assert np.isnan(ds["u"].values[untouched]).all()
    assert set(ds["worker"].values[untouched]) <= {""}


def test_a_store_from_before_extra_outputs_gains_the_column_on_reopen(store, tmp_path):
    store.add_pending(np.array([[0.1, 1.0], [0.2, 2.0]]), 0, "initial")
    store.record(ok_result(0, 0.1, 1.0, 5.0, 6.0))
    store.close()
    group = zarr.open_group(tmp_path / "c.zarr", mode="r+")
    del group["extra"]  # what a store written before the column existed looks like
    assert CampaignStore.open(tmp_path / "c.zarr").extra_outputs() == {}
    with CampaignStore.open(tmp_path / "c.zarr", mode="a") as reopened:
        result = ok_result(1, 0.2, 2.0, 7.0, 8.0)
        result.outputs["cost"] = 3.5
        reopened.record(result)
        assert reopened.counts()["ok"] == 2
    extras = CampaignStore.open(tmp_path / "c.zarr").extra_outputs()
    assert list(extras) == ["cost"] and np.isnan(extras["cost"][0]) and extras["cost"][1] == 3.5


def test_a_writer_killed_mid_write_never_leaves_an_unreadable_store(tmp_path):
    """SIGKILL a process that writes as fast as it can, at random moments, six times over."""
    path = tmp_path / "crash.zarr"
    writer = Path(__file__).parent / "store_writer.py"
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(writer), str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.kill()
        proc.wait()

        readonly = CampaignStore.open(path)  # readable as it was left, lock and all
        n = readonly.n_samples
        assert n >= seen  # nothing committed is lost
        ds = readonly.to_xarray().load()
        assert ds.sizes["sample"] == n
        ok = ds["status"].values == "ok"
        ids = ds["sample"].values
        assert np.array_equal(ids, np.arange(n))  # no gaps, no duplicates
        assert np.array_equal(ds["u"].values[ok], 2.0 * ids[ok])  # rows never mixed up
        assert set(ds["status"].values) <= {"ok", "pending"}
        with CampaignStore.open(path, mode="a") as store:  # the dead writer's lock is taken over
            arrays = dict(store._group.arrays())
            assert all(arrays[k].shape[0] == n for k in store._sample_arrays())
            if store._group.attrs.get("emulator"):
                state = store.load_emulator_state()
                assert state.X.shape == (state.meta["n"], 2)
        seen = n
    assert seen > 0


def test_results_and_retrainings_written_from_two_threads_all_land(store, tmp_path):
    # A campaign records results on its loop thread while its retraining thread stores the
    # model and diagnostics: both rewrite the group's attributes.
    import threading

    n = 30
    ids = store.add_pending(np.random.default_rng(0).random((n, 2)), iteration=0, origin="t")
    errors: list[BaseException] = []

    def retrain() -> None:
        try:
            for k in range(n // 2):
                store.add_step(step(k + 1))
                store.save_emulator(EmulatorState(np.ones((k + 2, 2)), np.ones((k + 2, 2)), {}, {}))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=retrain)
    thread.start()
    for i in ids:
        store.record_many([ok_result(i, 0.0, 0.0, float(i), 0.0)])
        store.add_pending(np.zeros((1, 2)), iteration=1, origin="t")
    thread.join()
    assert not errors
    store.close()

    reopened = CampaignStore.open(tmp_path / "c.zarr")
    assert reopened.n_samples == 2 * n
    assert reopened.counts()["ok"] == n and reopened.n_steps == n // 2
    assert [s.n for s in reopened.steps()] == list(range(1, n // 2 + 1))
    _, Y = reopened.completed()
    np.testing.assert_array_equal(Y[:, 0], np.arange(n))
    assert reopened.load_emulator_state().X.shape == (n // 2 + 1, 2)


def test_output_rows_of_results_in_hand_match_what_completed_reads_once_written(tmp_path):
    """A model may train on results before they are written: their rows, a field's values
    flattened among the scalars, must be those the store gives back once written."""
    store = CampaignStore.create(
        tmp_path / "f.zarr", PARAMS, ["u", "field", "v"], output_shapes={"field": (2, 3)}
    )
    store.add_pending(np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]), 0, "initial")
    results = [
        SimResult(
            sample_id=i,
            inputs={"a": 0.0, "b": 0.0},
            outputs={"u": 10.0 * i, "field": np.arange(6.0).reshape(2, 3) + i, "v": -i},
            status="ok",
        )
        for i in (2, 0)
    ]
    failed = SimResult(sample_id=1, inputs={}, outputs={}, status="failed", error="boom")
    rows = store.output_rows([*results, failed])
    assert rows.shape == (3, store.n_columns) == (3, 8)
    assert np.isnan(rows[2]).all()
    store.record_many([*results, failed])
    _, Y = store.completed()
    np.testing.assert_array_equal(Y, rows[[1, 0]])  # completed() is in id order: 0, then 2
    np.testing.assert_array_equal(Y[1], [20.0, 2, 3, 4, 5, 6, 7, -2.0])
    store.close()
