"""Pool scoring, classification and pending-aware selection on real BoTorch fits."""

from __future__ import annotations

import numpy as np
import pytest

from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.screening import (
    Goal,
    PoolStrategy,
    initial_pool_design,
    score_pool,
    screen,
)
from emucamp.space import Parameter, Space


def truth(X: np.ndarray) -> np.ndarray:
    return np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1])


@pytest.fixture(scope="module")
def space() -> Space:
    return Space([Parameter("x1", 0.0, 1.0), Parameter("x2", 0.0, 1.0)])


@pytest.fixture(scope="module")
def pool(space) -> np.ndarray:
    return np.random.default_rng(0).random((3000, 2))


@pytest.fixture(scope="module")
def fitted(space) -> GPEmulator:
    X = space.sobol(24, seed=1)
    return GPEmulator(space, ["y"]).fit(X, truth(X)[:, None])


def test_chunked_scores_equal_one_exact_pass(fitted, pool):
    mean, std = score_pool(fitted, pool, chunk=257)  # chunks that do not divide the pool
    exact_mean, exact_std = fitted.predict_unit(pool, chunk=len(pool))
    np.testing.assert_allclose(mean, exact_mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(std, exact_std, rtol=1e-3, atol=1e-5)  # LOVE variances


def test_screen_classifies_with_probabilities_and_knows_what_was_simulated(fitted, pool):
    goal = Goal(0, "below", threshold=1.0)
    simulated = {5: (0, float(truth(pool[5:6])[0])), 9: (1, 5.0)}
    result = screen(fitted, pool, goal, simulated)
    assert result.p_pass[9] == 0.0 and result.sample[9] == 1 and result.std[9, 0] == 0
    assert result.mean[5, 0] == pytest.approx(truth(pool[5:6])[0])
    accuracy = np.mean(result.passes == (truth(pool) < 1.0))
    assert accuracy > 0.9  # a 24-point fit already classifies most of the pool
    confident = np.maximum(result.p_pass, 1 - result.p_pass) > 0.99
    assert np.mean(result.passes[confident] == (truth(pool) < 1.0)[confident]) > 0.995
    assert result.min_confidence < 0.99  # ... but not all of it yet


def test_top_k_threshold_is_the_kth_best_estimate(fitted, pool):
    result = screen(fitted, pool, Goal(0, "top_k", k=25, largest=False), {})
    assert np.sum(result.mean[:, 0] <= result.threshold) == 25
    assert result.n_pass == 25


def test_straddle_picks_uncertain_boundary_candidates_and_never_repeats(space, pool):
    # An early model (12 runs): much of the boundary is still open.
    X0 = space.sobol(12, seed=1)
    fitted = GPEmulator(space, ["y"]).fit(X0, truth(X0)[:, None])
    goal = Goal(0, "below", threshold=1.0)
    strategy = PoolStrategy(space, pool, "straddle", goal, seed=0)
    result = screen(fitted, pool, goal, {})
    strategy.update(result.mean, result.std, result.threshold)
    used = np.zeros(len(pool), dtype=bool)
    used[:100] = True
    strategy.exclude(used.copy())
    pending = pool[100:104]
    X = strategy.select(fitted, 8, pending)
    rows = [int(np.flatnonzero((pool == x).all(axis=1))[0]) for x in X]
    assert len(set(rows)) == 8 and min(rows) >= 104  # not used, not pending
    p = result.p_pass[rows]
    assert np.all(np.maximum(p, 1 - p) < 0.99)  # each pick's class is still open
    # Pending-aware: a batch spreads out instead of stacking on one boundary spot.
    gaps = np.linalg.norm(X[:, None] - X[None], axis=-1)[np.triu_indices(8, 1)]
    assert gaps.min() > 0.01


def test_random_pool_selection_runs_out_cleanly(space, pool):
    strategy = PoolStrategy(space, pool[:10], "random", seed=3)
    first = strategy.select(None, 6)
    rest = strategy.select(None, 6)
    assert len(first) == 6 and len(rest) == 4 and len(strategy.select(None, 6)) == 0
    assert len(np.unique(np.vstack([first, rest]), axis=0)) == 10


def test_initial_pool_design_is_spread_and_distinct(space, pool):
    rows = initial_pool_design(space, pool, 16, seed=0)
    assert len(set(rows)) == 16
    picked = pool[rows]
    assert picked[:, 0].min() < 0.2 and picked[:, 0].max() > 0.8  # covers the square
    assert len(set(initial_pool_design(space, pool[:5], 16, seed=0))) == 5


def test_scoring_on_dask_workers_equals_scoring_here(fitted, pool):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        mean, std = score_pool(fitted, pool, chunk=500, client=client)
        workers = client.run(lambda: __import__("os").getpid())
        rebuilt = client.run(
            lambda: len(__import__("emucamp.emulators.screening").emulators.screening._rebuilt)
        )
    local_mean, local_std = score_pool(fitted, pool, chunk=500)
    np.testing.assert_allclose(mean, local_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, local_std, rtol=1e-9, atol=1e-12)
    assert len(workers) == 2 and sum(rebuilt.values()) >= 1  # rebuilt on the workers
