from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from emucamp.emulators.gp import GPEmulator, load_emulator
from emucamp.emulators.greybox import GreyBox
from emucamp.errors import EmucampError, SimulatorError
from emucamp.space import Parameter, Space
from emucamp.storage import CampaignStore

SIMS = Path(__file__).parents[1] / "sims"
sys.path.insert(0, str(SIMS))
from campaign_sims import decades, physics, physics_prior  # noqa: E402


@pytest.fixture(scope="module")
def space() -> Space:
    return Space([Parameter("x1", 0.0, 1.0), Parameter("x2", 0.0, 1.0)])


def truth(f, X: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([f(*row) for row in X])[:, None]


def nrmse(emulator: GPEmulator, f, X: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    mean, _ = emulator.predict(X)
    y = truth(f, X)
    return float(np.sqrt(np.mean((mean - y) ** 2)) / y.std())


def test_a_prior_that_carries_the_physics_needs_far_fewer_simulations(space):
    X, X_test = space.sobol(10, seed=0), np.random.default_rng(1).random((400, 2))
    black = GPEmulator(space, ["y"]).fit(X, truth(physics, X))
    grey_box = GreyBox(["y"], ["x1", "x2"], prior_mean="campaign_sims:physics_prior",
                       search_path=[str(SIMS)])  # fmt: skip
    grey = GPEmulator(space, ["y"], greybox=grey_box).fit(X, truth(physics, X))
    assert nrmse(grey, physics, X_test) < 0.05 < nrmse(black, physics, X_test)


def test_predictions_add_the_prior_back_and_keep_the_gps_uncertainty(space):
    X = space.sobol(12, seed=2)
    grey_box = GreyBox(["y"], ["x1", "x2"], prior_mean=physics_prior)
    grey = GPEmulator(space, ["y"], greybox=grey_box).fit(X, truth(physics, X))
    X_new = np.random.default_rng(3).random((50, 2))
    latent_mean, latent_std = grey.predict_latent(space.to_unit(X_new))
    mean, std = grey.predict(X_new)
    np.testing.assert_allclose(
        mean[:, 0], physics_prior(X_new[:, 0], X_new[:, 1]) + latent_mean[:, 0]
    )
    np.testing.assert_allclose(std, latent_std)
    # Training data and LOO are in the simulator's units, not the residual's.
    _, Y = grey.training_data()
    np.testing.assert_allclose(Y, truth(physics, X))
    loo_mean, _ = grey.loo()
    assert np.sqrt(np.mean((loo_mean - Y) ** 2)) / Y.std() < 0.1


def test_positive_outputs_are_modelled_on_a_log_scale(space):
    X, X_test = space.sobol(24, seed=4), np.random.default_rng(5).random((400, 2))
    y, y_test = truth(decades, X), truth(decades, X_test)
    black = GPEmulator(space, ["y"]).fit(X, y)
    logged = GPEmulator(space, ["y"], greybox=GreyBox(["y"], ["x1", "x2"], positive=["y"])).fit(
        X, y
    )
    mean_log, std_log = logged.predict(X_test)
    mean_black, _ = black.predict(X_test)
    assert (mean_log > 0).all() and (std_log > 0).all()
    assert (mean_black <= 0).any()  # the black box dips below zero where y is ~1

    def median_rel_error(mean: np.ndarray) -> float:
        return float(np.median(np.abs(mean - y_test) / y_test))

    assert median_rel_error(mean_log) < 0.25 * median_rel_error(mean_black)


def test_a_grey_box_round_trips_through_the_store(space, tmp_path):
    X = space.sobol(10, seed=6)
    grey_box = GreyBox(["y"], ["x1", "x2"], prior_mean="campaign_sims:physics_prior",
                       positive=[], search_path=[str(SIMS)])  # fmt: skip
    grey = GPEmulator(space, ["y"], greybox=grey_box, ood_method="empirical", ood_level=0.9)
    grey.fit(X, truth(physics, X))
    with CampaignStore.create(tmp_path / "g.zarr", ["x1", "x2"], ["y"]) as store:
        store.save_emulator(grey.state())
    loaded = load_emulator(tmp_path / "g.zarr")
    X_new = np.random.default_rng(7).random((20, 2))
    np.testing.assert_allclose(loaded.predict(X_new)[0], grey.predict(X_new)[0], rtol=1e-9)
    assert loaded.greybox.prior_path == "campaign_sims:physics_prior"
    assert (loaded.ood_method, loaded.ood_level) == ("empirical", 0.9)


def test_bad_priors_and_outputs_are_named():
    X = np.random.default_rng(0).random((5, 2))
    wrong_shape = GreyBox(["y"], ["x1", "x2"], prior_mean=lambda x1, x2: np.ones(3))
    with pytest.raises(EmucampError, match=r"prior_mean .*shape \(3,\), expected \(5,\)"):
        wrong_shape.prior(X)
    unknown = GreyBox(["y"], ["x1", "x2"], prior_mean=lambda x1, x2: {"z": x1})
    with pytest.raises(EmucampError, match=r"unknown output\(s\) \['z'\]"):
        unknown.prior(X)
    not_finite = GreyBox(["y"], ["x1", "x2"], prior_mean=lambda x1, x2: np.full_like(x1, np.inf))
    with pytest.raises(EmucampError, match="not finite"):
        not_finite.prior(X)
    negative_prior = GreyBox(["y"], ["x1", "x2"], prior_mean=lambda x1, x2: x1 - 2, positive=["y"])
    with pytest.raises(EmucampError, match="'y' is positive, but the prior gave"):
        negative_prior.to_latent(X, np.ones((5, 1)))
    with pytest.raises(EmucampError, match="positive, but a simulation gave -1"):
        GreyBox(["y"], ["x1", "x2"], positive=["y"]).to_latent(X, -np.ones((5, 1)))
    with pytest.raises(
        SimulatorError, match=r"emulator\.prior_mean: cannot import module 'nowhere'"
    ):
        GreyBox(["y"], ["x1", "x2"], prior_mean="nowhere:prior")


def test_a_prior_may_cover_some_outputs_only(space):
    both = GreyBox(["u", "v"], ["x1", "x2"], prior_mean=lambda x1, x2: {"v": 2 * x1})
    P = both.prior(np.array([[0.5, 0.1], [0.25, 0.3]]))
    np.testing.assert_allclose(P, [[0.0, 1.0], [0.0, 0.5]])
