"""The alloy screening example: real ASE EMT relaxations, screened from a slice of its pool."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emucamp.campaign import Campaign
from emucamp.executors import PoolExecutor
from emucamp.spec import load_spec
from emucamp.storage import CampaignStore

ALLOYS = Path(__file__).resolve().parents[2] / "examples" / "alloys"
sys.path.insert(0, str(ALLOYS))
import alloy_emt  # noqa: E402


def test_pure_metals_have_zero_formation_energy_and_mixing_is_physical():
    assert alloy_emt.formation_energy(0.0, 0.0, 0.0)["formation_energy"] == pytest.approx(
        0, abs=1e-6
    )
    cu_pd = alloy_emt.formation_energy(0.0, 0.0, 0.5)
    cu_ag = alloy_emt.formation_energy(0.5, 0.0, 0.0)
    assert cu_pd["formation_energy"] < 0 < cu_ag["formation_energy"]  # Cu-Pd mixes, Cu-Ag not
    assert 3.6 < cu_pd["lattice"] < 3.9  # between the pure Cu and Pd lattice constants
    with pytest.raises(ValueError, match="do not fit"):
        alloy_emt.counts_of(0.5, 0.5, 0.5)


def test_the_example_pool_is_every_composition_once():
    pool = pd.read_csv(ALLOYS / "candidates.csv")
    assert len(pool) == 6545 and pool["formula"].is_unique
    assert (pool[["x_ag", "x_au", "x_pd"]].sum(axis=1) <= 1 + 1e-12).all()


def test_screening_the_cu_pd_line_with_the_example_spec(tmp_path):
    """The example's own spec, on the 33 Cu-Pd compositions."""
    pool = pd.read_csv(ALLOYS / "candidates.csv")
    line = pool[(pool["x_ag"] == 0) & (pool["x_au"] == 0)]
    line.to_csv(tmp_path / "line.csv", index=False)
    spec = load_spec(ALLOYS / "campaign.toml")
    data = spec.to_json_dict()
    data["campaign"]["store"] = str(tmp_path / "line.zarr")
    data["pool"]["path"] = str(tmp_path / "line.csv")
    data["parameters"] = {"x_pd": {}, "x_ag": {"low": 0.0, "high": 1.0},
                          "x_au": {"low": 0.0, "high": 1.0}}  # fmt: skip
    data["design"]["initial"] = 6
    data["stop"]["max_simulations"] = 10
    spec = type(spec).model_validate(data).with_base_dir(ALLOYS)
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, workers=2) as ex:
        outcome = campaign.run(ex)
    assert outcome.counts["ok"] >= 6 and outcome.counts["failed"] == 0
    store = CampaignStore.open(tmp_path / "line.zarr")
    cand = store.candidates()
    done = cand["sample"] >= 0
    x_pd = cand["features"][:, 0]
    direct = [alloy_emt.formation_energy(0.0, 0.0, x)["formation_energy"] for x in x_pd[done][:2]]
    np.testing.assert_allclose(cand["mean"][done, 0][:2], direct, rtol=1e-9)  # stored = run
    # Cu and Pd mix exothermically under EMT: most of the line passes.
    assert (cand["passes"] == 1).sum() > len(line) // 2
