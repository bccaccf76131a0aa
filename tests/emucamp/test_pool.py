"""Candidate pools: reading CSV / Parquet / Zarr and refusing bad ones by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emucamp.errors import SpecError
from emucamp.pool import CandidatePool


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {"formula": ["A", "B", "C", "D"], "x1": [0.1, 0.5, 0.9, 0.5], "x2": [1.0, 2.0, 3.0, 2.0]}
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".zarr"])
def test_pools_read_the_same_from_csv_parquet_and_zarr(tmp_path, table, suffix):
    path = tmp_path / f"pool{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        xr.Dataset({c: ("candidate", table[c].to_numpy()) for c in table}).to_zarr(
            path, consolidated=False
        )
    pool = CandidatePool.load(path, ["x1", "x2"], id_column="formula")
    np.testing.assert_array_equal(pool.features, table[["x1", "x2"]].to_numpy())
    assert list(pool.ids) == ["A", "B", "C", "D"]
    lo, hi = pool.bounds()
    assert list(lo) == [0.1, 1.0] and list(hi) == [0.9, 3.0]
    # Equal features map to every row that has them (B and D are the same material).
    assert pool.rows_of(np.array([[0.5, 2.0], [0.2, 0.2]])) == [[1, 3], []]
    assert list(pool.used_mask(np.array([[0.5, 2.0]]))) == [False, True, False, True]


def test_without_an_id_column_rows_are_numbered(tmp_path, table):
    table.to_csv(tmp_path / "p.csv", index=False)
    assert list(CandidatePool.load(tmp_path / "p.csv", ["x1"]).ids) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns="x2"), "missing column(s) ['x2']"),
        (lambda t: t.drop(columns="formula"), "missing column(s) ['formula']"),
        (lambda t: t.assign(x1=[0.1, np.nan, 0.3, 0.4]), "row 1, column 'x1' is not a finite"),
        (lambda t: t.assign(x2=["1", "2", "three", "4"]), "row 2, column 'x2' is not a finite"),
        (lambda t: t.assign(formula=["A", "B", "A", "D"]), "repeats 'A' (rows [0, 2])"),
        (lambda t: t.iloc[:0], "the pool has no rows"),
    ],
)
def test_bad_pools_are_one_line_naming_the_problem(tmp_path, table, edit, message):
    path = tmp_path / "pool.csv"
    edit(table).to_csv(path, index=False)
    with pytest.raises(SpecError) as err:
        CandidatePool.load(path, ["x1", "x2"], id_column="formula")
    assert message in str(err.value) and str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def test_missing_and_unknown_pool_files(tmp_path):
    with pytest.raises(SpecError, match="pool file not found"):
        CandidatePool.load(tmp_path / "none.csv", ["x1"])
    (tmp_path / "pool.xlsx").write_text("x")
    with pytest.raises(SpecError, match=r"unknown pool format '\.xlsx'"):
        CandidatePool.load(tmp_path / "pool.xlsx", ["x1"])
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(SpecError, match="cannot read the pool"):
        CandidatePool.load(tmp_path / "broken.parquet", ["x1"])
