from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.sensitivity import Sensitivity, ard_relevance, sobol_indices, table_rows
from emucamp.space import Parameter, Space
from emucamp.testfunctions import DOMAINS, ishigami_np

# Analytic Sobol indices of Ishigami (a = 7, b = 0.1) on [-pi, pi]^3.
ISHIGAMI_S1 = np.array([0.3139, 0.4424, 0.0])
ISHIGAMI_ST = np.array([0.5576, 0.4424, 0.2437])


@pytest.fixture(scope="module")
def ishigami_space() -> Space:
    return Space([Parameter(name, lo, hi) for name, (lo, hi) in DOMAINS["ishigami"].items()])


@pytest.fixture(scope="module")
def ishigami_emulator(ishigami_space: Space) -> GPEmulator:
    X = ishigami_space.sobol(256, seed=1)
    return GPEmulator(ishigami_space, ["f"]).fit(X, ishigami_np(X)[:, None])


@pytest.fixture(scope="module")
def ishigami_indices(ishigami_emulator: GPEmulator) -> Sensitivity:
    return sobol_indices(ishigami_emulator, samples=4096, seed=0)


def test_ishigami_emulator_is_accurate_enough_to_judge_the_indices(ishigami_emulator):
    X = np.random.default_rng(0).uniform(-np.pi, np.pi, (2000, 3))
    mean, _ = ishigami_emulator.predict(X)
    y = ishigami_np(X)
    nrmse = np.sqrt(np.mean((mean[:, 0] - y) ** 2)) / y.std()
    assert nrmse < 0.15, nrmse


def test_ishigami_indices_match_the_analytic_values(ishigami_indices):
    s = ishigami_indices
    assert s.parameters == ("x1", "x2", "x3") and s.outputs == ("f",)
    assert s.s1.shape == s.st.shape == s.s1_conf.shape == s.st_conf.shape == (1, 3)
    np.testing.assert_allclose(s.s1[0], ISHIGAMI_S1, atol=0.05)
    np.testing.assert_allclose(s.st[0], ISHIGAMI_ST, atol=0.05)
    # SALib's bootstrap half-widths: positive, and small at 4096 base samples.
    assert np.all(s.s1_conf > 0) and np.all(s.st_conf > 0)
    assert np.all(s.s1_conf < 0.06) and np.all(s.st_conf < 0.06), (s.s1_conf, s.st_conf)
    assert s.evaluations == 4096 * (3 + 2)
    assert s.n == 256


def test_ishigami_x3_acts_only_through_its_interaction_with_x1(ishigami_indices):
    s1, st = ishigami_indices.s1[0], ishigami_indices.st[0]
    assert abs(s1[2]) < 0.05  # alone, x3 explains nothing ...
    assert st[2] > 0.18 and st[2] - s1[2] > 0.18  # ... but takes part in the x1-x3 term
    assert st[0] - s1[0] > 0.18  # the same interaction, seen from x1
    assert abs(st[1] - s1[1]) < 0.05  # x2 enters additively


def test_table_rows_sort_by_total_index(ishigami_indices):
    rows = table_rows(ishigami_indices)
    assert [r["parameter"] for r in rows] == ["x1", "x2", "x3"]  # ST 0.56 > 0.44 > 0.24
    first = rows[0]
    assert set(first) == {"output", "parameter", "S1", "S1_conf", "ST", "ST_conf", "relevance"}
    assert first["output"] == "f"
    assert first["ST"] == ishigami_indices.st[0, 0]
    assert first["S1_conf"] == ishigami_indices.s1_conf[0, 0]
    assert first["relevance"] == ishigami_indices.relevance[0, 0]
    assert all(type(r[k]) is float for r in rows for k in ("S1", "S1_conf", "ST", "ST_conf"))


# A log parameter, an inert parameter and a constant output. In the unit cube (u1 is
# ln x1 / ln 100), y1 = sin(2 pi u1) + 2 sin(2 pi u2): variances 1/2 and 2, so
# S1 = ST = (0.2, 0.8, 0). Indices taken with x1 uniform in [1, 100] instead of
# log-uniform would give x1 about 0.10.
@pytest.fixture(scope="module")
def inert_space() -> Space:
    return Space(
        [
            Parameter("x1", 1.0, 100.0, log=True),
            Parameter("x2", 0.0, 1.0),
            Parameter("x3", 0.0, 1.0),
        ]
    )


def inert_truth(X: np.ndarray) -> np.ndarray:
    """``n x 3``: y1 from x1 (log scale) and x2, y2 = sin(3 x2), c = constant; x3 unused."""
    y1 = np.sin(2 * np.pi * np.log(X[:, 0]) / np.log(100.0)) + 2.0 * np.sin(2 * np.pi * X[:, 1])
    return np.column_stack([y1, np.sin(3.0 * X[:, 1]), np.full(len(X), 2.5)])


@pytest.fixture(scope="module")
def inert_emulator(inert_space: Space) -> GPEmulator:
    X = inert_space.sobol(64, seed=3)
    with warnings.catch_warnings():  # BoTorch warns that the constant output has std 0
        warnings.filterwarnings("ignore", message=".*not standardized")
        return GPEmulator(inert_space, ["y1", "y2", "c"]).fit(X, inert_truth(X))


@pytest.fixture(scope="module")
def inert_indices(inert_emulator: GPEmulator) -> Sensitivity:
    return sobol_indices(inert_emulator, samples=1024, seed=0)


def test_an_unused_input_has_no_total_index_and_the_least_relevance(inert_indices):
    s = inert_indices
    for j in (0, 1):  # y1, y2
        assert abs(s.st[j, 2]) < 0.01 and abs(s.s1[j, 2]) < 0.01
    assert np.argmin(s.relevance[0]) == 2
    assert s.relevance[0, 2] < s.relevance[0, 0] / 5
    assert s.relevance[1, 2] < s.relevance[1, 1] / 5  # y2: x1 is as unused as x3
    np.testing.assert_allclose(s.relevance.sum(axis=1), 1.0)


def test_indices_are_over_the_unit_cube_so_log_parameters_are_log_uniform(inert_indices):
    s = inert_indices
    np.testing.assert_allclose(s.s1[0], [0.2, 0.8, 0.0], atol=0.03)
    np.testing.assert_allclose(s.st[0], [0.2, 0.8, 0.0], atol=0.03)
    np.testing.assert_allclose(s.st[1], [0.0, 1.0, 0.0], atol=0.03)  # rows are per output


def test_a_constant_output_gets_zero_indices(inert_indices):
    s = inert_indices
    assert np.all(s.s1[2] == 0) and np.all(s.st[2] == 0)
    assert np.all(s.s1_conf[2] == 0) and np.all(s.st_conf[2] == 0)
    assert np.all(np.isfinite(s.s1)) and np.all(np.isfinite(s.st))


def test_the_same_seed_gives_the_same_indices_even_seed_0(inert_emulator):
    # SALib treats seed=0 as "no seed" for its bootstrap: the confidence half-widths
    # would then differ between two calls.
    a = sobol_indices(inert_emulator, samples=256, seed=0)
    b = sobol_indices(inert_emulator, samples=256, seed=0)
    c = sobol_indices(inert_emulator, samples=256, seed=1)
    assert a == b
    np.testing.assert_array_equal(a.s1_conf, b.s1_conf)
    assert a != c
    assert not np.array_equal(a.s1_conf[:2], c.s1_conf[:2])


def test_to_dict_round_trips_through_json_exactly(inert_indices):
    s = inert_indices
    data = json.loads(json.dumps(s.to_dict()))
    assert data["parameters"] == ["x1", "x2", "x3"] and data["outputs"] == ["y1", "y2", "c"]
    assert data["evaluations"] == 1024 * 5 and data["n"] == 64
    back = Sensitivity.from_dict(data)
    assert back == s
    for name in ("s1", "s1_conf", "st", "st_conf", "relevance"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))
    data["st"][0][1] += 1e-12
    assert Sensitivity.from_dict(data) != s


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"st has shape \(1, 2\), expected \(1, 3\)"):
        Sensitivity(
            parameters=("a", "b", "c"),
            outputs=("y",),
            s1=np.zeros((1, 3)),
            s1_conf=np.zeros((1, 3)),
            st=np.zeros((1, 2)),
            st_conf=np.zeros((1, 3)),
            relevance=np.zeros((1, 3)),
            evaluations=5,
            n=2,
        )


@pytest.mark.parametrize("samples", [1000, 0, 1, 3])
def test_samples_must_be_a_power_of_2(inert_emulator, samples):
    with pytest.raises(ValueError, match=rf"power of 2.*got {samples}\b"):
        sobol_indices(inert_emulator, samples=samples)


def test_an_unfitted_emulator_is_refused(inert_space):
    with pytest.raises(RuntimeError, match="not fitted"):
        sobol_indices(GPEmulator(inert_space, ["y"]), samples=64)


def test_ard_relevance_is_inverse_lengthscale_normalised():
    relevance = ard_relevance(np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(relevance, [[4 / 7, 2 / 7, 1 / 7], [1 / 3, 1 / 3, 1 / 3]])


def test_a_field_gets_generalised_indices_weighted_by_variance():
    from emucamp.emulators.basis import OutputBasis

    # y_k = t_k x1 + 0.5 (1 - t_k) g(x2), g = sin(pi x2 / 2): additive, so over the whole
    # field x1's share is sum_k t_k^2 Var(x1) / (that + sum_k 0.25 (1 - t_k)^2 Var(g)).
    space = Space([Parameter("x1", 0.0, 1.0), Parameter("x2", 0.0, 1.0)])
    t = np.linspace(0.0, 1.0, 20)
    X = space.sobol(64, seed=3)
    g = np.sin(np.pi * X[:, 1] / 2)
    Y = X[:, :1] * t + 0.5 * g[:, None] * (1 - t)
    basis = OutputBasis(["field"], {"field": (20,)})
    emulator = GPEmulator(space, ["field"], basis=basis).fit(X, Y)
    s = sobol_indices(emulator, samples=2048, seed=0)
    u = np.random.default_rng(0).random(200_000)
    var_x1, var_g = np.var(u), np.var(np.sin(np.pi * u / 2))
    share_x1 = var_x1 * np.sum(t**2)
    share_x2 = 0.25 * var_g * np.sum((1 - t) ** 2)
    expected = share_x1 / (share_x1 + share_x2)
    assert s.s1[0, 0] == pytest.approx(expected, abs=0.03)
    assert s.st[0, 1] == pytest.approx(1 - expected, abs=0.03)
