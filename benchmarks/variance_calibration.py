"""Are the emulator's 95 % intervals calibrated, and would a leave-one-out variance scale fix them?

For each function, the default GP (plain maximum likelihood; RBF, or ``--kernel``) is fitted
on the first ``n`` points of a scrambled Sobol design and scored on 2,000 uniform held-out
points: the coverage of its nominal 95 % intervals as they are, and with every predictive std
scaled by
``k = sqrt(mean(z_i^2))``, where ``z_i`` are the closed-form leave-one-out standardised
residuals of the training points (the cross-validation estimate of the GP's variance
parameter; Bachoc 2013, "Cross validation and maximum likelihood estimations of
hyper-parameters of Gaussian processes with model misspecification"). ``k > 1``: the
training points say the intervals are too narrow. The mean, and so the NRMSE, is unchanged.

    python benchmarks/variance_calibration.py --functions ishigami branin borehole hartmann6 \
        --n 50 100 200 --seeds 5 [--kernel matern-5/2]
"""

from __future__ import annotations

import argparse
import functools
import warnings

import numpy as np
from scipy.stats import qmc

from emucamp.emulators.gp import GPEmulator
from emucamp.space import Parameter, Space
from emucamp.testfunctions import DOMAINS, borehole_np, branin_np, hartmann6_np, ishigami_np

FUNCTIONS = {
    "branin": branin_np,
    "ishigami": ishigami_np,
    "hartmann6": hartmann6_np,
    "borehole": borehole_np,
}
Z95 = 1.959964


def run(
    name: str, n: int, seed: int, X_test: np.ndarray, y_test: np.ndarray, kernel: str = "rbf"
) -> list[float]:
    """``[nrmse, coverage, coverage with k, k]`` for one design."""
    space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS[name].items()])
    with warnings.catch_warnings():  # Sobol sizes that are not powers of two
        warnings.simplefilter("ignore", UserWarning)
        U = qmc.Sobol(len(space.names), scramble=True, seed=seed).random(n)
    X = space.from_unit(U)
    y = FUNCTIONS[name](X)[:, None]
    emulator = GPEmulator(space, ["y"], kernel=kernel).fit(X, y)  # type: ignore[arg-type]
    mean, std = emulator.predict(X_test)
    loo_mean, loo_std = emulator.loo()
    k = float(np.sqrt(np.mean(((loo_mean[:, 0] - y[:, 0]) / loo_std[:, 0]) ** 2)))
    err = np.abs(mean[:, 0] - y_test)
    nrmse = float(np.sqrt(np.mean(err**2)) / y_test.std())
    return [
        nrmse,
        float(np.mean(err <= Z95 * std[:, 0])),
        float(np.mean(err <= Z95 * k * std[:, 0])),
        k,
    ]


def _cell(r: np.ndarray, col: int, fmt: str) -> str:
    """Median [min-max] of one column over seeds."""
    return f"{np.median(r[:, col]):{fmt}} [{r[:, col].min():{fmt}}-{r[:, col].max():{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--n", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-points", type=int, default=2000)
    parser.add_argument("--kernel", choices=["rbf", "matern-5/2"], default="rbf")
    args = parser.parse_args()
    print(f"kernel: {args.kernel}\n")
    print(
        "| function | n | NRMSE | 95 % coverage | coverage, std x k | k (LOO) | "
        "seeds in 0.90-0.99: as is | with k |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.functions:
        space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS[name].items()])
        rng = np.random.default_rng(20261201)
        X_test = space.from_unit(rng.random((args.test_points, len(space.names))))
        y_test = FUNCTIONS[name](X_test)
        for n in args.n:
            r = np.array(
                [run(name, n, seed, X_test, y_test, args.kernel) for seed in range(args.seeds)]
            )
            cell = functools.partial(_cell, r)
            inside = ((r[:, 1:3] >= 0.90) & (r[:, 1:3] <= 0.99)).sum(axis=0)
            print(
                f"| {name} | {n} | {cell(0, '.3g')} | {cell(1, '.2f')} | {cell(2, '.2f')} | "
                f"{cell(3, '.2f')} | {inside[0]} of {len(r)} | {inside[1]} of {len(r)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
