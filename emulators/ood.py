"""Out-of-distribution guard: Mahalanobis distance of queries to the training inputs.

Distances are taken in the emulator's own input space, the unit cube of the :class:`Space`
(log parameters on their log scale), against the mean and covariance of the training
inputs. A query is flagged when its distance exceeds a threshold calibrated on the training
data, or when it lies outside the space's bounds (extrapolation, whatever its distance).

- ``chi2``: the ``level`` quantile of a chi distribution with ``d`` degrees of freedom, what
  the distance of Gaussian inputs would follow; lenient for space-filling designs.
- ``empirical``: the ``level`` quantile of the training points' own distances; at
  ``level = 1`` anything farther than every training point is flagged.

Example:
    >>> guard = Mahalanobis.calibrate(U_train, method="chi2", level=0.999)
    >>> distance, flagged = guard.check(U_query)     # each k
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

__all__ = ["Mahalanobis", "OodMethod"]

OodMethod = Literal["chi2", "empirical"]
_BOUND_TOL = 1e-9


@dataclass(frozen=True)
class Mahalanobis:
    """A calibrated Mahalanobis guard.

    Attributes:
        center: ``d`` mean of the training inputs (unit cube).
        precision: ``d x d`` inverse of their (regularised) covariance.
        threshold: Distances above this are flagged.
        method: How the threshold was calibrated.
        level: The quantile it was calibrated at.
    """

    center: np.ndarray
    precision: np.ndarray
    threshold: float
    method: OodMethod
    level: float

    @classmethod
    def calibrate(
        cls, U: np.ndarray, method: OodMethod = "chi2", level: float = 0.999
    ) -> Mahalanobis:
        """Fit the guard to ``n x d`` training inputs in the unit cube.

        Raises:
            ValueError: ``level`` outside (0, 1) for ``chi2`` or (0, 1] for ``empirical``, or
                an unknown method.
        """
        U = np.atleast_2d(np.asarray(U, dtype=float))
        d = U.shape[1]
        center = U.mean(axis=0)
        cov = np.cov(U, rowvar=False).reshape(d, d) if len(U) > 1 else np.zeros((d, d))
        # Few or collinear points leave the covariance singular: a small ridge (a fraction of
        # the uniform variance 1/12) keeps every direction finite without masking spread.
        precision = np.linalg.inv(cov + 1e-6 / 12.0 * np.eye(d))
        if method == "chi2":
            if not 0 < level < 1:
                raise ValueError(f"ood level for chi2 must be in (0, 1), got {level}")
            threshold = float(stats.chi.ppf(level, df=d))
        elif method == "empirical":
            if not 0 < level <= 1:
                raise ValueError(f"ood level for empirical must be in (0, 1], got {level}")
            own = _distance(U, center, precision)
            threshold = float(np.quantile(own, level))
        else:
            raise ValueError(f"unknown ood method {method!r}; use 'chi2' or 'empirical'")
        return cls(center, precision, threshold, method, level)

    def distance(self, U: np.ndarray) -> np.ndarray:
        """Mahalanobis distances of ``k x d`` unit-cube points: ``k``."""
        return _distance(np.atleast_2d(np.asarray(U, dtype=float)), self.center, self.precision)

    def check(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances and flags (``k`` each): beyond the threshold, or outside the bounds."""
        U = np.atleast_2d(np.asarray(U, dtype=float))
        dist = self.distance(U)
        outside = np.any((U < -_BOUND_TOL) | (U > 1 + _BOUND_TOL), axis=1)
        return dist, (dist > self.threshold) | outside


def _distance(U: np.ndarray, center: np.ndarray, precision: np.ndarray) -> np.ndarray:
    diff = U - center
    return np.asarray(np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, precision, diff), 0.0)))
