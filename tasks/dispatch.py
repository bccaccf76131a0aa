"""Task runs on Dask workers that reuse one Prefect client per worker thread.

``DaskTaskRunner.submit`` (prefect-dask 0.3.7) serialises Prefect's whole settings object
for every task, and the worker then rebuilds the settings from it (pydantic-settings reads
the environment, dotenv and profile sources again) and opens two new API clients, each
loading the CA bundle into a new TLS context. On 2 workers with a task that returns at once
(``benchmarks/task_dispatch.py``): 79 ms of worker CPU and 69 ms of wall time per task run,
against 7 ms and 9 ms here. Prefect's own fix for the TLS part is still open upstream
(PrefectHQ/prefect#19106).

:func:`submit_task_run` sends the same task run to the same engine entry point
(``prefect.task_engine.run_task_sync``, as prefect-dask does) with the flow's context
serialised once per flow run; :func:`run_task_run`, on the worker, enters that settings
context and a client kept open for the thread's life instead of rebuilding both. The task
run is created, retried and reported by Prefect's engine exactly as before.

:func:`local_cluster` starts the embedded cluster's worker processes from a fork server that
imported Prefect and these modules once, instead of each worker importing them anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from prefect.client.schemas.objects import State
from prefect.context import (
    AssetContext,
    SettingsContext,
    SyncClientContext,
    refresh_global_settings_context,
    serialize_context,
)
from prefect.task_engine import run_task_sync
from prefect.tasks import Task

__all__ = [
    "FlowContext",
    "dask_setup",
    "local_cluster",
    "prepare_workers",
    "run_task_run",
    "submit_task_run",
]

# What the fork server imports once, for every worker forked from it: Prefect and the
# modules a simulation task run needs (~2 s of CPU a worker when each imports them).
_PRELOAD = [
    "distributed",
    "prefect",
    "prefect_dask",
    "emucamp.tasks.dispatch",
    "emucamp.tasks.simulate",
    "emucamp.tasks.forkserver",  # last: freezes what the others imported
]
# Keys of the fork server's environment that this process has unset since it started.
_UNSET = "EMUCAMP_WORKER_UNSET"
_fork_lock = threading.Lock()
_fork_env: dict[str, str] | None = None  # this process's environment when the server started


def local_cluster(**kwargs: Any) -> Any:
    """A ``distributed.LocalCluster`` whose worker processes fork from a warm fork server.

    Spawned workers each import Prefect and emucamp's task modules; eight of them on two
    cores were ready for a task run 8.7 s after the cluster started, 2.2 s when forked from
    one process that imported them once (``benchmarks/README.md``, "Worker start-up").
    Python keeps one fork server per process, started with the environment of that moment
    (the first call here starts it; one started earlier by other code would lack the
    preload), so each worker gets this process's environment as it is now (what changed is
    set, what was unset since is unset, in :func:`dask_setup`) and reloads Prefect's
    settings from it.

    Args:
        **kwargs: ``LocalCluster``'s arguments (``n_workers``, ``threads_per_worker``, ...).

    Returns:
        The started cluster; a context manager that stops it.
    """
    import dask
    from distributed import LocalCluster
    from distributed.utils import get_mp_context

    global _fork_env
    env = dict(os.environ)
    with _fork_lock, dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        if _fork_env is None:
            # Dask sets its own preload list on first use; ours replaces it, and only
            # counts before the server starts, with the first worker below.
            get_mp_context()  # type: ignore[no-untyped-call]  # distributed is untyped
            multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
            _fork_env = env
        unset = sorted(set(_fork_env) - set(env))
        env |= dict(kwargs.pop("env", None) or {})
        env[_UNSET] = json.dumps(unset)
        preload = [*(kwargs.pop("preload", None) or []), __name__]
        return LocalCluster(env=env, preload=preload, **kwargs)  # type: ignore[no-untyped-call]


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each worker of :func:`local_cluster` as it starts.

    Unsets what the fork server's environment has and the cluster's process no longer
    does, then rebuilds Prefect's global settings (made at import, in the fork server) from
    the environment the worker now has.
    """
    for key in json.loads(os.environ.pop(_UNSET, "[]")):
        os.environ.pop(key, None)
    refresh_global_settings_context()


class FlowContext:
    """The current flow run's serialised context, taken once (call inside the flow run).

    Attributes:
        context: What ``prefect.context.serialize_context`` gives, without per-task parts.
        settings_key: A digest of the settings part, so workers rebuild them only when it
            changes.
    """

    def __init__(self) -> None:
        self.context = serialize_context()
        settings = self.context.get("settings_context") or {}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        self.settings_key = digest.hexdigest()

    def for_task(self, task: Task[Any, Any], task_run_id: uuid.UUID) -> dict[str, Any]:
        """The context one task run is started with (its asset context added)."""
        asset = AssetContext.from_task_and_inputs(
            task=task, task_run_id=task_run_id, task_inputs={}, copy_to_child_ctx=True
        )
        return {**self.context, "asset_context": asset.serialize()}


def submit_task_run(
    client: Any, task: Task[Any, Any], parameters: dict[str, Any], flow: FlowContext
) -> Any:
    """Submit one task run of ``task`` to a Dask ``client``; returns the Dask future.

    The future's result is the task run's final Prefect ``State``.

    Args:
        client: A ``distributed.Client`` (the flow's ``DaskTaskRunner.client``).
        task: The Prefect task.
        parameters: Its arguments by name (no futures: they are passed as values).
        flow: The flow run's context, from :class:`FlowContext`.
    """
    task_run_id = uuid.uuid4()
    # An explicit key: Dask would otherwise tokenize the arguments on every submit.
    return client.submit(
        run_task_run,
        task,
        task_run_id,
        parameters,
        flow.for_task(task, task_run_id),
        flow.settings_key,
        key=f"{task.name}-{task_run_id.hex}",
        pure=False,
    )


_local = threading.local()


def _contexts(settings: dict[str, Any], key: str) -> tuple[SettingsContext, SyncClientContext]:
    """This thread's settings context and open client for ``key``, made on first use."""
    held = getattr(_local, "held", None)
    if held is not None and held[0] == key:
        return held[1], held[2]
    if held is not None:
        held[2].client.__exit__(None, None, None)
    settings_context = SettingsContext(**settings) if settings else SettingsContext.get()
    assert settings_context is not None  # Prefect always has a root settings context
    with settings_context.model_copy():
        client_context = SyncClientContext()
        client_context.client.__enter__()  # open for the thread's life: one client, one TLS context
    _local.held = (key, settings_context, client_context)
    return settings_context, client_context


def _prepare_thread(
    settings: dict[str, Any], settings_key: str, setup: Callable[[], None] | None
) -> None:
    if setup is not None:
        setup()
    _contexts(settings, settings_key)


def prepare_workers(
    client: Any,
    flow: FlowContext,
    setup: Callable[[], None] | None = None,
    timeout: float = 60.0,
) -> int:
    """Ready every worker thread now for the flow's task runs; returns the threads readied.

    Each thread builds the flow's settings and opens its API client (what its first task
    run would otherwise do, ~0.5 s on a busy 2-core machine while the flow counts the
    simulation as running), after ``setup`` (importing the simulator, say). Best effort:
    a worker that joins later, a thread Dask does not pick, or one still busy when
    ``timeout`` runs out (on a shared scheduler these tasks queue behind other clients'
    work) readies itself on its first task run as before.

    Args:
        client: A ``distributed.Client`` (the flow's ``DaskTaskRunner.client``).
        flow: The flow run's context, from :class:`FlowContext`.
        setup: Run first on each thread (must be picklable).
        timeout: Seconds to wait for the workers, at most; the campaign starts after.
    """
    settings = flow.context.get("settings_context") or {}
    futures = []
    for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
        for _ in range(int(info.get("nthreads", 1))):
            key = f"emucamp-prepare-{uuid.uuid4().hex}"
            futures.append(
                client.submit(
                    _prepare_thread,
                    settings,
                    flow.settings_key,
                    setup,
                    key=key,
                    workers=[address],
                    allow_other_workers=False,
                )
            )
    # Each future's own wait: the runner's client is not Dask's default client.
    deadline = time.monotonic() + timeout
    for future in futures:
        with contextlib.suppress(TimeoutError):  # a slow worker readies itself later
            future.result(timeout=max(0.0, deadline - time.monotonic()))
    return sum(1 for f in futures if f.status == "finished")


def run_task_run(
    task: Task[Any, Any],
    task_run_id: uuid.UUID,
    parameters: dict[str, Any],
    context: dict[str, Any],
    settings_key: str,
) -> State[Any]:
    """Run one task run on this worker through Prefect's engine; returns its final state."""
    context = dict(context)
    settings_context, client_context = _contexts(context.pop("settings_context", {}), settings_key)
    with settings_context.model_copy():
        # The engine takes the client from the current client context when there is one.
        token = SyncClientContext.__var__.set(client_context)
        try:
            state = run_task_sync(
                task,
                task_run_id=task_run_id,
                parameters=parameters,
                context=context,
                return_type="state",
            )
        finally:
            SyncClientContext.__var__.reset(token)
    assert isinstance(state, State)
    return state
