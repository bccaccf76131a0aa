"""Diagnostics computed at every retraining: uncertainty over a reference set, LOO error."""

from __future__ import annotations

import time

import numpy as np

from emucamp.emulators.gp import GPEmulator
from emucamp.storage import StepRecord

__all__ = ["diagnose", "loo_metrics", "relative_std"]


def relative_std(emulator: GPEmulator, reference_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean posterior std over a reference set, relative to each output's std.

    Args:
        emulator: A fitted emulator.
        reference_unit: ``r x d`` reference points in the unit cube.

    Returns:
        ``(max, mean)``, each an ``m`` array.
    """
    _, std = emulator.predict_unit(reference_unit)
    rel = std / np.maximum(emulator.output_std, 1e-300)[None, :]
    return rel.max(axis=0), rel.mean(axis=0)


def loo_metrics(emulator: GPEmulator) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out NRMSE and 95 % interval coverage per output (closed form, no refits).

    Returns:
        ``(nrmse, coverage)``, each an ``m`` array; NRMSE is RMSE / std of the outputs.
    """
    _, Y = emulator.training_data()
    mean, std = emulator.loo()
    scale = np.maximum(Y.std(axis=0, ddof=1), 1e-300) if len(Y) > 1 else np.ones(Y.shape[1])
    nrmse = np.sqrt(np.mean((mean - Y) ** 2, axis=0)) / scale
    coverage = np.mean(np.abs(mean - Y) <= 1.959964 * std, axis=0)
    return nrmse, coverage


def diagnose(emulator: GPEmulator, reference_unit: np.ndarray) -> StepRecord:
    """All per-retraining diagnostics of a fitted emulator, as a store record."""
    max_rel, mean_rel = relative_std(emulator, reference_unit)
    nrmse, coverage = loo_metrics(emulator)
    return StepRecord(
        n=emulator.n,
        time=time.time(),
        fit_seconds=emulator.fit_seconds,
        max_rel_std=max_rel,
        mean_rel_std=mean_rel,
        loo_nrmse=nrmse,
        loo_coverage=coverage,
        lengthscales=emulator.lengthscales,
    )
