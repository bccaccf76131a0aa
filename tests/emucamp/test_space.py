from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emucamp.errors import SpecError
from emucamp.space import Parameter, Space

# -- strategies ---------------------------------------------------------------------------


@st.composite
def parameters(draw: st.DrawFn, name: str) -> Parameter:
    """A parameter with arbitrary finite bounds, linear or log-scaled."""
    if draw(st.booleans()):
        low_exp = draw(st.floats(-6, 6))
        span_exp = draw(st.floats(0.01, 6))
        low = 10.0**low_exp
        return Parameter(name, low, low * 10.0**span_exp, log=True)
    low = draw(st.floats(-1e6, 1e6))
    width = draw(st.floats(1e-3, 1e6))
    return Parameter(name, low, low + width)


@st.composite
def spaces_and_points(draw: st.DrawFn) -> tuple[Space, np.ndarray]:
    """A space of 1-4 parameters and 1-6 physical points inside its box (bounds included)."""
    d = draw(st.integers(1, 4))
    space = Space([draw(parameters(f"p{i}")) for i in range(d)])
    n = draw(st.integers(1, 6))
    fractions = draw(
        st.lists(
            st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), min_size=n * d, max_size=n * d
        )
    )
    U = np.array(fractions).reshape(n, d)
    X = np.empty_like(U)
    for j, p in enumerate(space):
        if p.log:
            X[:, j] = np.exp(math.log(p.low) + U[:, j] * (math.log(p.high) - math.log(p.low)))
        else:
            X[:, j] = p.low + U[:, j] * (p.high - p.low)
        X[:, j] = np.clip(X[:, j], p.low, p.high)
        X[U[:, j] == 0.0, j] = p.low
        X[U[:, j] == 1.0, j] = p.high
    return space, X


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def mixed_space() -> Space:
    """Three parameters: two linear, one log-scaled across two decades."""
    return Space(
        [
            Parameter("rw", 0.05, 0.15),
            Parameter("r", 100.0, 1e4, log=True),
            Parameter("t", -3.0, 5.0),
        ]
    )


# -- unit-cube maps -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(spaces_and_points())
def test_unit_round_trip_is_identity(case: tuple[Space, np.ndarray]) -> None:
    space, X = case
    back = space.from_unit(space.to_unit(X))
    scale = np.maximum(np.abs(space.bounds[0]), np.abs(space.bounds[1]))
    np.testing.assert_allclose(back, X, rtol=1e-9, atol=0)  # log and large values
    assert np.all(np.abs(back - X) <= 1e-9 * scale)


@settings(max_examples=200, deadline=None)
@given(spaces_and_points())
def test_to_unit_of_points_in_bounds_lies_in_unit_cube(case: tuple[Space, np.ndarray]) -> None:
    space, X = case
    U = space.to_unit(X)
    assert U.shape == X.shape
    assert np.all(U >= 0.0)
    assert np.all(U <= 1.0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(parameters("p"), min_size=1, max_size=1),
    st.lists(st.floats(0, 1), min_size=1, max_size=8),
)
def test_from_unit_of_unit_cube_stays_inside_bounds(
    params: list[Parameter], fractions: list[float]
) -> None:
    space = Space(params)
    X = space.from_unit(np.array(fractions)[:, None])
    assert space.contains(X).all()


def test_bounds_map_to_cube_corners(mixed_space: Space) -> None:
    lo, hi = mixed_space.bounds
    np.testing.assert_array_equal(mixed_space.to_unit(np.vstack([lo, hi])), [[0, 0, 0], [1, 1, 1]])
    corners = mixed_space.from_unit([[0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(corners, [lo, hi], rtol=1e-14)  # exp(log(low)) may be a hair off
    assert mixed_space.contains(corners).all()


def test_from_unit_warns_nothing_for_large_linear_bounds() -> None:
    # Only log columns go through exp; a linear column of large values must not overflow it.
    space = Space([Parameter("depth", 0.0, 5000.0), Parameter("k", 1e-3, 1.0, log=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X = space.from_unit([[1.0, 1.0], [0.5, 0.0]])
    np.testing.assert_allclose(X, [[5000.0, 1.0], [2500.0, 1e-3]])


def test_log_parameter_maps_geometric_midpoint_to_half() -> None:
    space = Space([Parameter("r", 100.0, 1e4, log=True)])
    assert space.to_unit([[1000.0]])[0, 0] == pytest.approx(0.5, abs=1e-12)
    assert space.from_unit([[0.5]])[0, 0] == pytest.approx(1000.0, rel=1e-12)
    # A linear parameter maps the arithmetic midpoint to 0.5 instead.
    linear = Space([Parameter("r", 100.0, 1e4)])
    assert linear.to_unit([[5050.0]])[0, 0] == pytest.approx(0.5)


def test_outside_the_bounds_stays_outside(mixed_space: Space) -> None:
    U = mixed_space.to_unit([[0.0, 10.0, 7.0]])
    assert U[0, 0] < 0
    assert U[0, 1] < 0
    assert U[0, 2] > 1
    X = mixed_space.from_unit([[-0.5, 1.5, 2.0]])
    assert not mixed_space.contains(X)[0]
    assert X[0, 0] == pytest.approx(0.0)


def test_maps_reject_wrong_width(mixed_space: Space) -> None:
    with pytest.raises(ValueError, match="n x 3"):
        mixed_space.to_unit(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n x 3"):
        mixed_space.from_unit(np.zeros((2, 4)))


def test_single_point_is_promoted_to_a_row(mixed_space: Space) -> None:
    U = mixed_space.to_unit([0.1, 1000.0, 1.0])
    assert U.shape == (1, 3)


# -- Sobol --------------------------------------------------------------------------------


def test_sobol_continues_one_sequence_with_skip(mixed_space: Space) -> None:
    first = mixed_space.sobol_unit(5, seed=11, skip=0)
    rest = mixed_space.sobol_unit(3, seed=11, skip=5)
    whole = mixed_space.sobol_unit(8, seed=11)
    np.testing.assert_array_equal(np.vstack([first, rest]), whole)


def test_sobol_physical_continues_like_unit(mixed_space: Space) -> None:
    both = np.vstack([mixed_space.sobol(4, seed=3), mixed_space.sobol(4, seed=3, skip=4)])
    np.testing.assert_allclose(both, mixed_space.sobol(8, seed=3))


def test_sobol_same_seed_same_points_other_seed_other_points(mixed_space: Space) -> None:
    a = mixed_space.sobol_unit(16, seed=1)
    b = mixed_space.sobol_unit(16, seed=1)
    c = mixed_space.sobol_unit(16, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_sobol_points_in_cube_and_bounds(mixed_space: Space) -> None:
    U = mixed_space.sobol_unit(32, seed=0)
    assert U.shape == (32, 3)
    assert np.all((U >= 0) & (U <= 1))
    assert mixed_space.contains(mixed_space.sobol(32, seed=0)).all()
    # Space filling: every half of every dimension gets half the points of a power of two.
    assert np.all((U < 0.5).sum(axis=0) == 16)


# -- Latin hypercube ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 12])
def test_lhs_has_one_point_per_bin_in_each_dimension(mixed_space: Space, n: int) -> None:
    X = mixed_space.lhs(n, seed=4)
    assert X.shape == (n, 3)
    assert mixed_space.contains(X).all()
    bins = np.floor(mixed_space.to_unit(X) * n).astype(int)
    for j in range(mixed_space.dim):
        assert sorted(bins[:, j]) == list(range(n)), f"dimension {j}: bins {bins[:, j]}"


def test_lhs_is_reproducible_by_seed(mixed_space: Space) -> None:
    np.testing.assert_array_equal(mixed_space.lhs(6, seed=9), mixed_space.lhs(6, seed=9))
    assert not np.allclose(mixed_space.lhs(6, seed=9), mixed_space.lhs(6, seed=10))


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, log",
    [
        pytest.param(2.0, 1.0, False, id="reversed"),
        pytest.param(1.0, 1.0, False, id="equal"),
        pytest.param(0.0, 1.0, True, id="log-low-zero"),
        pytest.param(-1.0, 1.0, True, id="log-low-negative"),
        pytest.param(math.nan, 1.0, False, id="nan-low"),
        pytest.param(0.0, math.inf, False, id="inf-high"),
    ],
)
def test_parameter_rejects_bad_bounds_naming_it(low: float, high: float, log: bool) -> None:
    with pytest.raises(SpecError, match=r"parameters\.porosity"):
        Parameter("porosity", low, high, log=log)


def test_parameter_accepts_log_with_positive_low() -> None:
    p = Parameter("k", 1e-3, 1.0, log=True)
    assert p.log
    assert (p.low, p.high) == (1e-3, 1.0)


def test_space_rejects_empty() -> None:
    with pytest.raises(SpecError, match="at least one parameter"):
        Space([])


def test_space_rejects_duplicate_names() -> None:
    with pytest.raises(SpecError, match=r"duplicated names \['a'\]"):
        Space([Parameter("a", 0, 1), Parameter("b", 0, 1), Parameter("a", 2, 3)])


def test_space_views(mixed_space: Space) -> None:
    assert mixed_space.names == ["rw", "r", "t"]
    assert mixed_space.dim == len(mixed_space) == 3
    np.testing.assert_array_equal(mixed_space.bounds, [[0.05, 100.0, -3.0], [0.15, 1e4, 5.0]])
    assert [p.name for p in mixed_space] == mixed_space.names
    same = Space(list(mixed_space.parameters))
    assert same == mixed_space
    assert hash(same) == hash(mixed_space)
    assert mixed_space != Space([Parameter("rw", 0.05, 0.15)])


# -- contains -----------------------------------------------------------------------------


def test_contains_is_inclusive_per_row(mixed_space: Space) -> None:
    X = np.array(
        [
            [0.05, 100.0, -3.0],  # lower corner
            [0.15, 1e4, 5.0],  # upper corner
            [0.1, 500.0, 0.0],  # interior
            [0.16, 500.0, 0.0],  # rw above
            [0.1, 99.9, 0.0],  # r below
            [0.1, 500.0, math.nan],  # nan is not inside
        ]
    )
    assert mixed_space.contains(X).tolist() == [True, True, True, False, False, False]


# -- records ------------------------------------------------------------------------------


def test_records_round_trip(mixed_space: Space) -> None:
    X = mixed_space.sobol(4, seed=0)
    records = mixed_space.as_records(X)
    assert len(records) == 4
    assert list(records[0]) == ["rw", "r", "t"]
    assert all(type(v) is float for r in records for v in r.values())
    np.testing.assert_array_equal(mixed_space.from_records(records), X)


def test_from_records_ignores_extra_keys_and_orders_columns(mixed_space: Space) -> None:
    rows = [{"t": 1.0, "extra": 99.0, "r": 200.0, "rw": 0.1}]
    np.testing.assert_array_equal(mixed_space.from_records(rows), [[0.1, 200.0, 1.0]])


def test_from_records_missing_column_names_it(mixed_space: Space) -> None:
    with pytest.raises(SpecError, match="'r'"):
        mixed_space.from_records([{"rw": 0.1, "t": 1.0}])
