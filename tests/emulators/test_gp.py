from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from emucamp.emulators.gp import GPEmulator, load_emulator
from emucamp.errors import SpecError
from emucamp.space import Parameter, Space
from emucamp.storage import CampaignStore


def truth(X: np.ndarray) -> np.ndarray:
    """Two outputs of a smooth 2-D function: ``n x 2``."""
    y1 = np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1])
    y2 = 100.0 * X[:, 0] * X[:, 1]
    return np.column_stack([y1, y2])


@pytest.fixture(scope="module")
def space() -> Space:
    return Space([Parameter("x1", 0.0, 1.0), Parameter("x2", 0.0, 1.0)])


@pytest.fixture(scope="module")
def fitted(space) -> GPEmulator:
    X = space.sobol(32, seed=1)
    return GPEmulator(space, ["y1", "y2"]).fit(X, truth(X))


def test_fitted_emulator_predicts_held_out_points_accurately(space, fitted):
    X_test = np.random.default_rng(0).random((400, 2))
    mean, std = fitted.predict(X_test)
    Y = truth(X_test)
    nrmse = np.sqrt(np.mean((mean - Y) ** 2, axis=0)) / Y.std(axis=0)
    assert np.all(nrmse < 0.02), nrmse
    assert mean.shape == std.shape == (400, 2)
    assert np.all(std > 0)
    # Honest uncertainty: most errors inside +-3 std.
    assert np.mean(np.abs(mean - Y) <= 3 * std + 1e-9) > 0.9


def test_std_grows_away_from_data(space):
    X = space.sobol(16, seed=3) * 0.5  # data only in the lower-left quarter
    emu = GPEmulator(space, ["y1", "y2"]).fit(X, truth(X))
    _, std_near = emu.predict(np.array([[0.2, 0.2]]))
    _, std_far = emu.predict(np.array([[0.95, 0.95]]))
    assert np.all(std_far > 3 * std_near)


def test_closed_form_loo_matches_direct_leave_one_out_algebra(fitted):
    """LOO from K^-1 equals conditioning the same GP on the other n - 1 points."""
    mean, std = fitted.loo()
    model = fitted.model
    assert model is not None
    Xt, y = fitted._batched_training()
    stdvs, means = fitted._standardisation()
    with torch.no_grad():
        for j in range(2):
            K = model.covar_module(Xt).to_dense()[j]
            noise = float(model.likelihood.noise.reshape(-1)[j])
            c = float(model.mean_module.constant.reshape(-1)[j])
            n = K.shape[0]
            for i in (0, 7, n - 1):
                keep = [k for k in range(n) if k != i]
                Kk = K[keep][:, keep] + noise * torch.eye(n - 1, dtype=K.dtype)
                k_i = K[keep, i]
                w = torch.linalg.solve(Kk, k_i)
                mu = c + w @ (y[j, keep] - c)
                var = K[i, i] + noise - k_i @ w
                expect_mean = float(mu * stdvs.reshape(-1)[j] + means.reshape(-1)[j])
                expect_std = float(var.sqrt() * stdvs.reshape(-1)[j])
                assert mean[i, j] == pytest.approx(expect_mean, rel=1e-6, abs=1e-8)
                assert std[i, j] == pytest.approx(expect_std, rel=1e-5)


def test_state_round_trip_through_the_store_predicts_identically(space, fitted, tmp_path):
    X_test = np.random.default_rng(1).random((50, 2))
    with CampaignStore.create(tmp_path / "e.zarr", space.names, fitted.outputs) as store:
        store.save_emulator(fitted.state())
    loaded = load_emulator(tmp_path / "e.zarr")
    m0, s0 = fitted.predict(X_test)
    m1, s1 = loaded.predict(X_test)
    np.testing.assert_allclose(m1, m0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s1, s0, rtol=1e-8, atol=1e-12)
    assert loaded.space == space


def test_a_saved_emulator_loads_without_unpickling_anything(space, fitted, tmp_path, monkeypatch):
    """A store may come from anywhere: loading it must not run pickle (arbitrary code)."""
    import pickle

    with CampaignStore.create(tmp_path / "e.zarr", space.names, fitted.outputs) as store:
        store.save_emulator(fitted.state())

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading an emulator")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_emulator(tmp_path / "e.zarr")
    X_test = np.random.default_rng(2).random((5, 2))
    np.testing.assert_allclose(loaded.predict(X_test)[0], fitted.predict(X_test)[0], rtol=1e-10)


def test_predict_on_a_table_adds_mean_and_std_columns(fitted):
    table = pd.DataFrame({"id": ["a", "b"], "x2": [0.1, 0.9], "x1": [0.5, 0.3]})
    out = fitted.predict(table)
    assert list(out.columns) == [
        "id",
        "x2",
        "x1",
        "y1_mean",
        "y1_std",
        "y2_mean",
        "y2_std",
        "ood_distance",
        "ood",
    ]
    mean, _ = fitted.predict(np.array([[0.5, 0.1], [0.3, 0.9]]))
    np.testing.assert_allclose(out[["y1_mean", "y2_mean"]].to_numpy(), mean)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"x1": [0.1]}, "missing parameter column"),
        ({"x1": [0.1, 0.2], "x2": [0.3, "high"]}, "row 1, column 'x2' is not a number: 'high'"),
        ({"x1": [0.1], "x2": [0.2], "y1_std": [1.0]}, "'y1_std' would be overwritten"),
        ({"x1": [0.1], "x2": [float("inf")]}, "row 0, column 'x2' is not a finite number"),
        ({"x1": [None], "x2": [0.5]}, "row 0, column 'x1' is not a finite number"),
        ({"x1": [0.1], "x2": [float("nan")]}, "row 0, column 'x2'"),
    ],
)
def test_predict_rejects_bad_tables_naming_the_column(fitted, table, message):
    with pytest.raises(SpecError, match=message):
        fitted.predict(table)


def test_log_parameters_are_modelled_on_a_log_scale():
    space = Space([Parameter("r", 1.0, 1e4, log=True)])
    X = space.sobol(12, seed=0)
    Y = np.log10(X)  # linear in log r: easy on the log scale, hard on the raw one
    emu = GPEmulator(space, ["y"]).fit(X, Y)
    X_test = space.sobol(64, seed=5)
    mean, _ = emu.predict(X_test)
    assert np.max(np.abs(mean - np.log10(X_test))) < 0.05  # on a range of 4 decades


def test_warm_start_from_an_incompatible_emulator_is_ignored(space, fitted):
    X = space.sobol(10, seed=2)
    one_output = GPEmulator(space, ["y1"]).fit(X, truth(X)[:, :1])
    emu = GPEmulator(space, ["y1", "y2"]).fit(X, truth(X), warm_start=one_output)
    assert emu.fitted and emu.lengthscales.shape == (2, 2)


def test_fit_rejects_bad_training_data(space):
    emu = GPEmulator(space, ["y1", "y2"])
    with pytest.raises(ValueError, match="at least 2"):
        emu.fit(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        emu.fit(
            np.random.default_rng(0).random((4, 2)), np.array([[0, 1], [1, np.nan], [0, 0], [1, 1]])
        )
    with pytest.raises(ValueError, match="columns"):
        emu.fit(np.zeros((3, 2)), np.zeros((3, 3)))


def test_plain_maximum_likelihood_fits_and_round_trips(tmp_path):
    """``priors = "none"``: a scaled RBF by maximum likelihood (benchmarks/gp_settings.py)."""
    from emucamp.testfunctions import DOMAINS, branin_np

    space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS["branin"].items()])
    X = space.sobol(25, seed=0)
    X_test = space.from_unit(np.random.default_rng(1).random((1000, 2)))
    y_test = branin_np(X_test)
    errors = {}
    for priors in ("botorch", "none"):
        emulator = GPEmulator(space, ["y"], priors=priors).fit(X, branin_np(X)[:, None])
        mean, _ = emulator.predict(X_test)
        errors[priors] = np.sqrt(np.mean((mean[:, 0] - y_test) ** 2)) / y_test.std()
    # With 25 points BoTorch's lengthscale prior keeps Branin too smooth.
    assert errors["none"] < 0.5 * errors["botorch"]
    assert emulator.lengthscales.shape == (1, 2) and np.all(emulator.lengthscales > 0)
    with CampaignStore.create(tmp_path / "mle.zarr", ["x1", "x2"], ["y"]) as store:
        store.save_emulator(emulator.state())
    loaded = load_emulator(tmp_path / "mle.zarr")
    assert loaded.priors == "none"
    np.testing.assert_allclose(loaded.predict(X_test)[0], emulator.predict(X_test)[0], rtol=1e-9)


@pytest.mark.parametrize("priors", ["none", "botorch"])
def test_matern_kernel_is_fitted_kept_and_widens_intervals_between_runs(tmp_path, priors):
    from gpytorch.kernels import MaternKernel, RBFKernel

    from emucamp.testfunctions import DOMAINS, branin_np

    space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS["branin"].items()])
    X = space.sobol(20, seed=0)
    X_test = space.from_unit(np.random.default_rng(1).random((500, 2)))
    fits = {
        kernel: GPEmulator(space, ["y"], priors=priors, kernel=kernel).fit(X, branin_np(X)[:, None])
        for kernel in ("rbf", "matern-5/2")
    }
    kinds = {k: [type(m) for m in e.model.covar_module.modules()] for k, e in fits.items()}
    assert MaternKernel in kinds["matern-5/2"] and MaternKernel not in kinds["rbf"]
    assert RBFKernel in kinds["rbf"]
    # A rougher prior on the function: less sure of itself between the runs.
    std = {k: float(np.median(e.predict(X_test)[1])) for k, e in fits.items()}
    assert std["matern-5/2"] > std["rbf"]
    with CampaignStore.create(tmp_path / "m.zarr", ["x1", "x2"], ["y"]) as store:
        store.save_emulator(fits["matern-5/2"].state())
    loaded = load_emulator(tmp_path / "m.zarr")
    assert loaded.kernel == "matern-5/2"
    np.testing.assert_allclose(
        loaded.predict(X_test)[1], fits["matern-5/2"].predict(X_test)[1], rtol=1e-7
    )
    with pytest.raises(ValueError, match="kernel"):
        GPEmulator(space, ["y"], kernel="cubic")  # type: ignore[arg-type]


def test_maximum_likelihood_restarts_escape_a_poor_optimum():
    """Borehole, the first 50 points of Sobol seed 1: one start lands at NRMSE 0.79."""
    from emucamp.testfunctions import DOMAINS, borehole_np

    space = Space([Parameter(p, lo, hi) for p, (lo, hi) in DOMAINS["borehole"].items()])
    X = space.sobol(100, seed=1)[:50]
    X_test = space.from_unit(np.random.default_rng(12345).random((2000, space.dim)))
    y_test = borehole_np(X_test)
    emulator = GPEmulator(space, ["y"], priors="none").fit(X, borehole_np(X)[:, None])
    mean, _ = emulator.predict(X_test)
    assert np.sqrt(np.mean((mean[:, 0] - y_test) ** 2)) / y_test.std() < 0.1


@pytest.mark.parametrize("priors", ["botorch", "none"])
def test_above_max_fit_points_a_subset_fits_and_every_point_conditions(space, priors):
    """Subset-of-data hyperparameters: the fit sees 40 points, the GP all 160."""
    X = np.random.default_rng(2).random((160, 2))
    Y = truth(X)
    emu = GPEmulator(space, ["y1", "y2"], priors=priors, max_fit_points=40).fit(X, Y)
    assert emu.n == 160
    # Every point is conditioned on: the mean interpolates all 160 (noise floor 1e-6).
    mean, _ = emu.predict(X)
    assert np.all(np.abs(mean - Y).max(axis=0) / Y.std(axis=0) < 1e-2)
    # The hyperparameters are the 40-point subset's, not a fit on all 160.
    rows = np.sort(np.random.default_rng(160).choice(160, 40, False))
    subset = GPEmulator(space, ["y1", "y2"], priors=priors).fit(X[rows], Y[rows])
    np.testing.assert_allclose(emu.latent_lengthscales, subset.latent_lengthscales, rtol=1e-8)
    # And it predicts held-out points better than the subset's own GP.
    X_test = np.random.default_rng(3).random((400, 2))
    err = [np.abs(e.predict(X_test)[0] - truth(X_test)).mean() for e in (emu, subset)]
    assert err[0] < err[1]
    # Saved and loaded, it predicts the same.
    again = GPEmulator.from_state(emu.state(), space)
    np.testing.assert_allclose(again.predict(X_test)[0], emu.predict(X_test)[0], rtol=1e-8)


def test_max_fit_points_below_two_is_refused(space):
    with pytest.raises(ValueError, match="max_fit_points"):
        GPEmulator(space, ["y1"], max_fit_points=1)


def test_joint_covariance_is_the_models_own_posterior_covariance(space, fitted):
    U = np.random.default_rng(5).random((30, 2))
    ours = fitted.joint_covariance(U)
    with torch.no_grad():
        theirs = fitted.model(torch.as_tensor(U).expand(2, 30, 2)).covariance_matrix
    assert ours.shape == (2, 30, 30)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-8)


def test_a_kept_solve_is_reused_for_the_same_points_until_the_next_fit(space):
    X = space.sobol(16, seed=2)
    emulator = GPEmulator(space, ["y1", "y2"]).fit(X, truth(X))
    R = np.random.default_rng(8).random((40, 2))
    kept = emulator.whitened_cross(R, keep=True)
    assert emulator.whitened_cross(R, keep=True) is kept
    # Equal points in another array are solved afresh, and give the same numbers.
    np.testing.assert_allclose(emulator.whitened_cross(R.copy(), keep=True).numpy(), kept.numpy())
    X2 = np.vstack([X, space.sobol(4, seed=9)])
    emulator.fit(X2, truth(X2))
    again = emulator.whitened_cross(R, keep=True)
    assert again.shape == (2, 20, 40)  # refitted on 20 runs: not the 16-run solve
    prior = emulator.prior_covariance(R, R)
    np.testing.assert_allclose(
        (prior - again.transpose(-1, -2) @ again).numpy(),
        emulator.joint_covariance(R).numpy(),
        atol=1e-10,
    )


def test_latent_predictions_are_botorchs_posterior(space, fitted):
    U = np.random.default_rng(6).random((50, 2))
    mean, std = fitted.predict_latent(U, chunk=16)  # several chunks
    with torch.no_grad():
        post = fitted.model.posterior(torch.as_tensor(U))
    np.testing.assert_allclose(mean, post.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(std, post.variance.clamp_min(0).sqrt().numpy(), rtol=1e-6)


def test_warm_up_runs_once_per_process_and_from_any_thread():
    import threading

    import emucamp.emulators.gp as gp

    threads = [threading.Thread(target=gp.warm_up) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gp._warmed
    import torch

    # What it is for: torch's first broadcast (it imports sympy) is paid already.
    assert "sympy" in sys.modules
    assert torch.broadcast_shapes((2, 1), (1, 3)) == (2, 3)


def test_a_line_search_stop_of_the_fit_keeps_its_result_and_other_failures_do_not():
    """L-BFGS-B's "ABNORMAL" stop is a result (BoTorch's own rule would roll the fit back);
    any other optimisation failure still makes BoTorch retry and roll back."""
    import warnings

    from botorch.exceptions.warnings import OptimizationWarning

    from emucamp.emulators.gp import _line_search_stop

    def message(text: str, category: type[Warning] = OptimizationWarning):
        return warnings.WarningMessage(text, category, "fit.py", 1)

    stop = "`scipy_minimize` terminated with status OptimizationStatus.FAILURE, ... ABNORMAL: "
    assert _line_search_stop(message(stop))
    assert not _line_search_stop(message("`scipy_minimize` terminated ... NaN in gradient"))
