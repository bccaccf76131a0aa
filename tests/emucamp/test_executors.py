"""Executors stream each record of a pack as it ends, besides the pack's future."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from emucamp.executors import DaskExecutor, PoolExecutor
from emucamp.simulator import PythonSimulator, SimJob, SimResult, SimulationRunner

SIMS = str(Path(__file__).parents[1] / "sims")


@pytest.fixture
def sleepy_runner() -> SimulationRunner:
    """Sleeps ``x1`` seconds per simulation."""
    return SimulationRunner(PythonSimulator("campaign_sims:sleeps_x1", (SIMS,)), ("y",))


#: A quick simulation, then one that takes 3 s.
QUICK_THEN_SLOW = [SimJob(0, {"x1": 0.0, "x2": 0.5}), SimJob(1, {"x1": 3.0, "x2": 0.5})]


def first_streamed_while_pack_runs(executor, jobs) -> tuple[SimResult, bool, list[SimResult]]:
    """The first streamed record, whether the pack was still running then, the pack's records."""
    streamed: queue.Queue[SimResult] = queue.Queue()
    stop = executor.subscribe(streamed.put)
    try:
        future = executor.submit(jobs)
        first = streamed.get(timeout=60)
        running = not future.done()
        records = future.result()
        deadline = time.monotonic() + 10
        while streamed.qsize() < len(jobs) - 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert streamed.qsize() == len(jobs) - 1  # every record streamed, each once
    finally:
        stop()
    return first, running, records


def test_a_dask_pack_streams_its_first_record_before_the_pack_ends(sleepy_runner):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        first, running, records = first_streamed_while_pack_runs(
            DaskExecutor(client, sleepy_runner), QUICK_THEN_SLOW
        )
    assert running
    assert first == records[0]  # the same record, every field (worker, times) included
    assert first.sample_id == 0 and first.ok
    assert first.finished_at < records[1].started_at + 0.5


def test_a_thread_pool_pack_streams_its_first_record_before_the_pack_ends(sleepy_runner):
    with PoolExecutor(sleepy_runner, workers=1) as executor:
        first, running, records = first_streamed_while_pack_runs(executor, QUICK_THEN_SLOW)
    assert running
    assert first == records[0]


def test_a_process_pool_or_an_unstreamed_dask_executor_does_not_stream(sleepy_runner):
    assert DaskExecutor(None, sleepy_runner, stream=False).subscribe(print) is None
    with PoolExecutor(sleepy_runner, workers=1, processes=True) as executor:
        assert executor.subscribe(print) is None
        records = executor.submit([SimJob(0, {"x1": 0.0, "x2": 0.5})]).result()
    assert records[0].ok


def test_a_failing_report_never_fails_the_pack(sleepy_runner):
    def report(result: SimResult) -> None:
        raise RuntimeError("the stream is down")

    jobs = [SimJob(i, {"x1": 0.0, "x2": 0.1 * i}) for i in range(3)]
    records = sleepy_runner.run_many(jobs, report)
    assert [r.sample_id for r in records] == [0, 1, 2]
    assert all(r.ok for r in records)


class EventLog:
    """Stands in for the worker's ``log_event`` (the reporter's only use of it)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, list[int]]] = []

    def log_event(self, topic, msg) -> None:
        self.events.append((time.monotonic(), [r["sample_id"] for r in msg["records"]]))


def test_quick_records_go_together_and_none_waits_past_the_interval():
    from emucamp.executors import DaskReporter

    log = EventLog()
    reporter = DaskReporter(log, "t", interval=0.3)
    for i in range(5):  # 5 quick simulations: the first goes alone, the rest together
        reporter(SimResult(i, {"x1": 0.0}))
        time.sleep(0.01)
    assert [ids for _, ids in log.events] == [[0]]
    time.sleep(0.6)  # no further record: the timer sends the waiting ones
    assert [ids for _, ids in log.events] == [[0], [1, 2, 3, 4]]
    reporter(SimResult(5, {"x1": 0.0}))  # the last send is old: this one goes at once
    reporter.flush()
    assert [ids for _, ids in log.events][-1] == [5]
