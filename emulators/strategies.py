"""Selection strategies: which inputs to simulate next, aware of simulations still running.

Every strategy takes the inputs in flight (``pending``) into account, so refilled
workers never pile onto one spot:

- ``sobol``: the next points of the campaign's scrambled Sobol sequence (the baseline).
- ``max-variance``: greedy maximum posterior standard deviation; each pick and every
  pending input is added to the GP as a fantasy observation (the posterior variance of
  a GP does not depend on the observed values, so this is exact for the variance).
- ``integrated-variance``: BoTorch ``qNegIntegratedPosteriorVariance`` over a Monte-Carlo
  set, with the pending inputs as ``X_pending``; picks the batch that most reduces the
  average variance over the space. It is maximised over a fresh scrambled Sobol candidate
  set (``optimize_acqf_discrete``, batch picks greedy with pending updates), without
  gradients: qNIPV's gradient path leaks the autograd graphs of its fantasy models
  (botorch#2728, gpytorch#2631; measured here: +300 MB per refit at n = 20-45), which
  would take a long campaign's memory.

Outputs are weighted by their inverse standard deviation, so every output counts in its
own relative units.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol, cast

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.models.model import Model
from botorch.optim.optimize import optimize_acqf_discrete

from emucamp.emulators.gp import DTYPE, GPEmulator
from emucamp.space import Space

__all__ = [
    "STRATEGIES",
    "IntegratedVarianceStrategy",
    "MaxVarianceStrategy",
    "SobolStrategy",
    "Strategy",
    "greedy_conditioned",
    "make_strategy",
]


class Strategy(Protocol):
    """Proposes the next inputs to simulate."""

    name: str
    needs_model: bool

    def select(
        self, emulator: GPEmulator | None, n: int, pending: np.ndarray | None = None
    ) -> np.ndarray:
        """Propose ``n`` new inputs.

        Args:
            emulator: The current fitted emulator (``None`` before the first fit).
            n: How many inputs to propose.
            pending: ``p x d`` physical inputs still being simulated.

        Returns:
            ``n x d`` physical inputs.
        """
        ...


class SobolStrategy:
    """Continue one scrambled Sobol sequence (the space-filling baseline).

    Args:
        space: The design space.
        seed: Scrambling seed (the campaign's seed, so the initial design and this
            strategy are one sequence).
        start: Points of the sequence already used.
    """

    name = "sobol"
    needs_model = False

    def __init__(self, space: Space, seed: int, start: int = 0) -> None:
        self.space, self.seed, self.drawn = space, seed, start

    def select(
        self, emulator: GPEmulator | None, n: int, pending: np.ndarray | None = None
    ) -> np.ndarray:
        """The next ``n`` points of the sequence: ``n x d`` physical inputs."""
        X = self.space.sobol(n, seed=self.seed, skip=self.drawn)
        self.drawn += n
        return X


class MaxVarianceStrategy:
    """Greedy maximum posterior variance over a candidate set, pending points conditioned in.

    One joint posterior covariance over ``candidates`` fresh scrambled-Sobol points and the
    pending inputs is computed from the GP; each pending input, then each pick, conditions it
    by an exact rank-1 update (the posterior variance of a GP does not depend on the values
    observed, so this is the variance after those simulations, not an approximation). Scores
    add the outputs' variances in standardised units. A batch of ``n`` costs one posterior
    call and ``p + n`` rank-1 updates: milliseconds, so refills never wait on selection.

    Args:
        space: The design space.
        seed: Seed of the candidate sets.
        candidates: Candidate points per selection.
    """

    name = "max-variance"
    needs_model = True

    def __init__(self, space: Space, seed: int = 0, candidates: int = 1024, start: int = 0) -> None:
        self.space, self.seed, self.candidates = space, seed, candidates
        # Candidate sets are seeded by a counter that continues across resumed runs
        # (``start``: points drawn so far), so a rerun never replays earlier candidate sets.
        self._calls = start

    def select(
        self, emulator: GPEmulator | None, n: int, pending: np.ndarray | None = None
    ) -> np.ndarray:
        """``n x d`` physical inputs of greatest posterior variance, updated pick by pick."""
        if emulator is None or emulator.model is None:
            raise ValueError("max-variance needs a fitted emulator")
        self._calls += 1
        C = self.space.sobol_unit(self.candidates, seed=self.seed * 1_000_003 + self._calls)
        P = self.space.to_unit(pending) if pending is not None and len(pending) else C[:0]
        weights = torch.as_tensor(emulator.latent_weights, dtype=DTYPE)[:, None]
        picks = greedy_conditioned(
            emulator, C, P, n, lambda var: (var.clamp_min(0) * weights).sum(0)
        )
        return self.space.from_unit(C[picks])


def greedy_conditioned(
    emulator: GPEmulator,
    C: np.ndarray,
    P: np.ndarray,
    n: int,
    score: Callable[[torch.Tensor], torch.Tensor],
) -> list[int]:
    """Pick ``n`` of the candidates greedily, each scored after conditioning on the rest.

    One joint posterior covariance over the candidates and the pending inputs; all pending
    inputs are conditioned in at once, then each pick by an exact rank-1 update (a GP's
    posterior variance does not depend on the values observed). A candidate equal to a
    pending input is never picked.

    Args:
        emulator: The fitted emulator.
        C: ``c x d`` unit-cube candidates.
        P: ``p x d`` unit-cube pending inputs.
        n: Picks to make (at most ``c``).
        score: Maps the ``m x c`` conditioned latent variances (standardised units) to
            ``c`` scores; the highest is picked.

    Returns:
        Indices into ``C``, in the order picked.
    """
    model = emulator.model
    assert model is not None
    m = emulator.n_latent
    Z = torch.as_tensor(np.vstack([C, P]), dtype=DTYPE)
    z, c = Z.shape[0], C.shape[0]
    same = np.abs(C[:, None, :] - P[None, :, :]) <= 1e-12  # c x p x d
    taken = torch.as_tensor(same.all(axis=2).any(axis=1), dtype=torch.bool)
    with torch.no_grad():
        # The model called directly gives the latent posterior in standardised units.
        latent = model(Z if m == 1 else Z.unsqueeze(0).expand(m, z, Z.shape[1]))
        S = latent.covariance_matrix.reshape(m, z, z)
        noise = cast(torch.Tensor, model.likelihood.noise).reshape(-1, 1).expand(m, 1)
        Scc = S[:, :c, :c].clone()
        if z > c:
            # All pending inputs at once: Scc - Scp (Spp + noise I)^-1 Spc.
            eye = torch.eye(z - c, dtype=DTYPE)
            L = torch.linalg.cholesky(S[:, c:, c:] + noise[:, :, None] * eye + 1e-9 * eye)
            A = torch.linalg.solve_triangular(L, S[:, c:, :c], upper=False)
            Scc -= A.transpose(-1, -2) @ A
        picks: list[int] = []
        for _ in range(min(n, c)):
            scores = score(torch.diagonal(Scc, dim1=-2, dim2=-1)).clone()
            scores[taken] = -torch.inf
            if picks:
                scores[picks] = -torch.inf
            best = int(torch.argmax(scores))
            picks.append(best)
            col = Scc[:, :, best].clone()
            Scc -= (
                col.unsqueeze(-1)
                * col.unsqueeze(-2)
                / (col[:, best : best + 1] + noise)[:, :, None]
            )
    return picks


class IntegratedVarianceStrategy:
    """BoTorch ``qNegIntegratedPosteriorVariance`` with pending inputs as ``X_pending``.

    Args:
        space: The design space.
        seed: Seed of the Monte-Carlo integration set and of the candidate sets.
        mc_points: Size of the (scrambled Sobol) integration set.
        candidates: Size of the candidate set scored per selection.
    """

    name = "integrated-variance"
    needs_model = True

    def __init__(
        self,
        space: Space,
        seed: int = 0,
        mc_points: int = 256,
        candidates: int = 512,
        start: int = 0,
    ) -> None:
        self.space, self.seed, self.candidates = space, seed, candidates
        self.mc_points = torch.as_tensor(space.sobol_unit(mc_points, seed=seed + 7919), dtype=DTYPE)
        self._calls = start

    def select(
        self, emulator: GPEmulator | None, n: int, pending: np.ndarray | None = None
    ) -> np.ndarray:
        """``n x d`` physical inputs that most reduce the integrated posterior variance."""
        if emulator is None or emulator.model is None:
            raise ValueError("integrated-variance needs a fitted emulator")
        d = self.space.dim
        X_pending = (
            torch.as_tensor(self.space.to_unit(pending), dtype=DTYPE)
            if pending is not None and len(pending)
            else None
        )
        acq = _integrated_variance(emulator, self.mc_points, X_pending)
        self._calls += 1
        # A new scramble per call: successive picks are not confined to one point set.
        choices = torch.as_tensor(
            self.space.sobol_unit(self.candidates, seed=self.seed * 1_000_003 + self._calls),
            dtype=DTYPE,
        )
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            X, _ = optimize_acqf_discrete(acq, q=n, choices=choices, max_batch_size=16)
        return self.space.from_unit(X.detach().reshape(n, d).numpy())


class _WeightedSum(AcquisitionFunction):
    """``sum_j w_j * acq_j(X)``: independent outputs' acquisitions added in relative units."""

    def __init__(self, model: Model, parts: list[AcquisitionFunction], weights: list[float]):
        super().__init__(model)
        self.parts = torch.nn.ModuleList(parts)
        self.weights = weights
        self.set_X_pending(getattr(parts[0], "X_pending", None))

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        """Pass pending points on to every part (batch picks add their own)."""
        super().set_X_pending(X_pending)
        for part in self.parts:
            assert isinstance(part, AcquisitionFunction)
            part.set_X_pending(X_pending)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the parts at ``b x q x d`` ``X``: a ``b`` tensor."""
        total = torch.zeros(X.shape[:-2], dtype=X.dtype)
        for w, acq in zip(self.weights, self.parts, strict=True):
            total = total + w * acq(X)
        return total


def _integrated_variance(
    emulator: GPEmulator, mc_points: torch.Tensor, X_pending: torch.Tensor | None
) -> AcquisitionFunction:
    """QNIPV of one output, or for several the sum of each output's qNIPV / its variance.

    BoTorch's multi-output qNIPV (through a posterior transform) evaluates the integration
    points one by one and ran ~8 s per pick here; the outputs are independent GPs, so the
    sum of single-output qNIPVs in standardised units is the same quantity, batched.
    """
    model = emulator.model
    assert model is not None
    if emulator.n_latent == 1:
        return qNegIntegratedPosteriorVariance(model, mc_points=mc_points, X_pending=X_pending)
    parts: list[AcquisitionFunction] = [
        qNegIntegratedPosteriorVariance(
            model.subset_output([j]), mc_points=mc_points, X_pending=X_pending
        )
        for j in range(emulator.n_latent)
    ]
    weights = [
        float(w) / max(float(s) ** 2, 1e-24)
        for w, s in zip(emulator.latent_weights, emulator.output_std, strict=True)
    ]
    return _WeightedSum(model, parts, weights)


STRATEGIES = ("integrated-variance", "max-variance", "sobol")


def make_strategy(
    name: str, space: Space, seed: int, drawn: int = 0, mc_points: int = 256
) -> Strategy:
    """Build a strategy by its spec name.

    Args:
        name: One of :data:`STRATEGIES`.
        space: The design space.
        seed: The campaign's seed.
        drawn: Points of the campaign's Sobol sequence already used.
        mc_points: Integration set size for ``integrated-variance``.
    """
    if name == "sobol":
        return SobolStrategy(space, seed, start=drawn)
    if name == "max-variance":
        return MaxVarianceStrategy(space, seed, start=drawn)
    if name == "integrated-variance":
        return IntegratedVarianceStrategy(space, seed, mc_points=mc_points, start=drawn)
    raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}")
