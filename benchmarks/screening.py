"""Pool screening: simulations needed to classify a pool, and pool scoring throughput.

    python benchmarks/screening.py efficiency --pool 100000 --seeds 0 1 2
    /usr/bin/time -v python benchmarks/screening.py scoring --candidates 1000000 --n 500

``efficiency``: a pool of random 8-D borehole inputs (a closed-form function, so every
candidate's true class is known); goal: flow above the pool's 70th percentile. The
engine-free loop (4 worker threads) runs ``straddle`` until ``screening_confidence = 0.99``
and, as the baseline, ``random`` pool order; after every retraining the pool's labels are
checked against the truth. Reported: simulations (and % of the pool) at the first retraining
with >= 99 % of the pool labelled correctly, and where the confidence rule stopped.

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
    emulator = GPEmulator(space, ["y"]).fit(X, hartmann6_np(X)[:, None])
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
    from emucamp.testfunctions import DOMAINS, borehole_np

    names = list(DOMAINS["borehole"])
    Accuracy = _accuracy_observer()
    print("| strategy | seed | pool | >= 99 % correct at n | % of pool | stopped by | at n "
          "| final accuracy | wall s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        rng = np.random.default_rng(seed)
        lo = np.array([DOMAINS["borehole"][k][0] for k in names])
        hi = np.array([DOMAINS["borehole"][k][1] for k in names])
        X = lo + rng.random((pool_size, len(names))) * (hi - lo)
        y = borehole_np(X)
        level = float(np.quantile(y, 0.7))
        truth = y > level
        for strategy in ("straddle", "random"):
            with tempfile.TemporaryDirectory() as tmp:
                pool = Path(tmp) / "pool.parquet"
                pd.DataFrame(X, columns=names).to_parquet(pool)
                spec = parse_spec(
                    {
                        "campaign": {"name": "screen", "store": f"{tmp}/s.zarr", "seed": seed},
                        "simulator": {"function": "emucamp.testfunctions:borehole"},
                        "parameters": {k: {} for k in names},
                        "outputs": {"y": {}},
                        "pool": {"path": str(pool)},
                        "goal": {"output": "y", "above": level},
                        "design": {"initial": 20, "strategy": strategy},
                        "stop": {"max_simulations": budget, "screening_confidence": 0.99},
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
