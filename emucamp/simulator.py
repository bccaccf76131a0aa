"""Simulators: the protocol, the two built-in kinds, and one run turned into a :class:`SimResult`.

A simulator is called with keyword arguments named like the parameters and returns a
float (one output) or a mapping ``output name -> float``. Whatever goes wrong inside a
run becomes a ``failed`` or ``timeout`` record: failed simulations are data.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from emucamp.errors import SimulatorError

__all__ = [
    "CommandSimulator",
    "PythonSimulator",
    "SimJob",
    "SimResult",
    "SimulationRunner",
    "Simulator",
    "Status",
    "describe_error",
    "import_callable",
    "run_simulation",
]

Status = Literal["ok", "failed", "timeout"]
log = logging.getLogger(__name__)
_TAIL_CHARS = 2000  # of stderr and error messages kept in the store
_STDOUT_CHARS = 1 << 20  # of stdout searched for the last line (it may hold many outputs)


@runtime_checkable
class Simulator(Protocol):
    """Anything called with the parameters as keywords, returning a float or a mapping."""

    def __call__(self, **params: float) -> float | Mapping[str, float]:
        """Run one simulation."""
        ...


@dataclass(frozen=True)
class SimJob:
    """One simulation to run: which sample, at which inputs, which attempt."""

    sample_id: int
    inputs: dict[str, float]
    attempt: int = 1


@dataclass
class SimResult:
    """The record of one simulation, whatever its outcome.

    Attributes:
        sample_id: Row of the sample in the campaign store.
        inputs: Parameter values it ran with.
        outputs: Output values (declared outputs and any extras the simulator returned); a
            field output is a flat list of floats (C order).
        status: ``ok``, ``failed`` or ``timeout``.
        error: Why it failed: exception type and message, exit code and stderr tail.
        started_at: Unix time the run started.
        finished_at: Unix time the run ended.
        worker: ``host:pid`` of the process that ran it.
        attempt: 1 for the first try, 2 for the first retry, ...
    """

    sample_id: int
    inputs: dict[str, float]
    outputs: dict[str, float | list[float]] = field(default_factory=dict)
    status: Status = "ok"
    error: str = ""
    started_at: float = math.nan
    finished_at: float = math.nan
    worker: str = ""
    attempt: int = 1

    @property
    def ok(self) -> bool:
        """Whether the run succeeded with every declared output finite."""
        return self.status == "ok"

    @property
    def seconds(self) -> float:
        """Wall-clock seconds the run took."""
        return self.finished_at - self.started_at


class SimulationTimeout(Exception):
    """Raised inside a simulator wrapper when a run exceeds its time limit."""


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def import_callable(target: str, search_path: Sequence[str] = (), field: str = "function") -> Any:
    """Import ``"package.module:function"`` (folders of ``search_path`` first on ``sys.path``).

    Raises:
        SimulatorError: the path is malformed, does not import, or is not callable; the
            message starts with ``field`` (the spec key that named it).
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SimulatorError(f"{field}: {target!r} is not of the form 'package.module:function'")
    for folder in reversed(search_path):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise SimulatorError(
            f"{field}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SimulatorError(
                f"{field}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise SimulatorError(f"{field}: {target!r} is not callable")
    return obj


@dataclass(frozen=True)
class PythonSimulator:
    """A Python callable named by import path, ``"package.module:function"``.

    The callable is imported lazily where it runs (a Dask worker, a subprocess), so the
    object pickles as two strings. ``search_path`` folders are put on ``sys.path`` first:
    a spec's own folder is, so ``function = "mysim:run"`` finds ``mysim.py`` beside it.

    With ``isolate``, each run happens in a fresh Python subprocess (its own session),
    which is killed with its whole process group after ``timeout`` seconds: use it for
    code that may hang, leak or crash the interpreter (a segfault fails that one run, not
    the worker). It costs a Python start-up per run (~50-100 ms plus the module's own
    imports).

    Note:
        Without ``isolate``, ``timeout`` cannot be enforced on a Python callable (it runs in
        the worker's thread and a thread cannot be stopped).
    """

    target: str
    search_path: tuple[str, ...] = ()
    isolate: bool = False
    timeout: float = 3600.0

    def load(self) -> Any:
        """Import and return the callable; raise :class:`SimulatorError` if it cannot be."""
        return import_callable(self.target, self.search_path, "simulator.function")

    def __call__(self, **params: float) -> float | Mapping[str, float]:
        """Run the callable with the parameters as keywords (in a subprocess if isolated)."""
        if self.isolate:
            return self._run_isolated(params)
        fn = _resolved.get(self)
        if fn is None:
            fn = _resolved[self] = self.load()
        result: float | Mapping[str, float] = fn(**params)
        return result

    def _run_isolated(self, params: Mapping[str, float]) -> float | Mapping[str, float]:
        import tempfile

        request = json.dumps(
            {"target": self.target, "search_path": list(self.search_path), "params": params}
        )
        with tempfile.TemporaryDirectory(prefix="emucamp-isolated-") as tmp:
            result_path = Path(tmp) / "result.json"
            with open(Path(tmp) / "stderr.txt", "w+b") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "emucamp.isolated", str(result_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
                try:
                    proc.communicate(request.encode(), timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    raise SimulationTimeout(
                        f"isolated simulator exceeded timeout of {self.timeout:g} s and was killed"
                    ) from None
                except BaseException:
                    _kill_group(proc)
                    raise
                # The run is over; anything it left running in its group goes with it.
                _kill_group(proc)
            if not result_path.exists():
                code = proc.returncode
                how = f"signal {-code}" if code < 0 else f"code {code}"
                tail = _tail(Path(tmp) / "stderr.txt")
                raise RuntimeError(f"isolated simulator process died ({how}); stderr tail: {tail}")
            reply = json.loads(result_path.read_text())
        if "error" in reply:
            raise IsolatedSimulationError(str(reply["error"]))
        value: float | Mapping[str, float] = reply["value"]
        return value


class IsolatedSimulationError(Exception):
    """A simulator raised inside its isolated subprocess; the message is the child's."""


# Per-process cache: importing the target once per worker, not once per simulation.
_resolved: dict[PythonSimulator, Any] = {}


@dataclass(frozen=True)
class CommandSimulator:
    """An external program run from an argv template, never through a shell.

    Each run gets its own work directory ``workdir/sample-<id>`` (kept for inspection)
    and runs there. Placeholders ``{<parameter>}``, ``{sample_id}``, ``{workdir}``,
    ``{spec_dir}`` (the spec file's folder) and ``{python}`` (the interpreter running
    emucamp) are filled in each argument. Outputs are read from ``outputs.json`` in the work
    directory if the program wrote one, else from the last non-empty stdout line parsed
    as JSON (a number for one output, an object for several).

    Args:
        argv: The argument template, e.g. ``["./sim", "--rw", "{rw}"]``.
        workdir: Folder under which per-sample work directories are made.
        timeout: Seconds before the program and its whole process group are killed.
        base_dir: Folder that a relative program path (``./sim``) is relative to.
    """

    argv: tuple[str, ...]
    workdir: str
    timeout: float = 3600.0
    base_dir: str = "."

    def placeholders(self) -> set[str]:
        """Names used in ``{...}`` placeholders of the template."""
        names: set[str] = set()
        for arg in self.argv:
            for _, name, _, _ in string.Formatter().parse(arg):
                if name is not None:
                    names.add(name)
        return names

    def command(self, sample_id: int, params: Mapping[str, float], workdir: Path) -> list[str]:
        """The argv for one run, placeholders filled (floats at full precision)."""
        values: dict[str, Any] = {k: repr(float(v)) for k, v in params.items()}
        values.update(
            sample_id=sample_id,
            workdir=str(workdir),
            spec_dir=str(Path(self.base_dir).resolve()),
            python=sys.executable,
        )
        argv = [arg.format(**values) for arg in self.argv]
        program = argv[0]
        if os.sep in program and not os.path.isabs(program):
            argv[0] = str((Path(self.base_dir) / program).resolve())
        return argv

    def run(self, sample_id: int, params: Mapping[str, float]) -> dict[str, Any]:
        """Run once and return the parsed outputs (raises on failure or timeout)."""
        workdir = Path(self.workdir) / f"sample-{sample_id:06d}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "outputs.json").unlink(missing_ok=True)
        argv = self.command(sample_id, params, workdir)
        with (
            open(workdir / "stdout.txt", "wb") as out,
            open(workdir / "stderr.txt", "wb") as err,
        ):
            try:
                proc = subprocess.Popen(
                    argv, cwd=workdir, stdout=out, stderr=err, start_new_session=True
                )
            except OSError as exc:
                raise RuntimeError(f"cannot start {argv[0]!r}: {exc}") from None
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise SimulationTimeout(
                    f"command exceeded timeout of {self.timeout:g} s and was killed"
                ) from None
            except BaseException:
                _kill_group(proc)
                raise
        stderr_tail = _tail(workdir / "stderr.txt")
        if code != 0:
            raise RuntimeError(f"command exited with code {code}; stderr tail: {stderr_tail}")
        if (workdir / "outputs.json").exists():
            try:
                parsed = json.loads((workdir / "outputs.json").read_text())
            except ValueError as exc:
                raise ValueError(f"outputs.json is not valid JSON: {exc}") from None
        else:
            lines = [
                ln for ln in _tail(workdir / "stdout.txt", _STDOUT_CHARS).splitlines() if ln.strip()
            ]
            if not lines:
                raise ValueError("command wrote no outputs.json and nothing on stdout")
            try:
                parsed = json.loads(lines[-1])
            except ValueError:
                raise ValueError(f"last stdout line is not JSON: {lines[-1][:200]!r}") from None
        return parsed if isinstance(parsed, dict) else {"__single__": parsed}

    def __call__(self, **params: float) -> float | Mapping[str, float]:
        """Run with an anonymous sample id (``run`` is what campaigns call)."""
        out = self.run(int(time.time() * 1e6) % 1_000_000, params)
        return out["__single__"] if set(out) == {"__single__"} else out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def _tail(path: Path, chars: int = _TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def _normalise_outputs(
    raw: Any, outputs: Sequence[str], shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, float | list[float]]:
    """Turn a simulator's return value into ``{name: value}``; errors name the output.

    A scalar output becomes a float; a field output (``shapes``) a flat list of floats.
    """
    shapes = shapes or {}

    def value_of(name: str, value: Any, required: bool) -> float | list[float]:
        if name in shapes:
            return _as_field(name, value, shapes[name])
        return _as_finite(name, value, required)

    if isinstance(raw, Mapping):
        items = dict(raw)
        if set(items) == {"__single__"}:
            raw = items["__single__"]
        else:
            result: dict[str, float | list[float]] = {}
            for name in outputs:
                if name not in items:
                    raise ValueError(
                        f"output {name!r} missing from simulator result (got {sorted(items)})"
                    )
            for name, value in items.items():
                result[str(name)] = value_of(str(name), value, required=name in outputs)
            return result
    if len(outputs) != 1:
        raise ValueError(
            f"simulator returned one value but {len(outputs)} outputs are declared: {list(outputs)}"
        )
    return {outputs[0]: value_of(outputs[0], raw, required=True)}


def _as_field(name: str, value: Any, shape: tuple[int, ...]) -> list[float]:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"output {name!r} is not an array of numbers") from None
    if array.shape != shape and array.size != math.prod(shape):
        raise ValueError(f"output {name!r} has shape {array.shape}, declared {shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"output {name!r} has values that are not finite")
    return [float(v) for v in array.ravel()]


def _as_finite(name: str, value: Any, required: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        if not required:
            return math.nan
        raise ValueError(f"output {name!r} is not a number: {value!r}") from None
    if required and not math.isfinite(number):
        raise ValueError(f"output {name!r} is not finite: {number}")
    return number


def describe_error(exc: BaseException) -> str:
    """``"Type: message (at file:line)"`` of where a simulator raised, as stored."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    loc = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"[-_TAIL_CHARS:]


def run_simulation(
    simulator: Simulator | CommandSimulator,
    job: SimJob,
    outputs: Sequence[str],
    positive: Sequence[str] = (),
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> SimResult:
    """Run one simulation and return its record; never raises for a simulation's own fault.

    Args:
        simulator: A callable simulator or a :class:`CommandSimulator`.
        job: Which sample to run, at which inputs.
        outputs: Declared output names; each must come back finite for status ``ok``.
        positive: Outputs that must also come back > 0 (declared ``positive``).
        shapes: Shapes of the field outputs, which come back as arrays of that shape.

    Returns:
        A :class:`SimResult` with status ``ok``, ``failed`` or ``timeout``.
    """
    started = time.time()
    status: Status = "ok"
    error = ""
    values: dict[str, float | list[float]] = {}
    try:
        if isinstance(simulator, CommandSimulator):
            raw: Any = simulator.run(job.sample_id, job.inputs)
        else:
            raw = simulator(**job.inputs)
        values = _normalise_outputs(raw, outputs, shapes)
        for name in positive:
            value = values[name]
            if not (isinstance(value, float) and value > 0):
                raise ValueError(f"output {name!r} is declared positive but is {value}")
    except SimulationTimeout as exc:
        status, error = "timeout", str(exc)
    except KeyboardInterrupt:
        raise
    except IsolatedSimulationError as exc:
        status, error = "failed", str(exc)[-_TAIL_CHARS:]
    except BaseException as exc:  # a simulator's SystemExit is data too
        status, error = "failed", describe_error(exc)
    return SimResult(
        sample_id=job.sample_id,
        inputs=dict(job.inputs),
        outputs=values,
        status=status,
        error=error,
        started_at=started,
        finished_at=time.time(),
        worker=f"{_worker_name()}/{threading.current_thread().name}",
        attempt=job.attempt,
    )


@dataclass(frozen=True)
class SimulationRunner:
    """What an executor runs for one job: the simulation, retried up to ``retries`` times.

    A plain picklable object, so Dask, a process pool or a Prefect task can ship it.

    Args:
        simulator: The simulator to call.
        outputs: Declared output names.
        retries: Re-runs of a failed or timed-out simulation (0: run once).
        positive: Outputs that must be > 0 for a run to count as ``ok``.
        shapes: ``(name, shape)`` of each field output.
    """

    simulator: PythonSimulator | CommandSimulator | Simulator
    outputs: tuple[str, ...]
    retries: int = 0
    positive: tuple[str, ...] = ()
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def run_many(
        self, jobs: Sequence[SimJob], report: Callable[[SimResult], None] | None = None
    ) -> list[SimResult]:
        """Run a pack of jobs one after another (several cheap simulations in one task).

        Args:
            jobs: The pack, run in order.
            report: Called with each job's final record as soon as it has one, so the
                campaign can record it before the rest of the pack has run. A failing
                ``report`` is logged and the pack runs on: the records are also returned.
        """
        results = []
        for job in jobs:
            result = self(job)
            if report is not None:
                try:
                    report(result)
                except Exception as exc:  # the pack's return value still carries it
                    log.warning("reporting sample %d failed: %s", job.sample_id, exc)
            results.append(result)
        return results

    def __call__(self, job: SimJob) -> SimResult:
        """Run ``job`` until it succeeds or its attempts are used up; return the last record."""
        attempt = job.attempt
        while True:
            result = run_simulation(
                self.simulator,
                SimJob(job.sample_id, job.inputs, attempt),
                self.outputs,
                self.positive,
                dict(self.shapes),
            )
            if result.ok or attempt > self.retries:
                return result
            attempt += 1
