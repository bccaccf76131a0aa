"""The simulation task: one simulation per Prefect task run, retried by Prefect."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from emucamp.executors import dask_reporter, run_pack
from emucamp.simulator import SimJob, SimResult, SimulationRunner, run_simulation

__all__ = ["SimulationFailed", "simulate", "simulate_pack"]


class SimulationFailed(Exception):
    """Raised by the task for a failed simulation so Prefect retries it and marks it Failed.

    Carries the :class:`SimResult`, which the flow records once retries are used up.
    """

    def __init__(self, result: SimResult) -> None:
        super().__init__(f"sample {result.sample_id} {result.status}: {result.error}")
        self.result = result

    def __reduce__(self) -> tuple[type[SimulationFailed], tuple[SimResult]]:
        return (SimulationFailed, (self.result,))


@task(
    name="simulate",
    task_run_name="sample-{job.sample_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
    log_prints=False,
)
def simulate(runner: SimulationRunner, job: SimJob, topic: str | None = None) -> SimResult:
    """Run one simulation; raise :class:`SimulationFailed` on failure so Prefect retries it.

    Retries come from the task's ``retries`` option (the spec's ``simulator.retries``); the
    runner's own retry loop is not used here. On a Dask worker with a ``topic``, a success is
    also streamed to the flow at once, ahead of the task run's own end (its final state's
    API calls); a failure is not, since Prefect may retry it.
    """
    attempt = int(task_run.run_count or 1)
    result = run_simulation(
        runner.simulator, SimJob(job.sample_id, job.inputs, attempt), runner.outputs
    )
    if not result.ok:
        raise SimulationFailed(result)
    reporter = dask_reporter(topic)
    if reporter is not None:
        reporter(result)
        reporter.flush()
    return result


def _pack_name() -> str:
    jobs = (task_run.parameters or {}).get("jobs") or []
    if not jobs:
        return "samples"
    return f"samples-{jobs[0].sample_id}-{jobs[-1].sample_id}"


@task(name="simulate-pack", task_run_name=_pack_name, cache_policy=NO_CACHE, persist_result=False)
def simulate_pack(
    runner: SimulationRunner, jobs: list[SimJob], topic: str | None = None
) -> list[SimResult]:
    """Run several cheap simulations in turn, each retried by the runner; never raises for them.

    On a Dask worker with a ``topic``, its records are streamed to the flow as they end
    (see :class:`~emucamp.executors.DaskReporter`).
    """
    return run_pack(runner, jobs, topic)
