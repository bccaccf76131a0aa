"""Pool screening: simulations needed to classify a pool, and pool scoring throughput.

    python benchmarks/screening.py efficiency --pool 100000 --seeds 0 1 2
    /usr/bin/time -v python benchmarks/screening.py scoring --candidates 1000000 --n 500

``efficiency``: a pool of uniform random points in [0, 1]^6 labelled by Hartmann-6 (a
closed-form function, so every candidate's true class is known); goal: below the pool's
10th percentile (10 % pass: labelling everything "fail" scores 90 %). Simulations sleep
0.1 s (``EMUCAMP_BENCH_T``). The engine-free loop (4 worker threads, packs of 4) runs
``straddle`` until ``screening_accuracy = 0.995`` and, as the baseline, ``random`` pool
order to the same rule or the budget; after every retraining the pool's labels are checked
against the truth. Reported: simulations (and % of the pool) at the first retraining with
>= 99 % of the pool labelled correctly, where the run stopped, and the final accuracy.

``scoring``: mean + std of every candidate of a d = 6 pool from a GP fitted on n Hartmann-6
runs (chunked LOVE variances), candidates per second and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scoring(candidates: int, n: int, chunk: int) -> None:
    from emucamp.emulators.gp import GPEmulator
    from emucamp.emulators.screening import score_pool
    from emucamp.space import Parameter, Space
    from emucamp.testfunctions import hartmann6_np

    space = Space([Parameter(f"x{i}", 0.0, 1.0) for i in range(1, 7)])
    X = space.sobol(n, seed=0)
    t0 = time.perf_counter()
    emulator = GPEmulator(space, ["y"], priors="botorch").fit(X, hartmann6_np(X)[:, None])
    fit = time.perf_counter() - t0
    pool = np.random.default_rng(1).random((candidates, 6))
    t0 = time.perf_counter()
    mean, std = score_pool(emulator, pool, chunk=chunk)
    wall = time.perf_counter() - t0
    assert mean.shape == (candidates, 1) and np.all(np.isfinite(std))
    print(
        f"| {candidates:,} | {n} | {chunk} | {fit:.1f} | {wall:.1f} | {candidates / wall:,.0f} "
        f"| {peak_rss_gib():.2f} |"
    )


def _accuracy_observer() -> type:
    from emucamp.campaign import CampaignObserver

    class Accuracy(CampaignObserver):
        """Records the first retraining at which >= 99 % of the pool is labelled right."""

        def __init__(self, truth: np.ndarray) -> None:
            self.truth, self.first = truth, None

        def on_step(self, step, campaign):  # type: ignore[no-untyped-def]
            passes = campaign.store.candidates()["passes"] == 1
            if self.first is None and np.mean(passes == self.truth) >= 0.99:
                self.first = step.n

    return Accuracy


def efficiency(pool_size: int, seeds: list[int], budget: int) -> None:
    from emucamp.campaign import Campaign
    from emucamp.executors import PoolExecutor
    from emucamp.spec import parse_spec
    from emucamp.testfunctions import hartmann6_np

    names = [f"x{i}" for i in range(1, 7)]
    Accuracy = _accuracy_observer()
    print("| strategy | seed | pool | >= 99 % correct at n | % of pool | stopped by | at n "
          "| final accuracy | wall s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        X = np.random.default_rng(seed).random((pool_size, len(names)))
        y = hartmann6_np(X)
        level = float(np.quantile(y, 0.1))
        truth = y < level
        for strategy in ("straddle", "random"):
            with tempfile.TemporaryDirectory() as tmp:
                pool = Path(tmp) / "pool.parquet"
                pd.DataFrame(X, columns=names).to_parquet(pool)
                spec = parse_spec(
                    {
                        "campaign": {"name": "screen", "store": f"{tmp}/s.zarr", "seed": seed},
                        "simulator": {"function": "screening_sim:slow_hartmann6"},
                        "parameters": {k: {} for k in names},
                        "outputs": {"y": {}},
                        "pool": {"path": str(pool)},
                        "goal": {"output": "y", "below": level},
                        "design": {"initial": 20, "strategy": strategy},
                        "emulator": {"priors": "botorch"},  # as the README's table
                        "stop": {"max_simulations": budget, "screening_accuracy": 0.995},
                        "execution": {"workers": 4, "per_task": 4},
                    },
                    base_dir=HERE,
                )
                accuracy = Accuracy(truth)

                t0 = time.perf_counter()
                with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, 4) as ex:
                    outcome = campaign.run(ex, accuracy)
                    final = float(np.mean((campaign.store.candidates()["passes"] == 1) == truth))
                    n = campaign.store.counts()["ok"]
                wall = time.perf_counter() - t0
                at = accuracy.first
                share = f"{100 * at / pool_size:.2f}" if at else "-"
                print(
                    f"| {strategy} | {seed} | {pool_size:,} | {at or f'> {n}'} | {share} | "
                    f"{outcome.rule} | {n} | {final:.4f} | {wall:.0f} |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scoring")
    s.add_argument("--candidates", type=int, default=1_000_000)
    s.add_argument("--n", type=int, default=500)
    s.add_argument("--chunk", type=int, default=16384)
    e = sub.add_parser("efficiency")
    e.add_argument("--pool", type=int, default=100_000)
    e.add_argument("--seeds", type=int, nargs="+", default=[0])
    e.add_argument("--budget", type=int, default=2000)
    args = parser.parse_args()
    if args.what == "scoring":
        scoring(args.candidates, args.n, args.chunk)
    else:
        efficiency(args.pool, args.seeds, args.budget)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
