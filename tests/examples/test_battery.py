"""The battery example: real PyBaMM DFN runs, its physics prior, and the grey box it feeds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emucamp.campaign import Campaign
from emucamp.emulators.gp import GPEmulator, load_emulator
from emucamp.emulators.greybox import GreyBox
from emucamp.executors import PoolExecutor
from emucamp.spec import CampaignSpec, load_spec

BATTERY = Path(__file__).resolve().parents[2] / "examples" / "battery"
sys.path.insert(0, str(BATTERY))
import battery  # noqa: E402

NAMES = list(battery.BOUNDS)
LO, HI = np.array([battery.BOUNDS[k] for k in NAMES]).T


def uniform(n: int, seed: int) -> np.ndarray:
    return LO + (HI - LO) * np.random.default_rng(seed).random((n, len(NAMES)))


def dfn(X: np.ndarray) -> np.ndarray:
    return np.array([battery.discharge(*map(float, row))["voltage"] for row in X])


@pytest.fixture(scope="module")
def heldout() -> tuple[np.ndarray, np.ndarray]:
    """40 uniform random inputs over the example's box and their DFN voltages (~5 s)."""
    X = uniform(40, seed=11)
    return X, dfn(X)


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a**2)))


def test_the_prior_is_vectorised_cheap_and_close_to_the_dfn(heldout):
    X, V = heldout
    prior = battery.ocv_minus_overpotentials(*X.T)
    assert prior.shape == (len(X),) and prior.dtype == np.float64
    one = battery.ocv_minus_overpotentials(*X[3])  # scalars broadcast too
    assert np.shape(one) == () and float(one) == pytest.approx(prior[3], abs=1e-12)
    terms = battery.voltage_terms(*X.T)
    drop = sum(terms[k] for k in terms if k != "ocv")
    np.testing.assert_allclose(terms["ocv"] - drop, prior, atol=1e-12)
    assert all(np.all(terms[k] > 0) for k in terms)  # every overpotential costs voltage

    residual = V - prior
    assert rms(residual) < 0.06 * V.std()  # measured 0.035 on 300 points
    assert rms(residual) < 0.4 * rms(V - battery.ocv_minus_ohmic(*X.T))  # measured 0.2

    big = uniform(10_000, seed=1)
    battery.ocv_minus_overpotentials(*big.T)
    start = time.perf_counter()
    out = battery.ocv_minus_overpotentials(*big.T)
    assert time.perf_counter() - start < 0.2  # ~6 ms
    assert np.all(np.isfinite(out)) and np.all((out > 2.5) & (out < 4.3))


def test_the_prior_gets_the_temperature_effect_from_the_arrhenius_kinetics():
    # 2C, a quarter of the charge drawn: the DFN gains 0.126 V from 268 K to 318 K.
    temps = np.array([268.15, 318.15])
    volts = dfn(np.column_stack([np.full(2, 10.0), temps, np.full(2, 1.25)]))
    prior = battery.ocv_minus_overpotentials(10.0, temps, 1.25)
    gain, predicted = volts[1] - volts[0], prior[1] - prior[0]
    assert gain > 0.1
    assert predicted == pytest.approx(gain, rel=0.15)
    ohmic = battery.ocv_minus_ohmic(10.0, temps, 1.25)
    assert ohmic[1] == ohmic[0]  # the first prior has no temperature effect


def test_discharge_raises_past_the_cut_off_and_on_bad_inputs():
    with pytest.raises(battery.DischargeError, match=r"stopped early .* of the requested 4\.9 A h"):
        battery.discharge(10.0, 268.15, 4.9)  # 2C in the cold reaches 2.5 V first
    with pytest.raises(ValueError, match="current must be finite and > 0"):
        battery.discharge(0.0, 298.15, 1.0)
    with pytest.raises(ValueError, match="capacity_used"):
        battery.discharge(1.0, 298.15, float("nan"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_grey_box_beats_the_black_box_on_the_same_twelve_simulations(heldout, seed):
    spec = load_spec(BATTERY / "campaign_greybox.toml")
    X = spec.space.sobol(12, seed=seed)
    Y = dfn(X)[:, None]
    prior = spec.emulator.prior_mean
    grey = GreyBox(["voltage"], NAMES, prior_mean=prior, search_path=[str(BATTERY)])
    errors = {}
    for name, box in (("black", None), ("grey", grey)):
        emulator = GPEmulator(spec.space, ["voltage"], greybox=box).fit(X, Y)
        mean, _ = emulator.predict(heldout[0])
        errors[name] = rms(mean[:, 0] - heldout[1])
    assert errors["grey"] < 0.5 * errors["black"], errors  # measured ~0.3
    assert errors["grey"] < 0.012, errors  # 12 mV


def test_the_greybox_spec_runs_and_its_saved_emulator_keeps_the_prior(tmp_path, heldout):
    spec = load_spec(BATTERY / "campaign_greybox.toml")
    data = spec.to_json_dict()
    data["campaign"]["store"] = str(tmp_path / "grey.zarr")
    data["design"]["initial"] = 6
    data["stop"] = {"max_simulations": 10}
    spec = CampaignSpec.model_validate(data).with_base_dir(BATTERY)
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, workers=2) as ex:
        outcome = campaign.run(ex)
    assert outcome.counts["ok"] == 10 and outcome.counts["failed"] == 0
    emulator = load_emulator(tmp_path / "grey.zarr")
    assert emulator.greybox.prior_path == "battery:ocv_minus_overpotentials"
    mean, std = emulator.predict(heldout[0])
    assert rms(mean[:, 0] - heldout[1]) < 0.015  # the black box: 20-45 mV at n = 10
    assert np.all(std[:, 0] > 0)
