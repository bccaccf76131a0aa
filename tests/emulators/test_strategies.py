from __future__ import annotations

import numpy as np
import pytest

from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.strategies import (
    IntegratedVarianceStrategy,
    MaxVarianceStrategy,
    SobolStrategy,
    default_candidates,
    greedy_conditioned,
    make_strategy,
)
from emucamp.space import Parameter, Space


@pytest.fixture(scope="module")
def space() -> Space:
    return Space([Parameter("x1", -5.0, 10.0), Parameter("x2", 1.0, 100.0, log=True)])


@pytest.fixture(scope="module")
def emulator(space) -> GPEmulator:
    X = space.sobol(12, seed=4)
    U = space.to_unit(X)
    Y = np.column_stack([np.sin(4 * U[:, 0]) + U[:, 1] ** 2, 3 * U[:, 0] * U[:, 1]])
    return GPEmulator(space, ["a", "b"]).fit(X, Y)


def unit_distance(space: Space, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``len(A) x len(B)`` distances in the unit cube."""
    UA, UB = space.to_unit(A), space.to_unit(B)
    return np.linalg.norm(UA[:, None, :] - UB[None, :, :], axis=-1)


@pytest.mark.parametrize("strategy_cls", [MaxVarianceStrategy, IntegratedVarianceStrategy])
def test_pending_inputs_push_the_next_pick_elsewhere(space, emulator, strategy_cls):
    first = strategy_cls(space, seed=0).select(emulator, 1)
    second = strategy_cls(space, seed=0).select(emulator, 1, pending=first)
    assert space.contains(np.vstack([first, second])).all()
    assert unit_distance(space, first, second)[0, 0] > 0.1


@pytest.mark.parametrize("name", ["max-variance", "integrated-variance"])
def test_a_batch_spreads_out_and_avoids_pending_points(space, emulator, name):
    pending = space.sobol(3, seed=11)
    batch = make_strategy(name, space, seed=0).select(emulator, 3, pending=pending)
    assert batch.shape == (3, 2)
    assert space.contains(batch).all()
    within = unit_distance(space, batch, batch)[np.triu_indices(3, k=1)]
    assert within.min() > 0.05
    assert unit_distance(space, batch, pending).min() > 0.05


@pytest.mark.parametrize("name", ["max-variance", "integrated-variance"])
def test_picks_come_from_that_selections_candidate_set(space, emulator, name):
    strategy = make_strategy(name, space, seed=2, drawn=5, candidates=16)
    batch = strategy.select(emulator, 3)
    # The 6th selection of this campaign (5 drawn before): its own 16 Sobol points, no others.
    candidates = space.from_unit(space.sobol_unit(16, seed=2 * 1_000_003 + 6))
    assert unit_distance(space, batch, candidates).min(axis=1).max() < 1e-9


def test_integrated_variances_default_candidate_set_grows_with_the_dimension():
    assert default_candidates(2, n=50) == 1024
    assert default_candidates(8, n=50) == 4096
    # Past 1,000 runs each candidate's n^2 solve dominates, and the design is dense.
    assert default_candidates(8, n=2000) == 1024
    box = Space([Parameter(f"x{i}", 0.0, 1.0) for i in range(8)])
    assert make_strategy("integrated-variance", box, seed=0, candidates=300).candidates == 300
    # More candidates sent max-variance's picks to the corners: it keeps 1,024.
    assert make_strategy("max-variance", box, seed=0).candidates == 1024
    assert make_strategy("max-variance", box, seed=0, candidates=300).candidates == 300


def test_max_variance_picks_the_most_uncertain_region(space):
    X = space.from_unit(np.random.default_rng(0).random((10, 2)) * 0.4)  # data near one corner
    U = space.to_unit(X)
    emu = GPEmulator(space, ["a"]).fit(X, np.sin(3 * U[:, :1]) + U[:, 1:])
    pick = MaxVarianceStrategy(space, seed=0).select(emu, 1)
    # Far from every run (they lie in [0, 0.4]^2), and about as uncertain as any point of
    # the cube. (Which corner depends on the fitted lengthscales: y is linear in x2.)
    assert np.linalg.norm(U - space.to_unit(pick), axis=1).min() > 0.4
    g = np.linspace(0.0, 1.0, 41)
    grid = np.array([[a, b] for a in g for b in g])
    _, std_grid = emu.predict(space.from_unit(grid))
    _, std_pick = emu.predict(pick)
    assert std_pick[0, 0] >= 0.9 * std_grid.max()


def test_sobol_continues_one_sequence_and_ignores_the_model(space, emulator):
    s = SobolStrategy(space, seed=3, start=4)
    a = s.select(emulator, 2)
    b = s.select(None, 3, pending=a)
    np.testing.assert_allclose(np.vstack([a, b]), space.sobol(5, seed=3, skip=4))
    np.testing.assert_allclose(space.sobol(9, seed=3)[4:], np.vstack([a, b]))


@pytest.mark.parametrize("name", ["max-variance", "integrated-variance"])
def test_model_based_strategies_need_a_model(space, name):
    with pytest.raises(ValueError, match="fitted emulator"):
        make_strategy(name, space, seed=0).select(None, 1)


def test_unknown_strategy_is_named_in_the_error(space):
    with pytest.raises(ValueError, match="'thompson'"):
        make_strategy("thompson", space, seed=0)


def test_integrated_variance_scores_match_botorch_qnipv(space):
    """The closed form ranks candidates exactly as BoTorch's qNegIntegratedPosteriorVariance."""
    import torch
    from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance

    X = space.sobol(10, seed=2)
    U = space.to_unit(X)
    emu = GPEmulator(space, ["a"]).fit(X, np.sin(4 * U[:, :1]) + U[:, 1:] ** 2)
    C, R, P = (
        space.sobol_unit(64, seed=5),
        space.sobol_unit(128, seed=6),
        space.sobol_unit(2, seed=9),
    )
    seen: list[np.ndarray] = []

    def capture(values):
        seen.append(values.numpy().copy())
        return values.sum(0)

    greedy_conditioned(emu, C, P, 1, capture, integrate=R)
    mc = torch.as_tensor(R)
    acq = qNegIntegratedPosteriorVariance(emu.model, mc_points=mc, X_pending=torch.as_tensor(P))
    with torch.no_grad():
        botorch = acq(torch.as_tensor(C).unsqueeze(1)).numpy()
    ours = seen[0][0]
    # qNIPV = -(mean variance after the pick) = const + reduction x output variance; BoTorch's
    # fantasy models carry round-off of 1e-4 of the spread at a noise of 1e-6.
    slope, intercept = np.polyfit(ours, botorch, 1)
    np.testing.assert_allclose(
        slope * ours + intercept, botorch, rtol=0, atol=1e-3 * np.ptp(botorch)
    )
    assert slope > 0
    assert int(np.argmax(ours)) == int(np.argmax(botorch))


@pytest.mark.parametrize("integrate", [False, True], ids=["max-variance", "integrated"])
def test_later_picks_are_scored_on_the_gp_conditioned_on_pending_and_earlier_picks(
    space, emulator, integrate
):
    """The factored updates give what conditioning the GP on everything afresh gives."""
    import torch

    C, P = space.sobol_unit(48, seed=11), space.sobol_unit(3, seed=12)
    R = space.sobol_unit(64, seed=13) if integrate else None
    seen: list[torch.Tensor] = []

    def capture(values):
        seen.append(values.clone())
        return values.sum(0)

    picks = greedy_conditioned(emulator, C, P, 6, capture, integrate=R)
    assert len(set(picks)) == 6

    # Direct: condition on the pending inputs and the first five picks in one solve.
    Q = np.vstack([P, C[picks[:5]]])
    Rz = R if R is not None else C[:0]
    S = emulator.joint_covariance(np.vstack([C, Rz, Q]))
    c, r = len(C), len(Rz)
    noise = emulator.model.likelihood.noise.reshape(-1, 1, 1)
    SQQ = S[:, c + r :, c + r :] + noise * torch.eye(len(Q), dtype=S.dtype)
    SQ = S[:, c + r :, : c + r]
    M = S[:, :c, : c + r] - SQ[:, :, :c].transpose(-1, -2) @ torch.linalg.solve(SQQ, SQ)
    var = torch.diagonal(M[:, :, :c], dim1=-2, dim2=-1)
    expected = (M[:, :, c:] ** 2).mean(-1) / (var + noise[:, :, 0]) if r else var
    torch.testing.assert_close(seen[5], expected, rtol=1e-5, atol=1e-7)


def test_integrated_variance_lowers_the_mean_variance_more_than_max_variance(space):
    import torch
    from botorch.sampling import SobolQMCNormalSampler

    X = space.sobol(16, seed=1)
    U = space.to_unit(X)
    emu = GPEmulator(space, ["a"]).fit(X, np.sin(3 * U[:, :1]) + U[:, 1:])
    reference = torch.as_tensor(space.sobol_unit(512, seed=3))

    def mean_variance_after(picks: np.ndarray) -> float:
        # A GP's posterior variance does not depend on the values observed: one fantasy does.
        fantasy = emu.model.fantasize(
            torch.as_tensor(space.to_unit(picks)), SobolQMCNormalSampler(torch.Size([1]))
        )
        with torch.no_grad():
            return float(fantasy.posterior(reference).variance.mean())

    edge = MaxVarianceStrategy(space, seed=0).select(emu, 4)
    spread = IntegratedVarianceStrategy(space, seed=0).select(emu, 4)
    assert mean_variance_after(spread) < mean_variance_after(edge)


@pytest.fixture(scope="module")
def positive_emulator() -> GPEmulator:
    """y = exp(4 x) on [0, 1], declared positive: the GP models log y, a straight line."""
    from emucamp.emulators.greybox import GreyBox

    line = Space([Parameter("x", 0.0, 1.0)])
    X = np.linspace(0.0, 1.0, 6)[:, None]
    greybox = GreyBox(["y"], ["x"], positive=["y"])
    return GPEmulator(line, ["y"], greybox=greybox).fit(X, np.exp(4 * X))


def test_latent_gain_is_the_square_of_the_output_per_latent_unit(positive_emulator, emulator):
    U = np.array([[0.1], [0.5], [0.9]])
    gain = positive_emulator.latent_gain(U)
    assert gain is not None and gain.shape == (3, 1)
    # y s_z / s_y squared: between two points, the ratio of the squared outputs.
    mean, _ = positive_emulator.predict(U)
    np.testing.assert_allclose(gain[2, 0] / gain[0, 0], (mean[2, 0] / mean[0, 0]) ** 2, rtol=0.02)
    assert gain[0, 0] < gain[1, 0] < gain[2, 0]
    assert emulator.latent_gain(U) is None  # nothing modelled on a log scale


@pytest.mark.parametrize("strategy_cls", [MaxVarianceStrategy, IntegratedVarianceStrategy])
def test_a_positive_output_is_sampled_where_its_values_are_large(positive_emulator, strategy_cls):
    # The runs split [0, 1] into five equal gaps, so log y is about as uncertain in each;
    # the same log error is worth most in y where y = exp(4 x) is largest, the last gap.
    line = positive_emulator.space
    pick = strategy_cls(line, seed=0).select(positive_emulator, 1)
    assert 0.8 < pick[0, 0] < 1.0


def test_integration_weights_of_one_change_nothing(space, emulator):
    import torch

    C = space.sobol_unit(256, seed=5)
    R = space.sobol_unit(128, seed=6)
    P = space.sobol_unit(2, seed=7)
    score = lambda values: values.sum(0)  # noqa: E731
    plain = greedy_conditioned(emulator, C, P, 4, score, R)
    ones = torch.ones(emulator.n_latent, len(R), dtype=torch.float64)
    assert greedy_conditioned(emulator, C, P, 4, score, R, ones) == plain
    # All the weight on the integration points near one corner: the picks go there.
    near = torch.as_tensor(np.linalg.norm(R - 1.0, axis=1) < 0.4, dtype=torch.float64)
    corner = greedy_conditioned(emulator, C, P, 2, score, R, near.expand(emulator.n_latent, -1))
    assert (np.linalg.norm(C[corner] - 1.0, axis=1) < 0.7).all()
