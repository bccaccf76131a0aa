"""Task runs sent to Dask workers by ``submit_task_run``: real flow, real LocalCluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_task_runs_on_a_worker_reuse_one_client_and_are_reported_retried_and_failed(
    prefect_api: str,
) -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    from emucamp.tasks.dispatch import FlowContext, submit_task_run

    @task(name="who", task_run_name="who-{i}", retries=1, retry_delay_seconds=0,
          cache_policy=NO_CACHE, persist_result=False)  # fmt: skip
    def who(i: int) -> tuple[int, int, str]:
        from prefect.client.orchestration import get_client
        from prefect.runtime import task_run
        from prefect.settings import get_current_settings

        if i == 4 or (i == 3 and task_run.run_count == 1):
            raise RuntimeError(f"task {i} fails")
        # Count the task runs that have used this client: 0 every time if each gets a new one.
        client = get_client(sync_client=True)
        used = client.__dict__.setdefault("emucamp_test_runs", 0)
        client.__dict__["emucamp_test_runs"] = used + 1
        return os.getpid(), used, str(get_current_settings().api.url)

    cluster = {"n_workers": 1, "threads_per_worker": 1, "processes": True,
               "dashboard_address": None, "host": "127.0.0.1"}  # fmt: skip

    @flow(task_runner=DaskTaskRunner(cluster_kwargs=cluster))
    def five() -> tuple[str, list[tuple[str, Any]]]:
        context = FlowRunContext.get()
        assert context is not None
        client = context.task_runner.client  # type: ignore[attr-defined]
        flow_context = FlowContext()
        futures = [submit_task_run(client, who, {"i": i}, flow_context) for i in range(5)]
        states = [f.result() for f in futures]
        return str(context.flow_run.id), [
            (s.type.value, s.result(raise_on_failure=False) if s.is_completed() else None)
            for s in states
        ]

    flow_run_id, outcomes = five()

    kinds = [kind for kind, _ in outcomes]
    assert kinds == ["COMPLETED"] * 4 + ["FAILED"]
    values = [value for _, value in outcomes[:4]]
    assert len({pid for pid, _, _ in values}) == 1  # one worker process
    # One API client for every task run: each found it used by all the runs before it.
    assert [used for _, used, _ in values] == [0, 1, 2, 3]
    assert {api for _, _, api in values} == {prefect_api}  # the flow's API

    # The API holds each task run under its name, with its final state and its retry.
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as api:
            runs = api.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        by_name = {r.name: r for r in runs if r.state is not None and r.state.is_final()}
        if len(by_name) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(by_name) == [f"who-{i}" for i in range(5)]
    assert [by_name[f"who-{i}"].state.type.value for i in range(5)] == kinds
    assert by_name["who-3"].run_count == 2 and by_name["who-0"].run_count == 1


def test_prepared_workers_hand_their_first_task_run_a_ready_client(prefect_api: str) -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    from emucamp.tasks.dispatch import FlowContext, prepare_workers, submit_task_run

    # Defined here, not at module level, so that Dask ships them to its workers by value.
    def mark_prepared_client() -> tuple[int, bool]:
        """On a worker thread: tag the client ``prepare_workers`` left there (False if none)."""
        from emucamp.tasks import dispatch

        held = getattr(dispatch._local, "held", None)
        if held is None:
            return os.getpid(), False
        held[2].client.__dict__["emucamp_prepared"] = True
        return os.getpid(), True

    def note_setup() -> None:
        os.environ["EMUCAMP_TEST_SET_UP"] = "yes"

    @task(name="uses", cache_policy=NO_CACHE, persist_result=False)
    def uses() -> tuple[int, bool, str]:
        from prefect.client.orchestration import get_client

        client = get_client(sync_client=True)
        prepared = bool(client.__dict__.get("emucamp_prepared"))
        return os.getpid(), prepared, os.environ.get("EMUCAMP_TEST_SET_UP", "")

    cluster = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
               "dashboard_address": None, "host": "127.0.0.1"}  # fmt: skip

    @flow(task_runner=DaskTaskRunner(cluster_kwargs=cluster))
    def prepared() -> tuple[int, list[tuple[int, bool]], list[tuple[int, bool, str]]]:
        context = FlowRunContext.get()
        assert context is not None
        client = context.task_runner.client  # type: ignore[attr-defined]
        client.wait_for_workers(2)
        flow_context = FlowContext()
        readied = prepare_workers(client, flow_context, note_setup)
        workers = list(client.scheduler_info(n_workers=-1)["workers"])
        marks = [
            client.submit(mark_prepared_client, workers=[w], pure=False).result() for w in workers
        ]
        runs = [submit_task_run(client, uses, {}, flow_context).result().result() for _ in range(4)]
        return readied, marks, runs

    readied, marks, runs = prepared()
    assert readied == 2
    assert len({pid for pid, _ in marks}) == 2 and all(ok for _, ok in marks)
    # Every task run found the client opened before it, and the setup already done.
    assert all(prepared and set_up == "yes" for _, prepared, set_up in runs), runs


_FORKED_WORKERS = r"""
import json, os, sys
from emucamp.tasks.dispatch import local_cluster
from distributed import Client

def view():
    import gc, os, sys
    from prefect.settings import get_current_settings
    return {"ppid": os.getppid(), "simulate": "emucamp.tasks.simulate" in sys.modules,
            "frozen": gc.get_freeze_count(),
            "mark": os.environ.get("EMUCAMP_TEST_MARK"),
            "other": os.environ.get("EMUCAMP_TEST_OTHER"),
            "api": str(get_current_settings().api.url)}

def views():
    kwargs = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
              "dashboard_address": None, "host": "127.0.0.1"}
    with local_cluster(**kwargs) as cluster, Client(cluster) as client:
        return [client.submit(view, pure=False, workers=[w]).result()
                for w in client.scheduler_info()["workers"]]

if __name__ == "__main__":
    first = views()
    # The fork server started with the first cluster, with this environment; change it.
    del os.environ["EMUCAMP_TEST_MARK"]
    os.environ["EMUCAMP_TEST_OTHER"] = "set later"
    os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    print(json.dumps({"pid": os.getpid(), "first": first, "second": views()}))
"""


def test_local_cluster_workers_fork_warm_and_see_the_environment_of_now(tmp_path) -> None:
    """Workers come from one fork server that imported the task modules, and each cluster's
    workers see the environment as it is when the cluster starts, not as the server saw it."""
    script = tmp_path / "forked.py"
    script.write_text(_FORKED_WORKERS)
    env = {
        **os.environ,
        "EMUCAMP_TEST_MARK": "at start",
        "PREFECT_API_URL": "http://127.0.0.1:8/api",
    }
    env.pop("EMUCAMP_TEST_OTHER", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    workers = out["first"] + out["second"]
    assert len(workers) == 4
    # Forked from the server (spawned workers are children of the cluster's process), which
    # had imported the task modules before any task ran.
    assert all(w["ppid"] != out["pid"] for w in workers), workers
    assert len({w["ppid"] for w in workers}) == 1
    assert all(w["simulate"] for w in workers)
    # What the server imported is out of the garbage collector's reach (no copy-on-write).
    assert all(w["frozen"] > 10_000 for w in workers), workers
    assert [(w["mark"], w["other"], w["api"]) for w in out["first"]] == [
        ("at start", None, "http://127.0.0.1:8/api")
    ] * 2
    assert [(w["mark"], w["other"], w["api"]) for w in out["second"]] == [
        (None, "set later", "http://127.0.0.1:9/api")
    ] * 2
