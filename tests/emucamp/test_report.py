"""`emucamp report`: plots and an index from a real campaign's store."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emucamp.campaign import Campaign
from emucamp.cli import app
from emucamp.errors import StoreError
from emucamp.executors import PoolExecutor
from emucamp.report import write_report
from emucamp.spec import parse_spec
from emucamp.storage import CampaignStore


def run(spec):
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, workers=2) as ex:
        return campaign.run(ex)


SIMS = Path(__file__).parents[1] / "sims"


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("report") / "r.zarr"
    run(parse_spec({
        "campaign": {"name": "r", "store": str(store), "seed": 0},
        "simulator": {"function": "campaign_sims:logged"},
        "parameters": {"x1": {"low": 0.0, "high": 1.0}, "x2": {"low": 1.0, "high": 100.0,
                                                             "log": True}},
        "outputs": {"y": {}, "y2": {}},
        "stop": {"max_simulations": 24, "target_std": 0.01},
        "execution": {"workers": 2},
    }, base_dir=SIMS))  # fmt: skip
    return store


def images(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: mpimg.imread(p) for p in sorted(folder.glob("*.png"))}


def test_report_writes_every_plot_and_an_index_that_shows_them(campaign_store, tmp_path):
    index = write_report(campaign_store, tmp_path / "rep")
    pngs = images(tmp_path / "rep")
    assert set(pngs) == {"convergence.png", "parity-y.png", "parity-y2.png", "relevance.png",
                         "slice-y.png", "slice-y2.png"}  # fmt: skip
    for name, image in pngs.items():
        assert image.shape[0] > 300 and image.shape[1] > 300, name
        assert image[..., :3].std() > 0.05, name  # something is drawn, not a blank canvas
    text = index.read_text()
    assert all(f"]({name})" in text for name in pngs)
    assert "24 ok, 0 failed" in text and "load_emulator" in text
    assert "## Best and worst regions" in text
    assert "| y | " in text and "| y2 | " in text and "x2=" in text


def test_report_of_a_screening_store_shows_the_pool(tmp_path, sims_dir):
    g = np.linspace(0.0, 1.0, 30)
    x1, x2 = (a.ravel() for a in np.meshgrid(g, g))
    pd.DataFrame({"x1": x1, "x2": x2}).to_csv(tmp_path / "pool.csv", index=False)
    run(parse_spec({
        "campaign": {"name": "s", "store": str(tmp_path / "s.zarr")},
        "simulator": {"function": "campaign_sims:smooth2d"},
        "parameters": {"x1": {}, "x2": {}},
        "outputs": {"y": {}},
        "pool": {"path": str(tmp_path / "pool.csv")},
        "goal": {"output": "y", "below": 1.2},
        "design": {"strategy": "straddle"},
        "stop": {"max_simulations": 20},
        "execution": {"workers": 2},
    }, base_dir=sims_dir))  # fmt: skip
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "pool.png" in images(tmp_path / "r")
        and "![pool](pool.png)" in (tmp_path / "r" / "index.md").read_text()
    )


def test_report_without_an_emulator_is_one_line(tmp_path):
    CampaignStore.create(tmp_path / "empty.zarr", ["a"], ["y"]).close()
    with pytest.raises(StoreError, match="no fitted emulator yet"):
        write_report(tmp_path / "empty.zarr", tmp_path / "rep")
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "empty.zarr"), "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "no fitted emulator yet" in result.stderr
    assert not (tmp_path / "r").exists()
