"""Executors run packs of simulation jobs somewhere and hand back futures.

The campaign loop is engine-free: it needs only ``submit(jobs) -> future`` where the future
has ``add_done_callback``, ``result() -> list[SimResult]`` and ``cancel()``;
``concurrent.futures`` and ``dask.distributed`` futures both qualify. A pack is one task
running several simulations in turn: cheap simulations amortise the per-task cost. The
Prefect flow brings its own executor (``emucamp.flows``), so a notebook can run a campaign
with a plain Dask client and no Prefect server.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from emucamp.simulator import SimJob, SimResult, SimulationRunner

__all__ = ["DaskExecutor", "Executor", "JobFuture", "PoolExecutor"]


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
    """Runs packs of jobs."""

    def submit(self, jobs: Sequence[SimJob]) -> JobFuture:
        """Start a pack of jobs (run one after another in one task); return its future."""
        ...


class PoolExecutor:
    """Run jobs in a local ``concurrent.futures`` pool (threads or processes).

    Args:
        runner: What to run per job.
        workers: Pool size.
        processes: Use processes (true isolation, pickles the runner) rather than threads.
    """

    def __init__(self, runner: SimulationRunner, workers: int = 4, processes: bool = False) -> None:
        self.runner = runner
        pool_cls = cf.ProcessPoolExecutor if processes else cf.ThreadPoolExecutor
        self._pool: cf.Executor = pool_cls(max_workers=workers)

    def submit(self, jobs: Sequence[SimJob]) -> JobFuture:
        """Submit one pack to the pool."""
        future: JobFuture = self._pool.submit(self.runner.run_many, list(jobs))
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
    """

    def __init__(self, client: Any, runner: SimulationRunner) -> None:
        self.client = client
        self.runner = runner

    def submit(self, jobs: Sequence[SimJob]) -> JobFuture:
        """Submit one pack; its Dask key names its first sample and its size."""
        first = jobs[0]
        future: JobFuture = self.client.submit(
            self.runner.run_many,
            list(jobs),
            pure=False,
            key=f"simulate-{first.sample_id}x{len(jobs)}-{first.attempt}-{id(jobs):x}",
        )
        return future
