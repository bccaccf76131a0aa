"""The Gaussian-process emulator: BoTorch ``SingleTaskGP`` on the unit cube, one GP per output.

All outputs share the training inputs (a simulation returns all of them or fails), so
the ``m`` outputs are one batched ``SingleTaskGP`` with independent hyperparameters per
output: one fit, one posterior call, ``m`` independent GPs.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast, overload

import numpy as np
import pandas as pd
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import DEFAULT_WARNING_HANDLER, fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior

from emucamp.emulators.basis import OutputBasis
from emucamp.emulators.greybox import GreyBox
from emucamp.emulators.ood import Mahalanobis, OodMethod
from emucamp.errors import SpecError
from emucamp.space import Parameter, Space
from emucamp.storage import CampaignStore, EmulatorState

__all__ = ["GPEmulator", "load_emulator", "warm_up"]

_OOD_COLUMNS = ("ood_distance", "ood")

log = logging.getLogger(__name__)
DTYPE = torch.float64


def _tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(DTYPE)
    return torch.as_tensor(np.asarray(a, dtype=float), dtype=DTYPE)


class GPEmulator:
    """A GP emulator of ``m`` outputs over a :class:`Space`.

    Inputs are mapped to the unit cube by the space (log parameters through ``log``);
    outputs are standardised by BoTorch's ``Standardize``; everything is float64. With a
    :class:`~emucamp.emulators.greybox.GreyBox`, the GP models the residual from a physics
    prior mean (on a log scale for positive outputs) and predictions add the prior back.

    Args:
        space: The design space; ``predict`` takes physical inputs in it.
        outputs: Output names, in the column order of ``Y``.
        greybox: Prior mean and positive outputs (default: none, a black box).
        ood_method: How the out-of-distribution threshold is calibrated (``chi2`` or
            ``empirical``, see :mod:`emucamp.emulators.ood`).
        ood_level: The quantile it is calibrated at.
        basis: Field outputs and their principal-component settings (default: every
            output a scalar, one column of ``Y`` each).
        noise_floor: Lowest noise variance the fit may infer, in standardised units.
            BoTorch's default, 1e-4, caps the accuracy of deterministic simulators at about
            1 % of the output's std; 1e-6 lets the error fall to about 0.1 % (Branin, 100
            Sobol points: NRMSE 1.1 % -> 0.3 %) while noisy simulators still learn their
            noise.
        priors: ``none`` (default): a scaled RBF fitted by plain maximum likelihood from two
            starts, as scikit-learn fits; more accurate with few points and on rough
            functions (``benchmarks/gp_settings.py``, ``benchmarks/sample_efficiency.py``).
            ``botorch``: BoTorch's RBF with its dim-scaled lengthscale prior and noise prior
            (MAP), smoother and slower to learn short lengthscales.
        kernel: ``rbf`` (default) or ``matern-5/2``, both with a lengthscale per input
            (ARD). Matern 5/2 assumes a rougher function: wider intervals between runs,
            slower to reach tight accuracy on smooth simulators.
        max_fit_points: Above this many training points, hyperparameters are fitted on a
            random subset of this size and the GP then conditions on every point with them
            (subset-of-data hyperparameters). Each optimiser step of an exact fit costs
            O(n^3); this keeps a fit at n = 5,000 to that of n = ``max_fit_points`` plus one
            O(n^3) factorisation, while predictions stay the exact GP's at those
            hyperparameters (see ``benchmarks/emulator_scaling.py``).

    Example:
        >>> emu = GPEmulator(space, ["flow"]).fit(X, Y)    # X: n x d, Y: n x 1
        >>> mean, std = emu.predict(X_new)                  # each k x 1
    """

    def __init__(
        self,
        space: Space,
        outputs: Sequence[str],
        greybox: GreyBox | None = None,
        ood_method: OodMethod = "chi2",
        ood_level: float = 0.999,
        basis: OutputBasis | None = None,
        noise_floor: float = 1e-6,
        priors: Literal["botorch", "none"] = "none",
        max_fit_points: int = 1000,
        kernel: Literal["rbf", "matern-5/2"] = "rbf",
    ) -> None:
        if not outputs:
            raise ValueError("at least one output is needed")
        self.space = space
        self.outputs = list(outputs)
        self.greybox = greybox if greybox is not None else GreyBox(outputs, space.names)
        self.basis = basis if basis is not None else OutputBasis(outputs)
        if self.basis.has_fields and self.greybox.active:
            raise ValueError("a grey box (prior mean, positive outputs) cannot have field outputs")
        self.ood_method: OodMethod = ood_method
        self.ood_level = ood_level
        self.noise_floor = noise_floor
        self.priors = priors
        if kernel not in ("rbf", "matern-5/2"):
            raise ValueError(f"kernel must be 'rbf' or 'matern-5/2', got {kernel!r}")
        self.kernel: Literal["rbf", "matern-5/2"] = kernel
        if max_fit_points < 2:
            raise ValueError(f"max_fit_points must be at least 2, got {max_fit_points}")
        self.max_fit_points = max_fit_points
        self.model: SingleTaskGP | None = None
        self.fit_seconds = 0.0
        self.fit_failed = False
        self._X = np.empty((0, space.dim))
        self._Y = np.empty((0, self.basis.n_columns))
        self._guard: Mahalanobis | None = None
        self._cholesky: torch.Tensor | None = None
        self._alpha: torch.Tensor | None = None
        self._kept: tuple[np.ndarray, torch.Tensor] | None = None  # see whitened_cross
        self._latent = list(self.outputs)

    # -- fitting ---------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Training points."""
        return 0 if self.model is None else int(self.model.train_inputs[0].shape[-2])

    @property
    def fitted(self) -> bool:
        """Whether a model is available."""
        return self.model is not None

    @property
    def n_latent(self) -> int:
        """Columns the GP models: one per scalar output, a field's kept components."""
        return len(self._latent)

    @property
    def latent_names(self) -> list[str]:
        """Names of the GP's columns (``<field>_pc<j>`` for a field's components)."""
        return list(self._latent)

    @property
    def latent_weights(self) -> np.ndarray:
        """``L`` weights adding standardised latent variances up per output (1 for scalars)."""
        return self.basis.latent_weights()

    @property
    def columns(self) -> dict[str, slice]:
        """Each output's columns in ``Y`` and in predictions (a field's flattened values)."""
        return dict(self.basis.columns)

    def _build(self, X: np.ndarray, Y: np.ndarray) -> SingleTaskGP:
        """Check and keep the training data; a fresh model of its latent targets."""
        return self._model(*self._targets(X, Y))

    def _targets(self, X: np.ndarray, Y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-cube inputs ``n x d`` and latent targets ``n x L``; keeps ``X`` and ``Y``."""
        X, Y = np.atleast_2d(np.asarray(X, dtype=float)), np.asarray(Y, dtype=float)
        Y = Y.reshape(len(Y), -1)
        if Y.shape[1] != self.basis.n_columns:
            raise ValueError(f"Y has {Y.shape[1]} columns, expected {self.basis.n_columns}")
        if len(X) != len(Y):
            raise ValueError(f"X has {len(X)} rows but Y has {len(Y)}")
        if not np.all(np.isfinite(Y)):
            raise ValueError("Y has non-finite values; train on ok results only")
        U = self.space.to_unit(X)
        Z = self.greybox.to_latent(X, Y) if self.greybox.active else Y
        if self.basis.has_fields:
            Z = self.basis.fit(Z).to_latent(Z)
        self._X, self._Y, self._guard = X.copy(), Y.copy(), None
        self._latent = self.basis.latent_names
        return _tensor(U), _tensor(Z)

    def _model(self, U: torch.Tensor, Z: torch.Tensor) -> SingleTaskGP:
        """An unfitted GP on ``n x d`` inputs and ``n x L`` targets, as this emulator is set."""
        batch = torch.Size([Z.shape[1]]) if Z.shape[1] > 1 else torch.Size()
        covar: Kernel | None = None
        if self.priors == "botorch":
            # BoTorch's own likelihood (LogNormal(-4, 1) noise prior), with a lower floor,
            # and its kernel with the dim-scaled lengthscale prior (its default is the RBF).
            prior: LogNormalPrior | None = LogNormalPrior(loc=-4.0, scale=1.0)
            start = float(prior.mode)  # type: ignore[union-attr]
            if self.kernel == "matern-5/2":
                covar = get_covar_module_with_dim_scaled_prior(
                    ard_num_dims=U.shape[1], batch_shape=batch, use_rbf_kernel=False
                )
        else:
            # Plain maximum likelihood, as scikit-learn fits: a scaled kernel, lengthscales
            # started at 0.3 of the unit cube, no priors to pull them.
            prior, start = None, 1e-3
            base: Kernel = (
                MaternKernel(nu=2.5, ard_num_dims=U.shape[1], batch_shape=batch)
                if self.kernel == "matern-5/2"
                else RBFKernel(ard_num_dims=U.shape[1], batch_shape=batch)
            )
            base.lengthscale = 0.3
            covar = ScaleKernel(base, batch_shape=batch)
        likelihood = GaussianLikelihood(
            noise_prior=prior,
            batch_shape=batch,
            noise_constraint=GreaterThan(self.noise_floor, transform=None, initial_value=start),
        )
        return SingleTaskGP(
            U,
            Z,
            likelihood=likelihood,
            covar_module=covar,
            outcome_transform=Standardize(m=Z.shape[1]),
        )

    def fit(self, X: np.ndarray, Y: np.ndarray, warm_start: GPEmulator | None = None) -> GPEmulator:
        """Fit hyperparameters by maximum marginal likelihood.

        Args:
            X: ``n x d`` training inputs, physical units (``n >= 2``).
            Y: ``n x M`` training outputs: a column per scalar output, a field's values
                flattened (see :attr:`columns`).
            warm_start: A previous emulator of the same shape whose hyperparameters seed
                the optimiser (kept as they are if the new fit fails).

        Returns:
            ``self``, fitted.
        """
        if len(X) < 2:
            raise ValueError(f"need at least 2 training points to fit, got {len(X)}")
        start = time.perf_counter()
        U, Z = self._targets(X, Y)
        full = self._model(U, Z)
        if len(U) > self.max_fit_points:
            # Seeded by n: the same data always gives the same subset, hence the same fit.
            rng = np.random.default_rng(len(U))
            rows = torch.as_tensor(np.sort(rng.choice(len(U), self.max_fit_points, False)))
            U, Z = U[rows], Z[rows]
            model = self._model(U, Z)
        else:
            model = full
        if warm_start is not None and warm_start.model is not None:
            try:
                model.load_state_dict(_hyperparameters(warm_start.model), strict=False)
            except RuntimeError:  # shapes changed: start from the defaults
                log.debug("warm start skipped: incompatible hyperparameters")
        self.fit_failed = not _optimise(model)
        if self.priors == "none":
            # Maximum likelihood without priors has poor local optima (a Borehole fit at 50
            # Sobol points landed at NRMSE 0.79 from one start): a second start from smooth
            # lengthscales, and the better likelihood wins, as scikit-learn's restarts do.
            other = self._model(U, Z)
            _set_lengthscale(other, 1.0)
            if _optimise(other) and (self.fit_failed or _mll(other) > _mll(model)):
                model, self.fit_failed = other, False
        if self.fit_failed:
            # Keep going on the warm-started (or default) hyperparameters: a campaign must
            # not stop because one optimisation did not converge.
            log.warning("GP fit did not converge; keeping previous hyperparameters")
        if model is not full:
            # The subset's hyperparameters on every point (standardised on all of them).
            full.load_state_dict(_hyperparameters(model), strict=False)
            model = full
        model.eval()
        self.model, self._cholesky, self._alpha, self._kept = model, None, None, None
        self.fit_seconds = time.perf_counter() - start
        return self

    # -- prediction ------------------------------------------------------------------------
    def _require(self) -> SingleTaskGP:
        if self.model is None:
            raise RuntimeError("emulator is not fitted")
        return self.model

    def predict_unit(
        self, U: np.ndarray | torch.Tensor, chunk: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std at ``k x d`` unit-cube points: two ``k x M`` arrays.

        In the outputs' units: a grey box's prior is added back (and a positive output's
        log undone), a field is rebuilt from its components. :meth:`predict_latent` gives
        what the GP itself models.
        """
        mean, std = self.predict_latent(U, chunk)
        if self.basis.has_fields:
            return self.basis.from_latent(mean, std)
        if not self.greybox.active:
            return mean, std
        U_np = U.detach().numpy() if isinstance(U, torch.Tensor) else np.asarray(U, dtype=float)
        return self.greybox.from_latent(self.space.from_unit(U_np), mean, std)

    def predict_latent(
        self, U: np.ndarray | torch.Tensor, chunk: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The GP's own posterior mean and std (residuals, component scores): two ``k x L``.

        Exact at any n: one triangular solve per chunk of points against the cached
        :meth:`train_cholesky` (the posterior BoTorch would give; its GPyTorch path turns to
        conjugate gradients above 4,096 training points and peaked at 1 GB more at n = 5,000).

        Args:
            U: ``k x d`` unit-cube points.
            chunk: Points per solve (default: as many as keep ``n x chunk`` near 4M numbers).
        """
        model = self._require()
        U_t = U if isinstance(U, torch.Tensor) else _tensor(U)
        m, n = self.n_latent, self.n
        chunk = chunk or max(256, min(4096, 2**22 // max(n, 1)))
        alpha = self._weights()
        kernel = model.covar_module
        c = cast(torch.Tensor, model.mean_module.constant).reshape(m, 1)
        stdvs, means = (t.reshape(1, m) for t in self._standardisation())
        out_mean, out_std = [], []
        with torch.no_grad():
            for i in range(0, max(len(U_t), 1), chunk):
                Z = U_t[i : i + chunk].unsqueeze(0).expand(m, -1, -1)
                Kxz, V = self._cross(Z)
                mu = c + (Kxz * alpha.unsqueeze(-1)).sum(-2)
                var = kernel(Z, diag=True).reshape(m, -1) - (V * V).sum(-2)
                out_mean.append((mu.T * stdvs + means).numpy())
                out_std.append((var.clamp_min(0).sqrt().T * stdvs).numpy())
        return np.concatenate(out_mean), np.concatenate(out_std)

    @overload
    def predict(self, X: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame: ...

    @overload
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def predict(
        self, X: np.ndarray | pd.DataFrame | Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray] | pd.DataFrame:
        """Posterior mean and std of each output.

        Args:
            X: ``k x d`` physical inputs as an array (columns in the space's order), or a
                table (DataFrame or mapping of columns) with one column per parameter.

        Returns:
            For an array, ``(mean, std)``, each ``k x M`` in the outputs' units. For a table,
            a DataFrame: the table's columns, then ``<output>_mean`` and ``<output>_std``
            per output (``<field>_mean_<i>``, ``<field>_std_<i>`` per value of a field),
            then ``ood_distance`` (Mahalanobis distance to the training inputs) and ``ood``
            (beyond the calibrated threshold, or outside the bounds; see :meth:`ood`).
            ``std`` is the emulator's (latent) uncertainty, without noise.

        Raises:
            SpecError: a parameter column is missing, or holds a value that is not a finite
                number; an extra column would be overwritten by a prediction column.
        """
        if isinstance(X, np.ndarray):
            return self.predict_unit(self.space.to_unit(X))
        table = X if isinstance(X, pd.DataFrame) else pd.DataFrame(dict(X))
        missing = [n for n in self.space.names if n not in table.columns]
        if missing:
            raise SpecError(f"inputs: missing parameter column(s) {missing}")
        added = {c for m, s in self._prediction_columns().values() for c in (*m, *s)}
        added |= set(_OOD_COLUMNS)
        clashes = [c for c in table.columns if c in added]
        if clashes:
            raise SpecError(
                f"inputs: column {clashes[0]!r} would be overwritten by the predictions; rename it"
            )
        for name in self.space.names:
            numbers = pd.to_numeric(table[name], errors="coerce")
            wrong = numbers.isna() & table[name].notna()
            if wrong.any():
                row = int(np.flatnonzero(wrong.to_numpy())[0])
                raise SpecError(
                    f"inputs: row {row}, column {name!r} is not a number: {table[name].iloc[row]!r}"
                )
        values = table[self.space.names].apply(pd.to_numeric).to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise SpecError(
                f"inputs: row {row}, column {self.space.names[col]!r} is not a finite number"
            )
        U = self.space.to_unit(values)
        mean, std = self.predict_unit(U)
        columns: dict[str, Any] = {}
        for name, (mean_col, std_col) in zip(
            self.outputs, self._prediction_columns().values(), strict=True
        ):
            cols = self.basis.columns[name]
            for i, (m_name, s_name) in enumerate(zip(mean_col, std_col, strict=True)):
                columns[m_name] = mean[:, cols.start + i]
                columns[s_name] = std[:, cols.start + i]
        distance, flagged = self.guard.check(U)
        columns["ood_distance"], columns["ood"] = distance, flagged
        return pd.concat([table.reset_index(drop=True), pd.DataFrame(columns)], axis=1)

    def _prediction_columns(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per output, the names of its mean and std columns in a predicted table."""
        out: dict[str, tuple[list[str], list[str]]] = {}
        for name in self.outputs:
            size = self.basis.columns[name].stop - self.basis.columns[name].start
            if name in self.basis.shapes:
                out[name] = (
                    [f"{name}_mean_{i}" for i in range(size)],
                    [f"{name}_std_{i}" for i in range(size)],
                )
            else:
                out[name] = ([f"{name}_mean"], [f"{name}_std"])
        return out

    @property
    def guard(self) -> Mahalanobis:
        """The out-of-distribution guard, calibrated on the training inputs."""
        if self._guard is None:
            self._require()
            U = self.space.to_unit(self._X)
            self._guard = Mahalanobis.calibrate(U, self.ood_method, self.ood_level)
        return self._guard

    def ood(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mahalanobis distance to the training inputs and the out-of-distribution flag.

        Args:
            X: ``k x d`` physical inputs.

        Returns:
            ``(distance, flagged)``, each ``k``; flagged beyond the calibrated threshold
            (:attr:`guard`), or outside the space's bounds whatever the distance.
        """
        return self.guard.check(self.space.to_unit(np.atleast_2d(np.asarray(X, dtype=float))))

    @property
    def output_std(self) -> np.ndarray:
        """``L`` standard deviations of the GP's targets (residuals, component scores)."""
        return self._standardisation()[0].detach().reshape(-1).numpy().copy()

    @property
    def output_scale(self) -> np.ndarray:
        """``M`` standard deviations of the simulated outputs: the unit of relative std."""
        self._require()
        if len(self._Y) < 2:
            return np.ones(self.basis.n_columns)
        return np.asarray(self._Y.std(axis=0, ddof=1), dtype=float)

    def latent_gain(self, U: np.ndarray) -> np.ndarray | None:
        """How much a unit of latent variance is worth in each output's relative units.

        A positive output's GP models ``log y``, so a latent variance ``v`` (standardised)
        is a variance of about ``(y s_z / s_y)^2 v`` in ``y`` relative to its spread (the
        delta method; ``s_z`` and ``s_y`` the latent's and the output's stds). Selection
        weighs the GP's variance by it: the same log error costs more where ``y`` is large.

        Args:
            U: ``k x d`` unit-cube points.

        Returns:
            ``k x L`` gains (1 for outputs the GP models as they are), or ``None`` when
            every output is modelled as it is.
        """
        if not self.greybox.positive.any():  # never with fields: __init__ refuses both
            return None
        mean, _ = self.predict_latent(U)
        median, _ = self.greybox.from_latent(self.space.from_unit(U), mean, np.zeros_like(mean))
        stdvs, _ = self._standardisation()
        s_z = stdvs.reshape(-1).numpy()
        gain = np.ones_like(mean)
        p = self.greybox.positive
        scale = np.maximum(self.output_scale[p], 1e-300)
        gain[:, p] = (median[:, p] * s_z[p] / scale) ** 2
        return gain

    @property
    def latent_lengthscales(self) -> np.ndarray:
        """``L x d`` ARD lengthscales of the GP's columns, in unit-cube units."""
        model = self._require()
        kernel = model.covar_module
        if isinstance(kernel, ScaleKernel):
            kernel = kernel.base_kernel
        ls = cast(torch.Tensor, kernel.lengthscale)
        return ls.detach().reshape(self.n_latent, -1).numpy().copy()

    @property
    def lengthscales(self) -> np.ndarray:
        """``m x d`` ARD lengthscales per output (a field's: its leading component's)."""
        ls = self.latent_lengthscales
        first = [self.basis.latent_owner.index(name) for name in self.outputs]
        return ls[first]

    def training_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``n x d`` physical inputs and ``n x M`` simulated outputs the model was fitted on."""
        self._require()
        return self._X.copy(), self._Y.copy()

    def _standardisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``m`` output stds and means the ``Standardize`` transform learned."""
        tf = cast(Standardize, self._require().outcome_transform)
        return tf.stdvs, tf.means

    def _batched_training(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs ``L x n x d`` and standardised targets ``L x n``, for any ``L``."""
        model = self._require()
        Xt, y = model.train_inputs[0], model.train_targets
        if self.n_latent == 1:  # a single-output model keeps no output batch dimension
            Xt, y = Xt.unsqueeze(0), y.unsqueeze(0)
        return Xt, y

    def train_cholesky(self) -> torch.Tensor:
        """Lower Cholesky factor of the noisy training covariance: ``L x n x n``, cached.

        Standardised units; at n = 5,000 it is 200 MB per latent column, computed once per
        fit and shared by :meth:`loo` and :meth:`joint_covariance`.
        """
        if self._cholesky is None:
            model = self._require()
            with torch.no_grad():
                Xt, _ = self._batched_training()
                K = model.covar_module(Xt).to_dense().reshape(self.n_latent, Xt.shape[-2], -1)
                noise = cast(torch.Tensor, model.likelihood.noise).reshape(-1, 1)
                # In place: one n x n matrix alive at a time besides the factor.
                diagonal = K.diagonal(dim1=-2, dim2=-1)
                diagonal.add_(noise)
                factor, info = torch.linalg.cholesky_ex(K)
                if bool((info > 0).any()):  # numerically singular: GPyTorch's jitter, once
                    diagonal.add_(1e-8 * diagonal.mean(-1, keepdim=True))
                    factor = torch.linalg.cholesky(K)
                self._cholesky = factor
        return self._cholesky

    def _weights(self) -> torch.Tensor:
        """``L x n`` representer weights ``K^-1 (y - c)`` in standardised units, cached."""
        if self._alpha is None:
            model = self._require()
            with torch.no_grad():
                _, y = self._batched_training()
                c = cast(torch.Tensor, model.mean_module.constant).reshape(-1, 1)
                r = (y - c).unsqueeze(-1)
                self._alpha = torch.cholesky_solve(r, self.train_cholesky()).squeeze(-1)
        return self._alpha

    def joint_covariance(self, U: np.ndarray) -> torch.Tensor:
        """Latent posterior covariance between ``z x d`` unit-cube points: ``L x z x z``.

        Standardised units, without observation noise: what ``model(U)`` gives, computed
        from the cached :meth:`train_cholesky` with one ``n x z`` triangular solve. GPyTorch's
        own path peaked at 1.1 GB for z = 2,148 at n = 5,000 against 0.3 GB for this one.
        """
        V = self.whitened_cross(U)
        with torch.no_grad():
            covariance: torch.Tensor = self.prior_covariance(U, U) - V.transpose(-1, -2) @ V
        return covariance

    def prior_covariance(
        self, Ua: np.ndarray | torch.Tensor, Ub: np.ndarray | torch.Tensor
    ) -> torch.Tensor:
        """The fitted kernel between ``a x d`` and ``b x d`` unit-cube points: ``L x a x b``.

        Standardised units. With :meth:`whitened_cross`, the posterior covariance of any two
        blocks is ``prior_covariance(Ua, Ub) - Va' Vb``: a caller that needs a few blocks of
        a large joint covariance builds only those.
        """
        model, m = self._require(), self.n_latent
        with torch.no_grad():
            K: torch.Tensor = model.covar_module(self._batched(Ua), self._batched(Ub)).to_dense()
        return K.reshape(m, len(Ua), len(Ub))

    def prior_variance(self, U: np.ndarray) -> torch.Tensor:
        """The fitted kernel's diagonal at ``z x d`` unit-cube points: ``L x z``."""
        model = self._require()
        with torch.no_grad():
            k: torch.Tensor = model.covar_module(self._batched(U), diag=True)
        return k.reshape(self.n_latent, len(U))

    def whitened_cross(self, U: np.ndarray, keep: bool = False) -> torch.Tensor:
        """``L^-1 K(X, U)`` for ``z x d`` unit-cube points: ``L x n x z``.

        ``L`` is the cached :meth:`train_cholesky`; ``V' V`` is what the training data take
        off the prior covariance of ``U``.

        Args:
            U: ``z x d`` unit-cube points.
            keep: Keep the result for this very array (the same object, such as a strategy's
                fixed integration set), so that later calls with it cost nothing until the
                next fit; one array is kept. The solve costs ``n^2 z``: over 1,024
                candidates and 1,024 integration points, half of a selection's.
        """
        if keep and self._kept is not None and self._kept[0] is U:
            return self._kept[1]
        with torch.no_grad():
            _, V = self._cross(self._batched(U))
        if keep:
            self._kept = (U, V)
        return V

    def _batched(self, U: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``z x d`` points as the batched model takes them: ``L x z x d`` (a view)."""
        return _tensor(U).unsqueeze(0).expand(self.n_latent, len(U), U.shape[1])

    def _cross(self, Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior cross-covariance ``K(X, Z)`` and ``L^-1 K(X, Z)``: each ``L x n x z``."""
        model = self._require()
        Xt, _ = self._batched_training()
        Kxz = model.covar_module(Xt, Z).to_dense().reshape(self.n_latent, self.n, Z.shape[-2])
        return Kxz, torch.linalg.solve_triangular(self.train_cholesky(), Kxz, upper=False)

    # -- leave-one-out ---------------------------------------------------------------------
    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out predictions at the training points (no refits).

        Uses ``mu_-i = y_i - [K^-1 (y - c)]_i / [K^-1]_ii`` and ``var_-i = 1 / [K^-1]_ii``
        with ``K`` the noisy training covariance (Rasmussen & Williams, eq. 5.12).

        Returns:
            ``(mean, std)``, each ``n x M``, in the outputs' units (a grey box's prior added,
            a field rebuilt from its components).
        """
        self._require()
        with torch.no_grad():
            _, y = self._batched_training()
            Kinv = torch.cholesky_inverse(self.train_cholesky())
            alpha = self._weights()
            diag = torch.diagonal(Kinv, dim1=-2, dim2=-1)
            mu = y - alpha / diag
            var = 1.0 / diag
            stdvs, means = self._standardisation()
            stdvs, means = stdvs.reshape(-1, 1), means.reshape(-1, 1)
            mean = (mu * stdvs + means).T.numpy()
            std = (var.sqrt() * stdvs).T.numpy()
        if self.basis.has_fields:
            return self.basis.from_latent(mean, std)
        if self.greybox.active:
            return self.greybox.from_latent(self._X, mean, std)
        return mean, std

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> EmulatorState:
        """The emulator as plain arrays, for :meth:`CampaignStore.save_emulator`."""
        model = self._require()
        X, Y = self.training_data()
        params = {
            k: v.detach().cpu().numpy()
            for k, v in model.state_dict().items()
            if not k.endswith("_buffered_loc") and not k.endswith("_buffered_scale")
        }
        meta: dict[str, Any] = {
            "kind": "GPEmulator",
            "model": "botorch.SingleTaskGP",
            "outputs": self.outputs,
            "parameters": [
                {"name": p.name, "low": p.low, "high": p.high, "log": p.log} for p in self.space
            ],
            "fit_seconds": self.fit_seconds,
            "greybox": self.greybox.meta(),
            "basis": self.basis.meta(),
            "fields": self.basis.summary(),
            "ood": {"method": self.ood_method, "level": self.ood_level},
            "noise_floor": self.noise_floor,
            "priors": self.priors,
            "kernel": self.kernel,
            "max_fit_points": self.max_fit_points,
        }
        return EmulatorState(X=X, Y=Y, params=params, meta=meta)

    @classmethod
    def from_state(cls, state: EmulatorState, space: Space | None = None) -> GPEmulator:
        """Rebuild an emulator saved with :meth:`state` (its predictions are identical)."""
        from emucamp.space import Parameter

        if space is None:
            space = Space([Parameter(**p) for p in state.meta["parameters"]])
        outputs = state.meta["outputs"]
        ood = state.meta.get("ood") or {}
        emu = cls(
            space,
            outputs,
            greybox=GreyBox.from_meta(state.meta.get("greybox"), outputs, space.names),
            ood_method=ood.get("method", "chi2"),
            ood_level=float(ood.get("level", 0.999)),
            basis=OutputBasis.from_meta(state.meta.get("basis"), outputs),
            # Stores from before the setting was kept were fitted with BoTorch's default.
            noise_floor=float(state.meta.get("noise_floor", 1e-4)),
            priors=state.meta.get("priors", "botorch"),
            max_fit_points=int(state.meta.get("max_fit_points", 1000)),
            kernel=state.meta.get("kernel", "rbf"),
        )
        model = emu._build(state.X, state.Y)
        model.load_state_dict(
            {k: torch.as_tensor(v) for k, v in state.params.items()}, strict=False
        )
        model.eval()
        emu.model, emu._cholesky, emu._alpha = model, None, None
        emu.fit_seconds = float(state.meta.get("fit_seconds", 0.0))
        return emu


def _hyperparameters(model: SingleTaskGP) -> dict[str, torch.Tensor]:
    """The model's fitted parameters, without the data-bound output standardisation."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("outcome_transform")}


def _line_search_stop(w: warnings.WarningMessage) -> bool:
    """Whether a fit's warning is BoTorch's to let pass, or L-BFGS-B's line-search stop.

    L-BFGS-B ends "ABNORMAL" when its line search finds no decrease, often right at the
    optimum where the likelihood's rounding noise outweighs its slope. It never accepts a
    worse point, so its last iterate is a result. BoTorch's own rule counts it a failure
    and rolls back to the start: an Ishigami fit on 256 Sobol points went from
    lengthscales (0.39, 0.31, 0.45), NRMSE 0.035, back to (0.3, 0.3, 0.3), and the second
    start's worse optimum (NRMSE 0.84) won. The starts' likelihoods decide between them.
    """
    if DEFAULT_WARNING_HANDLER(w):
        return True
    return issubclass(w.category, OptimizationWarning) and "ABNORMAL" in str(w.message)


def _optimise(model: SingleTaskGP) -> bool:
    """Fit ``model``'s hyperparameters in place; whether the optimiser converged."""
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(mll, warning_handler=_line_search_stop)
    except ModelFittingError:
        return False
    return True


def _mll(model: SingleTaskGP) -> float:
    """The exact marginal log likelihood of the training data (summed over outputs)."""
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with torch.no_grad():
        value = mll(model(*model.train_inputs), model.train_targets)
    return float(value.sum())


def _set_lengthscale(model: SingleTaskGP, value: float) -> None:
    kernel = model.covar_module
    if isinstance(kernel, ScaleKernel):
        kernel = kernel.base_kernel
    kernel.lengthscale = value


_warm_lock = threading.Lock()
_warmed = False


def warm_up() -> None:
    """Pay the GP stack's one-off costs now: fit and query a tiny emulator, once a process.

    A process's first fit costs ~0.8 s more than the next (torch imports sympy on its
    first ``broadcast_shapes``; scipy's and BoTorch's optimisers load lazily). A campaign
    runs this beside its first simulations, so that its first model, which every worker
    past the initial design waits for, is not the slow one. Thread-safe; later calls return
    at once.
    """
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        space = Space([Parameter("x", 0.0, 1.0)])
        X = np.linspace(0.0, 1.0, 5)[:, None]
        emulator = GPEmulator(space, ["y"]).fit(X, np.sin(3.0 * X))
        emulator.predict(X)
        _warmed = True


def load_emulator(store: str | Path) -> GPEmulator:
    """The latest fitted emulator of a campaign, from its store alone (read-only).

    Raises:
        StoreError: no store at that path, or no emulator fitted yet.
    """
    return GPEmulator.from_state(CampaignStore.open(store, mode="r").load_emulator_state())
