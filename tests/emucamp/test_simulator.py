from __future__ import annotations

import json
import math
import os
import pickle
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from emucamp.errors import SimulatorError
from emucamp.simulator import (
    CommandSimulator,
    PythonSimulator,
    SimJob,
    SimulationRunner,
    run_simulation,
)

# -- Python callables used as simulators --------------------------------------------------


def quadratic(a: float, b: float) -> float:
    return a**2 + b


def with_extras(a: float, b: float) -> dict[str, object]:
    return {"y": a + b, "z": a - b, "cost": 3.5, "label": "run-ok"}


def exploding(a: float, b: float) -> float:
    raise ZeroDivisionError(f"mesh collapsed at a={a}")


def exiting(a: float, b: float) -> float:
    sys.exit(3)


def returns(value: object) -> Callable[..., object]:
    """A simulator that ignores its inputs and returns ``value``."""

    def sim(**params: float) -> object:
        return value

    return sim


def job(sample_id: int = 0, **inputs: float) -> SimJob:
    return SimJob(sample_id, inputs or {"a": 2.0, "b": 1.0})


# -- run_simulation with callables --------------------------------------------------------


def test_float_for_single_output_is_ok() -> None:
    result = run_simulation(quadratic, job(4, a=3.0, b=0.5), ["y"])
    assert result.ok
    assert result.status == "ok"
    assert result.outputs == {"y": 9.5}
    assert result.error == ""
    assert result.sample_id == 4
    assert result.inputs == {"a": 3.0, "b": 0.5}
    assert result.attempt == 1
    assert result.started_at <= result.finished_at
    assert result.seconds >= 0
    assert str(os.getpid()) in result.worker


def test_dict_keeps_declared_outputs_and_extras() -> None:
    result = run_simulation(with_extras, job(a=2.0, b=1.0), ["y", "z"])
    assert result.ok
    assert result.outputs["y"] == 3.0
    assert result.outputs["z"] == 1.0
    assert result.outputs["cost"] == 3.5
    # A non-numeric extra does not fail the run; it is kept as NaN.
    assert math.isnan(result.outputs["label"])


def test_mapping_with_single_output_is_ok() -> None:
    result = run_simulation(returns({"y": 1.25}), job(), ["y"])
    assert result.ok
    assert result.outputs == {"y": 1.25}


def test_exception_is_a_failed_record_with_type_and_message() -> None:
    result = run_simulation(exploding, job(a=2.0, b=1.0), ["y"])
    assert not result.ok
    assert result.status == "failed"
    assert "ZeroDivisionError" in result.error
    assert "mesh collapsed at a=2.0" in result.error
    assert result.outputs == {}
    assert result.inputs == {"a": 2.0, "b": 1.0}


def test_system_exit_in_simulator_is_data_too() -> None:
    result = run_simulation(exiting, job(), ["y"])
    assert result.status == "failed"
    assert "SystemExit" in result.error


@pytest.mark.parametrize(
    "value, outputs, expected",
    [
        pytest.param(math.nan, ["y"], "output 'y' is not finite", id="nan"),
        pytest.param(math.inf, ["y"], "output 'y' is not finite", id="inf"),
        pytest.param(-math.inf, ["y"], "output 'y' is not finite", id="minus-inf"),
        pytest.param("lots", ["y"], "output 'y' is not a number", id="string"),
        pytest.param(None, ["y"], "output 'y' is not a number", id="none"),
        pytest.param([1.0], ["y"], "output 'y' is not a number", id="list"),
        pytest.param(
            {"y": math.nan, "z": 1.0}, ["y", "z"], "output 'y' is not finite", id="nan-in-dict"
        ),
        pytest.param(
            {"y": 1.0, "z": "x"}, ["y", "z"], "output 'z' is not a number", id="str-in-dict"
        ),
        pytest.param({"y": 1.0}, ["y", "z"], "output 'z' missing", id="missing-output"),
        pytest.param({"w": 1.0}, ["y"], "output 'y' missing", id="wrong-name"),
        pytest.param(1.0, ["y", "z"], "one value but 2 outputs", id="one-value-two-outputs"),
    ],
)
def test_bad_outputs_fail_naming_the_output(
    value: object, outputs: list[str], expected: str
) -> None:
    result = run_simulation(returns(value), job(), outputs)
    assert result.status == "failed"
    assert expected in result.error
    assert result.outputs == {}


# -- SimulationRunner retries -------------------------------------------------------------


def flaky(failures: int) -> tuple[Callable[..., float], list[int]]:
    """A simulator that raises on its first ``failures`` calls; also returns its call log."""
    calls: list[int] = []

    def sim(a: float, b: float) -> float:
        calls.append(1)
        if len(calls) <= failures:
            raise RuntimeError(f"transient failure {len(calls)}")
        return a + b

    return sim, calls


@pytest.mark.parametrize("k", [1, 3])
def test_runner_retries_until_success(k: int) -> None:
    sim, calls = flaky(k)
    result = SimulationRunner(sim, ("y",), retries=k)(job(9, a=1.0, b=2.0))
    assert result.ok
    assert result.outputs == {"y": 3.0}
    assert result.attempt == k + 1
    assert len(calls) == k + 1
    assert result.sample_id == 9


@pytest.mark.parametrize("k, retries", [(1, 0), (3, 2)])
def test_runner_gives_up_after_its_retries(k: int, retries: int) -> None:
    sim, calls = flaky(k)
    result = SimulationRunner(sim, ("y",), retries=retries)(job())
    assert result.status == "failed"
    assert result.attempt == retries + 1
    assert len(calls) == retries + 1
    assert f"transient failure {retries + 1}" in result.error


def test_runner_does_not_rerun_a_success() -> None:
    sim, calls = flaky(0)
    result = SimulationRunner(sim, ("y",), retries=5)(job())
    assert result.ok
    assert result.attempt == 1
    assert len(calls) == 1


def test_runner_pickles_with_a_python_simulator() -> None:
    runner = SimulationRunner(PythonSimulator("emucamp.testfunctions:branin"), ("y",), retries=1)
    clone = pickle.loads(pickle.dumps(runner))
    result = clone(SimJob(0, {"x1": math.pi, "x2": 2.275}))
    assert result.ok
    assert result.outputs["y"] == pytest.approx(0.397887, abs=1e-6)


# -- PythonSimulator ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, expected",
    [
        pytest.param("emucamp.testfunctions.branin", "is not of the form", id="no-colon"),
        pytest.param(":branin", "is not of the form", id="no-module"),
        pytest.param("emucamp.testfunctions:", "is not of the form", id="no-function"),
        pytest.param("emucamp_no_such_module_x:run", "cannot import module", id="module-missing"),
        pytest.param(
            "emucamp.testfunctions:no_such_function", "has no attribute", id="attr-missing"
        ),
        pytest.param("emucamp.testfunctions:DOMAINS", "is not callable", id="not-callable"),
    ],
)
def test_python_simulator_bad_paths(target: str, expected: str) -> None:
    sim = PythonSimulator(target)
    with pytest.raises(SimulatorError, match=expected) as info:
        sim.load()
    assert "simulator.function" in str(info.value)


@pytest.fixture
def module_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A folder with a uniquely named module; sys.path and sys.modules are restored after."""
    name = f"emucamp_test_sim_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            SCALE = 2.0

            def run(a, b):
                return SCALE * a + b

            class Model:
                @staticmethod
                def evaluate(a, b):
                    return {"y": a * b}
            """
        )
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path, name


def test_python_simulator_finds_module_in_search_path(module_folder: tuple[Path, str]) -> None:
    folder, name = module_folder
    sim = PythonSimulator(f"{name}:run", search_path=(str(folder),))
    assert sim.load()(a=1.5, b=1.0) == 4.0
    assert sim(a=2.0, b=0.5) == 4.5
    result = run_simulation(sim, job(a=1.0, b=1.0), ["y"])
    assert result.ok
    assert result.outputs == {"y": 3.0}


def test_python_simulator_dotted_attribute(module_folder: tuple[Path, str]) -> None:
    folder, name = module_folder
    sim = PythonSimulator(f"{name}:Model.evaluate", search_path=(str(folder),))
    assert sim(a=2.0, b=3.0) == {"y": 6.0}


def test_python_simulator_module_missing_without_search_path(
    module_folder: tuple[Path, str],
) -> None:
    _, name = module_folder
    with pytest.raises(SimulatorError, match="cannot import module"):
        PythonSimulator(f"{name}:run").load()


def test_python_simulator_import_error_inside_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    name = f"emucamp_test_broken_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no licence server')\n")
    with pytest.raises(SimulatorError, match="RuntimeError: no licence server"):
        PythonSimulator(f"{name}:run", search_path=(str(tmp_path),)).load()


def test_python_simulator_pickles_and_stays_callable() -> None:
    sim = PythonSimulator("emucamp.testfunctions:branin", search_path=("/nowhere",))
    assert sim(x1=math.pi, x2=2.275) == pytest.approx(0.397887, abs=1e-6)  # fills the cache
    clone = pickle.loads(pickle.dumps(sim))
    assert clone == sim
    assert clone.target == "emucamp.testfunctions:branin"
    assert clone.search_path == ("/nowhere",)
    assert clone(x1=math.pi, x2=2.275) == pytest.approx(0.397887, abs=1e-6)


# -- CommandSimulator with real subprocesses ----------------------------------------------


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def test_outputs_from_outputs_json(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(
        tmp_path,
        "sim.py",
        """
        import json, sys
        a, b = float(sys.argv[1]), float(sys.argv[2])
        print("log noise that is not JSON")
        json.dump({"y": a + b, "z": a * b}, open("outputs.json", "w"))
        """,
    )
    sim = CommandSimulator(("{python}", str(sim_py), "{a}", "{b}"), str(workdir), timeout=30)
    result = run_simulation(sim, job(3, a=2.0, b=5.0), ["y", "z"])
    assert result.status == "ok", result.error
    assert result.outputs == {"y": 7.0, "z": 10.0}


def test_outputs_from_last_stdout_line_object(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(
        tmp_path,
        "sim.py",
        """
        import json, sys
        a = float(sys.argv[1])
        print("starting")
        print(json.dumps({"y": 0.0}))
        print(json.dumps({"y": a, "z": -a}))
        print("   ")
        """,
    )
    sim = CommandSimulator((sys.executable, str(sim_py), "{a}"), str(workdir), timeout=30)
    result = run_simulation(sim, job(a=1.5, b=0.0), ["y", "z"])
    assert result.status == "ok", result.error
    assert result.outputs == {"y": 1.5, "z": -1.5}


def test_outputs_from_last_stdout_line_bare_number(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(tmp_path, "sim.py", "import sys\nprint('x')\nprint(float(sys.argv[1]) * 10)\n")
    sim = CommandSimulator(("{python}", str(sim_py), "{a}"), str(workdir), timeout=30)
    result = run_simulation(sim, job(a=0.25, b=0.0), ["y"])
    assert result.status == "ok", result.error
    assert result.outputs == {"y": 2.5}
    # Called directly, a single output comes back as a plain number.
    assert sim(a=0.5) == 5.0


def test_long_last_stdout_line_is_read_whole(tmp_path: Path, workdir: Path) -> None:
    # Many outputs on one JSON line: the line is longer than the error tail kept for stderr.
    sim_py = script(
        tmp_path,
        "sim.py",
        """
        import json
        print(json.dumps({f"probe_{i:04d}_temperature": 300.0 + i for i in range(200)}))
        """,
    )
    sim = CommandSimulator(("{python}", str(sim_py)), str(workdir), timeout=30)
    result = run_simulation(sim, job(), ["probe_0000_temperature"])
    assert result.status == "ok", result.error
    assert result.outputs["probe_0199_temperature"] == 499.0


def test_stale_outputs_json_is_not_reused(tmp_path: Path, workdir: Path) -> None:
    writes_json = script(
        tmp_path, "a.py", "import json\njson.dump({'y': 1.0}, open('outputs.json', 'w'))\n"
    )
    prints = script(tmp_path, "b.py", "print(2.0)\n")
    run_simulation(CommandSimulator(("{python}", str(writes_json)), str(workdir)), job(5), ["y"])
    result = run_simulation(
        CommandSimulator(("{python}", str(prints)), str(workdir)), job(5), ["y"]
    )
    assert result.outputs == {"y": 2.0}


def test_nonzero_exit_fails_with_code_and_stderr_tail(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(
        tmp_path,
        "sim.py",
        """
        import sys
        print("42.0")
        sys.stderr.write("reading mesh\\nERROR: solver diverged at step 17\\n")
        sys.exit(3)
        """,
    )
    sim = CommandSimulator(("{python}", str(sim_py)), str(workdir), timeout=30)
    result = run_simulation(sim, job(), ["y"])
    assert result.status == "failed"
    assert "exited with code 3" in result.error
    assert "solver diverged at step 17" in result.error
    assert result.outputs == {}


def test_no_output_at_all_fails(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(tmp_path, "sim.py", "pass\n")
    result = run_simulation(CommandSimulator(("{python}", str(sim_py)), str(workdir)), job(), ["y"])
    assert result.status == "failed"
    assert "no outputs.json and nothing on stdout" in result.error


def test_invalid_outputs_json_fails(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(tmp_path, "sim.py", "open('outputs.json', 'w').write('{y: 1')\n")
    result = run_simulation(CommandSimulator(("{python}", str(sim_py)), str(workdir)), job(), ["y"])
    assert result.status == "failed"
    assert "outputs.json is not valid JSON" in result.error


def test_missing_program_fails(tmp_path: Path, workdir: Path) -> None:
    sim = CommandSimulator((str(tmp_path / "no-such-program"),), str(workdir))
    result = run_simulation(sim, job(), ["y"])
    assert result.status == "failed"
    assert "cannot start" in result.error


def test_declared_output_missing_from_command_fails(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(tmp_path, "sim.py", "print('{\"y\": 1.0}')\n")
    sim = CommandSimulator(("{python}", str(sim_py)), str(workdir))
    result = run_simulation(sim, job(), ["y", "pressure"])
    assert result.status == "failed"
    assert "output 'pressure' missing" in result.error


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
def test_timeout_kills_the_whole_process_group(tmp_path: Path, workdir: Path) -> None:
    pid_file = tmp_path / "child.pid"
    sim_py = script(
        tmp_path,
        "sim.py",
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open({str(pid_file)!r} + ".tmp", "w") as fh:
            fh.write(str(child.pid))
        import os; os.replace({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
        time.sleep(120)
        """,
    )
    sim = CommandSimulator(("{python}", str(sim_py)), str(workdir), timeout=1.5)
    t0 = time.monotonic()
    result = run_simulation(sim, job(), ["y"])
    assert time.monotonic() - t0 < 20
    assert result.status == "timeout"
    assert "timeout" in result.error
    assert pid_file.exists(), "the script never started its child"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(child):  # pragma: no cover - cleanup before failing
        os.kill(child, 9)
        pytest.fail(f"child process {child} survived the timeout")


def test_timeout_is_retried_by_the_runner(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(tmp_path, "sim.py", "import time\ntime.sleep(30)\n")
    sim = CommandSimulator(("{python}", str(sim_py)), str(workdir), timeout=0.5)
    result = SimulationRunner(sim, ("y",), retries=1)(job())
    assert result.status == "timeout"
    assert result.attempt == 2


ARGV_DUMP = """
import json, os, sys
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, open("argv.json", "w"))
print("hello from the simulator")
sys.stderr.write("a warning\\n")
print(1.0)
"""


def test_each_sample_gets_its_own_workdir(tmp_path: Path, workdir: Path) -> None:
    sim_py = script(tmp_path, "sim.py", ARGV_DUMP)
    sim = CommandSimulator(("{python}", str(sim_py)), str(workdir), timeout=30)
    for sample_id in (7, 12):
        assert run_simulation(sim, job(sample_id), ["y"]).ok
    for sample_id in (7, 12):
        folder = workdir / f"sample-{sample_id:06d}"
        assert folder.is_dir()
        assert "hello from the simulator" in (folder / "stdout.txt").read_text()
        assert (folder / "stderr.txt").read_text() == "a warning\n"
        dumped = json.loads((folder / "argv.json").read_text())
        assert Path(dumped["cwd"]).resolve() == folder.resolve()
    assert sorted(p.name for p in workdir.iterdir()) == ["sample-000007", "sample-000012"]


def test_placeholders_are_filled(tmp_path: Path, workdir: Path) -> None:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    sim_py = script(spec_dir, "sim.py", ARGV_DUMP)
    sim = CommandSimulator(
        (
            "{python}",
            "{spec_dir}/sim.py",
            "--a={a}",
            "{b}",
            "{sample_id}",
            "{workdir}",
            "{spec_dir}",
            "literal",
        ),
        str(workdir),
        timeout=30,
        base_dir=str(spec_dir),
    )
    a, b = 0.1 + 0.2, 1 / 3
    result = run_simulation(sim, SimJob(7, {"a": a, "b": b}), ["y"])
    assert result.ok, result.error
    folder = workdir / "sample-000007"
    argv = json.loads((folder / "argv.json").read_text())["argv"]
    assert argv == [
        "--a=0.30000000000000004",
        repr(b),
        "7",
        str(folder),
        str(spec_dir.resolve()),
        "literal",
    ]
    assert float(argv[1]) == b  # full precision: the exact float comes back
    assert sim_py.exists()


def test_command_fills_template_without_running(tmp_path: Path) -> None:
    sim = CommandSimulator(
        ("./bin/sim", "{x}", "{python}", "{sample_id}"), str(tmp_path / "w"), base_dir=str(tmp_path)
    )
    argv = sim.command(3, {"x": 2}, tmp_path / "w" / "sample-000003")
    assert argv == [str((tmp_path / "bin" / "sim").resolve()), "2.0", sys.executable, "3"]
    assert sim.placeholders() == {"x", "python", "sample_id"}
    # A bare program name is looked up on PATH, not made relative.
    bare = CommandSimulator(("python3", "{x}"), str(tmp_path))
    assert bare.command(0, {"x": 1e-300}, tmp_path)[0:2] == ["python3", "1e-300"]


def test_command_simulator_pickles(tmp_path: Path) -> None:
    sim = CommandSimulator(("{python}", "sim.py"), str(tmp_path), timeout=5.0, base_dir="/x")
    assert pickle.loads(pickle.dumps(sim)) == sim


# -- isolated Python simulators -----------------------------------------------------------


def isolated(sims_dir: Path, name: str, timeout: float = 60.0) -> PythonSimulator:
    return PythonSimulator(
        f"campaign_sims:{name}", search_path=(str(sims_dir),), isolate=True, timeout=timeout
    )


def test_isolated_run_returns_what_the_function_returns(sims_dir: Path) -> None:
    record = run_simulation(isolated(sims_dir, "with_extras"), job(x1=0.25, x2=0.5), ["y"])
    assert record.ok, record.error
    assert record.outputs["y"] == pytest.approx(math.sin(0.75) + math.cos(1.0) + 0.0625)
    assert record.outputs["iterations"] == 7.0


def test_isolated_exception_is_stored_with_type_message_and_place(sims_dir: Path) -> None:
    record = run_simulation(isolated(sims_dir, "always_fails"), job(x1=0.1, x2=0.2), ["y"])
    assert record.status == "failed"
    assert record.error.startswith("RuntimeError: mesh generation failed")
    assert "campaign_sims.py:" in record.error


def test_hanging_isolated_simulator_is_killed_at_its_timeout(
    sims_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("EMUCAMP_TEST_LOG", str(pid_file))
    t0 = time.monotonic()
    record = run_simulation(isolated(sims_dir, "hangs", timeout=1.5), job(x1=0.1, x2=0.2), ["y"])
    assert record.status == "timeout" and "1.5 s" in record.error
    assert time.monotonic() - t0 < 30  # not the 600 s the function sleeps
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the hung interpreter is gone
        os.kill(pid, 0)


def test_isolated_interpreter_crash_fails_one_run_not_the_worker(sims_dir: Path) -> None:
    sim = isolated(sims_dir, "crashes_interpreter")
    record = run_simulation(sim, job(x1=0.1, x2=0.2), ["y"])
    assert record.status == "failed"
    assert "signal 11" in record.error
    assert pickle.loads(pickle.dumps(sim)) == sim  # ships to Dask workers as before


# -- no shell, ever -----------------------------------------------------------------------

HOSTILE = ["$(touch pwned1)", "1; touch pwned2", "`touch pwned3`", "a b  c", "*", "|| touch pwned4"]


def test_shell_metacharacters_reach_the_program_as_literal_arguments(
    tmp_path: Path, workdir: Path
) -> None:
    script(tmp_path, "sim.py", ARGV_DUMP)
    argv = ("{python}", "{spec_dir}/sim.py", *HOSTILE, "{a}")
    sim = CommandSimulator(argv, str(workdir), timeout=30, base_dir=str(tmp_path))
    result = run_simulation(sim, SimJob(1, {"a": 0.5}), ["y"])
    assert result.ok, result.error
    argv = json.loads((workdir / "sample-000001" / "argv.json").read_text())["argv"]
    assert argv == [*HOSTILE, "0.5"]  # one argument each, byte for byte, nothing expanded
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize("value", ["1; rm -rf ~", "$(touch pwned)"])
def test_a_non_numeric_parameter_value_never_reaches_the_program(
    tmp_path: Path, workdir: Path, value: str
) -> None:
    script(tmp_path, "sim.py", ARGV_DUMP)
    sim = CommandSimulator(
        ("{python}", "{spec_dir}/sim.py", "{a}"), str(workdir), base_dir=str(tmp_path)
    )
    result = run_simulation(sim, SimJob(2, {"a": value}), ["y"])  # type: ignore[dict-item]
    assert result.status == "failed" and "could not convert string to float" in result.error
    assert not (workdir / "sample-000002" / "argv.json").exists()
    assert not list(tmp_path.rglob("pwned*"))
