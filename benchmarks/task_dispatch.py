"""Cost of one Prefect task run on Dask: ``task.submit`` against ``emucamp.tasks.dispatch``.

A flow on a ``DaskTaskRunner`` (W worker processes, one thread each) runs N task runs of a
task that returns at once, keeping 2 x W in flight, first through prefect-dask's
``task.submit``, then through :func:`emucamp.tasks.dispatch.submit_task_run`. Reports wall
time per task run and the workers' CPU seconds (imports included: the workers import the
task engine before the clock starts, so those are the same for both).

    python benchmarks/task_dispatch.py --workers 2 --n 200
"""

from __future__ import annotations

import argparse
import os
import queue
import time
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(name="noop", cache_policy=NO_CACHE, persist_result=False)
def noop(i: int) -> int:
    """Return at once: the task run's cost is all there is."""
    return i


def _import_engine() -> None:
    import prefect.task_engine  # noqa: F401


def run(mode: str, workers: int, n: int) -> tuple[float, float]:
    """Seconds of wall time per task run, and worker CPU seconds per task run."""
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    from emucamp.tasks.dispatch import FlowContext, submit_task_run

    cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True,
               "dashboard_address": None, "host": "127.0.0.1"}  # fmt: skip

    @flow(task_runner=DaskTaskRunner(cluster_kwargs=cluster))  # type: ignore[arg-type]
    def many() -> tuple[float, float]:
        context = FlowRunContext.get()
        assert context is not None
        client: Any = context.task_runner.client  # type: ignore[attr-defined]
        client.run(_import_engine)
        cpu0 = sum(client.run(time.process_time).values())
        flow_context = FlowContext()
        done: queue.Queue[Any] = queue.Queue()
        t0 = time.perf_counter()
        submitted = finished = 0
        while finished < n:
            while submitted < n and submitted - finished < 2 * workers:
                if mode == "task.submit":
                    future = noop.submit(submitted)
                else:
                    future = submit_task_run(client, noop, {"i": submitted}, flow_context)
                future.add_done_callback(done.put)
                submitted += 1
            value = done.get().result()
            if mode != "task.submit":
                assert value.is_completed(), value
            finished += 1
        wall = time.perf_counter() - t0
        cpu = sum(client.run(time.process_time).values()) - cpu0
        return wall / n, cpu / n

    return many()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    from prefect.testing.utilities import prefect_test_harness

    print("| submitted with | task runs | wall ms per task run | worker CPU ms per task run |")
    print("|---|---|---|---|")
    with prefect_test_harness(server_startup_timeout=60):  # a temporary server and database
        for mode in ("task.submit", "emucamp.tasks.dispatch"):
            wall, cpu = run(mode, args.workers, args.n)
            print(f"| {mode} | {args.n} | {1e3 * wall:.1f} | {1e3 * cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
