"""Global sensitivity of a fitted emulator: Sobol indices (SALib) and ARD relevance.

Sobol indices split the variance of an output over its inputs: the first-order index ``S1``
of an input is the share of variance it explains alone, the total index ``ST`` the share it
takes part in, interactions included (``ST - S1`` is its interaction share). They are
estimated with SALib's Saltelli/Sobol scheme on the emulator's posterior mean, which is cheap
to evaluate many times; the simulator is never called.

ARD relevance is what the GP itself learned: ``1 / lengthscale`` per input, normalised to sum
1 per output. It costs nothing, but it is a statement about smoothness, not about variance.

A field output gets generalised Sobol indices (Gamboa, Janon, Klein and Lagnoux, 2014): the
shares of the field's total variance, summed over its values. With an orthonormal basis they
are the variance-weighted mean of the indices of its principal-component scores, which is
how they are computed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import sobol as sobol_sample

from emucamp.emulators.gp import GPEmulator

__all__ = ["Sensitivity", "ard_relevance", "sobol_indices", "table_rows"]

_ARRAYS = ("s1", "s1_conf", "st", "st_conf", "relevance")


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """Sobol indices and ARD relevance of each output of an emulator.

    All arrays are ``m x d``: one row per output, one column per parameter. Two instances
    are equal when every field is (arrays element by element, ``nan`` equal to ``nan``);
    instances are not hashable.

    Attributes:
        parameters: The ``d`` parameter names, in the space's order.
        outputs: The ``m`` output names, in the emulator's order.
        s1: First-order Sobol indices.
        s1_conf: Half-widths of the 95 % confidence intervals of ``s1`` (SALib's bootstrap
            over the samples).
        st: Total Sobol indices.
        st_conf: Half-widths of the 95 % confidence intervals of ``st``.
        relevance: ARD relevance, ``1 / lengthscale`` normalised to sum 1 per output.
        evaluations: Emulator evaluations used, ``samples x (d + 2)``.
        n: Training points of the emulator.
    """

    parameters: tuple[str, ...]
    outputs: tuple[str, ...]
    s1: np.ndarray
    s1_conf: np.ndarray
    st: np.ndarray
    st_conf: np.ndarray
    relevance: np.ndarray
    evaluations: int
    n: int

    def __post_init__(self) -> None:
        shape = (len(self.outputs), len(self.parameters))
        for name in _ARRAYS:
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {shape} (m x d)")
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sensitivity):
            return NotImplemented
        return (
            self.parameters == other.parameters
            and self.outputs == other.outputs
            and self.evaluations == other.evaluations
            and self.n == other.n
            and all(
                np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True) for k in _ARRAYS
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """The indices as plain lists, floats and ints (JSON-able; see :meth:`from_dict`)."""
        data: dict[str, Any] = {
            "parameters": list(self.parameters),
            "outputs": list(self.outputs),
        }
        for name in _ARRAYS:
            data[name] = np.asarray(getattr(self, name), dtype=float).tolist()
        data["evaluations"] = int(self.evaluations)
        data["n"] = int(self.n)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sensitivity:
        """Rebuild from :meth:`to_dict` (exactly: floats survive a JSON round trip)."""
        arrays = {name: np.asarray(data[name], dtype=float) for name in _ARRAYS}
        return cls(
            parameters=tuple(str(p) for p in data["parameters"]),
            outputs=tuple(str(o) for o in data["outputs"]),
            evaluations=int(data["evaluations"]),
            n=int(data["n"]),
            **arrays,
        )


def ard_relevance(lengthscales: np.ndarray) -> np.ndarray:
    """``m x d`` relevance ``1 / lengthscale``, normalised to sum 1 per row."""
    inverse = 1.0 / np.asarray(lengthscales, dtype=float)
    relevance: np.ndarray = inverse / inverse.sum(axis=1, keepdims=True)
    return relevance


def sobol_indices(
    emulator: GPEmulator, samples: int = 1024, seed: int = 0, chunk: int = 4096
) -> Sensitivity:
    """First-order and total Sobol indices of every output of a fitted emulator.

    SALib's Sobol/Saltelli design (``calc_second_order=False``) is drawn in the unit cube,
    ``samples x (d + 2)`` points, and the emulator's posterior mean is evaluated there in
    chunks of ``chunk`` points. The unit cube is the emulator's input space: the indices are
    with respect to inputs uniformly distributed in the cube, i.e. uniform in each
    parameter's bounds for a linear parameter and log-uniform for a log parameter.

    The indices are those of the emulator's mean, not of the simulator: the emulator's own
    uncertainty is not propagated, and the confidence half-widths (95 %) are SALib's
    bootstrap over the samples only. An output whose mean is constant over the samples gets
    indices and half-widths of 0 (no input moves it).

    Args:
        emulator: A fitted emulator.
        samples: Base samples ``N``, a power of 2 (at least 2).
        seed: Seed of the scrambled Sobol sequence and of the bootstrap resampling; the same
            seed gives the same result.
        chunk: Points per posterior call (bounds memory).

    Returns:
        The indices, with the ARD relevance of the same emulator.

    Raises:
        ValueError: ``samples`` is not a power of 2.
        RuntimeError: The emulator is not fitted.
    """
    if samples < 2 or samples & (samples - 1):
        raise ValueError(
            f"samples must be a power of 2 of at least 2 (e.g. 1024), got {samples}: "
            "Sobol sequences keep their balance properties only at powers of 2"
        )
    relevance = ard_relevance(emulator.lengthscales)  # also fails early if not fitted
    names = emulator.space.names
    d, m = len(names), len(emulator.outputs)
    problem = {"num_vars": d, "names": names, "bounds": [[0.0, 1.0]] * d}
    U = np.asarray(
        sobol_sample.sample(problem, samples, calc_second_order=False, seed=seed), dtype=float
    )
    # One posterior pass: a field's indices come from its component scores (latent), its
    # scalar neighbours from the mean rebuilt from them.
    if emulator.basis.has_fields:
        latent, latent_std = emulator.predict_latent(U, chunk=chunk)
        mean, _ = emulator.basis.from_latent(latent, latent_std)
    else:
        mean, _ = emulator.predict_unit(U, chunk=chunk)
        latent = mean
    owner = emulator.basis.latent_owner

    def analyse(y: np.ndarray) -> tuple[np.ndarray, ...]:
        if np.ptp(y) <= 1e-12 * np.abs(y).max():  # constant: SALib would divide by a zero std
            return tuple(np.zeros(d) for _ in range(4))
        # A Generator, not the int: SALib ignores a falsy seed (0) and then draws its
        # bootstrap from numpy's global state, which would make seed=0 irreproducible.
        result = sobol_analyze.analyze(
            problem,
            y,
            calc_second_order=False,
            conf_level=0.95,
            seed=np.random.default_rng(seed),
            print_to_console=False,
        )
        return result["S1"], result["S1_conf"], result["ST"], result["ST_conf"]

    s1, s1_conf, st, st_conf = (np.zeros((m, d)) for _ in range(4))
    for j, name in enumerate(emulator.outputs):
        if name not in emulator.basis.shapes:
            s1[j], s1_conf[j], st[j], st_conf[j] = analyse(mean[:, emulator.columns[name].start])
            continue
        cols = [k for k, o in enumerate(owner) if o == name]
        weights = np.array([np.var(latent[:, k]) for k in cols])
        if weights.sum() <= 0:
            continue
        parts = [analyse(latent[:, k]) for k in cols]
        for i, target in enumerate((s1, s1_conf, st, st_conf)):
            target[j] = sum(w * p[i] for w, p in zip(weights, parts, strict=True)) / weights.sum()
    return Sensitivity(
        parameters=tuple(names),
        outputs=tuple(emulator.outputs),
        s1=s1,
        s1_conf=s1_conf,
        st=st,
        st_conf=st_conf,
        relevance=relevance,
        evaluations=len(U),
        n=emulator.n,
    )


def table_rows(s: Sensitivity) -> list[dict[str, object]]:
    """One row per output and parameter, for a table.

    Rows keep the outputs' order; within an output they are sorted by ``ST``, largest first
    (ties keep the parameters' order).

    Returns:
        Dicts with keys ``output``, ``parameter``, ``S1``, ``S1_conf``, ``ST``, ``ST_conf``,
        ``relevance`` (names as ``str``, values as ``float``).
    """
    rows: list[dict[str, object]] = []
    for j, output in enumerate(s.outputs):
        for i in np.argsort(-s.st[j], kind="stable"):
            rows.append(
                {
                    "output": output,
                    "parameter": s.parameters[i],
                    "S1": float(s.s1[j, i]),
                    "S1_conf": float(s.s1_conf[j, i]),
                    "ST": float(s.st[j, i]),
                    "ST_conf": float(s.st_conf[j, i]),
                    "relevance": float(s.relevance[j, i]),
                }
            )
    return rows
