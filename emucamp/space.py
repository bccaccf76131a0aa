"""The design space: named, bounded, optionally log-scaled continuous parameters."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emucamp.errors import SpecError

__all__ = ["Parameter", "Space"]


@dataclass(frozen=True)
class Parameter:
    """One continuous input of the simulator.

    Args:
        name: The keyword the simulator is called with.
        low: Lower bound (inclusive).
        high: Upper bound (inclusive), strictly above ``low``.
        log: Sample and model the parameter on a log scale (needs ``low > 0``).
    """

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise SpecError(f"parameters.{self.name}: bounds must be finite")
        if not self.low < self.high:
            raise SpecError(
                f"parameters.{self.name}: low ({self.low}) must be below high ({self.high})"
            )
        if self.log and self.low <= 0:
            raise SpecError(
                f"parameters.{self.name}: log = true needs low > 0 (got low = {self.low})"
            )


class Space:
    """An ordered set of parameters with maps to and from the unit cube.

    The unit cube is where emulators and acquisitions work: log parameters are
    mapped through ``log`` first, so a uniform draw in the cube is log-uniform
    in the parameter.

    Example:
        >>> space = Space([Parameter("rw", 0.05, 0.15), Parameter("r", 100, 5e4, log=True)])
        >>> X = space.sobol(8, seed=0)        # 8 x 2 array, physical units
        >>> U = space.to_unit(X)              # 8 x 2 array in [0, 1]
    """

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        if not parameters:
            raise SpecError("parameters: at least one parameter is needed")
        names = [p.name for p in parameters]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise SpecError(f"parameters: duplicated names {duplicated}")
        self.parameters: tuple[Parameter, ...] = tuple(parameters)
        self._log = np.array([p.log for p in parameters])
        lo = np.array([p.low for p in parameters], dtype=float)
        hi = np.array([p.high for p in parameters], dtype=float)
        self._lo = np.where(self._log, np.log(np.where(self._log, lo, 1.0)), lo)
        self._hi = np.where(self._log, np.log(np.where(self._log, hi, 1.0)), hi)

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return [p.name for p in self.parameters]

    @property
    def dim(self) -> int:
        """Number of parameters ``d``."""
        return len(self.parameters)

    @property
    def bounds(self) -> np.ndarray:
        """``2 x d`` array of physical lower and upper bounds."""
        return np.array([[p.low for p in self.parameters], [p.high for p in self.parameters]])

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __len__(self) -> int:
        return self.dim

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.parameters == other.parameters

    def __hash__(self) -> int:
        return hash(self.parameters)

    def __repr__(self) -> str:
        return f"Space({list(self.parameters)!r})"

    def to_unit(self, X: np.ndarray) -> np.ndarray:
        """Map ``n x d`` physical inputs to the unit cube (outside the bounds stays outside)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        self._check_width(X)
        with np.errstate(divide="ignore", invalid="ignore"):
            Z = np.where(self._log, np.log(np.where(self._log, X, 1.0)), X)
        U: np.ndarray = (Z - self._lo) / (self._hi - self._lo)
        return U

    def from_unit(self, U: np.ndarray) -> np.ndarray:
        """Map ``n x d`` unit-cube points to physical inputs."""
        U = np.atleast_2d(np.asarray(U, dtype=float))
        self._check_width(U)
        Z = self._lo + U * (self._hi - self._lo)
        X = np.where(self._log, np.exp(np.where(self._log, Z, 0.0)), Z)
        # exp(log(x)) can land a hair outside [low, high]; simulators may check bounds strictly.
        inside = (U >= 0) & (U <= 1)
        clipped: np.ndarray = np.where(inside, np.clip(X, self.bounds[0], self.bounds[1]), X)
        return clipped

    def contains(self, X: np.ndarray) -> np.ndarray:
        """Boolean ``n`` vector: which rows of ``n x d`` ``X`` lie inside the bounds."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        self._check_width(X)
        inside: np.ndarray = np.all((self.bounds[0] <= X) & (self.bounds[1] >= X), axis=1)
        return inside

    def sobol_unit(self, n: int, seed: int | None, skip: int = 0) -> np.ndarray:
        """``n x d`` points of a scrambled Sobol sequence in the unit cube.

        Args:
            n: Number of points.
            seed: Scrambling seed; the same seed gives the same sequence.
            skip: Points of the sequence to skip first, so successive calls with
                ``skip = points drawn so far`` continue one sequence.
        """
        from scipy.stats import qmc  # here: scipy.stats takes ~1 s to import

        engine = qmc.Sobol(d=self.dim, scramble=True, seed=seed)
        if skip:
            engine.fast_forward(skip)
        with warnings.catch_warnings():
            # Balance properties need powers of two; a campaign's sizes rarely are.
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(engine.random(n))

    def sobol(self, n: int, seed: int | None, skip: int = 0) -> np.ndarray:
        """``n x d`` physical points of a scrambled Sobol sequence (see :meth:`sobol_unit`)."""
        return self.from_unit(self.sobol_unit(n, seed, skip))

    def lhs(self, n: int, seed: int | None) -> np.ndarray:
        """``n x d`` physical points of an optimised Latin hypercube design."""
        from scipy.stats import qmc

        engine = qmc.LatinHypercube(d=self.dim, seed=seed, optimization="random-cd")
        return self.from_unit(np.asarray(engine.random(n)))

    def as_records(self, X: np.ndarray) -> list[dict[str, float]]:
        """Rows of ``n x d`` ``X`` as ``{name: value}`` dicts, the simulator's keywords."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        self._check_width(X)
        return [{name: float(v) for name, v in zip(self.names, row, strict=True)} for row in X]

    def from_records(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``n x d`` array from ``{name: value}`` rows (extra keys are ignored)."""
        try:
            return np.array([[float(r[name]) for name in self.names] for r in rows], dtype=float)
        except KeyError as exc:
            raise SpecError(f"inputs: missing parameter column {exc.args[0]!r}") from None

    def _check_width(self, X: np.ndarray) -> None:
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected an n x {self.dim} array, got shape {X.shape}")
