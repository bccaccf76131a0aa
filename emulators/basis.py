"""Field outputs through a principal-component basis: independent GPs on the leading scores.

A simulator that returns a whole field (a voltage curve, a temperature profile) of ``K``
values has ``K`` outputs that move together. The field is centred and decomposed by SVD over
the training runs; the fewest components that keep ``retained`` of its variance (at most
``max_components``) are emulated, each by an independent GP on its score, and predictions
are mapped back:

    mean(y) = centre + sum_j mean(score_j) * v_j
    var(y)  = sum_j var(score_j) * v_j**2 + discarded

where ``discarded`` is, per position, the training variance the kept components miss, so
the std never claims more than the basis can represent. Scalar outputs pass through as
they are.

Example:
    >>> basis = OutputBasis(["v", "T"], {"v": (100,)}).fit(Y)      # Y: n x 101
    >>> Z = basis.to_latent(Y)                                     # n x (k + 1)
    >>> mean, std = basis.from_latent(mean_z, std_z)               # each n x 101
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["OutputBasis"]


class OutputBasis:
    """The map between simulated output columns (``M``) and the GP's latent columns (``L``).

    Args:
        outputs: Output names, in column order.
        shapes: Shapes of the field outputs; the others are scalars (one column).
        retained: Per field, the fraction of its variance the components keep (0.999).
        max_components: Per field, at most this many components (16).
    """

    def __init__(
        self,
        outputs: Sequence[str],
        shapes: Mapping[str, Sequence[int]] | None = None,
        retained: Mapping[str, float] | None = None,
        max_components: Mapping[str, int] | None = None,
    ) -> None:
        self.outputs = list(outputs)
        self.shapes = {k: tuple(int(i) for i in v) for k, v in (shapes or {}).items()}
        self.retained = {name: float((retained or {}).get(name, 0.999)) for name in self.shapes}
        self.max_components = {
            name: int((max_components or {}).get(name, 16)) for name in self.shapes
        }
        self.columns: dict[str, slice] = {}
        start = 0
        for name in self.outputs:
            size = math.prod(self.shapes[name]) if name in self.shapes else 1
            self.columns[name] = slice(start, start + size)
            start += size
        self.n_columns = start
        self._centre: dict[str, np.ndarray] = {}
        self._components: dict[str, np.ndarray] = {}  # k x K, orthonormal rows
        self._discarded: dict[str, np.ndarray] = {}  # K
        self._explained: dict[str, np.ndarray] = {}  # k: fraction of variance per component

    @property
    def has_fields(self) -> bool:
        """Whether any output is a field."""
        return bool(self.shapes)

    def fit(self, Y: np.ndarray) -> OutputBasis:
        """Find each field's components from ``n x M`` training outputs."""
        Y = np.asarray(Y, dtype=float)
        for name in self.shapes:
            F = Y[:, self.columns[name]]
            centre = F.mean(axis=0)
            _, S, Vt = np.linalg.svd(F - centre, full_matrices=False)
            total = float(np.sum(S**2))
            fraction = np.cumsum(S**2) / total if total > 0 else np.ones_like(S)
            k = int(np.searchsorted(fraction, self.retained[name] - 1e-12) + 1)
            k = max(1, min(k, self.max_components[name], len(S), max(1, len(F) - 1)))
            V = Vt[:k]
            # Fix each component's sign (largest entry positive): the same data give the
            # same basis, so a saved emulator's hyperparameters match its targets on reload.
            V = V * np.sign(V[np.arange(k), np.argmax(np.abs(V), axis=1)])[:, None]
            residual = (F - centre) - (F - centre) @ V.T @ V
            self._centre[name], self._components[name] = centre, V
            self._discarded[name] = np.mean(residual**2, axis=0)
            self._explained[name] = S[:k] ** 2 / total if total > 0 else np.ones(k) / k
        return self

    def _latent_columns(self) -> list[tuple[str, str]]:
        """``(latent name, output it belongs to)`` per latent column, in order."""
        columns: list[tuple[str, str]] = []
        for name in self.outputs:
            if name in self.shapes:
                k = len(self._components[name])
                columns += [(f"{name}_pc{j}", name) for j in range(k)]
            else:
                columns.append((name, name))
        return columns

    @property
    def latent_names(self) -> list[str]:
        """Names of the latent columns: scalar outputs, then ``<field>_pc<j>`` in order."""
        return [latent for latent, _ in self._latent_columns()]

    @property
    def latent_owner(self) -> list[str]:
        """The declared output each latent column belongs to."""
        return [owner for _, owner in self._latent_columns()]

    def to_latent(self, Y: np.ndarray) -> np.ndarray:
        """``n x M`` outputs to ``n x L`` latent columns (component scores for fields)."""
        Y = np.asarray(Y, dtype=float)
        parts = []
        for name in self.outputs:
            F = Y[:, self.columns[name]]
            if name in self.shapes:
                parts.append((F - self._centre[name]) @ self._components[name].T)
            else:
                parts.append(F)
        return np.hstack(parts)

    def from_latent(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent ``n x L`` mean and std to the outputs' ``n x M`` mean and std."""
        means, stds = [], []
        j = 0
        for name in self.outputs:
            if name not in self.shapes:
                means.append(mean[:, j : j + 1])
                stds.append(std[:, j : j + 1])
                j += 1
                continue
            V = self._components[name]
            k = len(V)
            means.append(self._centre[name] + mean[:, j : j + k] @ V)
            var = std[:, j : j + k] ** 2 @ V**2 + self._discarded[name]
            stds.append(np.sqrt(var))
            j += k
        return np.hstack(means), np.hstack(stds)

    def latent_weights(self) -> np.ndarray:
        """``L`` weights that make standardised latent variances add up per output.

        A scalar column weighs 1; a field's component weighs its share of the field's
        variance, so a whole field counts about as much as one scalar output.
        """
        weights: list[float] = []
        for name in self.outputs:
            if name in self.shapes:
                weights += [float(w) for w in self._explained[name]]
            else:
                weights.append(1.0)
        return np.asarray(weights)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per field: components kept and the fraction of variance they retain."""
        return {
            name: {
                "components": len(self._components[name]),
                "retained": float(np.sum(self._explained[name])),
                "target": self.retained[name],
            }
            for name in self.shapes
        }

    def meta(self) -> dict[str, Any]:
        """JSON-able settings (the basis itself is refitted from the training outputs)."""
        return {
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "retained": self.retained,
            "max_components": self.max_components,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, outputs: Sequence[str]) -> OutputBasis:
        """Rebuild from :meth:`meta` (call :meth:`fit` on the training outputs next)."""
        meta = meta or {}
        return cls(outputs, meta.get("shapes"), meta.get("retained"), meta.get("max_components"))
