"""The campaign flow: the engine-free loop run as a Prefect flow, simulations as Dask tasks.

``run_campaign(spec)`` is the entry point the CLI uses: it makes sure there is one Prefect
API for the run (an existing server, or a temporary local one that the Dask worker
processes share), builds the ``DaskTaskRunner`` from ``[execution]``, and runs
:func:`campaign_flow`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import functools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
from prefect import flow, get_run_logger, tags
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, TagsContext
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    get_current_settings,
    temporary_settings,
)
from prefect_dask.task_runners import DaskTaskRunner

from emucamp.cluster import api_prologue, cluster_class, job_name
from emucamp.errors import EmucampError
from emucamp.executors import DaskResultStream
from emucamp.observer import CampaignObserver, CampaignOutcome
from emucamp.simulator import PythonSimulator, SimJob, SimResult, SimulationRunner
from emucamp.spec import CampaignSpec, load_spec, parse_spec
from emucamp.storage import StepRecord
from emucamp.storage.lock import StoreLock
from emucamp.tasks.dispatch import FlowContext, local_cluster, prepare_workers, submit_task_run
from emucamp.tasks.simulate import SimulationFailed, simulate, simulate_pack

if TYPE_CHECKING:
    from emucamp.campaign import Campaign

# Every Dask worker imports this module to run a task (the flow is part of a task's
# context), so it imports nothing of the emulator stack (torch, BoTorch: ~3 s of CPU a process,
# 8 processes on 2 cores) at the top: what needs it is imported where it is used.

__all__ = [
    "PrefectTaskExecutor",
    "campaign_flow",
    "prefect_api",
    "run_campaign",
    "run_spec",
    "task_runner_for",
]


class _TaskFuture:
    """A task run's future seen as the campaign loop's ``JobFuture`` (a list of records).

    Wraps either a Prefect future (``task.submit``) or a Dask future whose result is the
    task run's final state (:func:`~emucamp.tasks.dispatch.submit_task_run`).
    """

    def __init__(self, future: Any) -> None:
        self._future = future

    def add_done_callback(self, fn: Any) -> None:
        self._future.add_done_callback(lambda _f: fn(self))

    def _value(self) -> Any:
        if isinstance(self._future, PrefectFuture):
            return self._future.result(raise_on_failure=False)
        state = self._future.result()
        return state.result(raise_on_failure=False) if isinstance(state, State) else state

    def result(self) -> list[SimResult]:
        value = self._value()
        if isinstance(value, SimResult):
            return [value]
        if isinstance(value, SimulationFailed):
            return [value.result]
        if isinstance(value, list):
            return value
        if isinstance(value, BaseException):
            raise value
        raise TypeError(f"simulate task returned {type(value).__name__}, not SimResults")

    def cancel(self) -> Any:
        if isinstance(self._future, PrefectFuture):
            wrapped = getattr(self._future, "wrapped_future", None)
            return wrapped.cancel() if wrapped is not None else None
        return self._future.cancel()


class PrefectTaskExecutor:
    """Submit jobs as task runs on the flow's task runner.

    A single job is a ``simulate`` task run named ``sample-<id>``, retried by Prefect (the
    runner's retry count becomes the task's ``retries``) and Failed in the UI when the
    simulation fails. A pack is one ``simulate-pack`` task run named ``samples-<first>-<last>``
    that retries each simulation itself, so a retry never reruns its finished neighbours.

    On a ``DaskTaskRunner`` the task runs go to its Dask client through
    :func:`~emucamp.tasks.dispatch.submit_task_run` (the same engine, a fraction of the
    per-task cost); on any other task runner, through ``task.submit``.

    Args:
        runner: The simulation.
        retry_delay_seconds: Pause before each Prefect retry of a single job.
    """

    def __init__(self, runner: SimulationRunner, retry_delay_seconds: float = 1.0) -> None:
        self.runner = runner
        self.task = simulate.with_options(
            retries=runner.retries, retry_delay_seconds=retry_delay_seconds
        )
        # The task runner's Dask client: task runs, and work that is not a simulation (pool
        # scoring).
        context = FlowRunContext.get()
        runner_ = context.task_runner if context is not None else None
        self.client = runner_.client if isinstance(runner_, DaskTaskRunner) else None
        self._flow = FlowContext() if self.client is not None else None
        self._stream = DaskResultStream(self.client) if self.client is not None else None

    def prepare_workers(self) -> None:
        """Ready every Dask worker before the first simulation is submitted.

        Each worker thread imports Prefect's task engine and the simulator, builds the
        flow's settings and opens its API client. A fresh worker otherwise does all this
        inside its first task run, while the flow counts the simulation as running (its
        first simulation started 0.43-0.62 s after submission on a busy 2-core machine,
        0.15-0.26 s prepared). Other task runners need nothing.
        """
        if self.client is None or self._flow is None:
            return
        try:
            setup = functools.partial(_load_simulator, self.runner)
            prepare_workers(self.client, self._flow, setup)
        except Exception as exc:  # an optimisation, never a reason to fail the campaign
            get_run_logger().warning("preparing the Dask workers failed: %s", exc)

    def subscribe(self, report: Callable[[SimResult], None]) -> Callable[[], None] | None:
        """Stream each record from the Dask workers as it ends (other task runners: none).

        A pack's records then come in one by one, not with its task run's result.
        """
        return self._stream.subscribe(report) if self._stream is not None else None

    def submit(self, jobs: Sequence[SimJob]) -> _TaskFuture:
        """Submit one task run for the pack."""
        task: Any
        parameters: dict[str, Any]
        if len(jobs) == 1:
            task, parameters = self.task, {"runner": self.runner, "job": jobs[0]}
        else:
            task, parameters = simulate_pack, {"runner": self.runner, "jobs": list(jobs)}
        topic = self._stream.live_topic if self._stream is not None else None
        if topic is not None:
            parameters["topic"] = topic
        if self._flow is not None:
            return _TaskFuture(submit_task_run(self.client, task, parameters, self._flow))
        return _TaskFuture(task.submit(**parameters))


def _artifact_key(name: str, what: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "campaign"
    return f"{slug}-{what}"


class ArtifactObserver(CampaignObserver):
    """Keeps a progress artifact (done / budget, uncertainty / target) up to date.

    Its API calls run in a thread of their own, in order, so that the loop never waits on
    the Prefect server (a table artifact per retraining took 50-150 ms of the loop's thread
    on a busy 2-core machine, with finished workers waiting for their refills meanwhile).
    """

    def __init__(self, spec: CampaignSpec) -> None:
        self.spec = spec
        self.key = _artifact_key(spec.campaign.name, "progress")
        self.artifact_id: Any = None
        self.uncertainty = "no emulator yet"
        self.logger = get_run_logger()
        self._last = 0.0
        self._steps: list[StepRecord] = []
        self._api = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="emucamp-artifacts")

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` in the API thread, in the flow run's context (artifacts link to it)."""
        context = contextvars.copy_context()
        self._api.submit(context.run, self._quietly, fn, *args)

    def _quietly(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # progress reporting never fails a campaign
            self.logger.warning("updating the run's artifacts failed: %s", exc)

    def flush(self) -> None:
        """Wait for every artifact update asked for so far (one thread: they run in order)."""
        self._api.submit(lambda: None).result()

    def close(self) -> None:
        """Send what is queued, then stop the API thread."""
        self._api.shutdown(wait=True)

    def _description(self, campaign: Campaign) -> str:
        p = campaign.state()
        return (
            f"{self.spec.campaign.name}: {p.finished} / {self.spec.stop.max_simulations} "
            f"simulations ({p.failed} failed); {self.uncertainty}"
        )

    def _update(self, campaign: Campaign, stopped: str = "") -> None:
        # At most one API call a second: with cheap simulations, one per result would make
        # the flow the bottleneck. (Judged here, not by whether the artifact exists yet:
        # its creation is queued in the API thread.)
        now = time.monotonic()
        if not stopped and self._last and now - self._last < 1.0:
            return
        self._last = now
        done = campaign.state().finished
        # A campaign that stops (target met, budget spent, ...) is done: 100 %, and why.
        progress = 100.0 if stopped else min(100.0, 100.0 * done / self.spec.stop.max_simulations)
        description = self._description(campaign) + (f"; stopped: {stopped}" if stopped else "")
        self._later(self._send_progress, progress, description)

    def _send_progress(self, progress: float, description: str) -> None:
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(
                progress, key=self.key, description=description
            )
        else:
            update_progress_artifact(self.artifact_id, progress, description=description)

    def on_start(self, campaign: Campaign) -> None:
        """Create the progress artifact."""
        self.logger.info(
            "campaign %s: store %s, %d workers, strategy %s",
            self.spec.campaign.name, campaign.store.path, self.spec.execution.workers,
            self.spec.design.strategy,
        )  # fmt: skip
        self._steps = campaign.store.steps()  # a resumed campaign's table goes on from these
        self._update(campaign)

    def on_result(self, result: SimResult, campaign: Campaign) -> None:
        """Advance the progress artifact; log failures."""
        if not result.ok:
            self.logger.warning("sample %d %s: %s", result.sample_id, result.status, result.error)
        self._update(campaign)

    def on_step(self, step: StepRecord, campaign: Campaign) -> None:
        """Show the current uncertainty against its target."""
        rms = self.spec.stop.target_std_statistic == "rms"
        worst = float(max(step.mean_rel_std if rms else step.max_rel_std))
        target = self.spec.stop.target_std
        self.uncertainty = f"{'RMS' if rms else 'max'} relative std {worst:.3g}" + (
            f" (target {target:g})" if target is not None else ""
        )
        if campaign.screening is not None:
            s = campaign.screening
            self.uncertainty = (
                f"{s['n_pass']:.0f} of the pool pass; least class confidence "
                f"{s['min_confidence']:.4f}; expected accuracy {100 * s['expected_accuracy']:.2f} %"
                + (
                    f" (target {self.spec.stop.screening_confidence:g})"
                    if self.spec.stop.screening_confidence
                    else ""
                )
            )
        self.logger.info(
            "retrained on n = %d in %.2f s: %s", step.n, step.fit_seconds, self.uncertainty
        )
        self._update(campaign)
        self._steps.append(step)
        self._later(self._diagnostics, list(self._steps), list(campaign.outputs))

    def _diagnostics(self, steps: list[StepRecord], outputs: list[str]) -> None:
        """The per-retraining table, one row per step, as one keyed table artifact."""
        target = self.spec.stop.target_std
        rows = []
        for s in steps:
            row: dict[str, Any] = {"n": s.n, "fit seconds": round(s.fit_seconds, 3)}
            for j, name in enumerate(outputs):
                row[f"{name} max rel. std"] = round(float(s.max_rel_std[j]), 5)
                row[f"{name} RMS rel. std"] = round(float(s.mean_rel_std[j]), 5)
                row[f"{name} LOO NRMSE"] = round(float(s.loo_nrmse[j]), 5)
            row["target std"] = target if target is not None else "-"
            rows.append(row)
        create_table_artifact(
            rows,
            key=_artifact_key(self.spec.campaign.name, "diagnostics"),
            description=f"{self.spec.campaign.name}: diagnostics at each retraining",
        )

    def on_stop(self, outcome: CampaignOutcome, campaign: Campaign) -> None:
        """Final progress and a markdown summary, once every earlier update is sent."""
        self._update(campaign, stopped=outcome.reason)
        self.flush()
        latest = outcome.latest
        rows = ""
        if latest is not None:
            rows = "\n".join(
                f"| {name} | {latest.max_rel_std[i]:.4g} | {latest.mean_rel_std[i]:.4g} | "
                f"{latest.loo_nrmse[i]:.4g} |"
                for i, name in enumerate(campaign.outputs)
            )
        c = outcome.counts
        pool = ""
        if campaign.screening is not None and campaign.pool is not None:
            s = campaign.screening
            pool = (
                f"**Pool:** {len(campaign.pool)} candidates, {s['simulated']:.0f} simulated, "
                f"{s['n_pass']:.0f} pass (level {s['threshold']:.4g}); least class confidence "
                f"{s['min_confidence']:.4f}. Export: `emucamp export {outcome.store} "
                "--passing -o hits.csv`\n\n"
            )
        where = ""
        if campaign.emulator is not None:
            from emucamp.emulators.diagnostics import regions
            from emucamp.report import regions_markdown

            found = regions(campaign.emulator, campaign.reference)
            where = f"## Best and worst regions\n\n{regions_markdown(found)}\n\n"
        create_markdown_artifact(
            f"# Campaign {self.spec.campaign.name}\n\n"
            f"**Stopped:** {outcome.reason} (`{outcome.rule}`)\n\n"
            f"**Simulations:** {c['ok']} ok, {c['failed']} failed, {c['timeout']} timeout, "
            f"{c['pending']} pending\n\n"
            f"**Store:** `{outcome.store}`\n\n"
            f"{pool}"
            "| output | max rel. std | RMS rel. std | LOO NRMSE |\n|---|---|---|---|\n"
            f"{rows}\n\n"
            f"{where}"
            f"Load the emulator: `emucamp.load_emulator({outcome.store!r})`\n",
            key=_artifact_key(self.spec.campaign.name, "summary"),
            description=f"{self.spec.campaign.name}: final summary",
        )


def _load_simulator(runner: SimulationRunner) -> None:
    # Prefect's task engine comes with emucamp.tasks.dispatch, which runs this.
    if isinstance(runner.simulator, PythonSimulator):
        runner.simulator.load()


def _run_name() -> str:
    params = flow_run.parameters or {}
    spec = params.get("spec")
    if isinstance(spec, dict):
        return str((spec.get("campaign") or {}).get("name", "campaign"))
    if isinstance(spec, str):
        with contextlib.suppress(Exception):
            return load_spec(spec).campaign.name
    return "campaign"


def _resolve(spec: str | dict[str, Any] | CampaignSpec, base_dir: str | None) -> CampaignSpec:
    if isinstance(spec, CampaignSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec, source="spec", base_dir=base_dir)
    return load_spec(spec)


@flow(name="emucamp-campaign", flow_run_name=_run_name, log_prints=True, validate_parameters=False)
def campaign_flow(spec: str | dict[str, Any], base_dir: str | None = None) -> dict[str, Any]:
    """Run a campaign until a stop rule fires (rerunning resumes from the store).

    Args:
        spec: Path of a TOML/YAML spec, or the spec as a mapping.
        base_dir: Folder relative paths of a mapping spec resolve against.

    Returns:
        The outcome: stop rule, reason, store path, counts per status.
    """
    from emucamp.campaign import Campaign

    campaign_spec = _resolve(spec, base_dir)
    _hand_over(campaign_spec.store_path)
    with Campaign.open(campaign_spec) as campaign:
        observer = ArtifactObserver(campaign_spec)
        # The run's tags label its flow run only: for each tag of a task run, Prefect's task
        # engine takes and releases a tag concurrency slot through the API (two round trips
        # per task, the main cost of a short task's start). The executor takes the context
        # its task runs carry when it is made, so it is made here.
        with TagsContext(current_tags=set()):
            executor = PrefectTaskExecutor(campaign.runner)
            executor.prepare_workers()
            try:
                outcome = campaign.run(executor, observer)
            finally:
                observer.close()
    return {
        "rule": outcome.rule,
        "reason": outcome.reason,
        "store": outcome.store,
        "counts": outcome.counts,
        "steps": outcome.steps,
        "simulated": outcome.simulated,
    }


# Store locks :func:`run_campaign` holds while the Prefect API and the cluster start, so
# that a watcher (``emucamp status --watch``) sees a live writer throughout; the flow takes
# each over as it opens its store. Startup took over 30 s on a slow 2-core machine, and a
# watcher gives a store that long without a writer before it calls the campaign gone.
_STARTING: dict[Path, StoreLock] = {}


def _hand_over(store: Path) -> None:
    """Release the start-up lock on ``store`` if this process holds one."""
    lock = _STARTING.pop(Path(store).resolve(), None)
    if lock is not None:
        lock.release()


def task_runner_for(spec: CampaignSpec, api_url: str | None = None) -> DaskTaskRunner:
    """The ``DaskTaskRunner`` the spec's ``[execution]`` asks for.

    Args:
        spec: The campaign spec.
        api_url: The Prefect API the run reports to; batch jobs (``[execution.cluster]``)
            get it in their job script, and it must be reachable from the compute nodes.
    """
    ex = spec.execution
    if ex.address is not None:
        return DaskTaskRunner(address=ex.address)
    if ex.cluster is not None:
        cluster_class(spec)  # dask-jobqueue is there, or one clear error
        prologue = api_prologue(api_url or get_current_settings().api.url or "")
        return DaskTaskRunner(
            cluster_class=ex.cluster.cluster_class,
            cluster_kwargs=ex.cluster.cluster_kwargs(prologue, job_name(spec)),
            adapt_kwargs=ex.cluster.adapt_kwargs(ex.workers),
        )
    return DaskTaskRunner(
        cluster_class=local_cluster,
        cluster_kwargs={
            "n_workers": ex.workers,
            "threads_per_worker": ex.threads_per_worker,
            "processes": True,
            "dashboard_address": None,
            "host": "127.0.0.1",
        },
    )


_REAPER = """
import os, select, signal, sys, time
parent, servers = int(sys.argv[1]), set()
while os.getppid() == parent:
    ready, _, _ = select.select([sys.stdin], [], [], 0.5)
    line = sys.stdin.readline() if ready else None
    if line == "":  # the pipe closed: the parent is gone
        break
    if line:
        servers.add(int(line))
while os.getppid() == parent:
    select.select([], [], [], 0.5)
def signal_all(sig):
    for server in list(servers):
        try:
            os.kill(server, sig)
        except ProcessLookupError:
            servers.discard(server)
# A server still starting takes its SIGTERM only once it has started: SIGKILL after 10 s.
signal_all(signal.SIGTERM)
end = time.monotonic() + 10.0
while servers and time.monotonic() < end:
    time.sleep(0.2)
    signal_all(0)
signal_all(signal.SIGKILL)
"""


class _Reaper:
    """A watcher that stops the temporary server if this process dies without cleaning up.

    Dask's worker processes die with their parent; the Prefect server subprocess would not
    (seen after a SIGKILL of ``emucamp run``), so a tiny child watches for its parent to go.
    It starts before the server and learns the server's pid as soon as the process exists:
    a run killed while its server was still starting (a fresh Prefect home takes 14-21 s)
    left the server running, when the watcher only started once the server answered.

    Args:
        server: The server being started; its ``server_process`` is watched for.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.process = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(os.getpid())], stdin=subprocess.PIPE
        )
        self._told: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="emucamp-reaper", daemon=True)
        self._thread.start()

    def _tell(self) -> None:
        process = self.server.server_process
        if process is None or process.pid in self._told:
            return
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):  # a watcher gone already has nothing to learn
            self.process.stdin.write(f"{process.pid}\n".encode())
            self.process.stdin.flush()
        self._told.add(process.pid)

    def _watch(self) -> None:
        # Prefect starts the server inside ``start()``, and again on another port if its
        # first one was taken: each process is passed on as it appears.
        while not self._done.wait(0.05):
            self._tell()

    def started(self) -> None:
        """The server answered: pass on its final process and stop watching for others."""
        self._done.set()
        self._thread.join()
        self._tell()

    def stop(self) -> None:
        """This process stops the server itself: the watcher is not needed any more."""
        self._done.set()
        self._thread.join()
        self.process.kill()
        self.process.wait()


_SERVER_START_TIMEOUT = 120  # s: the least the temporary server gets to start
_SERVER_NICENESS = 10


def _lower_priority(pid: int) -> None:
    """Run the temporary server below the flow and its workers on a busy machine.

    Its work (storing the run's events and states) can wait a little; the flow's refills
    and the workers' task runs cannot. On 8 workers of a 2-core machine (T = 0.2 s), six
    alternating pairs read 87.9 % utilisation against 85.1 %, and 0.61 s of gaps a worker
    against 0.77 s (``benchmarks/README.md``); niceness 19 was worse than 10. Best effort:
    a platform without ``setpriority`` keeps the default.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + _SERVER_NICENESS)


def _temporary_server_settings() -> dict[Any, Any]:
    """Settings the run's own temporary server starts with (it inherits them as env vars).

    Its usage telemetry is off unless the user chose otherwise: it is a private detail of
    one run, and on a machine without internet (a cluster's compute node) it logged an
    ERROR for every run ("Failed to send telemetry").
    """
    if "analytics_enabled" in get_current_settings().server.model_fields_set:
        return {}
    return {PREFECT_SERVER_ANALYTICS_ENABLED: False}


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Make sure one Prefect API serves the flow and every Dask worker process.

    With ``PREFECT_API_URL`` set (a real server, or a test harness) it is exported to the
    environment worker processes inherit. Otherwise a temporary local server is started
    for the run and stopped after: without this each Dask worker would start a server of
    its own (~8 s each, all on one SQLite file).

    Yields:
        The API URL in use.
    """
    url = get_current_settings().api.url
    server = None
    reaper: _Reaper | None = None
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        # A fresh PREFECT_HOME's first start creates and migrates its database: 14-21 s on
        # an idle 2-core machine, so Prefect's default wait (20 s) failed `emucamp run` on a
        # busy one (seen in CI). The setting still raises the wait above this floor.
        timeout = max(get_current_settings().server.ephemeral.startup_timeout_seconds,
                      _SERVER_START_TIMEOUT)  # fmt: skip
        reaper = _Reaper(server)
        try:
            with temporary_settings(_temporary_server_settings()):
                server.start(timeout=timeout)
        except BaseException as exc:  # nothing of a failed start is left running
            server.stop()
            reaper.stop()
            if not isinstance(exc, RuntimeError):
                raise
            raise EmucampError(
                f"the temporary Prefect server did not answer within {timeout} s "
                f"({str(exc).splitlines()[0]}); "
                "start one (prefect server start) and set PREFECT_API_URL, or raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
            ) from None
        url = server.api_url
        reaper.started()
        if server.server_process is not None:
            _lower_priority(server.server_process.pid)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        if server is not None:
            # Send buffered run logs while the server is still there to take them.
            from prefect.logging.handlers import APILogHandler

            with contextlib.suppress(Exception):
                APILogHandler().flush()
            server.stop()
        if reaper is not None:  # after the server: a kill in between still stops it
            reaper.stop()


def run_campaign(
    spec: str | Path | CampaignSpec, task_runner: DaskTaskRunner | None = None
) -> dict[str, Any]:
    """Run a campaign as a Prefect flow on Dask: what ``emucamp run`` does.

    Args:
        spec: A spec file path or a validated :class:`CampaignSpec`.
        task_runner: Override the runner built from ``[execution]``.

    Returns:
        The flow's outcome dict (``rule``, ``reason``, ``store``, ``counts``, ...).
    """
    from emucamp.campaign import Campaign
    from emucamp.emulators.gp import warm_up

    campaign_spec = spec if isinstance(spec, CampaignSpec) else load_spec(spec)
    # Fail on a bad simulator, store or cluster setting before any server or cluster starts.
    Campaign.open(campaign_spec).close()
    if task_runner is None and campaign_spec.execution.cluster is not None:
        cluster_class(campaign_spec)
        api_prologue(get_current_settings().api.url or "http://127.0.0.1")
    argument: str | dict[str, Any]
    if isinstance(spec, CampaignSpec):
        argument, base_dir = campaign_spec.to_json_dict(), str(campaign_spec.base_dir)
    else:
        argument, base_dir = str(Path(spec).resolve()), None
    # Hold queued tasks on the scheduler until a worker is free (Dask's default sends up to
    # two per worker), so a queued pack starts on whichever worker finishes first.
    run_tags = ("emucamp", f"campaign:{campaign_spec.campaign.name}",
                f"strategy:{campaign_spec.design.strategy}")  # fmt: skip
    # The GP stack's first-call costs, paid while the API server and the cluster start.
    threading.Thread(target=warm_up, name="emucamp-warm-up").start()
    starting = StoreLock(campaign_spec.store_path)
    starting.acquire()
    _STARTING[Path(campaign_spec.store_path).resolve()] = starting
    try:
        with (
            prefect_api() as api_url,
            dask.config.set({"distributed.scheduler.worker-saturation": 1.0}),
            tags(*run_tags),
        ):
            runner = task_runner or task_runner_for(campaign_spec, api_url)
            configured = campaign_flow.with_options(
                task_runner=runner,  # type: ignore[arg-type]  # prefect-dask's future type is narrower
                flow_run_name=campaign_spec.campaign.name,
            )
            result: dict[str, Any] = configured(spec=argument, base_dir=base_dir)
    finally:
        _hand_over(campaign_spec.store_path)  # a run that failed before its flow opened it
    return result


def _spec_run_name() -> str:
    spec = (flow_run.parameters or {}).get("spec")
    with contextlib.suppress(Exception):
        return f"run-{load_spec(str(spec)).campaign.name}"
    return "run-campaign"


@flow(name="emucamp-run", flow_run_name=_spec_run_name, validate_parameters=True)
def run_spec(spec: str) -> dict[str, Any]:
    """What deployments run: ``emucamp run SPEC`` as a flow (see ``deploy/prefect.yaml``).

    The campaign itself is a subflow, :func:`campaign_flow`, on the Dask cluster the spec's
    ``[execution]`` asks for (a flow's task runner is fixed when it starts, and the spec
    names it). Rerunning, by hand or on a schedule, resumes the same store.

    Args:
        spec: Path of the campaign spec (TOML/YAML), relative to the worker's working
            directory (the project folder the deployment was made from) or absolute.

    Returns:
        The campaign flow's outcome (``rule``, ``reason``, ``store``, ``counts``, ...).
    """
    return run_campaign(spec)
