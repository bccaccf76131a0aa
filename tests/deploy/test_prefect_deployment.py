"""deploy/prefect.yaml end to end, as deploy/README.md tells a user to run it: a real
`prefect server start`, a process work pool, `prefect deploy`, a worker, a triggered run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emucamp.storage import CampaignStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
SPEC = """
[campaign]
name = "deployed-tiny"
seed = 1

[simulator]
function = "campaign_sims:smooth2d"

[parameters]
x1 = { low = 0.0, high = 1.0 }
x2 = { low = 0.0, high = 1.0 }

[outputs]
y = {}

[design]
initial = 6

[stop]
max_simulations = 14

[execution]
workers = 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process we started and everything it started (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def prefect_server(tmp_path) -> Iterator[dict[str, str]]:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME; yields the env to use."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy"
            time.sleep(0.5)
        yield env
    finally:
        stop(server)
        log.close()


def prefect(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([BIN / "prefect", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_deployment_from_prefect_yaml_runs_a_campaign_on_a_worker(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterName,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = prefect_server
    shutil.copy(ROOT / "tests" / "sims" / "campaign_sims.py", tmp_path / "campaign_sims.py")
    (tmp_path / "tiny.toml").write_text(SPEC)

    # The commands of deploy/README.md, in order.
    prefect("work-pool", "create", "emucamp", "--type", "process", env=env)
    prefect("--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", "--all", env=env)
    prefect("deployment", "run", "emucamp-run/campaign", "--param",
            f"spec={tmp_path / 'tiny.toml'}", env=env)  # fmt: skip
    worker = subprocess.Popen(
        [BIN / "prefect", "worker", "start", "--pool", "emucamp", "--run-once"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = worker.communicate(timeout=300)  # --run-once: returns once the run ends
    finally:
        stop(worker)
    assert worker.returncode == 0, output[-3000:]

    store = CampaignStore.open(tmp_path / "runs" / "deployed-tiny.zarr")
    assert store.counts() == {"pending": 0, "ok": 14, "failed": 0, "timeout": 0}
    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        (deployment_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["run-deployed-tiny"]))
        )
        assert deployment_run.state.is_completed(), deployment_run.state
        (campaign_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[deployment_run.id])
            )
        )
        assert campaign_run.name == "deployed-tiny" and campaign_run.state.is_completed()
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[campaign_run.id]))
        )
        names = {t.name for t in task_runs if t.state is not None and t.state.is_completed()}
        assert {f"sample-{i}" for i in range(14)} <= names  # a task run per simulation

        def latest(key: str) -> Any:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            return max(found, key=lambda a: a.created)

        assert float(latest("deployed-tiny-progress").data) == 100.0
        table = latest("deployed-tiny-diagnostics")
        rows = json.loads(table.data) if isinstance(table.data, str) else table.data
        assert len(rows) == store.n_steps and [r["n"] for r in rows] == [s.n for s in store.steps()]
        nightly = client.read_deployment_by_name("emucamp-run/heat2d-nightly")
        assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
        assert nightly.parameters == {"spec": "examples/heat2d/campaign.toml"}
