"""Worker utilisation of a campaign: W worker processes, N simulations of mean duration T.

For each T, the same campaign (3 inputs, max-variance, emulator really fitting and
selecting) runs twice: as the Prefect flow on a DaskTaskRunner, and as the engine-free loop
on a raw ``distributed.Client`` (no Prefect). ``--modes bare`` adds the machine's ceiling:
the same simulations on the same cluster through ``client.submit`` and ``as_completed``
alone, with no model and no store. Figures come from the store's timestamps:

- utilisation = sum of simulation seconds / (W x wall seconds from first submit to last result)
- idle gap = time a worker waited between finishing one simulation and starting the next
  (while the budget was not spent)
- first start = a worker's wait from the first submit to its first simulation (mean over
  workers); end idle = a worker's wait from its last simulation to the campaign's last result
- flow CPU s/sim = CPU seconds of the orchestrating process per simulation

With ``--cpu``, a second table splits the CPU seconds spent between the first submit and the
last result by process: the flow (the loop, its fits, Prefect's client, and for a
``LocalCluster`` the Dask scheduler and nannies), the Prefect server, and the Dask workers.

    python benchmarks/throughput.py --workers 8 --n 300 --T 2 0.2 0.01 [--per-task 1 auto] [--cpu]
        [--modes prefect dask bare]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent


def spec_for(store: Path, workers: int, n: int, per_task: str) -> Any:
    from emucamp.spec import parse_spec

    execution: dict[str, Any] = {"workers": workers}
    if per_task != "1":
        execution["per_task"] = per_task if per_task == "auto" else int(per_task)
    return parse_spec(
        {
            "campaign": {"name": "throughput", "store": str(store), "seed": 0},
            "simulator": {"function": "throughput_sim:sleepy", "timeout": 600},
            "parameters": {f"x{i}": {"low": 0.0, "high": 1.0} for i in (1, 2, 3)},
            "outputs": {"y": {}},
            "design": {"initial": 16, "strategy": "max-variance"},
            # The settings the tables in benchmarks/README.md were measured with.
            "emulator": {"priors": "botorch"},
            "stop": {"max_simulations": n},
            "execution": execution,
        },
        base_dir=HERE,
    )


def metrics(store_path: Path, workers: int, cpu: float) -> dict[str, float]:
    from emucamp.storage import CampaignStore

    ds = CampaignStore.open(store_path).to_xarray().load()
    sub = ds["submitted_at"].values.astype("datetime64[ns]").astype(np.int64) / 1e9
    start = ds["started_at"].values.astype("datetime64[ns]").astype(np.int64) / 1e9
    end = ds["finished_at"].values.astype("datetime64[ns]").astype(np.int64) / 1e9
    names = [str(w).split("/")[0] for w in ds["worker"].values]
    return timeline_metrics(sub, start, end, names, workers, cpu, int(ds.sizes.get("step", 0)))


def timeline_metrics(
    sub: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    names: list[str],
    workers: int,
    cpu: float,
    steps: int,
) -> dict[str, float]:
    """The table's figures from each simulation's submit, start and end (epoch s) and worker."""
    busy = float(np.sum(end - start))
    wall = float(end.max() - sub.min())
    by_worker: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for w, s, e in zip(names, start, end, strict=True):
        by_worker[w].append((s, e))
    last_end = end.max()
    gaps = []
    first_starts, end_idle = [], []
    for runs in by_worker.values():
        runs.sort()
        first_starts.append(runs[0][0] - sub.min())
        end_idle.append(last_end - runs[-1][1])
        for (_, e0), (s1, _) in itertools.pairwise(runs):
            if s1 < last_end:
                gaps.append(max(0.0, s1 - e0))
    n = len(end)
    return {
        "t0": float(sub.min()),
        "t1": float(end.max()),
        "n": n,
        "wall_s": wall,
        "utilisation": busy / (workers * wall),
        "sims_per_s": n / wall,
        "mean_gap_s": float(np.mean(gaps)) if gaps else 0.0,
        "p95_gap_s": float(np.percentile(gaps, 95)) if gaps else 0.0,
        "idle_s_per_worker": float(np.sum(gaps)) / workers,
        "first_start_s": float(np.mean(first_starts)),
        "end_idle_s": float(np.mean(end_idle)),
        "flow_cpu_s_per_sim": cpu / n,
        "steps": steps,
    }


class CpuSampler:
    """CPU seconds of this process and its descendants, sampled every 0.1 s in a thread."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _kind(self, proc: Any) -> str:
        if proc.pid == self._me.pid:
            return "flow"
        cmd = " ".join(proc.cmdline())
        return "server" if "uvicorn" in cmd else "workers"

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            totals: dict[str, float] = defaultdict(float)
            for proc in [self._me, *self._me.children(recursive=True)]:
                try:
                    cpu = proc.cpu_times()
                    totals[f"{proc.pid}:{self._kind(proc)}"] = cpu.user + cpu.system
                except psutil.Error:
                    continue
            self.samples.append((time.time(), dict(totals)))
            self._stop.wait(0.1)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per kind of process between two epoch times."""
        first = min(self.samples, key=lambda s: abs(s[0] - t0))[1]
        last = min(self.samples, key=lambda s: abs(s[0] - t1))[1]
        out: dict[str, float] = defaultdict(float)
        for key, cpu in last.items():
            out[key.split(":")[1]] += cpu - first.get(key, cpu)
        return dict(out)


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_prefect(spec: Any) -> float:
    from emucamp.flows import run_campaign

    before = cpu_seconds()
    run_campaign(spec)
    return cpu_seconds() - before


@contextlib.contextmanager
def dask_client(workers: int) -> Iterator[Any]:
    """A client of a local cluster of ``workers`` one-thread processes, started and warm."""
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set({"distributed.scheduler.worker-saturation": 1.0}),
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=None, host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        client.run(lambda: None)
        yield client


def run_raw_dask(spec: Any, workers: int, stream: bool = True) -> float:
    from emucamp.campaign import Campaign
    from emucamp.executors import DaskExecutor

    with dask_client(workers) as client:
        before = cpu_seconds()
        with Campaign.open(spec) as campaign:
            campaign.run(DaskExecutor(client, campaign.runner, stream=stream))
        return cpu_seconds() - before


def _bare_pack(xs: list[list[float]]) -> tuple[str, list[tuple[float, float]]]:
    """Run one pack of simulations on a worker; its name and each run's (start, end)."""
    from distributed import get_worker
    from throughput_sim import sleepy

    times = []
    for x in xs:
        t0 = time.time()
        sleepy(*x)
        times.append((t0, time.time()))
    return get_worker().address, times


def run_bare_dask(
    workers: int, n: int, per_task: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The machine's ceiling: the same simulations on the same cluster, with no model.

    Inputs are a Sobol sequence drawn up front, so nothing but ``client.submit`` and
    ``as_completed`` stands between a result and its worker's refill. ``per_task = 1``: one
    simulation per task, one task per worker. ``auto``: two packs per worker, each at most 10
    simulations and at most an equal share of what is left (guided self-scheduling).
    """
    from distributed import as_completed
    from scipy.stats import qmc

    X = qmc.Sobol(3, seed=0).random(n).tolist()
    packed = per_task == "auto"
    held = 2 if packed else 1
    out: list[tuple[float, str, float, float]] = []  # submit, worker, start, end
    with dask_client(workers) as client:
        client.run(sys.path.insert, 0, str(HERE))
        pos = 0
        sent: dict[Any, float] = {}

        def submit() -> Any:
            nonlocal pos
            left = n - pos
            if left <= 0:
                return None
            k = min(10, math.ceil(left / (held * workers))) if packed else 1
            future = client.submit(_bare_pack, X[pos : pos + k], pure=False)
            pos += k
            sent[future] = time.time()
            return future

        futures = [f for f in (submit() for _ in range(held * workers)) if f is not None]
        done = as_completed(futures)
        for future in done:
            worker, times = future.result()
            out += [(sent[future], worker, s, e) for s, e in times]
            refill = submit()
            if refill is not None:
                done.add(refill)
    sub, names, start, end = zip(*out, strict=True)
    return np.array(sub), np.array(start), np.array(end), list(names)


def row(T: float, mode: str, per_task: str, m: dict[str, float]) -> str:
    """One line of the utilisation table."""
    return (
        f"| {T:g} | {mode} | {per_task} | {m['n']} | {m['wall_s']:.1f} | "
        f"{m['utilisation']:.1%} | {m['sims_per_s']:.1f} | {m['mean_gap_s']:.3f} | "
        f"{m['p95_gap_s']:.3f} | {m['idle_s_per_worker']:.2f} | "
        f"{m['first_start_s']:.2f} | {m['end_idle_s']:.2f} | "
        f"{m['flow_cpu_s_per_sim']:.3f} | {m['steps']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--T", type=float, nargs="+", default=[2.0, 0.2, 0.01])
    parser.add_argument("--per-task", nargs="+", default=["1"])
    parser.add_argument(
        "--modes", nargs="+", default=["prefect", "dask"], choices=["prefect", "dask", "bare"],
        help="bare: the same simulations with no model and no store (the machine's ceiling).",
    )  # fmt: skip
    parser.add_argument("--cpu", action="store_true", help="Also split CPU time by process.")
    parser.add_argument(
        "--no-stream", action="store_true",
        help="Raw Dask only: records come with each pack's result, not one by one.",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    print(
        "| T s | mode | per_task | sims | wall s | utilisation | sims/s | mean gap s "
        "| p95 gap s | gaps s/worker | first start s | end idle s | flow CPU s/sim | retrainings |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    cpu_rows = []
    for T in args.T:
        os.environ["EMUCAMP_BENCH_T"] = str(T)
        for mode in args.modes:
            for per_task in args.per_task:
                if mode == "bare":
                    before = cpu_seconds()
                    sub, start, end, names = run_bare_dask(args.workers, args.n, per_task)
                    cpu = cpu_seconds() - before
                    m = timeline_metrics(sub, start, end, names, args.workers, cpu, 0)
                    print(row(T, mode, per_task, m), flush=True)
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    store = Path(tmp) / "t.zarr"
                    spec = spec_for(store, args.workers, args.n, per_task)
                    # The sampler's own polling takes some of the flow's CPU: only on request.
                    sampler = CpuSampler() if args.cpu else None
                    with sampler or contextlib.nullcontext():
                        cpu = (
                            run_prefect(spec)
                            if mode == "prefect"
                            else run_raw_dask(spec, args.workers, not args.no_stream)
                        )
                    m = metrics(store, args.workers, cpu)
                    split = sampler.between(m["t0"], m["t1"]) if sampler else {}
                    cpu_rows.append(
                        f"| {T:g} | {mode} | {per_task} | {m['wall_s']:.1f} | "
                        f"{split.get('flow', 0.0):.2f} | {split.get('server', 0.0):.2f} | "
                        f"{split.get('workers', 0.0):.2f} | "
                        f"{sum(split.values()) / (os.cpu_count() or 1) / m['wall_s']:.0%} |"
                    )
                    print(row(T, mode, per_task, m), flush=True)
    if args.cpu:
        print(
            "\n| T s | mode | per_task | wall s | flow CPU s | server CPU s | workers CPU s "
            "| of the machine |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(cpu_rows))


if __name__ == "__main__":
    main()
