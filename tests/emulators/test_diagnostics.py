from __future__ import annotations

import numpy as np
import pytest

from emucamp.emulators.diagnostics import regions
from emucamp.emulators.gp import GPEmulator
from emucamp.report import regions_markdown
from emucamp.space import Parameter, Space


def ramp(X: np.ndarray) -> np.ndarray:
    """``n x 1``: rises with x1, dips a little with x2."""
    return (3.0 * X[:, 0] - 0.5 * X[:, 1] ** 2)[:, None]


def test_regions_find_the_extremes_and_the_unexplored_corner():
    space = Space([Parameter("x1", 0.0, 1.0), Parameter("x2", 0.0, 1.0)])
    X = space.sobol(24, seed=2) * 0.6  # data only in the lower-left part of the square
    emulator = GPEmulator(space, ["y"]).fit(X, ramp(X))
    found = {r.kind: r for r in regions(emulator, space.sobol_unit(256, seed=0))}
    Y = ramp(X)[:, 0]

    lowest, highest = found["lowest simulated"], found["highest simulated"]
    assert lowest.value == pytest.approx(Y.min()) and highest.value == pytest.approx(Y.max())
    at_highest = np.array([[highest.inputs["x1"], highest.inputs["x2"]]])
    assert ramp(at_highest)[0, 0] == pytest.approx(Y.max())
    # Nothing was simulated beyond 0.6: the least certain place lies out there.
    far = found["least certain"].inputs
    assert max(far["x1"], far["x2"]) > 0.8
    loo_mean, _ = emulator.loo()
    assert found["largest LOO error"].value == pytest.approx(np.abs(loo_mean[:, 0] - Y).max())

    table = regions_markdown(list(found.values())).splitlines()
    assert len(table) == 3 and table[2].startswith("| y | ") and "x1=" in table[2]
