"""GP settings against held-out error: the noise floor and the kernel, on Sobol designs.

Fits BoTorch's ``SingleTaskGP`` (standardised outputs, inputs on the unit cube, BoTorch's
dim-scaled lengthscale prior) on the first ``n`` points of a scrambled Sobol design and
scores it on 2,000 uniform held-out points: NRMSE = RMSE / std of the truth, and the
coverage of the nominal 95 % intervals. Only the setting under study changes.

    python benchmarks/gp_settings.py [--functions branin hartmann6 borehole] [--n 25 50 100 200]
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior

from emucamp.space import Parameter, Space
from emucamp.testfunctions import DOMAINS, borehole_np, branin_np, hartmann6_np, ishigami_np

FUNCTIONS = {"branin": branin_np, "ishigami": ishigami_np, "hartmann6": hartmann6_np,
             "borehole": borehole_np}  # fmt: skip


def fit_score(U: np.ndarray, y: np.ndarray, U_test: np.ndarray, y_test: np.ndarray,
              floor: float, rbf: bool, mle: bool = False) -> tuple[float, float]:  # fmt: skip
    prior = LogNormalPrior(-4.0, 1.0)
    likelihood = GaussianLikelihood(
        noise_prior=None if mle else prior,
        noise_constraint=GreaterThan(floor, transform=None, initial_value=1e-3),
    )
    d = U.shape[1]
    covar: Any
    if mle:
        # Plain maximum likelihood, as scikit-learn does: no priors, a scale, ARD from 0.3.
        base = RBFKernel(ard_num_dims=d) if rbf else MaternKernel(nu=2.5, ard_num_dims=d)
        base.lengthscale = 0.3
        covar = ScaleKernel(base)
    else:
        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=rbf)
    model = SingleTaskGP(torch.tensor(U), torch.tensor(y)[:, None], likelihood=likelihood,
                         covar_module=covar, outcome_transform=Standardize(m=1))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    with torch.no_grad():
        post = model.posterior(torch.tensor(U_test))
        mean, std = post.mean.numpy()[:, 0], post.variance.sqrt().numpy()[:, 0]
    nrmse = float(np.sqrt(np.mean((mean - y_test) ** 2)) / y_test.std())
    return nrmse, float(np.mean(np.abs(mean - y_test) <= 1.959964 * std))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", nargs="+", default=["branin", "hartmann6", "borehole"])
    parser.add_argument("--n", nargs="+", type=int, default=[25, 50, 100, 200])
    args = parser.parse_args()
    settings: list[tuple[Any, ...]] = [
        ("RBF, floor 1e-4 (BoTorch)", 1e-4, True),
        ("RBF, floor 1e-6 (emucamp)", 1e-6, True),
        ("RBF, floor 1e-8", 1e-8, True),
        ("Matern 5/2, floor 1e-6", 1e-6, False),
        ("RBF, no priors (MLE), 1e-6", 1e-6, True, True),
        ("Matern 5/2, no priors (MLE), 1e-6", 1e-6, False, True),
    ]
    print("| function | n | " + " | ".join(str(setting[0]) for setting in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for name in args.functions:
        space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS[name].items()])
        U_test = np.random.default_rng(1).random((2000, space.dim))
        y_test = FUNCTIONS[name](space.from_unit(U_test))
        for n in args.n:
            U = space.sobol_unit(n, seed=0)
            y = FUNCTIONS[name](space.from_unit(U))
            cells = [fit_score(U, y, U_test, y_test, *setting[1:]) for setting in settings]
            row = " | ".join(f"{e:.4f} ({c:.2f})" for e, c in cells)
            print(f"| {name} | {n} | {row} |", flush=True)


if __name__ == "__main__":
    main()
