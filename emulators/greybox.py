"""Grey box: a physics prior mean and output constraints around the GP.

The GP does not model the simulated outputs ``y`` themselves but latent targets

    z = T(y) - T(prior(x))

where ``prior`` is a cheap physics model the user names by import path (0 without one) and
``T`` is ``log`` for outputs declared ``positive`` (the identity otherwise). Predictions map
back: ``y = prior + z`` or, for a positive output, ``y = prior * exp(z)`` with the lognormal
mean and std. The uncertainty is the GP's: the prior is taken as exact.

Example:
    >>> grey = GreyBox(["V"], ["current", "temperature"], prior_mean="battery:ocv_minus_ohmic")
    >>> Z = grey.to_latent(X, Y)              # n x d, n x m -> n x m
    >>> mean, std = grey.from_latent(X, mz, sz)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from emucamp.errors import EmucampError, SpecError
from emucamp.simulator import import_callable

__all__ = ["GreyBox"]

PriorMean = Callable[..., Any]


class GreyBox:
    """The map between simulated outputs and the GP's latent targets.

    Args:
        outputs: Output names (the ``m`` columns of ``Y``).
        parameters: Parameter names (the ``d`` columns of ``X``), passed to the prior by name.
        prior_mean: ``"module:function"`` or a callable: called with one keyword array of
            ``n`` values per parameter, it returns ``n`` values (one output) or a mapping
            ``{output: n values}``; outputs it leaves out get a prior of 0.
        positive: Outputs that are always > 0; the GP models their log.
        search_path: Folders put on ``sys.path`` to import ``prior_mean`` (the spec's folder).
    """

    def __init__(
        self,
        outputs: Sequence[str],
        parameters: Sequence[str],
        prior_mean: str | PriorMean | None = None,
        positive: Sequence[str] = (),
        search_path: Sequence[str] = (),
    ) -> None:
        self.outputs = list(outputs)
        self.parameters = list(parameters)
        unknown = sorted(set(positive) - set(self.outputs))
        if unknown:
            raise SpecError(f"positive outputs {unknown} are not declared outputs")
        self.positive = np.array([o in set(positive) for o in self.outputs], dtype=bool)
        self.search_path = tuple(search_path)
        self._fn: PriorMean | None = None
        self.prior_path: str | None = None
        if isinstance(prior_mean, str):
            self.prior_path = prior_mean
            self._fn = import_callable(prior_mean, self.search_path, "emulator.prior_mean")
        elif prior_mean is not None:
            self._fn = prior_mean
            self.prior_path = f"{prior_mean.__module__}:{prior_mean.__qualname__}"

    @property
    def active(self) -> bool:
        """Whether the map is anything but the identity."""
        return self._fn is not None or bool(self.positive.any())

    def prior(self, X: np.ndarray) -> np.ndarray:
        """The prior mean at ``n x d`` physical inputs: ``n x m`` (zeros without a prior).

        Raises:
            EmucampError: the prior returns the wrong shape, an unknown output, or a value
                that is not finite.
        """
        return self._prior(X)[0]

    def _prior(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prior (``n x m``) and which outputs it covers (``m`` booleans)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        n, m = len(X), len(self.outputs)
        P = np.zeros((n, m))
        covered = np.zeros(m, dtype=bool)
        if self._fn is None:
            return P, covered
        raw = self._fn(**{name: X[:, j].copy() for j, name in enumerate(self.parameters)})
        where = f"emulator.prior_mean {self.prior_path!r}"
        if isinstance(raw, Mapping):
            unknown = sorted(set(raw) - set(self.outputs))
            if unknown:
                raise EmucampError(f"{where}: returned unknown output(s) {unknown}")
            for j, name in enumerate(self.outputs):
                if name in raw:
                    P[:, j] = self._column(raw[name], n, f"{where} output {name!r}")
                    covered[j] = True
        elif m == 1:
            P[:, 0] = self._column(raw, n, where)
            covered[0] = True
        else:
            raise EmucampError(
                f"{where}: returned one array for {m} outputs; return {{output: values}}"
            )
        return P, covered

    @staticmethod
    def _column(value: Any, n: int, where: str) -> np.ndarray:
        try:
            column = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
        except (TypeError, ValueError):
            shape = np.shape(value)
            raise EmucampError(f"{where}: returned shape {shape}, expected ({n},)") from None
        if not np.all(np.isfinite(column)):
            raise EmucampError(f"{where}: returned a value that is not finite")
        return column

    def _offset(self, X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
        """``T(prior(x))``: ``n x m``; checks positivity where the log is taken."""
        P, covered = self._prior(X)
        for j in np.flatnonzero(self.positive):
            name = self.outputs[j]
            if Y is not None and np.any(Y[:, j] <= 0):
                bad = float(Y[np.argmax(Y[:, j] <= 0), j])
                raise EmucampError(f"outputs.{name} is positive, but a simulation gave {bad:g}")
            if not covered[j]:
                continue  # no prior for this output: z = log y
            if np.any(P[:, j] <= 0):
                raise EmucampError(
                    f"emulator.prior_mean {self.prior_path!r}: output {name!r} is positive, "
                    f"but the prior gave {float(P[np.argmax(P[:, j] <= 0), j]):g}"
                )
            P[:, j] = np.log(P[:, j])
        return P

    def to_latent(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``n x m`` latent targets ``T(y) - T(prior(x))`` of simulated ``Y`` at ``X``."""
        Y = np.asarray(Y, dtype=float).reshape(len(Y), -1)
        offset = self._offset(X, Y)
        Z = Y.copy()
        Z[:, self.positive] = np.log(Y[:, self.positive])
        return np.asarray(Z - offset, dtype=float)

    def from_latent(
        self, X: np.ndarray, mean: np.ndarray, std: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of ``y`` from the latent GP's mean and std (each ``n x m``) at ``X``."""
        mu = mean + self._offset(X)
        sd = np.asarray(std, dtype=float).copy()
        mu_y = mu.copy()
        if self.positive.any():
            p = self.positive
            # A lognormal: y = exp(mu + sd * N(0, 1)).
            mu_y[:, p] = np.exp(mu[:, p] + 0.5 * sd[:, p] ** 2)
            sd[:, p] = mu_y[:, p] * np.sqrt(np.expm1(sd[:, p] ** 2))
        return mu_y, sd

    def meta(self) -> dict[str, Any]:
        """JSON-able description, for the saved emulator."""
        return {
            "prior_mean": self.prior_path,
            "positive": [o for o, p in zip(self.outputs, self.positive, strict=True) if p],
            "search_path": list(self.search_path),
        }

    @classmethod
    def from_meta(
        cls, meta: Mapping[str, Any] | None, outputs: Sequence[str], parameters: Sequence[str]
    ) -> GreyBox:
        """Rebuild from :meth:`meta` (the prior is imported again)."""
        meta = meta or {}
        return cls(
            outputs,
            parameters,
            prior_mean=meta.get("prior_mean"),
            positive=meta.get("positive", ()),
            search_path=meta.get("search_path", ()),
        )
