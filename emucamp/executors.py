"""Executors run simulation jobs somewhere and hand back futures; the campaign loop is engine-free.

The loop needs only ``submit(job) -> future`` where the future has ``add_done_callback``,
``result()`` and ``cancel()``: ``concurrent.futures`` and ``dask.distributed`` futures both
qualify. The Prefect flow brings its own executor (``emucamp.flows``), so a notebook can run
a campaign with a plain Dask client and no Prefect server.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any, Protocol

from emucamp.simulator import SimJob, SimResult, SimulationRunner

__all__ = ["DaskExecutor", "Executor", "JobFuture", "PoolExecutor"]


class JobFuture(Protocol):
    """The part of a future the campaign loop uses."""

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(future)`` once the job is done (from any thread)."""
        ...

    def result(self) -> SimResult:
        """The job's record (may raise if the infrastructure, not the simulation, failed)."""
        ...

    def cancel(self) -> Any:
        """Try to cancel the job."""
        ...


class Executor(Protocol):
    """Runs jobs; ``slots`` is how many the cluster can run at once (``None``: unknown)."""

    def submit(self, job: SimJob) -> JobFuture:
        """Start ``job``; return its future."""
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

    def submit(self, job: SimJob) -> JobFuture:
        """Submit one job to the pool."""
        future: JobFuture = self._pool.submit(self.runner, job)
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

    def submit(self, job: SimJob) -> JobFuture:
        """Submit one job; its Dask key names the sample and attempt."""
        future: JobFuture = self.client.submit(
            self.runner, job, pure=False, key=f"simulate-{job.sample_id}-{job.attempt}"
        )
        return future
