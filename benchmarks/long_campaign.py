"""A long campaign: thousands of simulations through the real loop, with time and memory.

An engine-free campaign (``Campaign`` + ``PoolExecutor``, no Prefect) on the Borehole
function (d = 8, instant), integrated-variance selection, to a budget of simulations. The
emulator refits after every 10 % more results: above ``[emulator] max_fit_points``
(1,000) the hyperparameters come from a subset and the GP conditions on every result.
Afterwards: wall time, retrainings, the slowest retraining, held-out NRMSE on 2,000
uniform points. Peak memory of the whole process:

    /usr/bin/time -v python benchmarks/long_campaign.py --budget 5000
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
from emucamp.space import Parameter, Space
from emucamp.spec import parse_spec
from emucamp.storage import CampaignStore
from emucamp.testfunctions import DOMAINS, borehole_np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-task", default="8", help="[execution] per_task: k or auto.")
    parser.add_argument("--strategy", default="integrated-variance")
    parser.add_argument("--priors", choices=["botorch", "none"], default="none")
    parser.add_argument("--store", type=Path, help="Keep the store here (default: a temp dir).")
    args = parser.parse_args()
    per_task = args.per_task if args.per_task == "auto" else int(args.per_task)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "long.zarr"
        spec = parse_spec(
            {
                "campaign": {"name": "long", "store": str(store), "seed": 0},
                "simulator": {"function": "emucamp.testfunctions:borehole"},
                "parameters": {
                    p: {"low": lo, "high": hi} for p, (lo, hi) in DOMAINS["borehole"].items()
                },
                "outputs": {"y": {}},
                "design": {"strategy": args.strategy},
                "emulator": {"priors": args.priors},
                "stop": {"max_simulations": args.budget},
                "execution": {"workers": args.workers, "per_task": per_task},
            }
        )
        start = time.perf_counter()
        with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, args.workers) as ex:
            outcome = campaign.run(ex)
        wall = time.perf_counter() - start
        steps = CampaignStore.open(store).steps()
        emulator = load_emulator(store)
        space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS["borehole"].items()])
        X_test = space.from_unit(np.random.default_rng(1).random((2000, space.dim)))
        y_test = borehole_np(X_test)
        mean, _ = emulator.predict(X_test)
        nrmse = float(np.sqrt(np.mean((mean[:, 0] - y_test) ** 2)) / y_test.std())
        fits = [s.fit_seconds for s in steps]
        print(f"simulations: {outcome.counts}")
        print(f"stopped by: {outcome.rule} ({outcome.reason})")
        print(f"wall: {wall:.0f} s for {outcome.simulated} simulations")
        print(f"retrainings: {len(steps)}; last at n = {steps[-1].n}")
        print(f"fit s: last {fits[-1]:.1f}, max {max(fits):.1f}, total {sum(fits):.0f}")
        print(f"held-out NRMSE (2,000 uniform points): {nrmse:.5f}")


if __name__ == "__main__":
    main()
