from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emucamp.cli import app

BRANIN_SPEC = """\
[campaign]
name = "branin"

[simulator]
function = "emucamp.testfunctions:branin"

[parameters]
x1 = { low = -5.0, high = 10.0 }
x2 = { low = 0.0, high = 15.0 }

[outputs]
y = {}

[stop]
max_simulations = 12
"""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    return _ANSI.sub("", text)


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder that specs are written into."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def good_spec(project: Path) -> Path:
    path = project / "branin.toml"
    path.write_text(BRANIN_SPEC)
    return path


@pytest.fixture
def bad_spec(project: Path) -> Path:
    """The branin spec with a negative simulation budget."""
    path = project / "bad.toml"
    path.write_text(BRANIN_SPEC.replace("max_simulations = 12", "max_simulations = -5"))
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_validate_good_spec(cli: CliRunner, good_spec: Path, project: Path) -> None:
    result = cli.invoke(app, ["validate", str(good_spec)])
    assert result.exit_code == 0, result.output
    out = plain(result.stdout)
    assert out.startswith("ok ")
    # The console may wrap the line to the terminal width; compare without the wrapping.
    assert "2 parameters, 1 outputs" in re.sub(r"\s+", " ", out)
    assert str(project.resolve() / "runs" / "branin.zarr") in out.replace("\n", "")
    # Validation writes nothing: no store, no runs folder.
    assert files_under(project) == ["branin.toml"]


def test_validate_bad_spec(cli: CliRunner, bad_spec: Path, project: Path) -> None:
    result = cli.invoke(app, ["validate", str(bad_spec)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert "stop.max_simulations" in err
    assert "-5" in err
    assert result.stdout == ""
    assert files_under(project) == ["bad.toml"]


def test_validate_spec_with_a_long_path_stays_on_one_line(cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / ("deeply_nested_folder_name_" * 4)
    folder.mkdir()
    path = folder / "bad.toml"
    path.write_text(BRANIN_SPEC.replace('name = "branin"', 'name = "has space"'))
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1, err
    assert "campaign.name" in err


def test_validate_unimportable_simulator(cli: CliRunner, project: Path) -> None:
    path = project / "spec.toml"
    path.write_text(BRANIN_SPEC.replace("emucamp.testfunctions:branin", "emucamp_nope_x:run"))
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1
    assert "simulator.function" in err
    assert "emucamp_nope_x" in err


def test_validate_finds_a_simulator_beside_the_spec(cli: CliRunner, project: Path) -> None:
    (project / "emucamp_cli_local_sim.py").write_text("def run(x1, x2):\n    return x1 + x2\n")
    path = project / "spec.toml"
    path.write_text(
        BRANIN_SPEC.replace("emucamp.testfunctions:branin", "emucamp_cli_local_sim:run")
    )
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_validate_infinite_bound(cli: CliRunner, project: Path) -> None:
    path = project / "spec.toml"
    path.write_text(BRANIN_SPEC.replace("high = 15.0", "high = inf"))
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "parameters.x2" in plain(result.stderr)


def test_validate_missing_spec(cli: CliRunner, project: Path) -> None:
    result = cli.invoke(app, ["validate", str(project / "nope.toml")])
    assert result.exit_code == 2
    assert "spec file not found" in plain(result.stderr)


def test_run_bad_spec_creates_no_store(cli: CliRunner, bad_spec: Path, project: Path) -> None:
    result = cli.invoke(app, ["run", str(bad_spec)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1, err
    assert "stop.max_simulations" in err
    assert files_under(project) == ["bad.toml"]


def test_run_toml_syntax_error(cli: CliRunner, project: Path) -> None:
    path = project / "broken.toml"
    path.write_text(BRANIN_SPEC.replace("[outputs]", "[outputs"))
    result = cli.invoke(app, ["run", str(path), "--json"])
    assert result.exit_code == 2
    assert "not valid TOML" in plain(result.stderr)
    assert result.stdout == ""
    assert files_under(project) == ["broken.toml"]


def test_status_missing_store(cli: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "nothing.zarr"
    result = cli.invoke(app, ["status", str(missing)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1, err
    assert str(missing) in err
    assert "no campaign store here" in err
    assert not missing.exists()


def test_status_folder_that_is_not_a_store(cli: CliRunner, project: Path) -> None:
    result = cli.invoke(app, ["status", str(project), "--json"])
    assert result.exit_code == 2
    assert "no campaign store here" in plain(result.stderr)
    assert result.stdout == ""


def test_predict_missing_store(cli: CliRunner, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.csv"
    inputs.write_text("x1,x2\n0.0,1.0\n2.5,7.0\n")
    out = tmp_path / "pred.csv"
    missing = tmp_path / "missing.zarr"
    result = cli.invoke(app, ["predict", str(missing), str(inputs), "-o", str(out)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1, err
    assert "missing.zarr" in err
    assert not out.exists()
    assert not missing.exists()


def test_predict_missing_inputs(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["predict", str(tmp_path / "s.zarr"), str(tmp_path / "in.csv")])
    assert result.exit_code == 2
    assert "inputs file not found" in plain(result.stderr)


@pytest.fixture(scope="module")
def fitted_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a real emulator fitted on 12 Branin runs (no campaign needed)."""
    from emucamp.emulators.gp import GPEmulator
    from emucamp.space import Parameter, Space
    from emucamp.storage import CampaignStore
    from emucamp.testfunctions import branin_np

    space = Space([Parameter("x1", -5.0, 10.0), Parameter("x2", 0.0, 15.0)])
    X = space.sobol(12, seed=0)
    path = tmp_path_factory.mktemp("predict") / "branin.zarr"
    with CampaignStore.create(path, space.names, ["y"]) as store:
        store.save_emulator(GPEmulator(space, ["y"]).fit(X, branin_np(X)[:, None]).state())
    return path


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("x1\n0.0\n", "missing parameter column(s) ['x2']"),
        ("x1,X2\n0.0,1.0\n", "missing parameter column(s) ['x2']"),
        ("x1,x2\n0.0,1.0\n2.0,seven\n", "row 1, column 'x2' is not a number: 'seven'"),
        ("x1,x2\n0.0,inf\n", "row 0, column 'x2' is not a finite number"),
        ("x1,x2\n,1.0\n", "row 0, column 'x1' is not a finite number"),
        ("x1,x2\nnan,1.0\n", "row 0, column 'x1' is not a finite number"),
        ("x1,x2,y_mean\n0.0,1.0,3.0\n", "column 'y_mean' would be overwritten"),
        ('x1,x2\n"0.0,1.0\n', "not a readable CSV"),
    ],
)
def test_predict_bad_csv_is_one_line_naming_the_column(
    cli: CliRunner, fitted_store: Path, tmp_path: Path, csv: str, message: str
) -> None:
    inputs, out = tmp_path / "inputs.csv", tmp_path / "pred.csv"
    inputs.write_text(csv)
    result = cli.invoke(app, ["predict", str(fitted_store), str(inputs), "-o", str(out)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1 and message in err and "inputs.csv" in err, err
    assert not out.exists() and not list(tmp_path.glob("pred.csv*"))  # nothing half-written


def test_predict_passes_extra_columns_through(
    cli: CliRunner, fitted_store: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from emucamp.testfunctions import branin

    inputs, out = tmp_path / "inputs.csv", tmp_path / "pred.csv"
    inputs.write_text("id,x2,x1,note\na,2.0,1.0,first\nb,12.0,-3.0,second\n")
    result = cli.invoke(app, ["predict", str(fitted_store), str(inputs), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "id",
        "x2",
        "x1",
        "note",
        "y_mean",
        "y_std",
        "ood_distance",
        "ood",
    ]
    assert list(table["id"]) == ["a", "b"] and list(table["note"]) == ["first", "second"]
    truth = [branin(x1=1.0, x2=2.0), branin(x1=-3.0, x2=12.0)]
    assert all(abs(m - t) < 4 * s + 0.1 * abs(t) for m, t, s in
               zip(table["y_mean"], truth, table["y_std"], strict=True))  # fmt: skip


def test_export_without_a_pool_is_one_line(
    cli: CliRunner, fitted_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hits.csv"
    result = cli.invoke(app, ["export", str(fitted_store), "--passing", "-o", str(out)])
    assert result.exit_code == 2
    err = plain(result.stderr).strip()
    assert len(err.splitlines()) == 1 and "no candidate pool in this store" in err
    assert not out.exists()
    missing = cli.invoke(app, ["export", str(tmp_path / "none.zarr")])
    assert missing.exit_code == 2 and "no campaign store here" in plain(missing.stderr)


def test_live_view_says_starting_until_the_store_exists_then_shows_it(tmp_path: Path) -> None:
    import time

    from rich.console import Console

    from emucamp.cli import _LiveView
    from emucamp.storage import CampaignStore

    path = tmp_path / "live.zarr"
    view = _LiveView(path, since=time.time())
    console = Console(width=120, record=True)
    console.print(view())
    assert "starting" in console.export_text()
    spec = {"campaign": {"name": "live"}, "stop": {"max_simulations": 7}}
    CampaignStore.create(path, ["a"], ["u"], spec).close()
    view.refresh()
    console.print(view())
    text = console.export_text()
    assert "0/7 simulations" in text and "running" in text  # the caller runs it


def test_predict_warns_with_the_count_of_out_of_distribution_rows(
    cli: CliRunner, fitted_store: Path, tmp_path: Path
) -> None:
    import pandas as pd

    inputs, out = tmp_path / "inputs.csv", tmp_path / "pred.csv"
    inputs.write_text("x1,x2\n1.0,2.0\n2.5,7.5\n25.0,7.5\n-9.0,30.0\n")  # two beyond the bounds
    result = cli.invoke(app, ["predict", str(fitted_store), str(inputs), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "2 of 4 rows are out of distribution" in plain(result.stderr)
    table = pd.read_csv(out)
    assert list(table["ood"]) == [False, False, True, True]
    assert (table["ood_distance"] > 0).all()


@pytest.fixture(scope="module")
def ishigami_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding an emulator fitted on 256 Ishigami runs."""
    from emucamp.emulators.gp import GPEmulator
    from emucamp.space import Parameter, Space
    from emucamp.storage import CampaignStore
    from emucamp.testfunctions import DOMAINS, ishigami_np

    space = Space([Parameter(name, lo, hi) for name, (lo, hi) in DOMAINS["ishigami"].items()])
    X = space.sobol(256, seed=1)
    path = tmp_path_factory.mktemp("sensitivity") / "ishigami.zarr"
    with CampaignStore.create(path, space.names, ["y"]) as store:
        store.save_emulator(GPEmulator(space, ["y"]).fit(X, ishigami_np(X)[:, None]).state())
    return path


def test_sensitivity_prints_and_stores_sobol_indices(cli: CliRunner, ishigami_store: Path) -> None:
    from emucamp.storage import CampaignStore

    result = cli.invoke(app, ["sensitivity", str(ishigami_store), "--samples", "2048"])
    assert result.exit_code == 0, result.stderr
    cells = [
        [c.strip() for c in line.split("│")[1:-1]] for line in plain(result.stdout).splitlines()
    ]
    rows = [c for c in cells if c and c[0] == "y"]
    assert [c[1] for c in rows] == ["x1", "x2", "x3"]  # ranked by total index
    stored = CampaignStore.open(ishigami_store).sensitivity
    assert stored is not None and stored["parameters"] == ["x1", "x2", "x3"]
    # Ishigami (a = 7, b = 0.1) in closed form: S1 = (0.314, 0.442, 0), ST = (0.558, 0.442, 0.244)
    np.testing.assert_allclose(stored["s1"][0], [0.314, 0.442, 0.0], atol=0.05)
    np.testing.assert_allclose(stored["st"][0], [0.558, 0.442, 0.244], atol=0.05)
    status = cli.invoke(app, ["status", str(ishigami_store)])
    assert "Total Sobol indices of y: x1 0.5" in plain(status.stdout)


def test_sensitivity_json_and_a_bad_sample_count(cli: CliRunner, ishigami_store: Path) -> None:
    import json

    result = cli.invoke(app, ["sensitivity", str(ishigami_store), "--json", "--samples", "256"])
    assert result.exit_code == 0 and json.loads(result.stdout)["evaluations"] == 256 * 5
    bad = cli.invoke(app, ["sensitivity", str(ishigami_store), "--samples", "1000"])
    assert bad.exit_code == 2 and "--samples" in plain(bad.stderr) and "1000" in plain(bad.stderr)
