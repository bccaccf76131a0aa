"""Diagnostics computed at every retraining: uncertainty over a reference set, LOO error."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from emucamp.emulators.gp import GPEmulator
from emucamp.storage import StepRecord

__all__ = ["Region", "diagnose", "loo_metrics", "regions", "relative_std"]


def _rms(values: np.ndarray, columns: slice) -> np.ndarray:
    """Root mean square over an output's columns (a field's values; a scalar's one)."""
    return np.asarray(np.sqrt(np.mean(values[..., columns] ** 2, axis=-1)))


def relative_std(emulator: GPEmulator, reference_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and root-mean-square posterior std over a reference set, relative to each output's std.

    The root mean square is the emulator's own estimate of its NRMSE over the reference set
    (exact in expectation when its intervals are calibrated); the max is its worst point.
    A field's std at a point is the root mean square over its values, relative to the
    root mean square of its values' spread.

    Args:
        emulator: A fitted emulator.
        reference_unit: ``r x d`` reference points in the unit cube.

    Returns:
        ``(max, rms)``, each an ``m`` array.
    """
    _, std = emulator.predict_unit(reference_unit)
    scale = emulator.output_scale
    rel = np.column_stack(
        [
            _rms(std, cols) / max(float(_rms(scale, cols)), 1e-300)
            for cols in emulator.columns.values()
        ]
    )
    return rel.max(axis=0), np.sqrt(np.mean(rel**2, axis=0))


def loo_metrics(emulator: GPEmulator) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out NRMSE and 95 % interval coverage per output (closed form, no refits).

    Returns:
        ``(nrmse, coverage)``, each an ``m`` array; NRMSE is RMSE / std of the outputs (over
        all of a field's values), coverage the share of values inside their interval.
    """
    _, Y = emulator.training_data()
    mean, std = emulator.loo()
    scale = Y.std(axis=0, ddof=1) if len(Y) > 1 else np.ones(Y.shape[1])
    nrmse, coverage = [], []
    for cols in emulator.columns.values():
        err = mean[:, cols] - Y[:, cols]
        nrmse.append(float(np.sqrt(np.mean(err**2))) / max(float(_rms(scale, cols)), 1e-300))
        coverage.append(float(np.mean(np.abs(err) <= 1.959964 * std[:, cols])))
    return np.array(nrmse), np.array(coverage)


def diagnose(emulator: GPEmulator, reference_unit: np.ndarray) -> StepRecord:
    """All per-retraining diagnostics of a fitted emulator, as a store record."""
    max_rel, rms_rel = relative_std(emulator, reference_unit)
    nrmse, coverage = loo_metrics(emulator)
    return StepRecord(
        n=emulator.n,
        time=time.time(),
        fit_seconds=emulator.fit_seconds,
        max_rel_std=max_rel,
        mean_rel_std=rms_rel,
        loo_nrmse=nrmse,
        loo_coverage=coverage,
        lengthscales=emulator.lengthscales,
    )


@dataclass(frozen=True)
class Region:
    """A notable place in the input space for one output.

    Attributes:
        kind: ``lowest simulated``, ``highest simulated``, ``least certain`` (largest posterior
            std over the reference set) or ``largest LOO error`` (the training point the others
            predict worst).
        output: The output's name.
        value: The output value there (for ``least certain``: the posterior std; for
            ``largest LOO error``: the absolute LOO error).
        inputs: The parameter values, by name.
    """

    kind: str
    output: str
    value: float
    inputs: dict[str, float]


def regions(emulator: GPEmulator, reference_unit: np.ndarray) -> list[Region]:
    """Best and worst places per output.

    The extremes of the simulated data, where the emulator is least certain, and where it
    predicts its own training data worst (leave-one-out).

    Args:
        emulator: A fitted emulator.
        reference_unit: ``r x d`` reference points in the unit cube (where uncertainty is judged).

    Returns:
        Four :class:`Region` per scalar output, in that order (field outputs are left out).
    """
    X, Y = emulator.training_data()
    names = emulator.space.names
    _, std = emulator.predict_unit(reference_unit)
    reference = emulator.space.from_unit(reference_unit)
    loo_mean, _ = emulator.loo()
    loo_error = np.abs(loo_mean - Y)

    def at(row: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(names, row, strict=True)}

    found: list[Region] = []
    for name, cols in emulator.columns.items():
        if cols.stop - cols.start != 1:
            continue
        j = cols.start
        lo, hi = int(np.argmin(Y[:, j])), int(np.argmax(Y[:, j]))
        worst_std, worst_loo = int(np.argmax(std[:, j])), int(np.argmax(loo_error[:, j]))
        found += [
            Region("lowest simulated", name, float(Y[lo, j]), at(X[lo])),
            Region("highest simulated", name, float(Y[hi, j]), at(X[hi])),
            Region("least certain", name, float(std[worst_std, j]), at(reference[worst_std])),
            Region("largest LOO error", name, float(loo_error[worst_loo, j]), at(X[worst_loo])),
        ]
    return found
