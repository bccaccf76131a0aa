"""`emucamp run / status / predict` as a user runs them: real processes, a temporary Prefect
server started by the CLI itself, a Dask LocalCluster, a Zarr store on disk."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from emucamp.storage import CampaignStore

pytestmark = pytest.mark.integration

EMUCAMP = str(Path(sys.executable).parent / "emucamp")

SPEC = """
[campaign]
name = "cli-demo"
seed = 3

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
max_simulations = 40
target_std = 0.08

[execution]
workers = 2
"""


def emucamp(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EMUCAMP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_run_status_predict_from_the_command_line(tmp_path, sims_dir):
    shutil.copy(sims_dir / "campaign_sims.py", tmp_path / "campaign_sims.py")
    (tmp_path / "campaign.toml").write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")

    store = tmp_path / "runs" / "cli-demo.zarr"  # default store, beside the spec
    proc = subprocess.Popen([EMUCAMP, "run", "campaign.toml"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (store / "zarr.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        # A second process follows the campaign from the store alone while it runs.
        assert CampaignStore.open(store).stop_reason == ""
        # The run's own server does its bookkeeping below the flow and its workers, once it
        # has started.
        cli, niceness = psutil.Process(proc.pid), []
        wanted = [cli.nice() + 10]
        while niceness != wanted and proc.poll() is None and time.monotonic() < deadline + 60:
            with contextlib.suppress(psutil.Error):  # a child that ends while being read
                niceness = [p.nice() for p in cli.children(recursive=True)
                            if "uvicorn" in " ".join(p.cmdline())]  # fmt: skip
            time.sleep(0.1)
        assert niceness == wanted
        watch = emucamp("status", str(store), "--watch", env=env, cwd=tmp_path)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert watch.returncode == 0, watch.stderr
    assert "stopped: uncertainty target met" in watch.stdout and "/40 simulations" in watch.stdout
    assert "Stopped: uncertainty target met" in stdout
    assert f"Store: {store}" in stdout

    status = emucamp("status", str(store), "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert summary["stop_rule"] == "target_std"
    assert summary["counts"]["ok"] == summary["samples"] >= 6
    assert summary["latest"]["mean_rel_std"]["y"] <= 0.08  # the RMS the rule bounds
    assert summary["progress"]["finished"] == summary["samples"]
    assert summary["progress"]["state"].startswith("stopped") and not summary["progress"]["running"]

    human = emucamp("status", str(store), env=env, cwd=tmp_path)
    assert "uncertainty target met" in human.stdout and "LOO NRMSE" in human.stdout

    X = np.random.default_rng(0).random((25, 2))
    pd.DataFrame(X, columns=["x1", "x2"]).to_csv(tmp_path / "inputs.csv", index=False)
    pred = emucamp("predict", str(store), "inputs.csv", "-o", "preds.csv", env=env, cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(tmp_path / "preds.csv")
    assert list(table.columns) == ["x1", "x2", "y_mean", "y_std", "ood_distance", "ood"]
    truth = np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1]) + 0.5 * X[:, 0] * X[:, 1]
    assert np.abs(table["y_mean"].to_numpy() - truth).max() < 0.1
    assert (table["y_std"] > 0).all()

    again = emucamp("run", "campaign.toml", "--json", env=env, cwd=tmp_path)  # rerun = resume
    assert again.returncode == 0, again.stderr[-3000:]
    outcome = json.loads(again.stdout)  # nothing but the JSON on stdout
    assert outcome["simulated"] == 0 and outcome["rule"] == "target_std"
    quiet = emucamp("run", "campaign.toml", "--quiet", env=env, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stderr[-3000:]
    assert (
        json.loads(emucamp("status", str(store), "--json", env=env, cwd=tmp_path).stdout)["samples"]
        == summary["samples"]
    )


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def test_sigkilled_runs_leave_no_servers_and_resume_without_loss_or_duplicates(tmp_path, sims_dir):
    """SIGKILL `emucamp run` at three random points, rerunning after each, then finish."""
    import signal
    import time

    from emucamp.storage import CampaignStore

    shutil.copy(sims_dir / "campaign_sims.py", tmp_path / "campaign_sims.py")
    spec = SPEC.replace('"campaign_sims:smooth2d"', '"campaign_sims:logged"')
    spec = spec.replace("target_std = 0.08", "target_std = 0.0001").replace("= 40", "= 30")
    (tmp_path / "campaign.toml").write_text(spec)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # also marks our processes
    env["EMUCAMP_TEST_DELAY"] = "0.3"
    log = tmp_path / "calls.jsonl"
    env["EMUCAMP_TEST_LOG"] = str(log)
    store = tmp_path / "runs" / "cli-demo.zarr"
    rng = np.random.default_rng(11)

    def calls() -> list[tuple[float, float]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [(c["x1"], c["x2"]) for c in map(json.loads, lines)]

    snapshots = []
    for threshold in sorted(rng.choice(np.arange(4, 24), size=3, replace=False)):
        proc = subprocess.Popen([EMUCAMP, "run", "campaign.toml"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if store.exists():
                    counts = CampaignStore.open(store).counts()
                    if counts["ok"] >= threshold and counts["pending"] >= 1:
                        break
                time.sleep(0.1)
            else:
                pytest.fail(f"campaign did not reach {threshold} results")
            time.sleep(float(rng.uniform(0.0, 0.3)))  # anywhere: mid-write, mid-fit, ...
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        deadline = time.monotonic() + 15
        while processes_with(env["PREFECT_HOME"]) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert processes_with(env["PREFECT_HOME"]) == []  # no server or worker outlives it
        snap = CampaignStore.open(store)
        snapshots.append((snap.inputs(), snap.status(), snap.to_xarray()["y"].values, calls()))

    done = emucamp("run", "campaign.toml", env=env, cwd=tmp_path)  # each lock is stale: taken
    assert done.returncode == 0, done.stderr[-3000:]
    after = CampaignStore.open(store)
    assert after.counts() == {"pending": 0, "ok": 30, "failed": 0, "timeout": 0}
    X, y = after.inputs(), after.to_xarray()["y"].values
    assert len(np.unique(X, axis=0)) == len(X) == 30  # no duplicates, no gaps
    final_calls = calls()
    for X_then, status_then, y_then, calls_then in snapshots:
        n = len(X_then)
        np.testing.assert_array_equal(X[:n], X_then)  # every row written stays
        ok = np.array(status_then) == "ok"
        np.testing.assert_array_equal(y[:n][ok], y_then[ok])  # every result written stays
        later = final_calls[len(calls_then) :]
        for x in map(tuple, X_then[ok]):
            assert x not in later  # a completed simulation never runs again
        for x in map(tuple, X_then[~ok]):
            assert later.count(x) >= 1  # a pending one runs again (once per later run)
    counts = {x: final_calls.count(x) for x in set(final_calls)}
    assert max(counts.values()) <= 1 + len(snapshots)
