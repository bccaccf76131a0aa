"""Screening a candidate pool: score every candidate, classify it, pick what to simulate next.

A screening goal is a threshold on one output (``below`` / ``above``) or its ``top_k``.
Each candidate gets the emulator's mean and std and the probability that it passes,
``P(pass) = Phi((t - mean) / std)`` for ``below`` (mirrored for ``above``); simulated
candidates take their class from the observed value. For ``top_k`` the threshold ``t`` is the
k-th best of the current estimates (observed where simulated, mean elsewhere), so the same
machinery finds the top k. A candidate's class is known with confidence
``max(P, 1 - P)``; screening is done when the least certain candidate reaches the target
(``screening_confidence``), or when the pool's mean confidence, the fraction expected to be
labelled correctly, does (``screening_accuracy``: in a continuous pool some candidates sit
on the boundary itself and stay near 0.5 until simulated).

Scoring runs in chunks (bounded memory: ``chunk x n`` per output, never the ``N x N``
posterior covariance) with GPyTorch's LOVE predictive variances.

Selection (:class:`PoolStrategy`) is pending-aware like the other strategies: the best
``preselect`` unsimulated candidates by the latest scores are re-scored jointly with the
inputs in flight, and each pending input, then each pick, is conditioned in exactly (a
GP's posterior variance does not depend on the values observed). ``straddle`` (Bryan et
al., 2005) scores ``1.96 std - |mean - t|``: large where the class is least certain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gpytorch
import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import ndtr

from emucamp.emulators.gp import DTYPE, GPEmulator
from emucamp.emulators.strategies import greedy_conditioned
from emucamp.space import Space
from emucamp.storage import EmulatorState

__all__ = [
    "Goal",
    "PoolStrategy",
    "ScreeningResult",
    "initial_pool_design",
    "score_pool",
    "screen",
    "simulated_samples",
]


@dataclass(frozen=True)
class Goal:
    """What passes: ``output`` below/above ``threshold``, or among the ``k`` best.

    Attributes:
        output: Index of the output in the emulator's outputs.
        kind: ``below``, ``above`` or ``top_k``.
        threshold: The level for ``below`` / ``above``.
        k: How many for ``top_k``.
        largest: For ``top_k``: the largest values are best (else the smallest).
    """

    output: int
    kind: Literal["below", "above", "top_k"]
    threshold: float = 0.0
    k: int = 0
    largest: bool = True

    @property
    def passes_above(self) -> bool:
        """Whether a value above the level passes."""
        return self.kind == "above" or (self.kind == "top_k" and self.largest)


@dataclass
class ScreeningResult:
    """Every candidate's estimate and class after one retraining.

    Attributes:
        mean: ``N x m`` posterior mean (observed value for simulated candidates' goal output).
        std: ``N x m`` posterior std (0 for simulated candidates' goal output).
        p_pass: ``N`` probability of passing (0 or 1 where simulated).
        passes: ``N`` booleans, the most likely class.
        sample: ``N`` sample id of the candidate's ok simulation, -1 if none.
        threshold: The level used (the k-th best value for ``top_k``).
        min_confidence: Least ``max(P, 1 - P)`` over unsimulated candidates (1 if none).
        expected_accuracy: Mean of ``max(P, 1 - P)`` over the pool: the fraction of the pool
            expected to be labelled correctly.
    """

    mean: np.ndarray
    std: np.ndarray
    p_pass: np.ndarray
    passes: np.ndarray
    sample: np.ndarray
    threshold: float
    min_confidence: float
    expected_accuracy: float

    @property
    def n_pass(self) -> int:
        """Candidates classed as passing."""
        return int(self.passes.sum())


# Per-process cache of emulators rebuilt from a scattered state: one rebuild per worker
# per retraining, not one per chunk.
_rebuilt: dict[int, GPEmulator] = {}


def _score_chunk(U: np.ndarray, state: EmulatorState, space: Space) -> tuple[np.ndarray, ...]:
    emulator = _rebuilt.get(id(state))
    if emulator is None:
        if len(_rebuilt) > 4:
            _rebuilt.clear()
        emulator = _rebuilt[id(state)] = GPEmulator.from_state(state, space)
    return score_pool(emulator, U)


def simulated_samples(simulated: dict[int, tuple[int, float]], n: int) -> np.ndarray:
    """``n`` sample ids by candidate row: the row's ok simulation, -1 where there is none."""
    sample = np.full(n, -1, dtype=np.int64)
    for row, (sid, _) in simulated.items():
        sample[row] = sid
    return sample


def score_pool(
    emulator: GPEmulator, U: np.ndarray, chunk: int = 16384, client: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std of every output at ``N x d`` unit-cube candidates, in chunks.

    Args:
        emulator: The fitted emulator.
        U: ``N x d`` candidates on the unit cube.
        chunk: Candidates scored at once.
        client: A ``distributed.Client``: score the chunks on its workers (the emulator
            goes to each worker once, as plain arrays, and is rebuilt there).

    Returns:
        Two ``N x m`` arrays. Peak memory is about ``chunk x n x m`` floats beyond the
        inputs and outputs, whatever ``N``.
    """
    if client is not None and len(U) > chunk:
        state = client.scatter(emulator.state(), broadcast=True)
        parts = client.gather(
            client.map(
                _score_chunk,
                [U[i : i + chunk] for i in range(0, len(U), chunk)],
                state=state,
                space=emulator.space,
                pure=False,
            )
        )
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    means, stds = [], []
    with gpytorch.settings.fast_pred_var(), torch.no_grad():
        for i in range(0, max(len(U), 1), chunk):
            mean, std = emulator.predict_unit(torch.as_tensor(U[i : i + chunk], dtype=DTYPE))
            means.append(mean)
            stds.append(std)
    return np.concatenate(means), np.concatenate(stds)


def _p_pass(mean: np.ndarray, std: np.ndarray, threshold: float, above: bool) -> np.ndarray:
    z = (mean - threshold) / np.maximum(std, 1e-300)
    return np.asarray(ndtr(z if above else -z), dtype=float)


def screen(
    emulator: GPEmulator,
    U: np.ndarray,
    goal: Goal,
    simulated: dict[int, tuple[int, float]],
    chunk: int = 16384,
    client: Any = None,
) -> ScreeningResult:
    """Score and classify every candidate.

    Args:
        emulator: The fitted emulator.
        U: ``N x d`` candidates on the unit cube.
        goal: What passes.
        simulated: Candidate row -> (sample id, observed goal output) for ok simulations.
        chunk: Candidates scored at once.
        client: Score on these Dask workers (see :func:`score_pool`).
    """
    mean, std = score_pool(emulator, U, chunk, client)
    j = goal.output
    rows = np.fromiter(simulated, dtype=np.int64, count=len(simulated))
    sample = simulated_samples(simulated, len(U))
    if len(rows):
        mean[rows, j] = [simulated[r][1] for r in rows]
        std[rows, j] = 0.0
    if goal.kind == "top_k":
        k = min(goal.k, len(U))
        ordered = np.partition(mean[:, j], len(U) - k if goal.largest else k - 1)
        threshold = float(ordered[len(U) - k] if goal.largest else ordered[k - 1])
    else:
        threshold = goal.threshold
    p = _p_pass(mean[:, j], std[:, j], threshold, goal.passes_above)
    if len(rows):
        observed = mean[rows, j]
        p[rows] = (observed >= threshold) if goal.passes_above else (observed <= threshold)
    open_rows = sample < 0
    everywhere = np.maximum(p, 1 - p)
    confidence = everywhere[open_rows]
    return ScreeningResult(
        mean=mean,
        std=std,
        p_pass=p,
        passes=p >= 0.5,
        sample=sample,
        threshold=threshold,
        min_confidence=float(confidence.min()) if confidence.size else 1.0,
        expected_accuracy=float(everywhere.mean()),
    )


def initial_pool_design(space: Space, U: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` distinct candidate rows spread over the pool: the nearest to Sobol points.

    Args:
        space: The design space.
        U: ``N x d`` candidates on the unit cube.
        n: How many rows.
        seed: Sobol scrambling seed.
    """
    n = min(n, len(U))
    tree = cKDTree(U)
    targets = space.sobol_unit(n, seed=seed)
    chosen: list[int] = []
    taken: set[int] = set()
    for t in targets:
        k = 1
        while True:
            _, idx = tree.query(t, k=min(k, len(U)))
            free = [int(i) for i in np.atleast_1d(idx) if int(i) not in taken]
            if free:
                chosen.append(free[0])
                taken.add(free[0])
                break
            k *= 4
    return chosen


class PoolStrategy:
    """Select candidates of a pool: ``straddle`` (needs a goal), ``max-variance`` or ``random``.

    Call :meth:`update` with each new :class:`ScreeningResult` (or pool scores) and
    :meth:`exclude` with the rows already simulated or in flight; :meth:`select` returns
    pool rows' features.

    Args:
        space: The design space.
        features: ``N x d`` physical features of the pool.
        kind: The selection rule.
        goal: The screening goal (for ``straddle``).
        seed: Seed of ``random``.
        preselect: Candidates re-scored jointly with the pending inputs per selection.
    """

    needs_model = True

    def __init__(
        self,
        space: Space,
        features: np.ndarray,
        kind: Literal["straddle", "max-variance", "random"],
        goal: Goal | None = None,
        seed: int = 0,
        preselect: int = 1024,
        start: int = 0,
    ) -> None:
        if kind == "straddle" and goal is None:
            raise ValueError("straddle needs a goal")
        self.space, self.kind, self.goal = space, kind, goal
        self.name = kind
        self.needs_model = kind != "random"
        self.features = features
        self.U = space.to_unit(features)
        self.preselect = preselect
        self.used = np.zeros(len(features), dtype=bool)
        self._rng = np.random.default_rng([seed, start])
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._threshold = goal.threshold if goal is not None else 0.0

    def update(self, mean: np.ndarray, std: np.ndarray, threshold: float | None = None) -> None:
        """The latest ``N x m`` scores of the whole pool (and the goal's level)."""
        self._mean, self._std = mean, std
        if threshold is not None:
            self._threshold = threshold

    def exclude(self, used: np.ndarray) -> None:
        """``N`` booleans: rows simulated or in flight, never proposed again."""
        self.used = used

    def _scores(self, mean: np.ndarray, std: np.ndarray, out_std: np.ndarray) -> np.ndarray:
        if self.kind == "straddle":
            assert self.goal is not None
            j = self.goal.output
            return np.asarray(1.96 * std[:, j] - np.abs(mean[:, j] - self._threshold))
        return np.asarray((std / out_std).sum(axis=1))

    def select(
        self, emulator: GPEmulator | None, n: int, pending: np.ndarray | None = None
    ) -> np.ndarray:
        """Up to ``n`` unused pool rows (fewer if the pool runs out): ``k x d`` features."""
        free = np.flatnonzero(~self.used)
        n = min(n, len(free))
        if n == 0:
            return np.asarray(self.features[:0])
        if self.kind == "random" or emulator is None or emulator.model is None:
            rows = self._rng.choice(free, size=n, replace=False)
            self.used[rows] = True
            return np.asarray(self.features[rows])
        out_std = np.maximum(emulator.output_std, 1e-12)
        if self._mean is None or self._std is None:
            mean, std = score_pool(emulator, self.U)
            self.update(mean, std)
        assert self._mean is not None and self._std is not None
        cached = self._scores(self._mean[free], self._std[free], out_std)
        m = min(len(free), max(self.preselect, 4 * n))
        shortlist = free[np.argpartition(-cached, m - 1)[:m]] if m < len(free) else free
        C = self.U[shortlist]
        P = self.space.to_unit(pending) if pending is not None and len(pending) else C[:0]
        mean, _ = emulator.predict_unit(C)

        def score(var: torch.Tensor) -> torch.Tensor:
            std = var.clamp_min(0).sqrt().T.numpy() * out_std  # c x m, output units
            return torch.as_tensor(self._scores(mean, std, out_std))

        picks = greedy_conditioned(emulator, C, P, n, score)
        rows = shortlist[picks]
        self.used[rows] = True
        selected: np.ndarray = self.features[rows]
        return selected
