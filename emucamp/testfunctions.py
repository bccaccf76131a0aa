"""Closed-form benchmark functions, used as cheap simulators for examples, tests and benchmarks.

Each simulator is a plain function called with keyword arguments named like its parameters
and returning a float, so a spec can name it directly, e.g.
``function = "emucamp.testfunctions:branin"``. :data:`DOMAINS` gives the usual input
bounds of each one, keyed by function name. The ``*_np`` variants evaluate an ``n x d``
array of points at once (columns in the order of the scalar function's arguments) and
return an array of ``n`` values; they are meant for benchmarks and error estimates.

References:
    The definitions follow the Virtual Library of Simulation Experiments
    (S. Surjanovic and D. Bingham, https://www.sfu.ca/~ssurjano/).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DOMAINS",
    "borehole",
    "borehole_np",
    "branin",
    "branin_np",
    "hartmann6",
    "hartmann6_np",
    "ishigami",
    "ishigami_np",
]

DOMAINS: dict[str, dict[str, tuple[float, float]]] = {
    "branin": {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)},
    "ishigami": {"x1": (-math.pi, math.pi), "x2": (-math.pi, math.pi), "x3": (-math.pi, math.pi)},
    "hartmann6": {f"x{i}": (0.0, 1.0) for i in range(1, 7)},
    "borehole": {
        "rw": (0.05, 0.15),
        "r": (100.0, 50_000.0),
        "Tu": (63_070.0, 115_600.0),
        "Hu": (990.0, 1110.0),
        "Tl": (63.1, 116.0),
        "Hl": (700.0, 820.0),
        "L": (1120.0, 1680.0),
        "Kw": (9855.0, 12_045.0),
    },
}
"""Input bounds ``{function name: {parameter: (low, high)}}`` of each benchmark."""

# Branin-Hoo constants.
_BRANIN_B = 5.1 / (4.0 * math.pi**2)
_BRANIN_C = 5.0 / math.pi
_BRANIN_T = 1.0 / (8.0 * math.pi)

# Hartmann-6 constants.
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ]
)


def _as_points(X: ArrayLike, d: int) -> NDArray[np.float64]:
    """Validate ``X`` as an ``n x d`` float array (a single point of length ``d`` is allowed)."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == d:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"expected an n x {d} array of points, got shape {arr.shape}")
    return arr


# -- Branin ------------------------------------------------------------------------------


def branin(x1: float, x2: float) -> float:
    """Branin-Hoo function, a 2-D benchmark with three global minima.

    ``f = (x2 - b x1^2 + c x1 - 6)^2 + 10 (1 - t) cos(x1) + 10`` with ``b = 5.1 / (4 pi^2)``,
    ``c = 5 / pi`` and ``t = 1 / (8 pi)``. The global minimum ``0.397887`` is reached at
    ``(-pi, 12.275)``, ``(pi, 2.275)`` and ``(9.42478, 2.475)``.

    Args:
        x1: First input, domain ``[-5, 10]``.
        x2: Second input, domain ``[0, 15]``.

    Returns:
        The function value.
    """
    return float(
        (x2 - _BRANIN_B * x1**2 + _BRANIN_C * x1 - 6.0) ** 2
        + 10.0 * (1.0 - _BRANIN_T) * math.cos(x1)
        + 10.0
    )


def branin_np(X: ArrayLike) -> NDArray[np.float64]:
    """Vectorised :func:`branin`.

    Args:
        X: Points, shape ``(n, 2)``, columns ``x1, x2``.

    Returns:
        Function values, shape ``(n,)``.
    """
    P = _as_points(X, 2)
    x1, x2 = P[:, 0], P[:, 1]
    out: NDArray[np.float64] = (
        (x2 - _BRANIN_B * x1**2 + _BRANIN_C * x1 - 6.0) ** 2
        + 10.0 * (1.0 - _BRANIN_T) * np.cos(x1)
        + 10.0
    )
    return out


# -- Ishigami ----------------------------------------------------------------------------


def ishigami(x1: float, x2: float, x3: float, a: float = 7.0, b: float = 0.1) -> float:
    """Ishigami function, a 3-D sensitivity-analysis benchmark with strong nonlinearity.

    ``f = sin(x1) + a sin(x2)^2 + b x3^4 sin(x1)``.

    Args:
        x1: First input, domain ``[-pi, pi]``.
        x2: Second input, domain ``[-pi, pi]``.
        x3: Third input, domain ``[-pi, pi]`` (acts only through its interaction with ``x1``).
        a: Coefficient of the ``x2`` term (a constant, not a design parameter).
        b: Coefficient of the ``x3``-``x1`` interaction (a constant, not a design parameter).

    Returns:
        The function value.
    """
    s1 = math.sin(x1)
    return float(s1 + a * math.sin(x2) ** 2 + b * x3**4 * s1)


def ishigami_np(X: ArrayLike, a: float = 7.0, b: float = 0.1) -> NDArray[np.float64]:
    """Vectorised :func:`ishigami`.

    Args:
        X: Points, shape ``(n, 3)``, columns ``x1, x2, x3``.
        a: Coefficient of the ``x2`` term.
        b: Coefficient of the ``x3``-``x1`` interaction.

    Returns:
        Function values, shape ``(n,)``.
    """
    P = _as_points(X, 3)
    s1 = np.sin(P[:, 0])
    out: NDArray[np.float64] = s1 + a * np.sin(P[:, 1]) ** 2 + b * P[:, 2] ** 4 * s1
    return out


# -- Hartmann-6 --------------------------------------------------------------------------


def hartmann6(x1: float, x2: float, x3: float, x4: float, x5: float, x6: float) -> float:
    """Hartmann 6-D function, a multimodal benchmark with six local minima.

    ``f = -sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2)`` with the standard constants.
    The global minimum ``-3.32237`` is at
    ``(0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)``.

    Args:
        x1: First input, domain ``[0, 1]``.
        x2: Second input, domain ``[0, 1]``.
        x3: Third input, domain ``[0, 1]``.
        x4: Fourth input, domain ``[0, 1]``.
        x5: Fifth input, domain ``[0, 1]``.
        x6: Sixth input, domain ``[0, 1]``.

    Returns:
        The function value.
    """
    return float(hartmann6_np([[x1, x2, x3, x4, x5, x6]])[0])


def hartmann6_np(X: ArrayLike) -> NDArray[np.float64]:
    """Vectorised :func:`hartmann6`.

    Args:
        X: Points, shape ``(n, 6)``, columns ``x1, ..., x6``.

    Returns:
        Function values, shape ``(n,)``.
    """
    P = _as_points(X, 6)
    sq = (P[:, None, :] - _H6_P[None, :, :]) ** 2  # (n, 4, 6)
    inner = np.einsum("nij,ij->ni", sq, _H6_A)
    out: NDArray[np.float64] = -(np.exp(-inner) @ _H6_ALPHA)
    return out


# -- Borehole ----------------------------------------------------------------------------


def borehole(
    rw: float, r: float, Tu: float, Hu: float, Tl: float, Hl: float, L: float, Kw: float
) -> float:
    """Borehole function: water flow through a borehole between two aquifers, in m^3/yr.

    ``f = 2 pi Tu (Hu - Hl) / (ln(r/rw) (1 + 2 L Tu / (ln(r/rw) rw^2 Kw) + Tu/Tl))``.

    Args:
        rw: Radius of the borehole in m, domain ``[0.05, 0.15]``.
        r: Radius of influence in m, domain ``[100, 50000]`` (often sampled on a log scale).
        Tu: Transmissivity of the upper aquifer in m^2/yr, domain ``[63070, 115600]``.
        Hu: Potentiometric head of the upper aquifer in m, domain ``[990, 1110]``.
        Tl: Transmissivity of the lower aquifer in m^2/yr, domain ``[63.1, 116]``.
        Hl: Potentiometric head of the lower aquifer in m, domain ``[700, 820]``.
        L: Length of the borehole in m, domain ``[1120, 1680]``.
        Kw: Hydraulic conductivity of the borehole in m/yr, domain ``[9855, 12045]``.

    Returns:
        The water flow rate.
    """
    log_ratio = math.log(r / rw)
    denominator = log_ratio * (1.0 + 2.0 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl)
    return float(2.0 * math.pi * Tu * (Hu - Hl) / denominator)


def borehole_np(X: ArrayLike) -> NDArray[np.float64]:
    """Vectorised :func:`borehole`.

    Args:
        X: Points, shape ``(n, 8)``, columns ``rw, r, Tu, Hu, Tl, Hl, L, Kw``.

    Returns:
        Water flow rates in m^3/yr, shape ``(n,)``.
    """
    P = _as_points(X, 8)
    rw, r, Tu, Hu, Tl, Hl, L, Kw = (P[:, j] for j in range(8))
    log_ratio = np.log(r / rw)
    denominator = log_ratio * (1.0 + 2.0 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl)
    out: NDArray[np.float64] = 2.0 * np.pi * Tu * (Hu - Hl) / denominator
    return out
