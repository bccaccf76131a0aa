"""Start-up of the embedded cluster: W worker processes, from nothing to ready for a task run.

Each run is a fresh Python process (the one ``emucamp run`` would be) that starts a
``LocalCluster`` of W single-threaded worker processes and runs, on every worker, what its
first task run imports (Prefect's task engine and emucamp's simulation task). Two modes,
alternated run by run:

- ``spawn``: ``distributed.LocalCluster`` as Dask starts it (each worker imports anew);
- ``forkserver``: :func:`emucamp.tasks.dispatch.local_cluster` (workers fork from one
  server that imported those modules once), what the flow uses.

Reports the seconds from the cluster's start to all workers registered, and to all workers
ready, and the CPU seconds of the whole process tree by then.

    python benchmarks/worker_startup.py --workers 8 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_ONE_RUN = r"""
import json, os, sys, time
import psutil
mode, workers = sys.argv[1], int(sys.argv[2])

def ready():
    import prefect.task_engine  # noqa: F401
    import emucamp.tasks.simulate  # noqa: F401
    return os.getpid()

def main():
    from distributed import Client, LocalCluster
    from emucamp.tasks.dispatch import local_cluster
    kwargs = {"n_workers": workers, "threads_per_worker": 1, "processes": True,
              "dashboard_address": None, "host": "127.0.0.1"}
    t0 = time.perf_counter()
    make = local_cluster if mode == "forkserver" else LocalCluster
    with make(**kwargs) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        t_up = time.perf_counter() - t0
        addresses = list(client.scheduler_info(n_workers=-1)["workers"])
        pids = client.gather([client.submit(ready, pure=False, workers=[a]) for a in addresses])
        t_ready = time.perf_counter() - t0
        assert len(set(pids)) == workers
        # The live tree (forked workers are the fork server's children, not ours).
        tree = [psutil.Process(), *psutil.Process().children(recursive=True)]
        cpu = sum(t.user + t.system for t in (p.cpu_times() for p in tree))
    print(json.dumps({"up": t_up, "ready": t_ready, "cpu": cpu}))

if __name__ == "__main__":
    main()
"""


def one_run(mode: str, workers: int) -> dict[str, float]:
    """One fresh process's figures: seconds to workers up, to ready, and CPU seconds."""
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # no server is started
    done = subprocess.run(
        [sys.executable, "-c", _ONE_RUN, mode, str(workers)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["spawn", "forkserver"])
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in args.modes}
    for _ in range(args.repeats):
        for mode in args.modes:  # alternated: a busy spell hits both modes alike
            rows[mode].append(one_run(mode, args.workers))
            print(mode, rows[mode][-1], file=sys.stderr)
    print(f"W = {args.workers}, {args.repeats} runs per mode, alternating")
    print("| mode | workers up s | workers ready s | CPU s (process tree) | runs (ready s) |")
    print("|---|---|---|---|---|")
    for mode, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("up", "ready", "cpu")}
        each = " / ".join(f"{r['ready']:.1f}" for r in runs)
        print(f"| {mode} | {med['up']:.1f} | {med['ready']:.1f} | {med['cpu']:.1f} | {each} |")


if __name__ == "__main__":
    main()
