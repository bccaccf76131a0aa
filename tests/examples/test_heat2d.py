from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HEAT_PY = Path(__file__).resolve().parents[2] / "examples" / "heat2d" / "heat.py"
BASE = {"conductivity": 0.03, "source": 5.0, "h_coeff": 1.0}


@pytest.fixture(scope="module")
def heat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("heat2d_example_heat", HEAT_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base(heat: ModuleType) -> dict[str, float]:
    result: dict[str, float] = heat.simulate(**BASE)
    return result


def test_outputs_finite_and_deterministic(heat: ModuleType, base: dict[str, float]) -> None:
    assert set(base) == {"t_max", "t_mean"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in base.values())
    assert base["t_max"] > base["t_mean"] > 0.0
    assert heat.simulate(**BASE) == base


def test_more_source_hotter_peak(heat: ModuleType, base: dict[str, float]) -> None:
    hotter = heat.simulate(**dict(BASE, source=8.0))
    assert hotter["t_max"] > base["t_max"]
    # The problem is linear in the source strength.
    assert hotter["t_max"] == pytest.approx(base["t_max"] * 8.0 / 5.0, rel=1e-9)


def test_more_cooling_cooler_mean(heat: ModuleType, base: dict[str, float]) -> None:
    cooler = heat.simulate(**dict(BASE, h_coeff=5.0))
    assert cooler["t_mean"] < base["t_mean"]
    assert cooler["t_max"] <= base["t_max"]


def test_more_conduction_flatter_peak(heat: ModuleType, base: dict[str, float]) -> None:
    spread = heat.simulate(**dict(BASE, conductivity=0.08))
    assert spread["t_max"] < base["t_max"]


def test_rejects_unphysical_inputs(heat: ModuleType) -> None:
    with pytest.raises(ValueError, match="conductivity"):
        heat.simulate(**dict(BASE, conductivity=-1.0))
    with pytest.raises(ValueError, match="finite"):
        heat.simulate(**dict(BASE, h_coeff=math.nan))


def test_cli_prints_json_on_last_line(base: dict[str, float]) -> None:
    argv = [sys.executable, str(HEAT_PY), "--conductivity", "0.03", "--source", "5"]
    proc = subprocess.run(
        [*argv, "--h-coeff", "1"], capture_output=True, text=True, timeout=60, check=True
    )
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    assert json.loads(last) == pytest.approx(base)


def test_cli_bad_input_fails() -> None:
    proc = subprocess.run(
        [sys.executable, str(HEAT_PY), "--conductivity", "0", "--n", "8", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "conductivity" in proc.stderr
