"""The PDE example as a benchmark function: ``examples/heat2d`` on a coarser grid.

``t_max`` of the 2-D transient heat simulator (``examples/heat2d/heat.py``) on a 40 x 40
grid with 100 Crank-Nicolson steps: within 0.2 % of the example's 100 x 100 grid and 400
steps at a central input, 14 ms a run instead of 0.37 s, so thousands of held-out runs fit
in a benchmark. Over the example's box ``t_max`` spans 6-240 K.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "heat2d"))
import heat

DOMAIN = {"conductivity": (0.01, 0.1), "source": (1.0, 10.0), "h_coeff": (0.1, 10.0)}
LOG = {"conductivity", "h_coeff"}


def heat2d(conductivity: float, source: float, h_coeff: float) -> float:
    """Peak temperature rise (K) at t = 10 s."""
    return heat.simulate(conductivity, source, h_coeff, n=40, steps=100)["t_max"]


def heat2d_np(X: np.ndarray) -> np.ndarray:
    """``n`` peak temperatures of ``n x 3`` inputs (conductivity, source, h_coeff)."""
    return np.array([heat2d(*row) for row in np.atleast_2d(X)])
