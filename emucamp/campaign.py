"""The campaign loop, engine-free: design, submit, record, retrain, select, stop.

:class:`Campaign` owns the store (single writer) and runs an asynchronous loop over any
:class:`~emucamp.executors.Executor`: it keeps ``workers`` simulations in flight, records
each result the moment it arrives, refills the freed worker at once using the current
emulator with every running input as a pending point, and retrains in a background thread
so that no worker waits for a fit. The Prefect flow in ``emucamp.flows`` wraps this loop.

Example:
    >>> spec = load_spec("campaign.toml")
    >>> with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, 4) as ex:
    ...     outcome = campaign.run(ex)
    >>> outcome.reason
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import functools
import gc
import itertools
import logging
import math
import queue
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emucamp.emulators.basis import OutputBasis
from emucamp.emulators.diagnostics import diagnose
from emucamp.emulators.gp import GPEmulator, warm_up
from emucamp.emulators.greybox import GreyBox
from emucamp.emulators.screening import (
    Goal,
    PoolStrategy,
    initial_pool_design,
    score_pool,
    screen,
    simulated_samples,
)
from emucamp.emulators.sensitivity import sobol_indices
from emucamp.emulators.stopping import (
    AnyRule,
    CampaignState,
    MaxFailureRate,
    MaxHours,
    MaxSimulations,
    ScreeningAccuracy,
    ScreeningConfidence,
    StopDecision,
    StopRule,
    TargetLooNrmse,
    TargetStd,
)
from emucamp.emulators.strategies import SobolStrategy, Strategy, make_strategy
from emucamp.errors import SpecError, StoreError
from emucamp.executors import Executor, JobFuture
from emucamp.observer import CampaignObserver, CampaignOutcome
from emucamp.pool import CandidatePool
from emucamp.simulator import (
    CommandSimulator,
    PythonSimulator,
    SimJob,
    SimResult,
    SimulationRunner,
)
from emucamp.spec import CampaignSpec
from emucamp.storage import CampaignStore, StepRecord

__all__ = [
    "Campaign",
    "CampaignObserver",
    "CampaignOutcome",
    "build_greybox",
    "build_simulator",
    "load_pool",
    "stop_rules",
]

log = logging.getLogger(__name__)
_REFIT_GROWTH = 0.10
_MODEL_SAVE_SPACING = 20.0  # store a model once the last save is 20x its own cost old
_SELECT_BATCH = 64  # points chosen in one selection call before their packs go out
# Streamed records wait at most this long (s) for a write of their own: cheap simulations'
# records (40/s at T = 0.2 s on 8 workers) share their pack's write instead of one write
# each (they go at once while the first model waits for them).
_STREAM_FLUSH = 2.0
# Rules read from the model: checked again, before the loop ends, on a model of every result.
_MODEL_RULES = frozenset(
    {"target_std", "target_loo_nrmse", "screening_confidence", "screening_accuracy"}
)


def _groups(sizes: list[int], batch: int) -> list[list[int]]:
    """Consecutive pack sizes, grouped to at most ``batch`` points (a larger pack alone)."""
    groups: list[list[int]] = []
    for k in sizes:
        if groups and sum(groups[-1]) + k <= batch:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def _return_freed_memory() -> None:
    """Hand the memory a refit freed back to the OS.

    A refit in its thread frees n x n matrices (72 MB each at n = 3,000), which glibc keeps
    in that thread's arena: +0.4 GB of resident memory at n = 1,500 in a campaign, gone with
    ``malloc_trim`` (what ``MALLOC_TRIM_THRESHOLD_=0`` does; Dask trims its workers alike).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _stored(events: queue.Queue[tuple[str, Any]], fitted: _Fitted, future: cf.Future[None]) -> None:
    """A retraining is in the store (or failed to be): the loop tells its observer."""
    if future.cancelled():
        return
    if future.exception() is not None:
        log.warning(
            "storing the retraining on n = %d failed: %s", fitted.step.n, future.exception()
        )
        return
    events.put(("saved", fitted))


def _freeze_gc() -> bool:
    """Keep the objects alive now out of the cyclic collector's scans; ``False`` if not done.

    The flow process holds Prefect, Dask, torch and their objects: a full collection took
    0.26-0.32 s there, stalling the Dask scheduler in the same process. In two of three
    traced runs one landed on the first submit (every worker's first simulation started
    0.25 s late), in the third on the first model's selection. Frozen, a collection scans
    only what the run itself made. The caller unfreezes after the run. A freeze already in
    place (a pre-fork server's) is left alone.
    """
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def _notify(events: queue.Queue[tuple[str, Any]], sample_id: int, _future: object) -> None:
    events.put(("result", sample_id))


def _refit_at(fitted_on: int) -> int:
    """Successful results at which a model fitted on ``fitted_on`` is refitted."""
    return max(fitted_on + 1, math.ceil(fitted_on * (1 + _REFIT_GROWTH)))


def _refit_due(ok: int, fitted_on: int, first_fit: int) -> bool:
    """Whether ``ok`` successful results call for a refit (the first at ``first_fit``)."""
    return ok >= max(_refit_at(fitted_on), first_fit)


def _streamed(events: queue.Queue[tuple[str, Any]], result: SimResult) -> None:
    events.put(("sim", result))


def _gap_before(
    pack: Sequence[SimResult], submitted: float, ends: dict[str, float]
) -> float | None:
    """Seconds the pack's worker waited before the pack's first simulation started.

    Measured from the worker's previous simulation end (same clock: same worker), so it
    includes the flow's refill when nothing was queued; from the submission for a worker's
    first pack. Updates ``ends``.
    """
    starts = [r.started_at for r in pack if math.isfinite(r.started_at)]
    finished = [r.finished_at for r in pack if math.isfinite(r.finished_at)]
    worker = pack[0].worker if pack else ""
    if not starts or not worker:
        return None
    before = ends.get(worker, submitted)
    if finished:
        ends[worker] = max(finished)
    return max(0.0, min(starts) - before)


def load_pool(spec: CampaignSpec) -> tuple[CampaignSpec, CandidatePool]:
    """Read the spec's pool; return the spec with the pool's range as missing bounds.

    Raises:
        SpecError: the pool cannot be read, lacks a column, has a non-finite feature or a
            repeated id, or lies outside the bounds the spec gives.
    """
    assert spec.pool is not None and spec.pool_path is not None
    names = list(spec.parameters)
    pool = CandidatePool.load(spec.pool_path, names, spec.pool.id)
    lo, hi = pool.bounds()
    for j, name in enumerate(names):
        p = spec.parameters[name]
        outside = (p.low is not None and lo[j] < p.low) or (p.high is not None and hi[j] > p.high)
        if outside:
            raise SpecError(
                f"{spec.pool_path}: column {name!r} spans [{lo[j]:g}, {hi[j]:g}], outside "
                f"parameters.{name} = [{p.low}, {p.high}]"
            )
    bounded = spec.with_bounds(dict(zip(names, lo, strict=True)), dict(zip(names, hi, strict=True)))
    return bounded, pool


def _goal(spec: CampaignSpec) -> Goal | None:
    g = spec.goal
    if g is None:
        return None
    j = spec.output_names.index(g.output)
    if g.top_k is not None:
        return Goal(j, "top_k", k=g.top_k, largest=g.top == "largest")
    if g.below is not None:
        return Goal(j, "below", threshold=g.below)
    assert g.above is not None
    return Goal(j, "above", threshold=g.above)


def build_simulator(spec: CampaignSpec, check: bool = True) -> PythonSimulator | CommandSimulator:
    """The spec's simulator; with ``check``, a Python import path is imported now.

    Raises:
        SimulatorError: the import path does not import or is not callable.
    """
    sim = spec.simulator
    if sim.function is not None:
        py = PythonSimulator(
            sim.function,
            search_path=(str(spec.base_dir),),
            isolate=sim.isolate,
            timeout=sim.timeout,
        )
        if check:
            py.load()
        return py
    assert sim.command is not None
    workdir = sim.workdir or str(spec.store_path) + ".work"
    workdir_path = spec.base_dir / workdir
    return CommandSimulator(
        tuple(sim.command), str(workdir_path), timeout=sim.timeout, base_dir=str(spec.base_dir)
    )


def build_greybox(spec: CampaignSpec) -> GreyBox:
    """The spec's prior mean and positive outputs (the prior is imported now).

    Raises:
        SimulatorError: ``emulator.prior_mean`` does not import or is not callable.
    """
    return GreyBox(
        spec.output_names,
        list(spec.parameters),
        prior_mean=spec.emulator.prior_mean,
        positive=[name for name, o in spec.outputs.items() if o.positive],
        search_path=(str(spec.base_dir),),
    )


def build_basis(spec: CampaignSpec) -> OutputBasis:
    """The spec's field outputs and their principal-component settings."""
    fields = {name: o for name, o in spec.outputs.items() if o.shape is not None}
    return OutputBasis(
        spec.output_names,
        spec.output_shapes,
        retained={name: o.retained_variance for name, o in fields.items()},
        max_components={name: o.max_components for name, o in fields.items()},
    )


def stop_rules(spec: CampaignSpec) -> AnyRule:
    """The spec's stop rules, in the order they are checked."""
    s = spec.stop
    rules: list[StopRule] = [MaxSimulations(s.max_simulations)]
    if s.target_std is not None:
        rules.append(TargetStd(s.target_std, s.target_std_statistic))
    if s.target_loo_nrmse is not None:
        rules.append(TargetLooNrmse(s.target_loo_nrmse))
    if s.screening_confidence is not None:
        rules.append(ScreeningConfidence(s.screening_confidence))
    if s.screening_accuracy is not None:
        rules.append(ScreeningAccuracy(s.screening_accuracy))
    if s.max_hours is not None:
        rules.append(MaxHours(s.max_hours))
    rules.append(MaxFailureRate(s.max_failure_rate, s.failure_rate_after))
    return AnyRule(rules)


class _PackSizer:
    """How many simulations go into each task, and how many tasks wait queued.

    With ``"auto"``, a pack holds enough simulations that a worker's time between two
    simulations of different packs (the flow's refill, the task's dispatch and set-up: the
    gap from its previous simulation's end to the pack's first start, smoothed) stays under
    ``overhead`` of the pack's simulation time. Whenever that gap shows (over ``overhead`` of
    one simulation: wherever packing pays at all), one more pack per worker is kept queued so
    a worker starts its next pack while the flow is still preparing the one after: the
    flow's refill then costs workers nothing. Long simulations (gap well under 2 %) run with
    no queue, so every selection sees the newest model.
    """

    def __init__(
        self, per_task: int | str, overhead: float = 0.02, limit: int = 256, streamed: bool = False
    ) -> None:
        self.auto = per_task == "auto"
        self.size = 1 if self.auto else int(per_task)
        self.overhead, self.limit = overhead, limit
        self.queue = False
        self.measured = False
        # The executor streams each record as it ends: a pack's first result need not
        # wait for the pack.
        self.streamed = streamed
        self._gap = 0.0
        self._sim = 0.0

    @staticmethod
    def _smooth(old: float, new: float) -> float:
        return new if not old else 0.8 * old + 0.2 * new

    def slots(self, workers: int, planned: int = 0) -> int:
        """Packs to keep submitted: one per worker, plus one queued per worker if it pays.

        Planned inputs (the initial design, a resumed campaign's pending rows) do not
        depend on the model, so they are always queued.
        """
        return 2 * workers if self.queue or planned else workers

    def sizes(self, room: int, free: int, workers: int, planned: int = 0) -> list[int]:
        """Sizes of the next ``free`` packs when ``room`` simulations are left to hand out.

        Guided self-scheduling: no pack is larger than one worker's equal share of what is
        left, so packs shrink towards the end and the workers finish together, but none is
        shorter than the measured wait before a pack (below that, splitting costs more
        than the imbalance it saves). With ``"auto"`` and nothing measured yet, only the
        ``planned`` inputs go out: one simulation per pack, so that the first results, and
        with them the first model, come in as soon as they can, since a pack's results
        arrive together; where records are :attr:`streamed` one by one, a pack a worker
        instead, each worker running its share without a task boundary between.
        """
        if self.auto and not self.measured:
            if not self.streamed:
                return [1] * min(room, planned, free)
            total = min(room, planned)
            n = min(free, workers, total)
            return [total // n + (i < total % n) for i in range(n)] if n else []
        # A pack shorter than the wait before it is mostly overhead: never split below that.
        floor = math.ceil(self._gap / self._sim) if self._sim > 0 else 1
        # Each worker holds up to this many packs (running and queued): the equal share is
        # of those, or a worker's queued pack, sized early, ends the campaign late.
        held = self.slots(workers, planned) // workers
        out: list[int] = []
        for _ in range(free):
            if room <= 0:
                break
            k = min(self.size, room, max(1, floor, math.ceil(room / (held * workers))))
            out.append(k)
            room -= k
        return out

    def observed(self, results: Sequence[SimResult], gap: float | None = None) -> None:
        """Record one pack's simulation times and the worker's wait before it; resize."""
        times = [r.seconds for r in results if math.isfinite(r.seconds)]
        if not times:
            return
        self._sim = self._smooth(self._sim, float(np.mean(times)))
        if gap is not None and math.isfinite(gap):
            self._gap = self._smooth(self._gap, max(0.0, gap))
        if self._sim <= 0:
            return
        self.measured = True
        if self.auto:
            needed = self._gap / (self.overhead * self._sim)
            self.size = int(min(self.limit, max(1, math.ceil(needed))))
        if self._gap > self.overhead * self._sim:
            self.queue = True


@dataclass
class _PoolScores:
    """The pool's scores after one retraining (``N x m`` mean/std, ``N`` P(pass), samples)."""

    mean: np.ndarray
    std: np.ndarray
    p_pass: np.ndarray | None
    sample: np.ndarray
    summary: dict[str, float]


@dataclass
class _Fitted:
    emulator: GPEmulator
    step: StepRecord
    pool: _PoolScores | None = None
    ids: frozenset[int] = frozenset()  # the samples it was fitted on


@dataclass
class _Progress:
    finished: int = 0
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Campaign:
    """One campaign: its spec, its store, its emulator, and the loop that drives them.

    Args:
        spec: The validated spec.
        store: The campaign's store, opened for writing.
    """

    def __init__(
        self, spec: CampaignSpec, store: CampaignStore, pool: CandidatePool | None = None
    ) -> None:
        if not store.writable:
            raise StoreError(f"{store.path}: a campaign needs its store opened for writing")
        if spec.pool is not None and pool is None:
            spec, pool = load_pool(spec)
        self.spec = spec
        self.store = store
        self.space = spec.space
        self.outputs = spec.output_names
        self.simulator = build_simulator(spec)
        positive = tuple(name for name, o in spec.outputs.items() if o.positive)
        self.runner = SimulationRunner(
            self.simulator,
            tuple(self.outputs),
            spec.simulator.retries,
            positive,
            tuple(spec.output_shapes.items()),
        )
        self.greybox = build_greybox(spec)
        self.rules = stop_rules(spec)
        self.pool = pool
        self.pool_unit = self.space.to_unit(pool.features) if pool is not None else None
        reference_seed = spec.campaign.seed + 104729
        if self.pool_unit is None:
            self.reference = self.space.sobol_unit(spec.stop.reference_points, seed=reference_seed)
        else:
            # A pool's uncertainty is judged on the pool, not on the box around it (which
            # may hold inputs no candidate has, such as fractions that add up past one).
            size = min(len(self.pool_unit), spec.stop.reference_points)
            rows = np.random.default_rng(reference_seed).choice(len(self.pool_unit), size, False)
            self.reference = self.pool_unit[rows]
        self.goal = _goal(spec)
        self.screening: dict[str, float] | None = None
        self._last_passes: np.ndarray | None = None
        self._score_client: Any = None
        if self.pool is not None and store.has_candidates:
            self._check_same_pool()  # before anything is written
        self.emulator: GPEmulator | None = None
        self._reused: GPEmulator | None = None  # the stored model, when a rerun adopts it
        self._trained: frozenset[int] = frozenset()  # the samples self.emulator was fitted on
        self._stored_model: GPEmulator | None = None  # the model the store holds, if known
        self._model_saved = (0.0, 0.0)  # when the last model save ended (monotonic), its s
        self.latest_step: StepRecord | None = None
        self.started = time.monotonic()
        self.in_flight: dict[int, tuple[JobFuture, list[int]]] = {}
        # Records of packs in flight that the executor streamed, already recorded.
        self._streamed: dict[int, SimResult] = {}
        self._strategy: Strategy | PoolStrategy | None = None
        self._progress = _Progress()
        self._load_progress()
        # Retrainings swapped in: a pick's ``iteration`` (each is stored a moment after).
        self._iteration = store.n_steps
        self._picked = 0  # points the current model chose

    @classmethod
    def open(cls, spec: CampaignSpec) -> Campaign:
        """Open (resume) or create the spec's store and take its lock.

        With a ``[pool]``, the pool is read and checked first, and parameters without
        bounds take the pool's range.

        Raises:
            SpecError: the pool is missing, unreadable or invalid.
            SimulatorError: the simulator cannot be loaded (checked before the store is touched).
            StoreError: the store belongs to another campaign or is in use.
        """
        pool = None
        if spec.pool is not None:
            spec, pool = load_pool(spec)
        build_simulator(spec)  # fail on a bad import path before anything is written
        store, _ = CampaignStore.open_or_create(
            spec.store_path,
            spec.space.names,
            spec.output_names,
            spec.to_json_dict(),
            spec.output_shapes,
        )
        try:
            return cls(spec, store, pool)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def __enter__(self) -> Campaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------------
    def _load_progress(self) -> None:
        counts = self.store.counts()
        p = self._progress
        p.ok = counts["ok"]
        p.failed = counts["failed"] + counts["timeout"]
        p.finished = p.ok + p.failed

    def state(self) -> CampaignState:
        """What the stop rules see now."""
        p = self._progress
        return CampaignState(
            finished=p.finished,
            ok=p.ok,
            failed=p.failed,
            elapsed_seconds=time.monotonic() - self.started,
            outputs=self.outputs,
            step=self.latest_step,
            errors=p.errors,
            screening=self.screening,
        )

    @property
    def counts(self) -> dict[str, int]:
        """Samples per status."""
        return self.store.counts()

    def _check_same_pool(self) -> None:
        """A resumed screening campaign must see the pool its store was made from."""
        assert self.pool is not None
        stored = self.store.candidates()
        same = np.array_equal(stored["features"], self.pool.features) and np.array_equal(
            stored["id"], self.pool.ids.astype(str)
        )
        if not same:
            raise StoreError(
                f"{self.store.path}: holds a pool of {len(stored['id'])} candidates that differs "
                f"from {self.pool.source} ({len(self.pool)} rows); use another store path"
            )

    def _snapshot(
        self, in_hand: Sequence[SimResult] = ()
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The ``ok`` rows now: ``n x d`` inputs, ``n x m`` outputs and their sample ids.

        ``in_hand``: results not written yet; the ``ok`` ones among them come last.
        """
        X, Y = self.store.completed()
        ids = self.store.ids("ok")
        known = set(ids)
        new: dict[int, SimResult] = {}
        for r in in_hand:
            if r.ok and r.sample_id not in known:
                new[r.sample_id] = r  # the last of a repeated id wins, as in the store
        if not new:
            return X, Y, ids
        rows = list(new.values())
        X = np.vstack([X, self.store.inputs(new)])
        Y = np.vstack([Y, self.store.output_rows(rows)])
        return X, Y, ids + list(new)

    def _fit(
        self,
        snapshot: tuple[np.ndarray, np.ndarray, list[int]],
        warm: GPEmulator | None,
        save: bool = True,
    ) -> _Fitted | None:
        """Fit on the ``ok`` rows (this may run in a thread), score the pool, store it all.

        With ``save=False`` nothing is stored: the loop swaps the model in first and has
        :meth:`_save` store it after.
        """
        X, Y, ids = snapshot
        if len(X) < 2:
            return None
        emulator = GPEmulator(
            self.space,
            self.outputs,
            greybox=self.greybox,
            ood_method=self.spec.emulator.ood_method,
            ood_level=self.spec.emulator.ood_level,
            basis=build_basis(self.spec),
            noise_floor=self.spec.emulator.noise_floor,
            priors=self.spec.emulator.priors,
            max_fit_points=self.spec.emulator.max_fit_points,
            kernel=self.spec.emulator.kernel,
        ).fit(X, Y, warm_start=warm)
        fitted = _Fitted(emulator, diagnose(emulator, self.reference), ids=frozenset(ids))
        if self.pool is not None and self.pool_unit is not None:
            scores = fitted.pool = self._score_pool(emulator, X, Y, ids)
            if scores.p_pass is not None:
                # Labels that flipped since the last retraining: screening is not done while
                # the model is still changing its mind (an early model can be confidently
                # wrong about regions it has not seen). Fits run one at a time.
                passes = scores.p_pass >= 0.5
                last = self._last_passes
                scores.summary["changed"] = 1.0 if last is None else float(np.mean(passes != last))
                self._last_passes = passes
        if save:
            self._save(fitted)
        return fitted

    def _save(self, fitted: _Fitted, model: bool = True) -> None:
        """Store a retraining: its diagnostics, the model (if ``model``), the pool's scores.

        Runs in the fitting thread, after the loop has swapped the model in: the writes
        (~0.15 s, a dozen small arrays) would otherwise hold up the refills, or the swap.
        """
        self.store.add_step(fitted.step)
        if model:
            began = time.perf_counter()
            self.store.save_emulator(fitted.emulator.state())
            self._stored_model = fitted.emulator
            self._model_saved = (time.monotonic(), time.perf_counter() - began)
        _return_freed_memory()
        scores = fitted.pool
        if scores is None:
            return
        self.store.update_candidates(
            scores.mean, scores.std, scores.p_pass, scores.sample, scores.summary
        )

    def _score_pool(
        self, emulator: GPEmulator, X: np.ndarray, Y: np.ndarray, ids: list[int]
    ) -> _PoolScores:
        assert self.pool is not None and self.pool_unit is not None
        j = self.goal.output if self.goal is not None else 0
        simulated: dict[int, tuple[int, float]] = {}
        for i, rows in enumerate(self.pool.rows_of(X)):
            for row in rows:
                simulated[row] = (ids[i], float(Y[i, j]))
        if self.goal is None:
            mean, std = score_pool(emulator, self.pool_unit, client=self._score_client)
            sample = simulated_samples(simulated, len(self.pool))
            return _PoolScores(mean, std, None, sample, {"simulated": float(len(simulated))})
        result = screen(emulator, self.pool_unit, self.goal, simulated, client=self._score_client)
        summary = {
            "threshold": result.threshold,
            "min_confidence": result.min_confidence,
            "expected_accuracy": result.expected_accuracy,
            "n_pass": float(result.n_pass),
            "simulated": float(len(simulated)),
        }
        return _PoolScores(result.mean, result.std, result.p_pass, result.sample, summary)

    def _adopt(self, fitted: _Fitted, observer: CampaignObserver | None) -> None:
        """Swap in a retraining (on the loop's thread) and tell ``observer``, if one is given.

        The loop passes none: it tells its observer once the fitting thread has stored it.
        """
        self.emulator = fitted.emulator
        self._trained = fitted.ids
        self._iteration += 1
        self._picked = 0
        self.latest_step = fitted.step
        if fitted.pool is not None:
            scores = fitted.pool
            self.screening = scores.summary if scores.p_pass is not None else None
            if isinstance(self._strategy, PoolStrategy):
                self._strategy.update(scores.mean, scores.std, scores.summary.get("threshold"))
        if observer is not None:
            observer.on_step(fitted.step, self)

    def _same_settings(self, emulator: GPEmulator) -> bool:
        """Whether ``emulator`` was built with the spec's emulator settings as they are now."""
        spec = self.spec.emulator
        return (
            emulator.noise_floor == spec.noise_floor
            and emulator.priors == spec.priors
            and emulator.kernel == spec.kernel
            and emulator.max_fit_points == spec.max_fit_points
            and (emulator.ood_method, emulator.ood_level) == (spec.ood_method, spec.ood_level)
            and emulator.greybox.meta() == self.greybox.meta()
            and emulator.basis.meta() == build_basis(self.spec).meta()
        )

    def _stored_emulator(self) -> GPEmulator | None:
        try:
            return GPEmulator.from_state(self.store.load_emulator_state(), self.space)
        except (StoreError, KeyError, ValueError, RuntimeError):
            return None

    # -- selection -------------------------------------------------------------------------
    def _select(
        self,
        strategy: Strategy | PoolStrategy,
        sobol: SobolStrategy,
        k: int,
        unwritten: Sequence[np.ndarray] = (),
    ) -> tuple[np.ndarray, str]:
        """``k x d`` new inputs and what chose them.

        ``unwritten``: this round's earlier picks (``k_i x d`` each), out but not stored yet;
        they count as pending.
        """
        # Running and failed inputs both count as pending: the first so refills spread out,
        # the second so a failed input is not proposed again unchanged. Results that came
        # in since the model was fitted are conditioned in too, until the next refit takes
        # them: a GP's variance after them is exact whatever values they returned.
        busy = self.store.ids("pending", "failed", "timeout")
        busy += [i for i in self.store.ids("ok") if i not in self._trained]
        rows = ([self.store.inputs(busy)] if busy else []) + [x for x in unwritten if len(x)]
        pending = np.vstack(rows) if rows else None
        fitted = self.emulator is not None and self.emulator.fitted
        if isinstance(strategy, PoolStrategy):
            assert self.pool is not None
            # Every row ever simulated or in flight, whatever its status, is used up.
            strategy.exclude(self.pool.used_mask(np.vstack([self.store.inputs(), *unwritten])))
            model = self.emulator if fitted else None
            try:
                return strategy.select(model, k, pending), strategy.name if model else "random"
            except Exception as exc:  # an acquisition failure must not stall the workers
                log.warning("%s selection failed (%s); using random rows", strategy.name, exc)
                return strategy.select(None, k, pending), "random"
        if strategy.needs_model and not fitted:
            return sobol.select(None, k, pending), "sobol"
        try:
            X = strategy.select(self.emulator, k, pending)
        except Exception as exc:  # an acquisition failure must not stall the workers
            log.warning("%s selection failed (%s); using Sobol points", strategy.name, exc)
            return sobol.select(None, k, pending), "sobol"
        if isinstance(strategy, SobolStrategy):
            sobol.drawn = strategy.drawn
        return X, strategy.name

    # -- the loop --------------------------------------------------------------------------
    def run(self, executor: Executor, observer: CampaignObserver | None = None) -> CampaignOutcome:
        """Run until a stop rule fires; resuming where the store left off.

        Args:
            executor: Where simulations run.
            observer: Progress hooks (CLI output, Prefect artifacts).

        Returns:
            The :class:`CampaignOutcome`; also recorded in the store (``stop_rule``,
            ``stop_reason``).
        """
        obs = observer or CampaignObserver()
        spec, store = self.spec, self.store
        if self.pool is not None and spec.execution.score_on_workers:
            self._score_client = getattr(executor, "client", None)
        self.started = time.monotonic()
        # How the last run ended, and under which stop settings, before this run resets them.
        before = (store.stop_rule, store.stop_reason, (store.spec or {}).get("stop"))
        spec_json = spec.to_json_dict()
        store.set_stop("", "")
        store.set_spec(spec_json)
        seed = spec.campaign.seed
        resumed = set(store.pending_ids())
        planned: deque[int] = deque(sorted(resumed))
        if self.pool is not None and not store.has_candidates:
            store.init_candidates(self.pool.ids, self.pool.features)
        if store.n_samples == 0:
            n0 = min(spec.initial_points, spec.stop.max_simulations)
            if self.pool is not None and self.pool_unit is not None:
                X0 = self.pool.features[initial_pool_design(self.space, self.pool_unit, n0, seed)]
            elif spec.design.initial_method == "lhs":
                X0 = self.space.lhs(n0, seed=seed)
            else:
                X0 = self.space.sobol(n0, seed=seed)
            planned.extend(store.add_pending(X0, iteration=0, origin="initial"))
        sobol = SobolStrategy(self.space, seed, start=store.n_samples)
        strategy: Strategy | PoolStrategy
        if self.pool is not None:
            pool_kind = spec.design.strategy
            assert pool_kind in ("straddle", "max-variance", "random")
            strategy = PoolStrategy(
                self.space, self.pool.features, pool_kind, self.goal, seed, start=store.n_samples
            )
        else:
            strategy = make_strategy(
                spec.design.strategy,
                self.space,
                seed,
                drawn=store.n_samples,
                mc_points=spec.design.mc_points,
                candidates=spec.design.candidates,
            )
        self._strategy = strategy
        simulated_before = self._progress.finished

        # A resumed campaign starts from a model of everything already simulated: the stored
        # one if it saw exactly that (a refit of the same data could land a hair across a
        # target the stored model met), a fresh fit otherwise.
        if self._progress.ok >= 2:
            stored = self._stored_emulator()
            steps = store.steps()
            if (
                stored is not None
                and self.pool is None
                and steps
                and stored.n == steps[-1].n == self._progress.ok
                and np.array_equal(stored.training_data()[0], self._snapshot()[0])
                and self._same_settings(stored)
            ):
                self.emulator, self.latest_step = stored, steps[-1]
                self._reused, self._trained = stored, frozenset(store.ids("ok"))
                self._stored_model = stored
            else:
                fitted = self._fit(self._snapshot(), stored)
                if fitted is not None:
                    self._adopt(fitted, obs)
        decision: StopDecision | None = self.rules(self.state())
        rule, reason, stop = before
        if (
            decision is None
            and self._reused is not None
            and rule in ("target_std", "target_loo_nrmse")
            and stop == spec_json.get("stop")
        ):
            # Nothing changed since a model-based rule stopped the last run: same results,
            # same model, same stop settings. The stored model met the rule, unless the
            # fit that rechecked it failed; rerunning a finished campaign does nothing.
            decision = StopDecision(rule, reason)

        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        # Executors that stream records let a pack's results in one by one, as they end.
        subscribe = getattr(executor, "subscribe", None)
        stop_stream = None
        if callable(subscribe):
            stop_stream = subscribe(functools.partial(_streamed, events))
        in_pack: set[int] = set()  # samples of the packs in flight
        held: dict[int, SimResult] = {}  # streamed, not yet recorded
        held_since = 0.0
        unrecorded: list[SimResult] = []  # finished, written after the refills they free
        fitter = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="emucamp-fit")
        if self.emulator is None:
            fitter.submit(warm_up)  # beside the initial design, not before the first model
        fit_future: cf.Future[_Fitted | None] | None = None
        fitted_on = self.emulator.n if self.emulator is not None else 0
        workers = spec.execution.workers
        budget = spec.stop.max_simulations
        lag = spec.design.model_lag
        packer = _PackSizer(spec.execution.per_task, streamed=stop_stream is not None)
        # The first model drives the first picks: fitted on fewer results than dimensions,
        # its lengthscales say little (8-D Borehole: fitted on 3 of the 18 design runs, it
        # chose the next 40 while cheap runs outpaced the refits). Once a model exists, the
        # refit rule below asks for more than it saw anyway.
        first_fit = max(2, min(self.space.dim + 1, spec.initial_points))
        if self.emulator is not None:
            first_fit = 2
        next_pack = 0
        sent: dict[int, float] = {}  # pack -> wall-clock submit time
        ends: dict[str, float] = {}  # worker -> end of its latest simulation
        exhausted = False
        confirming = False  # a fit of every result is on its way to recheck a model rule
        # The model a model-based rule was last checked on: the one a rerun's stop came from
        # (a finished campaign stays finished) or a newer one.
        checked_with = self.emulator
        interrupted = True
        to_save: list[tuple[_Fitted, bool]] = []  # adopted models not yet stored
        obs.on_start(self)
        frozen = _freeze_gc()
        try:
            while True:
                # Refill every free slot at once, one task per pack.
                free = packer.slots(workers, len(planned)) - len(self.in_flight)
                room = budget - self._progress.finished - self.running - len(unrecorded)
                sizes = packer.sizes(room, free, workers, len(planned)) if decision is None else []
                if (
                    sizes
                    and not planned
                    and self.emulator is None
                    and (fit_future is not None or self.in_flight or unrecorded)
                ):
                    # Past the initial design, wait for the first model rather than spend the
                    # budget on model-free picks (cheap simulations would outrun the fit), also
                    # while the first model cannot be fitted yet (a lone first result) or its
                    # results are not written yet. Only with no fit coming and nothing running
                    # (every result failed) go on.
                    sizes = []
                if (
                    sizes
                    and lag is not None
                    and self.emulator is not None
                    # a successor is fitting, or starts once the results in hand are written
                    and (
                        fit_future is not None
                        or _refit_due(
                            self._progress.ok + sum(r.ok for r in unrecorded), fitted_on, first_fit
                        )
                    )
                ):
                    # [design] model_lag: simulations outrun the fits, and the runs count
                    # more than idle workers. Left alone, one model chose 22-42 of a 60-run
                    # campaign's picks; a pool screening's cost followed the loop's speed
                    # (56-80 runs, 72-106 once its store writes were faster; 32-40 capped).
                    allowed = max(workers, math.ceil(lag * self.emulator.n)) - self._picked
                    capped: list[int] = []
                    for k in sizes:  # the last pack may go past the cap, by less than a pack
                        if allowed <= 0:
                            break
                        capped.append(k)
                        allowed -= k
                    sizes = capped
                # Packs for idle workers are chosen first; small packs share one selection
                # and one store write; large ones go out as soon as their own points are
                # chosen (selection grows with the batch).
                idle = max(0, workers - len(self.in_flight))
                groups = _groups(sizes[:idle], _SELECT_BATCH) + _groups(sizes[idle:], _SELECT_BATCH)
                # The round's picks, written to the store together once every pack of the
                # round is out: a write between two groups (0.04-0.05 s, traced) held back
                # the next idle worker's refill.
                picks: list[tuple[np.ndarray, str, float]] = []
                try:
                    for group in groups:
                        total = sum(group)
                        ids = [planned.popleft() for _ in range(min(total, len(planned)))]
                        inputs = dict(zip(ids, map(self._named, store.inputs(ids)), strict=True))
                        if len(ids) < total:
                            unwritten = [X for X, _, _ in picks]
                            X, origin = self._select(strategy, sobol, total - len(ids), unwritten)
                            if len(X):
                                self._picked += len(X)
                                # The ids the store gives these rows when they are written.
                                # Only this thread records results, so none can come before
                                # its row.
                                first = store.n_samples + sum(len(x) for x in unwritten)
                                for i, row in enumerate(X):
                                    inputs[first + i] = self._named(row)
                                ids += range(first, first + len(X))
                                picks.append((X, origin, time.time()))
                            else:
                                exhausted = True  # a pool with every row used
                        for sid in ids:
                            if sid in resumed:
                                store.mark_submitted(sid)
                        start = 0
                        for k in group:
                            pack = ids[start : start + k]
                            start += k
                            if not pack:
                                break
                            jobs = [SimJob(sid, inputs[sid]) for sid in pack]
                            future = executor.submit(jobs)
                            self.in_flight[next_pack] = (future, pack)
                            in_pack.update(pack)
                            sent[next_pack] = time.time()
                            future.add_done_callback(functools.partial(_notify, events, next_pack))
                            next_pack += 1
                            obs.on_submit(jobs, self)
                        if exhausted:
                            break
                finally:  # rows of packs already out are written, whatever stopped the round
                    self._write_picks(picks)

                # A new model is stored once the refills it chose are out: its write, in the
                # fitting thread, slowed their selection 0.09 s -> 0.42 s in one traced run.
                self._store_models(to_save, fitter, events)
                # Retrain beside the running simulations once enough new results are in: at
                # least one, and 10 % more than the last fit saw, so that refits (O(n^3))
                # stay a fraction of the machine however long the campaign runs. The results
                # in hand count, and train the model before they are written.
                ok = self._progress.ok + sum(r.ok for r in unrecorded)
                if fit_future is None and _refit_due(ok, fitted_on, first_fit):
                    fitted_on = ok
                    fit_future = self._refit(fitter, events, unrecorded)
                # Results are written after the refills they freed went out, and after the
                # fit they start: a worker's next input waits only for its selection, and a
                # model only for its fit, not for the records too (0.06-0.36 s a write on a
                # busy 2-core machine, traced).
                # While the first model fits, the workers wait for it and nothing else: its
                # results' records wait too, since their write (0.6 s once, traced) slowed
                # the fit it raced for the flow's GIL (0.75 s against 0.28 s).
                first_model_fitting = self.emulator is None and fit_future is not None
                if unrecorded and not first_model_fitting:
                    self._record(unrecorded, obs)  # if this fails, the exit tries them again
                    unrecorded = []
                if decision is None:
                    decision = self._check_rules()
                if decision is not None and decision.rule == "max_hours":
                    break

                if (
                    decision is not None
                    and decision.rule in _MODEL_RULES
                    and not self.in_flight
                    and fit_future is None
                ):
                    # A model-based rule must hold on the model of every result, the runs
                    # drained since it fired too: one slow result can show what the quick
                    # ones missed (a test campaign met 0.05 at n = 22; its model of all 26
                    # results had a leave-one-out NRMSE of 0.47). A failed fit leaves the
                    # rule to the last model.
                    if len(self._trained) < self._progress.ok and not confirming:
                        confirming = True
                        fitted_on = self._progress.ok
                        fit_future = self._refit(fitter, events)
                        continue
                    confirming = False
                    if self.emulator is not checked_with:
                        checked_with = self.emulator
                        decision = self._recheck(decision.rule)
                        if decision is None:
                            log.info(
                                "the stop rule no longer holds on the model of all %d "
                                "results; going on",
                                self._progress.ok,
                            )
                            continue
                if (
                    not self.in_flight
                    and fit_future is None
                    and (decision is not None or self._progress.finished >= budget or exhausted)
                ):
                    break

                # Take every event that is ready: a burst of results is recorded in one write.
                wait = 1.0 if not held else held_since + _STREAM_FLUSH - time.monotonic()
                try:
                    batch = [events.get(timeout=max(0.0, wait))]
                except queue.Empty:
                    batch = []
                while True:
                    try:
                        batch.append(events.get_nowait())
                    except queue.Empty:
                        break

                for kind, payload in batch:
                    sid = payload.sample_id if kind == "sim" else -1
                    # Late (its pack is recorded) or repeated (a rerun pack): dropped.
                    if sid in in_pack and sid not in self._streamed and sid not in held:
                        if not held:
                            held_since = time.monotonic()
                        held[sid] = payload
                results: list[SimResult] = []
                if held:
                    ok = self._progress.ok + sum(r.ok for r in held.values())
                    if (
                        any(kind == "result" for kind, _ in batch)
                        or (self.emulator is None and fit_future is None and ok >= first_fit)
                        or time.monotonic() - held_since >= _STREAM_FLUSH
                    ):
                        results += held.values()
                        self._streamed.update(held)
                        held.clear()
                    elif all(kind == "sim" for kind, _ in batch):
                        continue  # records held, nothing else new: back to waiting
                fit_done = False
                saved: list[_Fitted] = []
                for kind, payload in batch:
                    if kind == "result":
                        future, ids = self.in_flight.pop(int(payload))
                        streamed = [self._streamed.pop(i) for i in ids if i in self._streamed]
                        # A pack whose every record came streamed is not fetched: its result
                        # says nothing new, and fetching it is a round trip to its worker in
                        # this thread (5-20 ms a pack, 0.2-0.3 s for the first on 2 cores).
                        if len(streamed) == len(ids):
                            records = streamed
                        else:
                            records = self._results_of(future, ids)
                            # A streamed record is in already; it also outlives a worker that
                            # died later in the pack (the future then fails every job).
                            in_hand = {r.sample_id for r in streamed}
                            results += [r for r in records if r.sample_id not in in_hand]
                        gap = _gap_before(records, sent.pop(int(payload)), ends)
                        packer.observed(records, gap)
                        in_pack.difference_update(ids)
                    elif kind == "fit":
                        fit_done = True
                    elif kind == "saved":
                        saved.append(payload)
                unrecorded = unrecorded + results
                if fit_done:
                    assert fit_future is not None
                    try:
                        fitted = fit_future.result()
                    except Exception as exc:  # keep simulating on the previous emulator
                        log.warning("retraining failed: %s: %s", type(exc).__name__, exc)
                        fitted = None
                    fit_future = None
                    if fitted is not None:
                        # Selections use it at once; it is stored next, in the fitting thread.
                        self._adopt(fitted, None)
                        # Every retraining's diagnostics are stored; its model only once the
                        # last model save is _MODEL_SAVE_SPACING times its own cost old. With
                        # cheap simulations refits come every fraction of a second, and a
                        # model save then stalled the loop's own store writes (0.5 s once,
                        # in the throughput benchmark). The last model is stored at the end.
                        ended, cost = self._model_saved
                        due = time.monotonic() - ended >= _MODEL_SAVE_SPACING * cost
                        to_save.append((fitted, due))
                for done in saved:
                    obs.on_step(done.step, self)
                # A rule met now (by a new model, the clock) stops the refills above; the
                # counts are checked again once these results are written.
                if decision is None:
                    decision = self._check_rules()
                if decision is not None and decision.rule == "max_hours":
                    break  # the results not written yet are written on the way out
            interrupted = False
        finally:
            # Whatever is still running stays `pending` in the store: a rerun runs it again.
            if stop_stream is not None:
                stop_stream()
            if not interrupted:
                self._store_models(to_save, fitter, events)
            kept = unrecorded + list(held.values())
            if kept:  # finished simulations are kept, whatever ended the loop
                try:
                    self._record(kept, obs)
                except Exception as exc:  # they stay pending: a rerun runs them again
                    log.warning("recording %d finished results failed: %s", len(kept), exc)
            for future, _ in self.in_flight.values():
                with contextlib.suppress(Exception):
                    future.cancel()
            self.in_flight.clear()
            self._streamed.clear()
            fitter.shutdown(wait=not interrupted, cancel_futures=interrupted)
            if frozen:
                gc.unfreeze()
        # Retrainings stored since the loop last looked (the shutdown waited for them).
        while not events.empty():
            kind, payload = events.get_nowait()
            if kind == "saved":
                obs.on_step(payload.step, self)

        # The final emulator has seen every result, and is the one stored.
        if self.emulator is None or len(self._trained) < self._progress.ok:
            fitted = self._fit(self._snapshot(), self.emulator)
            if fitted is not None:
                self._adopt(fitted, obs)
        final = self.emulator
        if final is not None and final is not self._stored_model:
            self.store.save_emulator(final.state())
            self._stored_model = final
        if decision is None:
            decision = self.rules(self.state())
        if decision is None and exhausted:
            decision = StopDecision(
                "pool_exhausted", f"every candidate of the pool ({len(self.pool or ())}) was run"
            )
        if decision is None:
            decision = StopDecision("max_simulations", f"budget of {budget} simulations used")
        self._record_sensitivity()
        store.set_stop(decision.rule, decision.reason)
        outcome = CampaignOutcome(
            rule=decision.rule,
            reason=decision.reason,
            store=str(store.path),
            counts=store.counts(),
            steps=store.n_steps,
            latest=self.latest_step,
            simulated=self._progress.finished - simulated_before,
        )
        obs.on_stop(outcome, self)
        return outcome

    def _refit(
        self,
        fitter: cf.ThreadPoolExecutor,
        events: queue.Queue[tuple[str, Any]],
        in_hand: Sequence[SimResult] = (),
    ) -> cf.Future[_Fitted | None]:
        """Start a retraining on every result so far, in ``fitter``; it says "fit" when done.

        ``in_hand``: results not written yet, trained on too.
        """
        future = fitter.submit(self._fit, self._snapshot(in_hand), self.emulator, False)
        future.add_done_callback(lambda _f: events.put(("fit", None)))
        return future

    def _write_picks(self, picks: list[tuple[np.ndarray, str, float]]) -> None:
        """Write a round's picks (``k x d`` inputs, origin, submit time) as pending rows.

        In order, one write per run of picks of the same origin (a failed selection's Sobol
        points differ from the rest).
        """
        expected = self.store.n_samples
        for origin, run in itertools.groupby(picks, key=lambda pick: pick[1]):
            same = list(run)
            X = np.vstack([x for x, _, _ in same])
            times = np.concatenate([np.full(len(x), at) for x, _, at in same])
            written = self.store.add_pending(
                X, iteration=self._iteration, origin=origin, submitted_at=times
            )
            assert written[0] == expected, "the store numbered the rows differently"
            expected += len(X)

    def _store_models(
        self,
        fitted: list[tuple[_Fitted, bool]],
        fitter: cf.ThreadPoolExecutor,
        events: queue.Queue[tuple[str, Any]],
    ) -> None:
        """Store adopted retrainings in ``fitter`` (the model too where flagged); empties it.

        Each says "saved" on ``events`` when stored.
        """
        for done, model in fitted:
            save = fitter.submit(self._save, done, model)
            save.add_done_callback(functools.partial(_stored, events, done))
        fitted.clear()

    def _recheck(self, name: str) -> StopDecision | None:
        """Rule ``name`` if it still holds, else the first rule that does (the budget, say)."""
        state = self.state()
        for rule in self.rules.rules:
            if rule.name == name and (decision := rule(state)) is not None:
                return decision
        return self.rules(state)

    def _check_rules(self) -> StopDecision | None:
        """The stop rule that fires now, if one does (logged)."""
        decision = self.rules(self.state())
        if decision is not None:
            log.info("stopping: %s", decision.reason)
        return decision

    def _record(self, results: list[SimResult], obs: CampaignObserver) -> None:
        """Write records to the store in one go and count them."""
        self.store.record_many(results)
        p = self._progress
        for result in results:
            p.finished += 1
            if result.ok:
                p.ok += 1
            else:
                p.failed += 1
                p.errors.append(result.error)
        for result in results:
            obs.on_result(result, self)

    def _record_sensitivity(self) -> None:
        """Sobol indices of the final emulator, into the store (``emucamp sensitivity``)."""
        if self.emulator is None or self.emulator.n < 4:
            return
        if self._reused is self.emulator and self.store.sensitivity is not None:
            return  # a rerun on the stored model: its indices are stored already
        try:
            found = sobol_indices(self.emulator, samples=1024, seed=self.spec.campaign.seed)
        except Exception as exc:  # an analysis of the result never fails the campaign
            log.warning("sensitivity analysis skipped: %s", exc)
            return
        self.store.set_sensitivity(found.to_dict())

    def _inputs_of(self, sample_id: int) -> dict[str, float]:
        return self._named(self.store.inputs([sample_id])[0])

    def _named(self, row: np.ndarray) -> dict[str, float]:
        """One input row (``d``) as the simulator's keyword arguments."""
        return {name: float(v) for name, v in zip(self.space.names, row, strict=True)}

    @property
    def running(self) -> int:
        """Simulations submitted and not yet finished."""
        return sum(len(ids) for _, ids in self.in_flight.values()) - len(self._streamed)

    def _results_of(self, future: JobFuture, ids: list[int]) -> list[SimResult]:
        """A pack's records; an infrastructure failure (lost worker, ...) fails each job."""
        try:
            results = future.result()
            if len(results) == len(ids):
                return results
            error = f"executor returned {len(results)} results for {len(ids)} jobs"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        return [
            SimResult(
                sample_id=sid,
                inputs=self._inputs_of(sid),
                status="failed",
                error=error,
                started_at=math.nan,
                finished_at=time.time(),
                worker="",
                attempt=1,
            )
            for sid in ids
        ]
