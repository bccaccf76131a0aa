"""Emulator scaling: fit, predict and select at growing n (d = 8), with peak memory.

For each n, a fresh process fits emucamp's GP to n uniform random Borehole runs (d = 8),
then times: the fit (subset-of-data hyperparameters above ``max_fit_points``, the exact GP
on every point); the diagnostics a campaign computes after each refit (closed-form LOO and
the relative std over the 1,024-point reference set); mean and std at 1,000 points; and one
selection of 8 inputs (``--picks``) with 8 pending (integrated-variance and max-variance).
Held-out NRMSE on 2,000 uniform points. Peak RSS is the process's (``ru_maxrss``). With
``--exact-up-to``, the same n also runs with hyperparameters fitted on every point, for
comparison.

    python benchmarks/emulator_scaling.py --n 100 500 1000 2000 5000 --exact-up-to 2000

The amortised step is what each result costs the campaign's emulator: a refit (fit plus
diagnostics) spread over the results that trigger it (10 % of n, the loop's schedule),
plus one selection.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

from emucamp.emulators.diagnostics import diagnose
from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.strategies import make_strategy
from emucamp.space import Parameter, Space
from emucamp.testfunctions import DOMAINS, borehole_np

REFIT_GROWTH = 0.10  # the campaign loop refits after 10 % more results


def one(
    n: int, max_fit_points: int, priors: str, picks: int = 8, candidates: int | None = None
) -> dict[str, Any]:
    """Everything for one n, in this process."""
    space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS["borehole"].items()])
    rng = np.random.default_rng(n)
    X = space.from_unit(rng.random((n, space.dim)))
    y = borehole_np(X)
    X_test = space.from_unit(np.random.default_rng(1).random((2000, space.dim)))
    y_test = borehole_np(X_test)
    reference = space.sobol_unit(1024, seed=3)
    emu = GPEmulator(space, ["y"], priors=priors, max_fit_points=max_fit_points)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    emu.fit(X, y[:, None])
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    diagnose(emu, reference)
    diagnostics = time.perf_counter() - t0
    t0 = time.perf_counter()
    emu.predict(X_test[:1000])
    predict = time.perf_counter() - t0
    mean, std = emu.predict(X_test)
    nrmse = float(np.sqrt(np.mean((mean[:, 0] - y_test) ** 2)) / y_test.std())
    coverage = float(np.mean(np.abs(mean[:, 0] - y_test) <= 1.959964 * std[:, 0]))
    pending = space.from_unit(rng.random((8, space.dim)))
    select = {}
    for name in ("integrated-variance", "max-variance"):
        strategy = make_strategy(name, space, seed=0, candidates=candidates)
        t0 = time.perf_counter()
        strategy.select(emu, picks, pending)
        select[name] = time.perf_counter() - t0
    refit_every = max(1.0, REFIT_GROWTH * n)
    return {
        "n": n,
        "fit_on": min(n, max_fit_points),
        "fit_s": fit,
        "diagnostics_s": diagnostics,
        "predict_1000_s": predict,
        "select_iv_s": select["integrated-variance"],
        "select_mv_s": select["max-variance"],
        "amortised_s": (fit + diagnostics) / refit_every + select["integrated-variance"],
        "nrmse": nrmse,
        "coverage": coverage,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000, 2000, 5000])
    parser.add_argument("--max-fit-points", type=int, default=1000)
    parser.add_argument("--exact-up-to", type=int, default=2000)
    parser.add_argument("--priors", choices=["botorch", "none"], default="none")
    parser.add_argument("--picks", type=int, default=8, help="inputs per selection")
    parser.add_argument(
        "--candidates",
        type=int,
        default=0,
        help="candidates per selection (0: the strategies' defaults, [design] candidates)",
    )
    # n, fit points, priors, picks, candidates
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, fit_points, priors, picks, candidates = args.one
        print(json.dumps(one(int(n), int(fit_points), priors, int(picks), int(candidates) or None)))
        return
    print(
        "| n | hyperparameters fitted on | fit s | diagnostics s | predict 1,000 s "
        f"| select {args.picks} (integrated-variance) s | select {args.picks} (max-variance) s "
        "| amortised step s "
        "| held-out NRMSE | 95 % coverage | peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        runs = [args.max_fit_points]
        if args.max_fit_points < n <= args.exact_up_to:
            runs.append(n)  # the exact fit on every point, for comparison
        for fit_points in runs:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    str(n),
                    str(fit_points),
                    args.priors,
                    str(args.picks),
                    str(args.candidates),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| {r['n']} | {r['fit_on']} | {r['fit_s']:.2f} | {r['diagnostics_s']:.2f} "
                f"| {r['predict_1000_s']:.3f} | {r['select_iv_s']:.3f} | {r['select_mv_s']:.3f} "
                f"| {r['amortised_s']:.3f} | {r['nrmse']:.4f} | {r['coverage']:.2f} "
                f"| {r['peak_rss_gib']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
