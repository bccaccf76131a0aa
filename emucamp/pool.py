"""Candidate pools: a fixed catalogue of inputs to screen, read from CSV, Parquet or Zarr.

A pool is a table with one row per candidate: one numeric column per parameter (the
features) and optionally an id column. Campaigns on a pool select only among its rows.

Example:
    >>> pool = CandidatePool.load("candidates.parquet", ["x1", "x2"], id_column="formula")
    >>> pool.features.shape          # n x d
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emucamp.errors import SpecError

__all__ = ["CandidatePool"]


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix == ".zarr" or (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
            import xarray as xr

            with warnings.catch_warnings():
                # A pool without consolidated metadata is read the slower way: no news.
                warnings.simplefilter("ignore", RuntimeWarning)
                ds = xr.open_zarr(path, consolidated=None)
            # Only the columns asked for are read; absent ones are reported by name later.
            present = [c for c in columns if c in ds.variables]
            return pd.DataFrame({c: np.asarray(ds[c].values).reshape(-1) for c in present})
    except SpecError:
        raise
    except Exception as exc:  # pandas, pyarrow and zarr each raise their own kinds
        raise SpecError(f"{path}: cannot read the pool ({type(exc).__name__}: {exc})") from None
    raise SpecError(f"{path}: unknown pool format {suffix!r} (use .csv, .parquet or .zarr)")


@dataclass
class CandidatePool:
    """The candidates of a screening campaign.

    Attributes:
        features: ``N x d`` float64 features, columns in parameter order.
        ids: ``N`` candidate ids (strings; the row number if the pool has no id column).
        names: Parameter names, the feature columns.
        source: Where the pool was read from.
    """

    features: np.ndarray
    ids: np.ndarray
    names: list[str]
    source: str = ""
    _rows: dict[bytes, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        rows: dict[bytes, list[int]] = defaultdict(list)
        for i, row in enumerate(np.ascontiguousarray(self.features)):
            rows[row.tobytes()].append(i)
        self._rows = dict(rows)

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    def load(
        cls, path: str | Path, names: Sequence[str], id_column: str | None = None
    ) -> CandidatePool:
        """Read and validate a pool.

        Raises:
            SpecError: the file is missing or unreadable; a feature or id column is missing;
                a feature is not a finite number (names row and column); ids repeat.
        """
        path = Path(path)
        if not path.exists():
            raise SpecError(f"{path}: pool file not found")
        names = list(names)
        wanted = names + ([id_column] if id_column else [])
        table = _read_table(path, wanted)
        return cls.from_table(table, names, id_column, source=str(path))

    @classmethod
    def from_table(
        cls, table: pd.DataFrame, names: Sequence[str], id_column: str | None = None,
        source: str = "pool",
    ) -> CandidatePool:  # fmt: skip
        """Validate a table already in memory (see :meth:`load`)."""
        names = list(names)
        missing = [c for c in [*names, *([id_column] if id_column else [])] if c not in table]
        if missing:
            raise SpecError(
                f"{source}: missing column(s) {missing} (the pool has {list(table.columns)[:20]})"
            )
        if len(table) == 0:
            raise SpecError(f"{source}: the pool has no rows")
        columns = []
        for name in names:
            numbers = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(numbers)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise SpecError(
                    f"{source}: row {row}, column {name!r} is not a finite number "
                    f"(got {table[name].iloc[row]!r}; {int(bad.sum())} such row(s))"
                )
            columns.append(numbers)
        features = np.column_stack(columns)
        if id_column:
            ids = table[id_column].astype(str).to_numpy()
            dup = pd.Series(ids).duplicated(keep=False).to_numpy()
            if dup.any():
                first = ids[dup][0]
                rows = np.flatnonzero(ids == first)[:5].tolist()
                raise SpecError(
                    f"{source}: id column {id_column!r} repeats {first!r} (rows {rows}); "
                    "ids must be unique"
                )
        else:
            ids = np.arange(len(features)).astype(str)
        return cls(features, ids, names, source)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature minimum and maximum: two ``d`` arrays."""
        return self.features.min(axis=0), self.features.max(axis=0)

    def rows_of(self, X: np.ndarray) -> list[list[int]]:
        """For each of ``k x d`` inputs, the pool rows with exactly those features."""
        X = np.ascontiguousarray(np.atleast_2d(np.asarray(X, dtype=float)))
        return [self._rows.get(row.tobytes(), []) for row in X]

    def used_mask(self, X: Iterable[np.ndarray] | np.ndarray) -> np.ndarray:
        """``N`` booleans: which candidates have the features of one of the inputs ``X``."""
        mask = np.zeros(len(self), dtype=bool)
        X_arr = np.asarray(X, dtype=float)
        if X_arr.size:
            for rows in self.rows_of(X_arr):
                mask[rows] = True
        return mask
