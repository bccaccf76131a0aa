from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.ood import Mahalanobis
from emucamp.space import Parameter, Space


@pytest.fixture(scope="module")
def space() -> Space:
    return Space([Parameter("x1", 0.0, 10.0), Parameter("x2", 1.0, 1000.0, log=True)])


@pytest.fixture(scope="module", params=["chi2", "empirical"])
def corner_emulator(request, space) -> GPEmulator:
    """Trained only on the lower-left quarter of the (unit-cube) square."""
    U = space.sobol_unit(32, seed=0) * 0.5
    X = space.from_unit(U)
    level = 0.999 if request.param == "chi2" else 1.0
    return GPEmulator(space, ["y"], ood_method=request.param, ood_level=level).fit(
        X, np.sin(U[:, :1] * 6) + U[:, 1:]
    )


def test_points_near_the_data_are_not_flagged(space, corner_emulator):
    near = space.from_unit(np.array([[0.25, 0.25], [0.1, 0.4], [0.4, 0.1]]))
    distance, flagged = corner_emulator.ood(near)
    assert not flagged.any() and (distance < corner_emulator.guard.threshold).all()


def test_far_points_inside_the_bounds_are_flagged(space, corner_emulator):
    far = space.from_unit(np.array([[0.95, 0.95], [0.95, 0.1], [0.1, 0.98]]))
    distance, flagged = corner_emulator.ood(far)
    assert flagged.all() and (distance > corner_emulator.guard.threshold).all()


def test_extrapolation_is_always_flagged_even_close_to_the_data(corner_emulator):
    # x1 = -0.05 lies just outside the bounds, next to training points at x1 ~ 0.
    distance, flagged = corner_emulator.ood(np.array([[-0.05, 10.0], [5.0, 0.9]]))
    assert flagged.all()
    assert distance[0] < corner_emulator.guard.threshold  # flagged for the bounds alone


def test_a_space_filling_design_leaves_the_whole_box_in_distribution(space):
    X = space.sobol(64, seed=1)
    emulator = GPEmulator(space, ["y"]).fit(X, space.to_unit(X).sum(axis=1, keepdims=True))
    corners = space.from_unit(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]]))
    assert not emulator.ood(corners)[1].any()


def test_predict_on_a_table_reports_distance_and_flag(space, corner_emulator):
    table = pd.DataFrame(space.from_unit(np.array([[0.2, 0.2], [0.9, 0.9]])), columns=["x1", "x2"])
    out = corner_emulator.predict(table)
    assert list(out["ood"]) == [False, True]
    assert out["ood_distance"].iloc[1] > out["ood_distance"].iloc[0] > 0


def test_empirical_level_one_never_flags_a_training_point(space):
    U = np.random.default_rng(0).random((40, 2))
    guard = Mahalanobis.calibrate(U, method="empirical", level=1.0)
    distance, flagged = guard.check(U)
    assert not flagged.any() and distance.max() == pytest.approx(guard.threshold)


@pytest.mark.parametrize(("method", "level"), [("chi2", 1.0), ("empirical", 0.0), ("mad", 0.9)])
def test_bad_calibration_settings_are_refused(method, level):
    with pytest.raises(ValueError, match="ood"):
        Mahalanobis.calibrate(np.random.default_rng(0).random((10, 2)), method, level)
