from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from emucamp import testfunctions as tf

SCALAR = {
    "branin": tf.branin,
    "ishigami": tf.ishigami,
    "hartmann6": tf.hartmann6,
    "borehole": tf.borehole,
}
VECTOR = {
    "branin": tf.branin_np,
    "ishigami": tf.ishigami_np,
    "hartmann6": tf.hartmann6_np,
    "borehole": tf.borehole_np,
}
BOREHOLE_MID = {k: (lo + hi) / 2 for k, (lo, hi) in tf.DOMAINS["borehole"].items()}


@pytest.mark.parametrize("x1, x2", [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)])
def test_branin_global_minima(x1: float, x2: float) -> None:
    assert tf.branin(x1=x1, x2=x2) == pytest.approx(0.397887, abs=1e-6)


def test_branin_other_values() -> None:
    # f(0, 0) = 36 + 10 (1 - 1/(8 pi)) + 10, straight from the definition.
    assert tf.branin(x1=0.0, x2=0.0) == pytest.approx(56.0 - 10.0 / (8.0 * math.pi))
    rng = np.random.default_rng(0)
    lo, hi = np.array([-5.0, 0.0]), np.array([10.0, 15.0])
    X = lo + (hi - lo) * rng.random((2000, 2))
    assert tf.branin_np(X).min() >= 0.397887 - 1e-6


def test_ishigami_known_values() -> None:
    assert tf.ishigami(x1=0.0, x2=0.0, x3=0.0) == 0.0
    # sin(pi/2) + 7 sin(pi/2)^2 = 8, whatever x3 is when b = 0.
    assert tf.ishigami(x1=math.pi / 2, x2=math.pi / 2, x3=0.0) == pytest.approx(8.0)
    # 1 + 0 + 0.1 * pi^4 * 1
    assert tf.ishigami(x1=math.pi / 2, x2=0.0, x3=math.pi) == pytest.approx(1 + 0.1 * math.pi**4)
    assert tf.ishigami(x1=math.pi / 2, x2=math.pi / 2, x3=1.0, a=2.0, b=0.5) == pytest.approx(3.5)


def test_ishigami_moments() -> None:
    # Known mean a/2 = 3.5 and variance a^2/8 + b pi^4/5 + b^2 pi^8/18 + 1/2 = 13.8446.
    rng = np.random.default_rng(1)
    y = tf.ishigami_np(rng.uniform(-math.pi, math.pi, (200_000, 3)))
    assert y.mean() == pytest.approx(3.5, abs=0.05)
    var = 49 / 8 + 0.1 * math.pi**4 / 5 + 0.01 * math.pi**8 / 18 + 0.5
    assert y.var() == pytest.approx(var, rel=0.02)


def test_hartmann6_global_minimum() -> None:
    x_star = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)
    names = ("x1", "x2", "x3", "x4", "x5", "x6")
    assert tf.hartmann6(**dict(zip(names, x_star, strict=True))) == pytest.approx(
        -3.32237, abs=1e-5
    )
    rng = np.random.default_rng(2)
    assert tf.hartmann6_np(rng.random((5000, 6))).min() > -3.32237
    # Nudging away from the minimiser raises the value.
    for j in range(6):
        x = np.array(x_star)
        x[j] += 0.01
        assert tf.hartmann6_np(x[None, :])[0] > -3.32237


def test_borehole_range_and_midpoint() -> None:
    y_mid = tf.borehole(**BOREHOLE_MID)
    assert 50.0 < y_mid < 100.0
    # Flow is monotone in every input, so the extreme corners (below) bound it on the domain.
    lo = np.array([b[0] for b in tf.DOMAINS["borehole"].values()])
    hi = np.array([b[1] for b in tf.DOMAINS["borehole"].values()])
    y = tf.borehole_np(lo + (hi - lo) * np.random.default_rng(3).random((5000, 8)))
    assert np.all(y > 7.8) and np.all(y < 309.6)
    # Largest flow: wide, short, permeable borehole, big head drop; smallest: the opposite.
    # Regression values (the usual quoted range of the function is about 7.8-310 m^3/yr).
    best = dict(rw=0.15, r=100.0, Tu=115600.0, Hu=1110.0, Tl=116.0, Hl=700.0, L=1120.0, Kw=12045.0)
    worst = dict(rw=0.05, r=50000.0, Tu=63070.0, Hu=990.0, Tl=63.1, Hl=820.0, L=1680.0, Kw=9855.0)
    assert tf.borehole(**best) == pytest.approx(309.5756, rel=1e-5)
    assert tf.borehole(**worst) == pytest.approx(7.8197, rel=1e-4)


def test_borehole_monotone() -> None:
    base = tf.borehole(**BOREHOLE_MID)
    # Flow is proportional to the head difference Hu - Hl.
    twice = dict(
        BOREHOLE_MID, Hl=BOREHOLE_MID["Hu"] - 2 * (BOREHOLE_MID["Hu"] - BOREHOLE_MID["Hl"])
    )
    assert tf.borehole(**twice) == pytest.approx(2 * base)
    assert tf.borehole(**dict(BOREHOLE_MID, Hu=1100.0)) > base
    assert tf.borehole(**dict(BOREHOLE_MID, Hl=710.0)) > base
    # Longer borehole: less flow; wider or more permeable borehole: more flow.
    assert tf.borehole(**dict(BOREHOLE_MID, L=1600.0)) < base
    assert tf.borehole(**dict(BOREHOLE_MID, rw=0.14)) > base
    assert tf.borehole(**dict(BOREHOLE_MID, Kw=12000.0)) > base
    # Larger radius of influence: less flow.
    assert tf.borehole(**dict(BOREHOLE_MID, r=40000.0)) < base


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_domains_match_signatures(name: str) -> None:
    params = [
        p.name
        for p in inspect.signature(SCALAR[name]).parameters.values()
        if p.default is inspect.Parameter.empty
    ]
    assert list(tf.DOMAINS[name]) == params
    for lo, hi in tf.DOMAINS[name].values():
        assert lo < hi


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_vectorised_matches_scalar(name: str) -> None:
    bounds = tf.DOMAINS[name]
    lo = np.array([b[0] for b in bounds.values()])
    hi = np.array([b[1] for b in bounds.values()])
    X = lo + (hi - lo) * np.random.default_rng(4).random((20, len(bounds)))
    y = VECTOR[name](X)
    assert y.shape == (20,)
    expected = [SCALAR[name](**dict(zip(bounds, row, strict=True))) for row in X]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert all(isinstance(v, float) for v in expected)


def test_vectorised_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="n x 2"):
        tf.branin_np(np.zeros((3, 3)))
