"""Simulations and wall time to reach ``target_std`` on Branin, per strategy.

Runs the engine-free campaign loop (2 worker threads, no Prefect) until max relative
posterior std <= 0.05, then scores the emulator on 2,000 uniform held-out points.

    python benchmarks/strategy_cost.py [--seeds 3] [--target 0.05]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from emucamp.campaign import Campaign
from emucamp.emulators.gp import load_emulator
from emucamp.executors import PoolExecutor
from emucamp.spec import parse_spec
from emucamp.testfunctions import branin_np


def run(strategy: str, seed: int, target: float, folder: Path) -> tuple[str, int, float, float]:
    store = folder / f"{strategy}-{seed}.zarr"
    spec = parse_spec(
        {
            "campaign": {"name": "branin", "store": str(store), "seed": seed},
            "simulator": {"function": "emucamp.testfunctions:branin"},
            "parameters": {"x1": {"low": -5, "high": 10}, "x2": {"low": 0, "high": 15}},
            "outputs": {"y": {}},
            "design": {"strategy": strategy},
            "stop": {"max_simulations": 150, "target_std": target},
        }
    )
    start = time.perf_counter()
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, 2) as executor:
        outcome = campaign.run(executor)
    seconds = time.perf_counter() - start
    X = np.random.default_rng(0).random((2000, 2)) * [15, 15] + [-5, 0]
    mean, _ = load_emulator(store).predict(X)
    y = branin_np(X)
    nrmse = float(np.sqrt(np.mean((mean[:, 0] - y) ** 2)) / y.std())
    return outcome.rule, outcome.counts["ok"], nrmse, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.05)
    args = parser.parse_args()
    print("| strategy | seed | stopped by | simulations | held-out NRMSE | wall s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("max-variance", "integrated-variance", "sobol"):
            for seed in range(args.seeds):
                rule, n, nrmse, seconds = run(strategy, seed, args.target, Path(tmp))
                print(f"| {strategy} | {seed} | {rule} | {n} | {nrmse:.4f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
