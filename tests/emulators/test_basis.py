from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from emucamp.emulators.basis import OutputBasis
from emucamp.emulators.gp import GPEmulator, load_emulator
from emucamp.space import Parameter, Space
from emucamp.storage import CampaignStore

sys.path.insert(0, str(Path(__file__).parents[1] / "sims"))
from campaign_sims import profile_np

T = np.linspace(0.0, 1.0, 50)


def fields(X: np.ndarray) -> np.ndarray:
    """``n x 51``: the 50-value curve, then a scalar (its mean)."""
    curves = np.array([profile_np(x1, x2, T) for x1, x2 in X])
    return np.column_stack([curves, curves.mean(axis=1)])


@pytest.fixture(scope="module")
def space() -> Space:
    return Space([Parameter("x1", 0.0, 1.0), Parameter("x2", 0.0, 1.0)])


@pytest.fixture(scope="module")
def field_emulator(space) -> GPEmulator:
    X = space.sobol(32, seed=0)
    basis = OutputBasis(["curve", "level"], {"curve": (50,)}, retained={"curve": 0.9999})
    return GPEmulator(space, ["curve", "level"], basis=basis).fit(X, fields(X))


def test_the_basis_keeps_the_requested_variance_with_few_orthonormal_components(space):
    Y = fields(space.sobol(32, seed=1))
    basis = OutputBasis(["curve", "level"], {"curve": (50,)}, retained={"curve": 0.999}).fit(Y)
    summary = basis.summary()["curve"]
    assert summary["retained"] >= 0.999 and 1 < summary["components"] <= 6
    V = basis._components["curve"]
    np.testing.assert_allclose(V @ V.T, np.eye(len(V)), atol=1e-10)
    assert basis.latent_names == [*[f"curve_pc{j}" for j in range(len(V))], "level"]
    # Through the basis and back, with no uncertainty: only the discarded variance is lost.
    Z = basis.to_latent(Y)
    back, std = basis.from_latent(Z, np.zeros_like(Z))
    lost = np.sum((back[:, :50] - Y[:, :50]) ** 2) / np.sum((Y[:, :50] - Y[:, :50].mean(0)) ** 2)
    assert lost == pytest.approx(1 - summary["retained"], abs=1e-12)
    np.testing.assert_allclose(back[:, 50], Y[:, 50])
    np.testing.assert_allclose(std[:, :50] ** 2, np.tile(basis._discarded["curve"], (32, 1)))
    assert basis.latent_weights()[-1] == 1.0 and basis.latent_weights()[:-1].sum() <= 1.0


def test_max_components_caps_the_basis(space):
    Y = fields(space.sobol(32, seed=1))
    basis = OutputBasis(["curve", "level"], {"curve": (50,)}, {"curve": 1.0}, {"curve": 2}).fit(Y)
    assert basis.summary()["curve"]["components"] == 2


def test_a_field_emulator_predicts_whole_fields_with_honest_std(space, field_emulator):
    X_test = np.random.default_rng(2).random((300, 2))
    truth = fields(X_test)
    mean, std = field_emulator.predict(X_test)
    assert mean.shape == std.shape == (300, 51)
    nrmse = np.sqrt(np.mean((mean[:, :50] - truth[:, :50]) ** 2)) / truth[:, :50].std()
    assert nrmse < 0.02
    assert (std > 0).all()
    inside = np.mean(np.abs(mean - truth) <= 3 * std + 1e-9)
    assert inside > 0.85
    assert field_emulator.n_latent == field_emulator.basis.summary()["curve"]["components"] + 1
    assert field_emulator.lengthscales.shape == (2, 2)


def test_a_field_emulator_predicts_a_table_and_round_trips(space, field_emulator, tmp_path):
    import pandas as pd

    out = field_emulator.predict(pd.DataFrame({"x1": [0.2, 0.7], "x2": [0.5, 0.1]}))
    assert [f"curve_mean_{i}" for i in range(50)] == [c for c in out if c.startswith("curve_mean")]
    assert "curve_std_49" in out and "level_mean" in out and "ood" in out
    with CampaignStore.create(tmp_path / "f.zarr", ["x1", "x2"], ["curve", "level"],
                              output_shapes={"curve": [50]}) as store:  # fmt: skip
        store.save_emulator(field_emulator.state())
    loaded = load_emulator(tmp_path / "f.zarr")
    X = np.random.default_rng(3).random((10, 2))
    np.testing.assert_allclose(loaded.predict(X)[0], field_emulator.predict(X)[0], rtol=1e-9)
    np.testing.assert_allclose(loaded.predict(X)[1], field_emulator.predict(X)[1], rtol=1e-9)
