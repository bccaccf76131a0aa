"""The campaign store on Zarr v3: samples, retraining steps, the fitted emulator.

Layout (``xarray.open_zarr(path)`` reads the root as a Dataset)::

    sample      (sample)            int64    sample id, the row index
    <param>     (sample)            float64  one variable per parameter (physical units)
    <output>    (sample)            float64  one variable per declared output (NaN unless ok)
    <field>     (sample, <field>_i ...)      a field output: its declared shape per sample
    status      (sample)            str      pending | ok | failed | timeout
    error, worker, origin (sample)  str
    extra       (sample)            str      JSON object of outputs the simulator returned
                                             beyond the declared ones ("" if none)
    iteration, attempt (sample)     int32
    submitted_at, started_at, finished_at (sample)   float64 seconds since the epoch (CF units)
    step        (step)              int64    retraining index
    step_n, step_time, step_fit_seconds (step)
    step_max_rel_std, step_mean_rel_std, step_loo_nrmse, step_loo_coverage (step, output)
    step_lengthscale (step, output, parameter)
    output (output), parameter (parameter)  str  coordinate labels
    emulator-<k>/   group: the fitted emulator (training data + hyperparameters)

Group attributes: ``schema_version``, ``emucamp_version``, ``spec`` (JSON), ``parameters``,
``outputs``, ``output_shapes`` (field outputs only), ``n_samples``, ``n_steps``,
``stop_rule``, ``stop_reason``, ``emulator``, ``sensitivity`` (Sobol indices, once computed).

Every write is O(1) in the number of samples: rows are appended, one chunk is rewritten
per recorded result, and no consolidated metadata is kept (it would go stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import zarr
from zarr.core.sync import sync as zarr_sync  # the bridge every zarr.Array call takes (pinned <3.2)

from emucamp.errors import StoreError
from emucamp.storage.lock import StoreLock

if TYPE_CHECKING:
    import xarray as xr

    from emucamp.simulator import SimResult

__all__ = ["SCHEMA_VERSION", "CampaignStore", "EmulatorState", "StepRecord"]

SCHEMA_VERSION = 1
_CHUNK = 512
_CANDIDATE_CHUNK = 65536
_TIME_UNITS = {"units": "seconds since 1970-01-01T00:00:00", "calendar": "proleptic_gregorian"}
_STR_FIELDS = ("status", "error", "worker", "origin", "extra")
_INT_FIELDS = ("iteration", "attempt")
_TIME_FIELDS = ("submitted_at", "started_at", "finished_at")
_STEP_SCALARS = ("step_n", "step_time", "step_fit_seconds")
_STEP_PER_OUTPUT = ("step_max_rel_std", "step_mean_rel_std", "step_loo_nrmse", "step_loo_coverage")


def _version() -> str:
    from emucamp import __version__

    return __version__


@dataclass(frozen=True)
class StepRecord:
    """Diagnostics of one retraining, as stored along the ``step`` dimension.

    Attributes:
        n: Training points the emulator was fitted on.
        time: Unix time the fit finished.
        fit_seconds: Wall-clock seconds of the fit.
        max_rel_std: ``m`` max posterior std over the reference set / output std.
        mean_rel_std: ``m`` root mean square of the same (the quadratic mean): the
            emulator's own estimate of its NRMSE. Stores written before 0.9 hold the
            arithmetic mean, which is slightly lower.
        loo_nrmse: ``m`` leave-one-out RMSE / output std.
        loo_coverage: ``m`` fraction of points inside their 95 % LOO interval.
        lengthscales: ``m x d`` ARD lengthscales in unit-cube units.
    """

    n: int
    time: float
    fit_seconds: float
    max_rel_std: np.ndarray
    mean_rel_std: np.ndarray
    loo_nrmse: np.ndarray
    loo_coverage: np.ndarray
    lengthscales: np.ndarray


@dataclass
class EmulatorState:
    """A fitted emulator as plain arrays: what is needed to rebuild it exactly.

    Attributes:
        X: ``n x d`` training inputs (physical units).
        Y: ``n x m`` training outputs.
        params: Named hyperparameter/buffer arrays (the model's state dict).
        meta: JSON-able description (kind, output names, options).
    """

    X: np.ndarray
    Y: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _writing(
    lock: str,
) -> Callable[
    [Callable[Concatenate[CampaignStore, _P], _R]], Callable[Concatenate[CampaignStore, _P], _R]
]:
    """A method that writes: only on a writable store, one thread at a time per ``lock``.

    A campaign records samples on its loop thread while its retraining thread stores the
    model and its diagnostics: the two touch different arrays, so each holds a lock of its
    own (``"samples"``, ``"other"``) and neither waits for the other (a model takes
    ~0.2 s to store, which the loop's refills would otherwise wait out). Both rewrite the
    group's ``zarr.json`` (its attributes), which goes through :meth:`_set_attrs` and a
    third, short lock.
    """

    def decorate(
        method: Callable[Concatenate[CampaignStore, _P], _R],
    ) -> Callable[Concatenate[CampaignStore, _P], _R]:
        def locked(self: CampaignStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            self._require_writable()
            with self._locks[lock]:
                return method(self, *args, **kwargs)

        functools.update_wrapper(locked, method)
        return locked

    return decorate


_writes = _writing("other")
_writes_samples = _writing("samples")

# An array and its writes, in order: (rows, values), rows None to append.
_Parts = list[tuple[slice | None, np.ndarray]]
_Writes = tuple["zarr.Array[Any]", _Parts]


def _runs(idx: np.ndarray) -> list[tuple[slice, slice]]:
    """Sorted unique ``idx`` as runs of consecutive ids: (store rows, positions in ``idx``)."""
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(idx)]])
    return [
        (slice(int(idx[a]), int(idx[b - 1]) + 1), slice(int(a), int(b)))
        for a, b in zip(starts, stops, strict=True)
    ]


def _write_together(writes: Sequence[_Writes]) -> None:
    """Write several arrays concurrently, in one round trip to Zarr's I/O thread.

    Each synchronous Zarr call hands over to Zarr's event-loop thread and back. While other
    threads of the process keep the GIL busy (a GP fit, the Dask client, Prefect's client),
    each hand-over waits out switch intervals: in the flow, appending 52 rows to the store's
    17 sample arrays one by one took 0.3-0.5 s, against 0.03 s alone. One array's own
    writes stay in order (two of them may share a chunk).
    """

    async def write(array: zarr.AsyncArray[Any], parts: _Parts) -> None:
        for rows, values in parts:
            if rows is None:
                await array.append(values, axis=0)
            else:
                await array.setitem(rows, values)

    async def gather() -> None:
        await asyncio.gather(*(write(a.async_array, parts) for a, parts in writes))

    zarr_sync(gather())


class CampaignStore:
    """The Zarr group that is a campaign's whole state; the campaign process is its one writer.

    Open with :meth:`create`, :meth:`open` or :meth:`open_or_create`. A writable store holds
    the store lock (``<store>.lock``) until :meth:`close`. Reads of samples come from an
    in-memory mirror loaded once at open, so fitting never re-reads the arrays.

    Example:
        >>> store = CampaignStore.open("runs/borehole.zarr")      # read-only
        >>> X, Y = store.completed()                             # n x d, n x m
        >>> ds = store.to_xarray()
    """

    def __init__(self, path: Path, group: zarr.Group, writable: bool, lock: StoreLock | None):
        self.path = path
        self._group = group
        self.writable = writable
        self._lock = lock
        self._locks = {"samples": threading.RLock(), "other": threading.RLock()}
        self._attrs_lock = threading.Lock()
        # A writer's own array handles: each lookup reads the array's metadata from disk,
        # which was a quarter of a write's cost. Readers look up afresh, since a campaign
        # may grow the arrays under them.
        self._arrays: dict[str, zarr.Array[Any]] = {}
        attrs: dict[str, Any] = dict(group.attrs)
        self.parameters: list[str] = list(attrs["parameters"])
        self.outputs: list[str] = list(attrs["outputs"])
        self.output_shapes: dict[str, tuple[int, ...]] = {
            str(k): tuple(int(i) for i in v) for k, v in (attrs.get("output_shapes") or {}).items()
        }
        n = int(attrs.get("n_samples", 0))
        self._n_steps = int(attrs.get("n_steps", 0))
        if writable:
            if "extra" not in group:  # a store from before extra outputs were kept
                self._add_extra_array(n)
            self._repair(n)
        self._load_mirror(n)

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        parameters: Sequence[str],
        outputs: Sequence[str],
        spec: Mapping[str, Any] | None = None,
        output_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> CampaignStore:
        """Create a new, empty store (refuses to overwrite an existing path).

        Args:
            path: Where the store goes.
            parameters: Parameter names.
            outputs: Output names.
            spec: The campaign spec, kept as JSON.
            output_shapes: Shapes of field outputs (an array per sample); others are scalars.
        """
        shapes = {str(k): [int(i) for i in v] for k, v in (output_shapes or {}).items()}
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists; open it to resume or choose another store")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".creating")
        shutil.rmtree(tmp, ignore_errors=True)
        group = zarr.open_group(tmp, mode="w-", zarr_format=3)
        group.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "emucamp_version": _version(),
                "created_at": time.time(),
                "spec": dict(spec or {}),
                "parameters": list(parameters),
                "outputs": list(outputs),
                "output_shapes": shapes,
                "n_samples": 0,
                "n_steps": 0,
                "stop_rule": "",
                "stop_reason": "",
                "emulator": "",
            }
        )
        cls._create_arrays(group, list(parameters), list(outputs), shapes)
        # The store appears under its name only once complete: no half-made store on a crash.
        tmp.rename(path)
        return cls.open(path, mode="a")

    @staticmethod
    def _create_arrays(
        group: zarr.Group,
        parameters: list[str],
        outputs: list[str],
        shapes: Mapping[str, Sequence[int]],
    ) -> None:
        def arr(name: str, dtype: Any, dims: tuple[str, ...], fill: Any, **attrs: Any) -> None:
            shape = tuple(0 if d in ("sample", "step") else 1 for d in dims)
            chunks = tuple(_CHUNK if d in ("sample", "step") else 1 for d in dims)
            group.create_array(
                name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                dimension_names=dims, attributes=attrs,
            )  # fmt: skip

        m, d = len(outputs), len(parameters)
        arr("sample", "int64", ("sample",), -1)
        for name in [*parameters, *outputs]:
            if name not in shapes:
                arr(name, "float64", ("sample",), math.nan)
                continue
            shape = tuple(shapes[name])
            dims = (
                (f"{name}_index",)
                if len(shape) == 1
                else tuple(f"{name}_dim{i}" for i in range(len(shape)))
            )
            # About 1 MiB per chunk: a result rewrites one chunk, whatever the field's size.
            rows = max(1, min(_CHUNK, (1 << 17) // math.prod(shape)))
            group.create_array(
                name, shape=(0, *shape), chunks=(rows, *shape), dtype="float64",
                fill_value=math.nan, dimension_names=("sample", *dims),
            )  # fmt: skip
        for name in _STR_FIELDS:
            arr(name, str, ("sample",), "")
        for name in _INT_FIELDS:
            arr(name, "int32", ("sample",), 0)
        for name in _TIME_FIELDS:
            arr(name, "float64", ("sample",), math.nan, **_TIME_UNITS)
        arr("step", "int64", ("step",), -1)
        arr("step_n", "int64", ("step",), 0)
        arr("step_time", "float64", ("step",), math.nan, **_TIME_UNITS)
        arr("step_fit_seconds", "float64", ("step",), math.nan)
        for name in _STEP_PER_OUTPUT:
            group.create_array(
                name, shape=(0, m), chunks=(_CHUNK, m), dtype="float64", fill_value=math.nan,
                dimension_names=("step", "output"),
            )  # fmt: skip
        group.create_array(
            "step_lengthscale", shape=(0, m, d), chunks=(_CHUNK, m, d), dtype="float64",
            fill_value=math.nan, dimension_names=("step", "output", "parameter"),
        )  # fmt: skip
        for name, labels in (("output", outputs), ("parameter", parameters)):
            coord = group.create_array(
                name, shape=(len(labels),), dtype=str, fill_value="", dimension_names=(name,)
            )
            coord[:] = np.array(labels, dtype=object)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> CampaignStore:
        """Open an existing store, ``mode="r"`` to read or ``"a"`` to write (takes the lock)."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: no campaign store here")
        try:
            group = zarr.open_group(path, mode="r" if mode == "r" else "r+", zarr_format=3)
        except Exception as exc:
            raise StoreError(f"{path}: unreadable store ({type(exc).__name__}: {exc})") from None
        attrs = dict(group.attrs)
        version = attrs.get("schema_version")
        if not isinstance(version, int) or "parameters" not in attrs:
            raise StoreError(f"{path}: not an emucamp campaign store")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written by a newer emucamp (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade emucamp to open it"
            )
        lock = None
        if mode != "r":
            lock = StoreLock(path)
            lock.acquire()
        try:
            return cls(path, group, writable=mode != "r", lock=lock)
        except Exception:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def open_or_create(
        cls,
        path: str | Path,
        parameters: Sequence[str],
        outputs: Sequence[str],
        spec: Mapping[str, Any] | None = None,
        output_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> tuple[CampaignStore, bool]:
        """Open ``path`` for writing if it exists, else create it; returns ``(store, created)``.

        Raises:
            StoreError: the existing store has other parameters or outputs.
        """
        path = Path(path)
        if not path.exists():
            return cls.create(path, parameters, outputs, spec, output_shapes), True
        store = cls.open(path, mode="a")
        shapes = {k: tuple(v) for k, v in (output_shapes or {}).items()}
        if (
            store.parameters != list(parameters)
            or store.outputs != list(outputs)
            or store.output_shapes != shapes
        ):
            store.close()
            raise StoreError(
                f"{path}: holds a campaign over parameters {store.parameters} and outputs "
                f"{store.outputs} {store.output_shapes or ''}, not {list(parameters)} and "
                f"{list(outputs)} {shapes or ''}; use another store path"
            )
        return store, False

    def close(self) -> None:
        """Release the store lock (reads stay possible)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consistency ---------------------------------------------------------------------
    def _sample_arrays(self) -> list[str]:
        names = ["sample", *self.parameters, *self.outputs, *_STR_FIELDS, *_INT_FIELDS,
                 *_TIME_FIELDS]  # fmt: skip
        return [name for name in names if name != "extra" or "extra" in self._group]

    def _add_extra_array(self, n: int) -> None:
        self._group.create_array(
            "extra", shape=(n,), chunks=(_CHUNK,), dtype=str, fill_value="",
            dimension_names=("sample",),
        )  # fmt: skip

    def _step_arrays(self) -> list[str]:
        return ["step", *_STEP_SCALARS, *_STEP_PER_OUTPUT, "step_lengthscale"]

    def _repair(self, n: int) -> None:
        """Trim rows a crash left appended past the committed counts."""
        for names, count in ((self._sample_arrays(), n), (self._step_arrays(), self._n_steps)):
            for name in names:
                a = self._array(name)
                if a.shape[0] != count:
                    a.resize((count, *a.shape[1:]))

    def _array(self, name: str) -> zarr.Array[Any]:
        a = self._arrays.get(name)
        if a is None:
            found = self._group[name]
            assert isinstance(found, zarr.Array)
            a = found
            if self.writable:
                self._arrays[name] = a
        return a

    def _load_mirror(self, n: int) -> None:
        def read(name: str) -> np.ndarray:
            return np.asarray(self._array(name)[:n]) if n else np.empty(0)

        d, m = len(self.parameters), self.n_columns
        self._X = np.column_stack([read(p) for p in self.parameters]) if n else np.empty((0, d))
        self._Y = (
            np.column_stack([read(o).reshape(n, -1) for o in self.outputs])
            if n
            else np.empty((0, m))
        )
        self._status: list[str] = [str(s) for s in read("status")] if n else []

    def _set_attrs(self, values: Mapping[str, Any]) -> None:
        """Update group attributes: one read-modify-write of ``zarr.json`` at a time."""
        with self._attrs_lock:
            self._group.attrs.update(dict(values))

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only")

    @property
    def n_columns(self) -> int:
        """Columns of :meth:`completed`'s outputs: 1 per scalar output, a field's size per field."""
        return sum(self.output_size(o) for o in self.outputs)

    def output_size(self, name: str) -> int:
        """Values per sample of output ``name``: 1, or the product of a field's shape."""
        return math.prod(self.output_shapes[name]) if name in self.output_shapes else 1

    # -- samples -------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Rows in the store, whatever their status."""
        return len(self._status)

    @_writes_samples
    def add_pending(
        self,
        X: np.ndarray,
        iteration: int,
        origin: str,
        submitted_at: float | np.ndarray | None = None,
    ) -> list[int]:
        """Record ``n x d`` inputs as ``pending``; return their ids (the next ``n`` numbers).

        Args:
            X: The inputs, ``n x d``.
            iteration: The retraining whose model chose them.
            origin: What chose them (``initial``, a strategy's name).
            submitted_at: When they were submitted (Unix seconds), if that was before this
                write: one time for all, or ``n`` times; now by default.
        """
        X = np.atleast_2d(np.asarray(X, dtype=float))
        k, n0 = X.shape[0], self.n_samples
        if X.shape[1] != len(self.parameters):
            raise ValueError(f"expected {len(self.parameters)} columns, got {X.shape[1]}")
        now = np.broadcast_to(
            np.asarray(time.time() if submitted_at is None else submitted_at, dtype=float), (k,)
        )
        columns: dict[str, np.ndarray] = {"sample": np.arange(n0, n0 + k, dtype=np.int64)}
        for j, name in enumerate(self.parameters):
            columns[name] = X[:, j]
        for name in self.outputs:
            columns[name] = np.full((k, *self.output_shapes.get(name, ())), math.nan)
        columns.update(
            status=np.array(["pending"] * k, dtype=object),
            error=np.array([""] * k, dtype=object),
            worker=np.array([""] * k, dtype=object),
            origin=np.array([origin] * k, dtype=object),
            extra=np.array([""] * k, dtype=object),
            iteration=np.full(k, iteration, dtype=np.int32),
            attempt=np.zeros(k, dtype=np.int32),
            submitted_at=np.array(now),
            started_at=np.full(k, math.nan),
            finished_at=np.full(k, math.nan),
        )
        _write_together([(self._array(n), [(None, columns[n])]) for n in self._sample_arrays()])
        # The committed count is written last: a crash before it leaves rows _repair trims.
        self._set_attrs({"n_samples": n0 + k})
        self._X = np.vstack([self._X, X])
        self._Y = np.vstack([self._Y, np.full((k, self.n_columns), math.nan)])
        self._status += ["pending"] * k
        return list(range(n0, n0 + k))

    @_writes_samples
    def mark_submitted(self, sample_id: int) -> None:
        """Stamp a resubmission time on a pending sample (a resumed campaign reruns it)."""
        self._array("submitted_at")[sample_id] = time.time()

    def record(self, result: SimResult) -> None:
        """Write one simulation's outcome into its row (O(1): one chunk per variable)."""
        self.record_many([result])

    @_writes_samples
    def record_many(self, results: Sequence[SimResult]) -> None:
        """Write several outcomes at once: one write per variable and run of consecutive ids.

        Cost is independent of the store's size; results that arrive together (a packed
        task, a burst of completions) share the writes.
        """
        if not results:
            return
        idx = np.array([r.sample_id for r in results], dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= self.n_samples)]
        if len(bad):
            raise StoreError(f"{self.path}: no sample {int(bad[0])} to record a result for")
        Y = self.output_rows(results)
        columns: list[tuple[str, np.ndarray]] = []
        col = 0
        for name in self.outputs:
            size = self.output_size(name)
            values = Y[:, col : col + size]
            col += size
            columns.append(
                (name, values.reshape(len(idx), *self.output_shapes[name]))
                if name in self.output_shapes
                else (name, values[:, 0])
            )
        columns += [
            ("error", np.array([r.error for r in results], dtype=object)),
            ("worker", np.array([r.worker for r in results], dtype=object)),
            ("extra", np.array([self._extras_json(r) for r in results], dtype=object)),
            ("attempt", np.array([r.attempt for r in results], dtype=np.int32)),
            ("started_at", np.array([r.started_at for r in results])),
            ("finished_at", np.array([r.finished_at for r in results])),
            # last: a row reads as done only once the rest of it is written
            ("status", np.array([r.status for r in results], dtype=object)),
        ]
        # Rows go in as runs of consecutive ids (a pack's results are one run); the last of a
        # repeated id wins, as in single writes. Status goes in a second round trip, after
        # the rest of its rows.
        _, last = np.unique(idx[::-1], return_index=True)
        keep = len(idx) - 1 - last  # positions in idx, by id
        runs = _runs(idx[keep])
        for part in (columns[:-1], columns[-1:]):
            _write_together([
                (self._array(name), [(rows, values[keep[at]]) for rows, at in runs])
                for name, values in part
            ])  # fmt: skip
        self._Y[idx] = Y
        for r in results:
            self._status[r.sample_id] = r.status

    def output_rows(self, results: Sequence[SimResult]) -> np.ndarray:
        """The ``k x M`` output rows of ``results``, as :meth:`completed` lays them out.

        A result that is not ``ok``, or lacks an output, holds NaN there. Nothing is written.
        """
        Y = np.full((len(results), self.n_columns), math.nan)
        col = 0
        for name in self.outputs:
            size = self.output_size(name)
            for i, r in enumerate(results):
                if r.ok and name in r.outputs:
                    Y[i, col : col + size] = np.asarray(r.outputs[name], dtype=float).reshape(size)
            col += size
        return Y

    def _extras_json(self, result: SimResult) -> str:
        extras = {k: v for k, v in result.outputs.items() if k not in self.outputs}
        return json.dumps(extras) if extras else ""

    def extra_outputs(self) -> dict[str, np.ndarray]:
        """Outputs the simulator returned beyond the declared ones: ``name -> n`` floats.

        Kept for the record and for analysis; the emulator never trains on them. A sample
        without a value for a name (failed, pending, or not returned) holds NaN.
        """
        n = self.n_samples
        if "extra" not in self._group or n == 0:
            return {}
        texts = np.asarray(self._array("extra")[:n], dtype=object)
        rows = [json.loads(str(text)) if text else {} for text in texts]
        names = sorted({name for row in rows for name in row})
        return {name: np.array([float(row.get(name, math.nan)) for row in rows]) for name in names}

    def status(self) -> list[str]:
        """Status of every sample, by id."""
        return list(self._status)

    def counts(self) -> dict[str, int]:
        """Number of samples per status (``pending``, ``ok``, ``failed``, ``timeout``)."""
        c = Counter(self._status)
        return {s: c.get(s, 0) for s in ("pending", "ok", "failed", "timeout")}

    def ids(self, *statuses: str) -> list[int]:
        """Ids of the samples whose status is one of ``statuses``, in order."""
        return [i for i, s in enumerate(self._status) if s in statuses]

    def pending_ids(self) -> list[int]:
        """Ids of samples recorded but not finished (in flight, or lost to a crash)."""
        return self.ids("pending")

    def inputs(self, ids: Iterable[int] | None = None) -> np.ndarray:
        """``k x d`` inputs of the given samples (all if ``None``)."""
        return self._X.copy() if ids is None else self._X[list(ids)]

    def timestamps(self) -> dict[str, np.ndarray]:
        """Submission, start and end of every sample: epoch seconds, NaN where not yet."""
        n = len(self._status)
        return {name: np.asarray(self._array(name)[:n], dtype=float) for name in _TIME_FIELDS}

    @property
    def writer_active(self) -> bool:
        """Whether a campaign process that may still be running holds this store's lock."""
        return self._lock is not None or StoreLock(self.path).active()

    def completed(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and outputs of the ``ok`` samples: ``n x d`` and ``n x M`` arrays.

        ``M`` is :attr:`n_columns`: a scalar output is one column, a field output its values
        flattened (C order), in the order of :attr:`outputs`.
        """
        ok = np.array([s == "ok" for s in self._status], dtype=bool)
        return self._X[ok].copy(), self._Y[ok].copy()

    # -- candidate pool -------------------------------------------------------------------
    @property
    def has_candidates(self) -> bool:
        """Whether the store holds a candidate pool (a screening campaign)."""
        return "candidate_id" in self._group

    @_writes
    def init_candidates(self, ids: np.ndarray, features: np.ndarray) -> None:
        """Record a pool: ``N`` ids and ``N x d`` features; estimates start unknown."""
        if self.has_candidates:
            raise StoreError(f"{self.path}: already holds a candidate pool")
        for name in [k for k in self._group.array_keys() if k.startswith("candidate")]:
            del self._group[name]  # left by a crash before the pool was whole
            self._arrays.pop(name, None)
        N, m = len(ids), len(self.outputs)
        chunk = min(max(N, 1), _CANDIDATE_CHUNK)

        def arr(name: str, data: np.ndarray, dims: tuple[str, ...], fill: Any) -> None:
            self._group.create_array(
                name, shape=data.shape, chunks=(chunk, *data.shape[1:]), dtype=data.dtype
                if data.dtype != object else str, fill_value=fill, dimension_names=dims,
            )[...] = data  # fmt: skip

        arr("candidate", np.arange(N, dtype=np.int64), ("candidate",), -1)
        arr("candidate_features", np.asarray(features, dtype=float), ("candidate", "parameter"),
            math.nan)  # fmt: skip
        nan_m = np.full((N, m), math.nan)
        arr("candidate_mean", nan_m, ("candidate", "output"), math.nan)
        arr("candidate_std", nan_m, ("candidate", "output"), math.nan)
        arr("candidate_p_pass", np.full(N, math.nan), ("candidate",), math.nan)
        arr("candidate_pass", np.full(N, -1, dtype=np.int8), ("candidate",), -1)
        arr("candidate_sample", np.full(N, -1, dtype=np.int64), ("candidate",), -1)
        # ids last: their presence marks the pool as fully recorded
        arr("candidate_id", np.asarray(ids).astype(str).astype(object), ("candidate",), "")

    @_writes
    def update_candidates(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        p_pass: np.ndarray | None,
        sample: np.ndarray,
        summary: Mapping[str, Any],
    ) -> None:
        """Write every candidate's ``N x m`` mean and std, ``N`` P(pass) and sample ids.

        One write per array per retraining (O(N), the same order as scoring the pool).
        """
        self._array("candidate_mean")[...] = mean
        self._array("candidate_std")[...] = std
        if p_pass is not None:
            self._array("candidate_p_pass")[...] = p_pass
            self._array("candidate_pass")[...] = (p_pass >= 0.5).astype(np.int8)
        self._array("candidate_sample")[...] = sample
        self._set_attrs({"screening": {**dict(summary), "step": self._n_steps}})

    def candidates(self) -> dict[str, np.ndarray]:
        """The pool and its latest estimates, as arrays.

        Keys: ``id``, ``features`` (``N x d``), ``mean`` and ``std`` (``N x m``), ``p_pass``,
        ``passes`` (-1 unknown, 0, 1), ``sample`` (-1: not simulated).

        Raises:
            StoreError: the store holds no candidate pool.
        """
        if not self.has_candidates:
            raise StoreError(f"{self.path}: no candidate pool in this store")
        return {
            "id": np.asarray(self._array("candidate_id")[...], dtype=object).astype(str),
            "features": np.asarray(self._array("candidate_features")[...]),
            "mean": np.asarray(self._array("candidate_mean")[...]),
            "std": np.asarray(self._array("candidate_std")[...]),
            "p_pass": np.asarray(self._array("candidate_p_pass")[...]),
            "passes": np.asarray(self._array("candidate_pass")[...]),
            "sample": np.asarray(self._array("candidate_sample")[...]),
        }

    @property
    def screening(self) -> dict[str, Any]:
        """The latest screening summary (threshold, least confidence, passing count)."""
        value = self._group.attrs.get("screening", {})
        return dict(value) if isinstance(value, dict) else {}

    # -- retraining steps ----------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        """Retraining steps recorded."""
        return self._n_steps

    @_writes
    def add_step(self, step: StepRecord) -> int:
        """Append one retraining's diagnostics; return its step index."""
        k = self._n_steps
        rows: dict[str, np.ndarray] = {
            "step": np.array([k], dtype=np.int64),
            "step_n": np.array([step.n], dtype=np.int64),
            "step_time": np.array([step.time]),
            "step_fit_seconds": np.array([step.fit_seconds]),
            "step_max_rel_std": np.asarray(step.max_rel_std, dtype=float)[None, :],
            "step_mean_rel_std": np.asarray(step.mean_rel_std, dtype=float)[None, :],
            "step_loo_nrmse": np.asarray(step.loo_nrmse, dtype=float)[None, :],
            "step_loo_coverage": np.asarray(step.loo_coverage, dtype=float)[None, :],
            "step_lengthscale": np.asarray(step.lengthscales, dtype=float)[None, :, :],
        }
        _write_together([(self._array(n), [(None, rows[n])]) for n in self._step_arrays()])
        self._n_steps = k + 1
        self._set_attrs({"n_steps": self._n_steps})
        return k

    def steps(self) -> list[StepRecord]:
        """All recorded retraining steps, oldest first."""
        k = self._n_steps
        if k == 0:
            return []
        cols = {name: np.asarray(self._array(name)[:k]) for name in self._step_arrays()}
        return [
            StepRecord(
                n=int(cols["step_n"][i]),
                time=float(cols["step_time"][i]),
                fit_seconds=float(cols["step_fit_seconds"][i]),
                max_rel_std=cols["step_max_rel_std"][i],
                mean_rel_std=cols["step_mean_rel_std"][i],
                loo_nrmse=cols["step_loo_nrmse"][i],
                loo_coverage=cols["step_loo_coverage"][i],
                lengthscales=cols["step_lengthscale"][i],
            )
            for i in range(k)
        ]

    # -- campaign attributes ---------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """The group attributes (spec, versions, counts, stop reason)."""
        return dict(self._group.attrs)

    @property
    def spec(self) -> dict[str, Any]:
        """The spec (JSON data) the campaign last ran with."""
        spec: dict[str, Any] = self._group.attrs.get("spec", {})  # type: ignore[assignment]
        return spec

    @_writes
    def set_spec(self, spec: Mapping[str, Any]) -> None:
        """Record the spec a (resumed) campaign runs with."""
        self._set_attrs({"spec": dict(spec)})

    @property
    def stop_reason(self) -> str:
        """Why the campaign last stopped ('' while it has not)."""
        return str(self._group.attrs.get("stop_reason", ""))

    @property
    def stop_rule(self) -> str:
        """Name of the stop rule that fired ('' while none has)."""
        return str(self._group.attrs.get("stop_rule", ""))

    @_writes
    def set_stop(self, rule: str, reason: str) -> None:
        """Record which rule stopped the campaign and why ('' clears it on resume)."""
        self._set_attrs(
            {"stop_rule": rule, "stop_reason": reason, "stopped_at": time.time() if rule else 0.0}
        )

    @property
    def sensitivity(self) -> dict[str, Any] | None:
        """The latest stored sensitivity analysis (Sobol indices, relevance), if any."""
        value = self._group.attrs.get("sensitivity")
        return dict(value) if isinstance(value, Mapping) else None

    @_writes
    def set_sensitivity(self, data: Mapping[str, Any]) -> None:
        """Store a sensitivity analysis (JSON-able), replacing the previous one."""
        self._set_attrs({"sensitivity": dict(data)})

    # -- emulator --------------------------------------------------------------------------
    @_writes
    def save_emulator(self, state: EmulatorState) -> None:
        """Store a fitted emulator; the previous one is replaced only once this one is whole."""
        old = str(self._group.attrs.get("emulator", ""))
        name = f"emulator-{self._n_steps:06d}-{time.time_ns() % 10**9:09d}"
        sub = self._group.create_group(name, attributes={"meta": state.meta})
        sub.create_array("X", data=np.asarray(state.X, dtype=float))
        sub.create_array("Y", data=np.asarray(state.Y, dtype=float))
        params = sub.create_group("params")
        for key, value in state.params.items():
            params.create_array(key, data=np.asarray(value))
        self._set_attrs({"emulator": name})
        if old and old != name:
            with contextlib.suppress(KeyError, FileNotFoundError):
                del self._group[old]

    def load_emulator_state(self) -> EmulatorState:
        """The stored emulator's arrays.

        Raises:
            StoreError: no emulator has been fitted yet.
        """
        name = str(self._group.attrs.get("emulator", ""))
        if not name:
            raise StoreError(
                f"{self.path}: no fitted emulator yet (it is saved after the first retraining)"
            )
        sub = self._group[name]
        assert isinstance(sub, zarr.Group)
        X, Y, params = sub["X"], sub["Y"], sub["params"]
        assert isinstance(X, zarr.Array) and isinstance(Y, zarr.Array)
        assert isinstance(params, zarr.Group)
        values = {k: np.asarray(v[...]) for k, v in params.arrays()}
        meta: dict[str, Any] = dict(sub.attrs).get("meta", {})  # type: ignore[assignment]
        return EmulatorState(X=np.asarray(X[...]), Y=np.asarray(Y[...]), params=values, meta=meta)

    # -- views -----------------------------------------------------------------------------
    def to_xarray(self) -> xr.Dataset:
        """The store as an :class:`xarray.Dataset` (dimensions ``sample``, ``step``, ...)."""
        import xarray as xr

        try:
            dataset: xr.Dataset = xr.open_zarr(self.path, consolidated=False)
        except ValueError:
            # Read-only view of a store whose writer died mid-append (rows past the
            # committed count; the next writer trims them): read the committed rows.
            return self._committed_dataset()
        # Rows appended but not yet committed (a writer mid-append, or killed there) are
        # not part of the store.
        rows = {"sample": self.n_samples, "step": self._n_steps}
        extra = {d: slice(0, n) for d, n in rows.items() if dataset.sizes.get(d, n) > n}
        return dataset.isel(extra) if extra else dataset

    def _committed_dataset(self) -> xr.Dataset:
        import xarray as xr

        rows = {"sample": self.n_samples, "step": self._n_steps}
        variables = {}
        for name, array in self._group.arrays():
            dims = tuple(str(d) for d in array.metadata.dimension_names or ())  # type: ignore[union-attr]
            index = tuple(slice(0, rows[d]) if d in rows else slice(None) for d in dims)
            variables[name] = xr.Variable(dims, np.asarray(array[index]), attrs=dict(array.attrs))
        return xr.decode_cf(xr.Dataset(variables, attrs=dict(self._group.attrs)))

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: counts, latest diagnostics, stop reason, emulator."""
        counts = self.counts()
        steps = self.steps()
        last = steps[-1] if steps else None
        spec = self.spec
        target = (spec.get("stop") or {}).get("target_std")
        # Specs from before the setting bounded the max.
        statistic = (spec.get("stop") or {}).get("target_std_statistic", "max")
        finished = [s for s in self._status if s != "pending"]
        return {
            "store": str(self.path),
            "campaign": (spec.get("campaign") or {}).get("name", ""),
            "parameters": self.parameters,
            "outputs": self.outputs,
            "samples": self.n_samples,
            "counts": counts,
            "finished": len(finished),
            "budget": (spec.get("stop") or {}).get("max_simulations"),
            "steps": len(steps),
            "target_std": target,
            "target_std_statistic": statistic,
            "latest": None
            if last is None
            else {
                "n": last.n,
                "fit_seconds": last.fit_seconds,
                "max_rel_std": dict(zip(self.outputs, map(float, last.max_rel_std), strict=True)),
                "mean_rel_std": dict(zip(self.outputs, map(float, last.mean_rel_std), strict=True)),
                "loo_nrmse": dict(zip(self.outputs, map(float, last.loo_nrmse), strict=True)),
                "loo_coverage": dict(zip(self.outputs, map(float, last.loo_coverage), strict=True)),
            },
            "stop_rule": self.stop_rule,
            "stop_reason": self.stop_reason,
            "pool": {"candidates": int(self._array("candidate_id").shape[0]), **self.screening}
            if self.has_candidates
            else None,
            "emulator": bool(self._group.attrs.get("emulator", "")),
            "emucamp_version": self._group.attrs.get("emucamp_version"),
            "schema_version": self._group.attrs.get("schema_version"),
        }
