"""Executors run packs of simulation jobs somewhere and hand back futures.

The campaign loop is engine-free: it needs only ``submit(jobs) -> future`` where the future
has ``add_done_callback``, ``result() -> list[SimResult]`` and ``cancel()``;
``concurrent.futures`` and ``dask.distributed`` futures both qualify. A pack is one task
running several simulations in turn: cheap simulations amortise the per-task cost. The
Prefect flow brings its own executor (``emucamp.flows``), so a notebook can run a campaign
with a plain Dask client and no Prefect server.

An executor may also stream each simulation's record as it ends (``subscribe``): the loop
then records a pack's results one by one, not when the whole pack is done, so a long pack's
finished runs are in the store (and in the next model) at once, and survive a worker that
dies before the pack ends. On Dask the records travel as worker events
(``Worker.log_event``, ``Client.subscribe_topic``) through the scheduler.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from emucamp.simulator import SimJob, SimResult, SimulationRunner

__all__ = [
    "DaskExecutor",
    "DaskReporter",
    "DaskResultStream",
    "Executor",
    "JobFuture",
    "PoolExecutor",
    "dask_reporter",
    "run_pack",
]

log = logging.getLogger(__name__)
Report = Callable[[SimResult], None]


class JobFuture(Protocol):
    """The part of a future the campaign loop uses."""

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(future)`` once the job is done (from any thread)."""
        ...

    def result(self) -> list[SimResult]:
        """The pack's records (may raise if the infrastructure, not a simulation, failed)."""
        ...

    def cancel(self) -> Any:
        """Try to cancel the job."""
        ...


class Executor(Protocol):
    """Runs packs of jobs.

    Executors that can also stream records have ``subscribe(report) -> stop | None``:
    ``report(record)`` is then called (from any thread) as each simulation of a pack ends,
    besides the pack's future; ``stop()`` ends the stream. ``None`` means no stream.
    """

    def submit(self, jobs: Sequence[SimJob]) -> JobFuture:
        """Start a pack of jobs (run one after another in one task); return its future."""
        ...


class DaskReporter:
    """Sends a pack's records to a topic's subscribers as worker events.

    A record goes at once when the last send is ``interval`` seconds old (so every record of
    simulations that long); quicker ones wait, at most ``interval``, and go together, so a
    worker of cheap simulations sends about one event a second, not one per record (the
    scheduler, with the subscribing client, is often in the flow's process). Thread-safe.

    Args:
        worker: This process's ``distributed.Worker``.
        topic: The stream's topic.
        interval: Seconds between two sends, at least (unless flushed).
    """

    def __init__(self, worker: Any, topic: str, interval: float = 1.0) -> None:
        self.worker, self.topic, self.interval = worker, topic, interval
        self._waiting: list[SimResult] = []
        self._sent = -math.inf
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __call__(self, result: SimResult) -> None:
        """Take one record: send it now, or within ``interval`` of the last send."""
        with self._lock:
            self._waiting.append(result)
            due = self._sent + self.interval - time.monotonic()
            if due > 0:
                if self._timer is None:
                    self._timer = threading.Timer(due, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Send every record not sent yet."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._waiting:
                return
            # Plain fields only: worker events must be msgpack-serialisable. Nested, since
            # the scheduler adds its own "worker" key to a worker's event.
            records = [dataclasses.asdict(r) for r in self._waiting]
            self._waiting = []
            self._sent = time.monotonic()
        self.worker.log_event(self.topic, {"records": records})


def dask_reporter(topic: str | None) -> DaskReporter | None:
    """On a Dask worker, a :class:`DaskReporter` for ``topic``.

    ``None`` without a topic or outside a Dask worker (the pack then reports nothing).
    """
    if topic is None:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return DaskReporter(worker, topic)


def run_pack(
    runner: SimulationRunner, jobs: list[SimJob], topic: str | None = None
) -> list[SimResult]:
    """Run a pack on a Dask worker, streaming its records to ``topic`` as they end."""
    reporter = dask_reporter(topic)
    records = runner.run_many(jobs, reporter)
    if reporter is not None:
        reporter.flush()
    return records


class DaskResultStream:
    """The flow-side end of :func:`dask_reporter`: records from workers, as they end.

    Args:
        client: A connected ``distributed.Client``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.topic = f"emucamp-results-{uuid.uuid4().hex}"
        self._on = False

    @property
    def live_topic(self) -> str | None:
        """The topic packs should report to while subscribed, else ``None``."""
        return self.topic if self._on else None

    def subscribe(self, report: Report) -> Callable[[], None]:
        """Call ``report(record)`` (on the client's event loop) for each streamed record."""

        def handle(event: tuple[float, Any]) -> None:
            try:
                for record in event[1]["records"]:
                    report(SimResult(**record))
            except Exception as exc:  # the pack's future still brings the record
                log.warning("a streamed simulation record was dropped: %s", exc)

        self.client.subscribe_topic(self.topic, handle)
        self._on = True
        return self.stop

    def stop(self) -> None:
        """Stop listening (records still in transit are dropped: the futures carry them)."""
        if self._on:
            self._on = False
            try:
                self.client.unsubscribe_topic(self.topic)
            except Exception as exc:  # a client already closed has nothing to stop
                log.debug("unsubscribing %s: %s", self.topic, exc)


class PoolExecutor:
    """Run jobs in a local ``concurrent.futures`` pool (threads or processes).

    Args:
        runner: What to run per job.
        workers: Pool size.
        processes: Use processes (true isolation, pickles the runner) rather than threads.
    """

    def __init__(self, runner: SimulationRunner, workers: int = 4, processes: bool = False) -> None:
        self.runner = runner
        self.processes = processes
        pool_cls = cf.ProcessPoolExecutor if processes else cf.ThreadPoolExecutor
        self._pool: cf.Executor = pool_cls(max_workers=workers)
        self._report: Report | None = None

    def subscribe(self, report: Report) -> Callable[[], None] | None:
        """Stream records from a thread pool (a process pool streams none)."""
        if self.processes:
            return None
        self._report = report

        def stop() -> None:
            self._report = None

        return stop

    def submit(self, jobs: Sequence[SimJob]) -> JobFuture:
        """Submit one pack to the pool."""
        future: JobFuture = self._pool.submit(self.runner.run_many, list(jobs), self._report)
        return future

    def shutdown(self) -> None:
        """Stop the pool, cancelling queued jobs."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PoolExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class DaskExecutor:
    """Run jobs on a Dask cluster through a ``distributed.Client`` (no Prefect).

    Args:
        client: A connected ``distributed.Client``.
        runner: What to run per job.
        stream: Send each record to the loop as it ends (see the module docstring). Off,
            a pack's records come with its result; at T = 0.2 s on 8 workers of a 2-core
            machine, the stream cost this executor ~3 points of utilisation
            (``benchmarks/README.md``).
    """

    def __init__(self, client: Any, runner: SimulationRunner, stream: bool = True) -> None:
        self.client = client
        self.runner = runner
        self.stream = stream
        self._stream = DaskResultStream(client)

    def subscribe(self, report: Report) -> Callable[[], None] | None:
        """Stream each record from the workers as it ends (``None`` with ``stream`` off)."""
        return self._stream.subscribe(report) if self.stream else None

    def submit(self, jobs: Sequence[SimJob]) -> JobFuture:
        """Submit one pack; its Dask key names its first sample and its size."""
        first = jobs[0]
        future: JobFuture = self.client.submit(
            run_pack,
            self.runner,
            list(jobs),
            self._stream.live_topic,
            pure=False,
            key=f"simulate-{first.sample_id}x{len(jobs)}-{first.attempt}-{id(jobs):x}",
        )
        return future
