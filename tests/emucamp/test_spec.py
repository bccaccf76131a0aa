from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emucamp.errors import SpecError
from emucamp.spec import CampaignSpec, load_spec, parse_spec

# A minimal valid spec, section by section, so each bad case below replaces one section.
CAMPAIGN = '[campaign]\nname = "branin"\n'
SIMULATOR = '[simulator]\nfunction = "emucamp.testfunctions:branin"\n'
PARAMETERS = "[parameters]\nx1 = { low = -5.0, high = 10.0 }\nx2 = { low = 0.0, high = 15.0 }\n"
OUTPUTS = "[outputs]\ny = {}\n"


def toml(
    campaign: str = CAMPAIGN,
    simulator: str = SIMULATOR,
    parameters: str = PARAMETERS,
    outputs: str = OUTPUTS,
    extra: str = "",
) -> str:
    """A spec's TOML text: the minimal valid one with some sections swapped out or added."""
    return "\n".join([campaign, simulator, parameters, outputs, extra])


def write(folder: Path, text: str, name: str = "spec.toml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# (id, TOML text, substring the one-line message must contain)
MALFORMED: list[tuple[str, str, str]] = [
    ("unknown-top-level-key", toml(extra="[budget]\nmax = 3\n"), "budget: unknown key"),
    (
        "unknown-key-in-section",
        toml(extra="[stop]\nmax_sims = 3\n"),
        "stop.max_sims: unknown key",
    ),
    (
        "unknown-key-in-parameter",
        toml(parameters='[parameters]\nx1 = { low = 0.0, high = 1.0, scale = "log" }\n'),
        "parameters.x1.scale: unknown key",
    ),
    (
        "max-simulations-not-int",
        toml(extra='[stop]\nmax_simulations = "many"\n'),
        "stop.max_simulations",
    ),
    ("workers-float", toml(extra="[execution]\nworkers = 2.5\n"), "execution.workers"),
    (
        "command-is-a-string",
        toml(simulator='[simulator]\ncommand = "python sim.py"\n'),
        "simulator.command",
    ),
    (
        "log-not-bool",
        toml(parameters='[parameters]\nx1 = { low = 1.0, high = 2.0, log = "maybe" }\n'),
        "parameters.x1.log",
    ),
    (
        "reversed-bounds",
        toml(parameters="[parameters]\nx1 = { low = 10.0, high = -5.0 }\n"),
        "parameters.x1: low (10) must be below high (-5)",
    ),
    (
        "equal-bounds",
        toml(parameters="[parameters]\nx1 = { low = 3.0, high = 3.0 }\n"),
        "parameters.x1: low (3) must be below high (3)",
    ),
    (
        "log-low-zero",
        toml(parameters="[parameters]\nk = { low = 0.0, high = 1.0, log = true }\n"),
        "parameters.k: log = true needs low > 0",
    ),
    (
        "log-low-negative",
        toml(parameters="[parameters]\nk = { low = -1.0, high = 1.0, log = true }\n"),
        "parameters.k: log = true needs low > 0",
    ),
    (
        "non-numeric-bound",
        toml(parameters='[parameters]\nx1 = { low = "zero", high = 1.0 }\n'),
        "parameters.x1.low",
    ),
    (
        "workdir-outside",
        toml(simulator='[simulator]\ncommand = ["./sim"]\nworkdir = "/tmp/elsewhere"\n'),
        "simulator: workdir '/tmp/elsewhere' must be a folder inside the campaign's folder",
    ),
    (
        "workdir-escapes",
        toml(simulator='[simulator]\ncommand = ["./sim"]\nworkdir = "runs/../../up"\n'),
        "must be a folder inside the campaign's folder",
    ),
    (
        "missing-bound",
        toml(parameters="[parameters]\nx1 = { low = 0.0 }\n"),
        "parameters.x1: low and high are required",
    ),
    ("empty-parameters", toml(parameters="[parameters]\n"), "parameters: at least one entry"),
    ("empty-outputs", toml(outputs="[outputs]\n"), "outputs: at least one entry"),
    ("missing-campaign", toml(campaign=""), "campaign: required but missing"),
    (
        "unknown-strategy",
        toml(extra='[design]\nstrategy = "max-entropy"\n'),
        "design.strategy",
    ),
    (
        "unknown-initial-method",
        toml(extra='[design]\ninitial_method = "grid"\n'),
        "design.initial_method",
    ),
    ("mc-points-too-few", toml(extra="[design]\nmc_points = 4\n"), "design.mc_points"),
    ("candidates-too-few", toml(extra="[design]\ncandidates = 8\n"), "design.candidates"),
    ("model-lag-zero", toml(extra="[design]\nmodel_lag = 0\n"), "design.model_lag"),
    (
        "max-fit-points-too-few",
        toml(extra="[emulator]\nmax_fit_points = 1\n"),
        "emulator.max_fit_points",
    ),
    (
        "function-and-command",
        toml(
            simulator='[simulator]\nfunction = "emucamp.testfunctions:branin"\n'
            'command = ["python", "sim.py"]\n'
        ),
        "simulator: give exactly one of 'function' or 'command'",
    ),
    (
        "neither-function-nor-command",
        toml(simulator="[simulator]\ntimeout = 10.0\n"),
        "simulator: give exactly one of 'function' or 'command'",
    ),
    (
        "function-without-colon",
        toml(simulator='[simulator]\nfunction = "emucamp.testfunctions.branin"\n'),
        "simulator: function 'emucamp.testfunctions.branin' is not an import path",
    ),
    (
        "function-with-spaces",
        toml(simulator='[simulator]\nfunction = "my module:run"\n'),
        "simulator: function 'my module:run'",
    ),
    (
        "empty-command",
        toml(simulator="[simulator]\ncommand = []\n"),
        "simulator: command must name a program",
    ),
    (
        "command-unknown-placeholder",
        toml(simulator='[simulator]\ncommand = ["{python}", "sim.py", "--x", "{x3}"]\n'),
        "simulator.command uses unknown placeholder(s) ['x3']",
    ),
    (
        "negative-max-simulations",
        toml(extra="[stop]\nmax_simulations = -5\n"),
        "stop.max_simulations: Input should be greater than 0 (got -5)",
    ),
    ("zero-workers", toml(extra="[execution]\nworkers = 0\n"), "execution.workers"),
    ("zero-target-std", toml(extra="[stop]\ntarget_std = 0.0\n"), "stop.target_std"),
    ("negative-target-std", toml(extra="[stop]\ntarget_std = -0.1\n"), "stop.target_std"),
    (
        "initial-exceeds-max-simulations",
        toml(extra="[design]\ninitial = 20\n[stop]\nmax_simulations = 10\n"),
        "design.initial (20) exceeds stop.max_simulations (10)",
    ),
    ("zero-initial", toml(extra="[design]\ninitial = 0\n"), "design.initial"),
    (
        "campaign-name-with-slash",
        toml(campaign='[campaign]\nname = "a/b"\n'),
        "campaign.name",
    ),
    ("campaign-name-empty", toml(campaign='[campaign]\nname = ""\n'), "campaign.name"),
    (
        "campaign-name-leading-dot",
        toml(campaign='[campaign]\nname = ".hidden"\n'),
        "campaign.name",
    ),
    ("negative-seed", toml(campaign='[campaign]\nname = "b"\nseed = -1\n'), "campaign.seed"),
    (
        "reserved-parameter-name",
        toml(parameters="[parameters]\nstatus = { low = 0.0, high = 1.0 }\n"),
        "parameters: 'status' is reserved",
    ),
    (
        "reserved-output-name",
        toml(outputs="[outputs]\nerror = {}\n"),
        "outputs: 'error' is reserved",
    ),
    (
        "parameter-name-not-identifier",
        toml(parameters='[parameters]\n"2x" = { low = 0.0, high = 1.0 }\n'),
        "parameters: '2x' is not a valid name",
    ),
    (
        "parameter-name-keyword",
        toml(parameters="[parameters]\nlambda = { low = 0.0, high = 1.0 }\n"),
        "parameters: 'lambda' is not a valid name",
    ),
    (
        "parameter-and-output-same-name",
        toml(outputs="[outputs]\nx1 = {}\n"),
        "names used both as parameter and output: ['x1']",
    ),
    (
        "emulator-prior-not-an-import-path",
        toml(extra='[emulator]\nprior_mean = "physics.prior"\n'),
        "emulator.prior_mean",
    ),
    (
        "emulator-ood-chi2-level-one",
        toml(extra='[emulator]\nood_method = "chi2"\nood_level = 1.0\n'),
        "ood_level must be below 1",
    ),
    (
        "emulator-ood-unknown-method",
        toml(extra='[emulator]\nood_method = "knn"\n'),
        "emulator.ood_method",
    ),
    (
        "emulator-unknown-kernel",
        toml(extra='[emulator]\nkernel = "cubic"\n'),
        "emulator.kernel",
    ),
    (
        "output-positive-not-bool",
        toml(outputs='[outputs]\ny = { positive = "maybe" }\n'),
        "outputs.y.positive",
    ),
    (
        "parameter-named-ood",
        toml(parameters="[parameters]\nood = { low = 0.0, high = 1.0 }\n"),
        "'ood' is reserved",
    ),
    (
        "field-shape-zero",
        toml(outputs="[outputs]\ny = { shape = [0] }\n"),
        "outputs.y: shape must list positive sizes",
    ),
    (
        "retained-variance-without-shape",
        toml(outputs="[outputs]\ny = { retained_variance = 0.99 }\n"),
        "apply to a field (shape)",
    ),
    (
        "positive-field",
        toml(outputs="[outputs]\ny = { shape = [10], positive = true }\n"),
        "positive applies to a scalar output",
    ),
    (
        "field-with-prior-mean",
        toml(outputs="[outputs]\ny = { shape = [10] }\n", extra='[emulator]\nprior_mean = "m:f"\n'),
        "field output(s) ['y'] cannot be used with emulator.prior_mean",
    ),
    (
        "bad-execution-address",
        toml(extra='[execution]\naddress = "localhost:8786"\n'),
        "execution.address",
    ),
    (
        "max-failure-rate-above-one",
        toml(extra="[stop]\nmax_failure_rate = 1.5\n"),
        "stop.max_failure_rate",
    ),
    (
        "zero-max-failure-rate",
        toml(extra="[stop]\nmax_failure_rate = 0\n"),
        "stop.max_failure_rate",
    ),
    ("zero-timeout", toml(simulator=SIMULATOR + "timeout = 0\n"), "simulator.timeout"),
    ("negative-timeout", toml(simulator=SIMULATOR + "timeout = -1.0\n"), "simulator.timeout"),
    ("negative-retries", toml(simulator=SIMULATOR + "retries = -1\n"), "simulator.retries"),
    ("zero-max-hours", toml(extra="[stop]\nmax_hours = 0\n"), "stop.max_hours"),
    ("store-not-string", toml(campaign='[campaign]\nname = "b"\nstore = 5\n'), "campaign.store"),
    ("toml-syntax-error", toml(extra="[stop\nmax_simulations = 3\n"), "not valid TOML"),
    (
        "parameters-not-a-table",
        'parameters = "x1"\n' + toml(parameters=""),
        "parameters: Input should be a valid dictionary",
    ),
    (
        "nan-bound",
        toml(parameters="[parameters]\nx1 = { low = nan, high = 1.0 }\n"),
        "parameters.x1",
    ),
    # Infinite bounds pass ParameterSpec (low < inf holds) and only fail later, in Space.
    (
        "infinite-high-bound",
        toml(parameters="[parameters]\nx1 = { low = 0.0, high = inf }\n"),
        "parameters.x1",
    ),
    (
        "infinite-low-bound",
        toml(parameters="[parameters]\nx1 = { low = -inf, high = 0.0 }\n"),
        "parameters.x1",
    ),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in MALFORMED])
def test_malformed_spec_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert expected in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_at_least_25_malformed_cases() -> None:
    assert len(MALFORMED) >= 25
    assert len({i for i, _, _ in MALFORMED}) == len(MALFORMED)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml")


def test_non_utf8_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(toml().encode() + "# température\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1\.toml: not UTF-8 text"):
        load_spec(path)


def test_folder_is_not_a_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path, toml(), name="spec.json")
    with pytest.raises(SpecError, match=r"unknown spec format '\.json'"):
        load_spec(path)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "campaign: {name: [unclosed\n", name="spec.yaml")
    with pytest.raises(SpecError, match="not valid YAML") as info:
        load_spec(path)
    assert "\n" not in str(info.value)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- campaign\n- simulator\n", name="spec.yml")
    with pytest.raises(SpecError, match="expected a table of sections, got list"):
        load_spec(path)


def test_several_errors_are_counted_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, toml(extra="[stop]\nmax_simulations = -1\ntarget_std = -1\n"))
    with pytest.raises(SpecError, match=r"\[\+1 more error\]") as info:
        load_spec(path)
    assert "\n" not in str(info.value)


# -- valid specs --------------------------------------------------------------------------

FULL_TOML = """\
[campaign]
name = "borehole-demo"
seed = 7

[simulator]
command = ["{python}", "sim.py", "--rw", "{rw}", "--r", "{r}", "--out", "{workdir}"]
timeout = 30.0
retries = 2

[parameters]
rw = { low = 0.05, high = 0.15 }
r = { low = 100.0, high = 50000.0, log = true }

[outputs]
flow = {}
head = {}

[design]
initial = 6
initial_method = "lhs"
strategy = "max-variance"

[stop]
max_simulations = 40
target_std = 0.05

[execution]
workers = 2
address = "tcp://127.0.0.1:8786"
"""

FULL_YAML = """\
campaign:
  name: borehole-demo
  seed: 7
simulator:
  command: ["{python}", sim.py, --rw, "{rw}", --r, "{r}", --out, "{workdir}"]
  timeout: 30.0
  retries: 2
parameters:
  rw: {low: 0.05, high: 0.15}
  r: {low: 100.0, high: 50000.0, log: true}
outputs:
  flow: {}
  head: {}
design:
  initial: 6
  initial_method: lhs
  strategy: max-variance
stop:
  max_simulations: 40
  target_std: 0.05
execution:
  workers: 2
  address: tcp://127.0.0.1:8786
"""


def test_toml_and_yaml_load_to_equal_specs(tmp_path: Path) -> None:
    from_toml = load_spec(write(tmp_path, FULL_TOML, name="c.toml"))
    from_yaml = load_spec(write(tmp_path, FULL_YAML, name="c.yaml"))
    assert from_toml.model_dump() == from_yaml.model_dump()
    assert from_toml == from_yaml
    assert from_toml.store_path == from_yaml.store_path
    # And the values came through, not just defaults on both sides.
    assert from_toml.simulator.retries == 2
    assert from_toml.parameters["r"].log is True
    assert from_toml.output_names == ["flow", "head"]
    assert from_toml.design.strategy == "max-variance"
    assert from_toml.execution.address == "tcp://127.0.0.1:8786"
    assert from_toml.space.names == ["rw", "r"]


def test_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, toml()))
    assert spec.design.strategy == "integrated-variance"
    assert spec.emulator.priors == "none" and spec.emulator.kernel == "rbf"
    assert spec.stop.target_std_statistic == "rms"
    assert spec.design.initial_method == "sobol"
    assert spec.execution.workers == 4
    assert spec.execution.address is None
    assert spec.stop.max_simulations == 100
    assert spec.simulator.retries == 0
    assert spec.campaign.seed == 0
    assert spec.initial_points == 8  # max(8, 2 * 2 + 2)


def _params(d: int) -> str:
    return "[parameters]\n" + "".join(f"p{i} = {{ low = 0.0, high = 1.0 }}\n" for i in range(d))


@pytest.mark.parametrize(
    "d, max_simulations, expected",
    [
        pytest.param(1, 100, 8, id="d1-floor-8"),
        pytest.param(3, 100, 8, id="d3-2d+2-is-8"),
        pytest.param(5, 100, 12, id="d5-2d+2"),
        pytest.param(5, 10, 10, id="capped-by-budget"),
        pytest.param(2, 3, 3, id="small-budget"),
    ],
)
def test_default_initial_points(
    tmp_path: Path, d: int, max_simulations: int, expected: int
) -> None:
    text = toml(parameters=_params(d), extra=f"[stop]\nmax_simulations = {max_simulations}\n")
    assert load_spec(write(tmp_path, text)).initial_points == expected


def test_explicit_initial_points_win(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, toml(extra="[design]\ninitial = 3\n")))
    assert spec.initial_points == 3


def test_default_store_is_relative_to_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_spec(write(tmp_path / "project", toml()))
    assert spec.store_path == (tmp_path / "project" / "runs" / "branin.zarr").resolve()
    assert spec.store_path.is_absolute()
    assert spec.base_dir == (tmp_path / "project").resolve()


def test_relative_store_is_relative_to_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    campaign = '[campaign]\nname = "b"\nstore = "../data/b.zarr"\n'
    spec = load_spec(write(tmp_path / "project" / "specs", toml(campaign=campaign)))
    assert spec.store_path == (tmp_path / "project" / "data" / "b.zarr").resolve()


def test_absolute_store_stays_absolute(tmp_path: Path) -> None:
    target = tmp_path / "stores" / "mine.zarr"
    campaign = f'[campaign]\nname = "b"\nstore = "{target.as_posix()}"\n'
    spec = load_spec(write(tmp_path / "project", toml(campaign=campaign)))
    assert spec.store_path == target


def test_model_validate_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = CampaignSpec.model_validate(
        {
            "campaign": {"name": "branin"},
            "simulator": {"function": "emucamp.testfunctions:branin"},
            "parameters": {"x1": {"low": -5, "high": 10}, "x2": {"low": 0, "high": 15}},
            "outputs": {"y": {}},
            "stop": {"max_simulations": 20},
        }
    )
    assert spec.space.names == ["x1", "x2"]
    assert spec.space.bounds.tolist() == [[-5.0, 0.0], [10.0, 15.0]]
    assert spec.output_names == ["y"]
    assert spec.stop.max_simulations == 20
    assert spec.initial_points == 8
    assert spec.store_path == (tmp_path / "runs" / "branin.zarr").resolve()
    # Round trip through the JSON form the store keeps.
    again = CampaignSpec.model_validate(spec.to_json_dict())
    assert again.model_dump() == spec.model_dump()


def test_model_validate_rejects_bad_data_from_python() -> None:
    with pytest.raises(ValueError, match="max_simulations"):
        CampaignSpec.model_validate(
            {
                "campaign": {"name": "b"},
                "simulator": {"function": "m:f"},
                "parameters": {"x": {"low": 0, "high": 1}},
                "outputs": {"y": {}},
                "stop": {"max_simulations": 0},
            }
        )


def test_with_base_dir_leaves_the_original_alone(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "a", toml()))
    moved = spec.with_base_dir(tmp_path / "b")
    assert moved.store_path == (tmp_path / "b" / "runs" / "branin.zarr").resolve()
    assert spec.store_path == (tmp_path / "a" / "runs" / "branin.zarr").resolve()


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, toml()))
    with pytest.raises(ValueError, match="frozen"):
        spec.stop.max_simulations = 5  # type: ignore[misc]


def test_known_command_placeholders_are_accepted(tmp_path: Path) -> None:
    simulator = (
        "[simulator]\ncommand = "
        '["{python}", "{spec_dir}/sim.py", "{x1}", "{x2}", "{sample_id}", "{workdir}"]\n'
    )
    spec = load_spec(write(tmp_path, toml(simulator=simulator)))
    assert spec.simulator.command is not None
    assert spec.simulator.command[0] == "{python}"


# -- random documents: accepted, or our own one-line error -----------------------------------

VALID: dict[str, Any] = {
    "campaign": {"name": "fuzz", "seed": 1},
    "simulator": {"function": "emucamp.testfunctions:branin"},
    "parameters": {"x1": {"low": -5.0, "high": 10.0}, "x2": {"low": 0.0, "high": 15.0}},
    "outputs": {"y": {}},
    "design": {"initial": 8, "strategy": "max-variance"},
    "stop": {"max_simulations": 40, "target_std": 0.05},
    "execution": {"workers": 2, "per_task": "auto"},
}
WORDS = sorted(
    {w for section in VALID.values() for w in section}
    | set(VALID)
    | {"low", "high", "log", "command", "timeout", "retries", "isolate", "max_hours", "address"}
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["auto", "sobol", "lhs", "max-variance", "{x1}", "a:b", "-1", "1e400"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """The valid spec with a few random edits: values replaced, keys added or removed."""
    doc: Any = {k: dict(v) for k, v in VALID.items()}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(VALID)))
        edit = draw(st.sampled_from(["replace", "add", "drop", "section"]))
        if edit == "section":
            doc[section] = draw(values)
        elif not isinstance(doc.get(section), dict):
            continue
        elif edit == "drop" and doc[section]:
            del doc[section][draw(st.sampled_from(sorted(doc[section])))]
        elif edit == "add":
            doc[section][draw(st.sampled_from(WORDS) | st.text(max_size=6))] = draw(values)
        elif doc[section]:
            doc[section][draw(st.sampled_from(sorted(doc[section])))] = draw(values)
    return doc


def accepted_or_spec_error(doc: Any) -> None:
    try:
        spec = parse_spec(doc, source="fuzz.toml", base_dir="/tmp")
    except SpecError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return
    assert isinstance(spec, CampaignSpec)
    assert spec.space.dim == len(spec.space.names) >= 1  # an accepted spec is usable
    assert spec.initial_points >= 1 and spec.output_names


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_random_edits_of_a_spec_are_accepted_or_named(doc: Any) -> None:
    accepted_or_spec_error(doc)


@settings(max_examples=200, deadline=None)
@given(values)
def test_random_documents_are_accepted_or_named(doc: Any) -> None:
    accepted_or_spec_error(doc)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200), suffix=st.sampled_from([".toml", ".yaml"]))
def test_random_spec_files_are_accepted_or_named(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(exc).startswith(f"{path}:") and "\n" not in str(exc)


def test_a_key_with_a_line_break_still_gives_one_line() -> None:
    """Found by the fuzz test above: a key holding a newline once split the message."""
    doc = {**VALID, "campaign": {"name": "fuzz", "\n": None}}
    with pytest.raises(SpecError) as err:
        parse_spec(doc, source="fuzz.toml")
    assert str(err.value) == "fuzz.toml: campaign.'\\n': unknown key (got None)"


def pool_doc(**sections: Any) -> dict[str, Any]:
    """A screening campaign's document over ``pool.csv``; ``sections`` replace its own."""
    doc: dict[str, Any] = {
        "campaign": {"name": "s"},
        "simulator": {"function": "emucamp.testfunctions:branin"},
        "parameters": {"x1": {}, "x2": {}},
        "outputs": {"y": {}},
        "pool": {"path": "pool.csv"},
    }
    return doc | sections


def test_a_pool_campaign_defaults_to_max_variance_over_the_pool(tmp_path: Path) -> None:
    from emucamp.spec import parse_spec

    (tmp_path / "pool.csv").write_text("x1,x2\n0.1,0.2\n0.3,0.4\n")
    data = pool_doc(design={"initial": 2})
    assert parse_spec(data, base_dir=tmp_path).design.strategy == "max-variance"


def test_a_pool_campaign_rejects_a_candidate_count(tmp_path: Path) -> None:
    from emucamp.spec import parse_spec

    with pytest.raises(SpecError, match=r"design.candidates: a \[pool\] campaign's candidates"):
        parse_spec(pool_doc(design={"candidates": 4096}), base_dir=tmp_path)


def test_a_grey_box_cannot_screen_a_pool_yet() -> None:
    from emucamp.spec import parse_spec

    data = pool_doc(
        outputs={"y": {"positive": True}},
        goal={"output": "y", "below": 1.0},
        design={"strategy": "straddle"},
    )
    with pytest.raises(SpecError, match="positive outputs cannot be used with it yet"):
        parse_spec(data)
