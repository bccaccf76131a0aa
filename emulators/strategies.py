"""Selection strategies: which inputs to simulate next, aware of simulations still running.

Every strategy takes the inputs in flight (``pending``) into account, so refilled
workers never pile onto one spot:

- ``sobol``: the next points of the campaign's scrambled Sobol sequence (the baseline).
- ``max-variance``: greedy maximum posterior standard deviation; each pick and every
  pending input is added to the GP as a fantasy observation (the posterior variance of
  a GP does not depend on the observed values, so this is exact for the variance).
- ``integrated-variance``: greedy reduction of the mean posterior variance over an
  integration set (ALC; BoTorch's ``qNegIntegratedPosteriorVariance`` with the pending
  inputs as ``X_pending``, evaluated in closed form on a candidate set). It spreads points
  over the space where max-variance favours the edges and corners, and costs about as
  little.

Outputs are weighted by their inverse standard deviation, so every output counts in its
own relative units. A positive output's GP models ``log y``; its variance is weighed by
``y^2`` (:meth:`GPEmulator.latent_gain`), so that the variance selection lowers is the
output's own: on Borehole declared positive, integrated-variance then reached 1 % NRMSE in
63 and 69 runs against 83 and 82 unweighted (medians of 5 seeds, two alternating pairs;
``benchmarks/README.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

import numpy as np
import torch

from emucamp.emulators.gp import DTYPE, GPEmulator
from emucamp.space import Space

__all__ = [
    "STRATEGIES",
    "IntegratedVarianceStrategy",
    "MaxVarianceStrategy",
    "SobolStrategy",
    "Strategy",
    "default_candidates",
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

    The posterior variance at ``candidates`` fresh scrambled-Sobol points is computed from
    the GP; the pending inputs, then each pick, condition it exactly (the posterior variance
    of a GP does not depend on the values observed, so this is the variance after those
    simulations, not an approximation). Scores add the outputs' variances in standardised
    units. A batch costs one posterior call and one pivoted-Cholesky row per pick:
    milliseconds, so refills never wait on selection.

    Args:
        space: The design space.
        seed: Seed of the candidate sets.
        candidates: Candidate points per selection.
    """

    name = "max-variance"
    needs_model = True

    def __init__(self, space: Space, seed: int = 0, candidates: int = 1024, start: int = 0) -> None:
        # Not :func:`default_candidates`: on 8-D Borehole, 4,096 candidates sent more picks
        # to the corners, and 1 % error took 90 runs against 69-86 with 1,024.
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
        gain = _gain(emulator, C)
        if gain is not None:
            weights = weights * gain
        picks = greedy_conditioned(
            emulator, C, P, n, lambda var: (var.clamp_min(0) * weights).sum(0)
        )
        return self.space.from_unit(C[picks])


_MANY_RUNS = 1000  # past this many runs, integrated-variance is back to 1,024 candidates


def default_candidates(dim: int, n: int = 0) -> int:
    """Integrated-variance's fresh candidates per selection: 512 d (at least 1,024) up to n = 1,000.

    A fixed 1,024 leaves an 8-D box sparse: on Borehole, integrated-variance with 4,096
    candidates reached NRMSE 1 % after 70 runs (median of 20 campaigns) against about 80
    with 1,024; the 3-D heat2d example gained nothing from more (``benchmarks/README.md``).
    A selection costs ``n^2`` per candidate (a triangular solve), so past ``_MANY_RUNS``
    training runs, where the design is dense anyway, it is back to 1,024.

    Args:
        dim: The space's dimension ``d``.
        n: Training runs of the emulator that selects.
    """
    return 1024 if n > _MANY_RUNS else max(1024, 512 * dim)


def _gain(emulator: GPEmulator, U: np.ndarray) -> torch.Tensor | None:
    """``L x k`` output-scale weights of the latent variances at ``U`` (None: all 1)."""
    gain = emulator.latent_gain(U)
    return None if gain is None else torch.as_tensor(gain.T, dtype=DTYPE)


def greedy_conditioned(
    emulator: GPEmulator,
    C: np.ndarray,
    P: np.ndarray,
    n: int,
    score: Callable[[torch.Tensor], torch.Tensor],
    integrate: np.ndarray | None = None,
    integrate_weights: torch.Tensor | None = None,
) -> list[int]:
    """Pick ``n`` of the candidates greedily, each scored after conditioning on the rest.

    The posterior covariance is built in the blocks the picks use: the candidates against
    the integration points, the pending inputs against both, and one row per pick. All
    pending inputs are conditioned in at once, then each pick exactly, as one more row of a
    pivoted Cholesky factor (a GP's posterior variance does not depend on the values
    observed). Building the whole joint covariance instead took 2.1-2.4x the time over
    1,024 candidates at n = 100-2,000 (``benchmarks/README.md``).
    A candidate equal to a pending input is never picked.

    Args:
        emulator: The fitted emulator.
        C: ``c x d`` unit-cube candidates.
        P: ``p x d`` unit-cube pending inputs.
        n: Picks to make (at most ``c``).
        score: Maps ``m x c`` per-latent values (standardised units) to ``c`` scores; the
            highest is picked. The values are the candidates' conditioned variances, or
            with ``integrate`` how much simulating each candidate would lower the mean
            variance over the integration points.
        integrate: ``r x d`` unit-cube integration points: score by integrated variance.
            Simulating ``x`` lowers the variance at ``z`` by ``S(z, x)^2 / (S(x, x) + noise)``,
            so the mean reduction over the points is BoTorch's
            ``qNegIntegratedPosteriorVariance`` at ``x`` up to a constant, in closed form.
            The emulator keeps their solve for the next call with the same array (a
            strategy's fixed set), so it must not be changed in place.
        integrate_weights: ``m x r`` weights of the integration points per latent column
            (a weighted mean of the variance; default: all 1).

    Returns:
        Indices into ``C``, in the order picked.
    """
    model = emulator.model
    assert model is not None
    m = emulator.n_latent
    R = integrate if integrate is not None else C[:0]
    # As a tensor once: each pick's row is built against it.
    CR = torch.as_tensor(np.vstack([C, R]), dtype=DTYPE)
    c, r, p = C.shape[0], R.shape[0], P.shape[0]
    same = np.abs(C[:, None, :] - P[None, :, :]) <= 1e-12  # c x p x d
    taken = torch.as_tensor(same.all(axis=2).any(axis=1), dtype=torch.bool)
    with torch.no_grad():
        # Only the blocks the picks use, never the whole (c + r + p)^2 joint covariance:
        # posterior covariance = prior - V'V, with V the whitened cross-covariance. A pick's
        # row against the candidates is built when it is picked (c x c is never stored).
        # The integration set is the strategy's own for its lifetime: its solve is kept.
        V = emulator.whitened_cross(np.vstack([C, P]))
        if r:
            V = torch.cat([V[:, :, :c], emulator.whitened_cross(R, keep=True), V[:, :, c:]], -1)
        Vcr, Vp = V[:, :, : c + r], V[:, :, c + r :]
        scale = torch.ones(m, c + r, dtype=DTYPE)
        if integrate_weights is not None and r:
            # Weighting z by w is scaling its columns by sqrt(w): every later product is
            # then the weighted one (the integration points' own rows are never used).
            scale[:, c:] = integrate_weights.sqrt()

        def rows(idx: slice, X: np.ndarray) -> torch.Tensor:
            """Scaled posterior covariance of ``k x d`` ``X`` (V's columns ``idx``) with C, R."""
            Vx = V[:, :, idx]
            return (emulator.prior_covariance(X, CR) - Vx.transpose(-1, -2) @ Vcr) * scale[:, None]

        noise = cast(torch.Tensor, model.likelihood.noise).reshape(-1, 1).expand(m, 1)
        # The conditioned covariance between the candidates and the candidates then the
        # integration points is kept factored, M = S - A'A - U'U: A for the pending inputs
        # (all at once), U one row per pick (a pivoted Cholesky factor). A pick then costs
        # O((p + picks) (c + r)) plus, with integration points, one c x r product, instead of
        # a rank-1 update of the whole c x (c + r) matrix.
        A = Vcr.new_zeros(m, 0, c + r)
        if p:
            eye = torch.eye(p, dtype=DTYPE)
            Spp = emulator.prior_covariance(P, P) - Vp.transpose(-1, -2) @ Vp
            L = torch.linalg.cholesky(Spp + noise[:, :, None] * eye + 1e-9 * eye)
            A = torch.linalg.solve_triangular(L, rows(slice(c + r, None), P), upper=False)
        var = emulator.prior_variance(C) - (Vcr[:, :, :c] ** 2).sum(1) - (A[:, :, :c] ** 2).sum(1)
        if r:
            # Candidates x integration points, and each candidate's sum of squares over them.
            Mcr = emulator.prior_covariance(C, R) - Vcr[:, :, :c].transpose(-1, -2) @ Vcr[:, :, c:]
            Mcr = Mcr * scale[:, None, c:] - A[:, :, :c].transpose(-1, -2) @ A[:, :, c:]
            T = (Mcr**2).sum(-1)
        U = Vcr.new_zeros(m, min(n, c), c + r)
        picks: list[int] = []
        for j in range(min(n, c)):
            values = T / r / (var.clamp_min(0) + noise) if r else var
            scores = score(values).clone()
            scores[taken] = -torch.inf
            if picks:
                scores[picks] = -torch.inf
            best = int(torch.argmax(scores))
            picks.append(best)
            # The pick's row of the conditioned covariance, scaled: the factor's next row.
            row = rows(slice(best, best + 1), C[best : best + 1])[:, 0]
            row -= (A[:, :, best : best + 1] * A).sum(1)
            row -= (U[:, :j, best : best + 1] * U[:, :j]).sum(1)
            u = row / (row[:, best : best + 1] + noise).sqrt()
            if r:
                # M(x, z) loses u_x u_z: update each candidate's sum of squares in O(c r).
                uc, ur = u[:, :c], u[:, c:]
                g = (Mcr @ ur.unsqueeze(-1)).squeeze(-1)
                g -= (U[:, :j, :c] * (U[:, :j, c:] @ ur.unsqueeze(-1))).sum(1)
                T = T - 2 * uc * g + uc**2 * (ur**2).sum(-1, keepdim=True)
            var = var - u[:, :c] ** 2
            U[:, j] = u
    return picks


class IntegratedVarianceStrategy:
    """Greedy integrated-variance reduction (ALC) over candidates, pending inputs conditioned in.

    Each pick is the candidate whose simulation most lowers the mean posterior variance over
    a fixed scrambled-Sobol integration set: BoTorch's ``qNegIntegratedPosteriorVariance``
    with the pending inputs as ``X_pending``, evaluated in closed form on the candidates
    (see :func:`greedy_conditioned`; a test checks it against BoTorch's). BoTorch's own
    evaluation fantasises a model per candidate, 0.5-0.8 s a pick at n = 100 over 512
    candidates; the closed form scores 1,024 candidates in tens of milliseconds, so refills
    never wait on it. Outputs add up in standardised units, like max-variance.

    Args:
        space: The design space.
        seed: Seed of the integration set and of the candidate sets.
        mc_points: Size of the integration set.
        candidates: Candidate points per selection (default: :func:`default_candidates`).
        start: Selections made so far (a resumed campaign never replays candidate sets).
    """

    name = "integrated-variance"
    needs_model = True

    def __init__(
        self,
        space: Space,
        seed: int = 0,
        mc_points: int = 1024,
        candidates: int | None = None,
        start: int = 0,
    ) -> None:
        self.space, self.seed, self.candidates = space, seed, candidates
        self.mc_points = space.sobol_unit(mc_points, seed=seed + 7919)
        self._calls = start

    def select(
        self, emulator: GPEmulator | None, n: int, pending: np.ndarray | None = None
    ) -> np.ndarray:
        """``n x d`` physical inputs that most reduce the integrated posterior variance."""
        if emulator is None or emulator.model is None:
            raise ValueError("integrated-variance needs a fitted emulator")
        self._calls += 1
        # A new scramble per call: successive picks are not confined to one point set.
        count = self.candidates or default_candidates(self.space.dim, emulator.n)
        C = self.space.sobol_unit(count, seed=self.seed * 1_000_003 + self._calls)
        P = self.space.to_unit(pending) if pending is not None and len(pending) else C[:0]
        weights = torch.as_tensor(emulator.latent_weights, dtype=DTYPE)[:, None]
        picks = greedy_conditioned(
            emulator,
            C,
            P,
            n,
            lambda values: (values * weights).sum(0),
            self.mc_points,
            _gain(emulator, self.mc_points),
        )
        return self.space.from_unit(C[picks])


STRATEGIES = ("integrated-variance", "max-variance", "sobol")


def make_strategy(
    name: str,
    space: Space,
    seed: int,
    drawn: int = 0,
    mc_points: int = 1024,
    candidates: int | None = None,
) -> Strategy:
    """Build a strategy by its spec name.

    Args:
        name: One of :data:`STRATEGIES`.
        space: The design space.
        seed: The campaign's seed.
        drawn: Points of the campaign's Sobol sequence already used.
        mc_points: Integration set size for ``integrated-variance``.
        candidates: Candidates per selection of the model-driven strategies (default:
            :func:`default_candidates` for integrated-variance, 1,024 for max-variance).
    """
    if name == "sobol":
        return SobolStrategy(space, seed, start=drawn)
    if name == "max-variance":
        return MaxVarianceStrategy(space, seed, candidates or 1024, start=drawn)
    if name == "integrated-variance":
        return IntegratedVarianceStrategy(
            space, seed, mc_points=mc_points, candidates=candidates, start=drawn
        )
    raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}")
