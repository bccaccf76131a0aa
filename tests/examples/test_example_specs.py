from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from emucamp.campaign import build_simulator, load_pool
from emucamp.simulator import CommandSimulator, PythonSimulator, SimJob, run_simulation
from emucamp.spec import load_spec

EXAMPLES = Path(__file__).parents[2] / "examples"
SPECS = sorted(EXAMPLES.glob("*/*.toml"))


def test_every_example_folder_has_a_spec_and_a_readme():
    folders = {p.parent for p in SPECS}
    assert {f.name for f in folders} >= {"alloys", "heat2d", "testfunctions"}
    assert all((f / "README.md").is_file() for f in folders)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_spec_validates_and_its_simulator_runs_once(path, tmp_path):
    spec = load_spec(path)
    row = None
    if spec.pool is not None:
        spec, pool = load_pool(spec)  # bounds come from the pool
        assert len(pool) > 1000
        row = dict(zip(pool.names, map(float, pool.features[len(pool) // 2]), strict=True))
    assert spec.store_path.parent == path.parent / "runs"
    simulator = build_simulator(spec)  # imports the callable now
    assert isinstance(simulator, PythonSimulator | CommandSimulator)
    if isinstance(simulator, CommandSimulator):
        simulator = dataclasses.replace(simulator, workdir=str(tmp_path))
    centre = {p.name: (p.low * p.high) ** 0.5 if p.log else (p.low + p.high) / 2
              for p in spec.space}  # fmt: skip
    result = run_simulation(simulator, SimJob(0, row or centre), spec.output_names)
    assert result.ok, result.error
    assert set(spec.output_names) <= set(result.outputs)
