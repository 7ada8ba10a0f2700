"""Tests for tsimpute.io: CSV / Parquet round trips, index columns, clear errors."""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest

from tsimpute import io


@pytest.fixture
def wide() -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=6, freq="h", name="time")
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0, np.nan, 6.0], "b": np.arange(6.0)}, index=idx)
    return df


@pytest.fixture
def panel() -> pd.DataFrame:
    index = pd.MultiIndex.from_product([["s1", "s2"], [0, 1, 2]], names=["id", "t"])
    return pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0, 5.0, np.nan]}, index=index)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet", ".pq"])
def test_round_trip_wide(tmp_path, wide, suffix):
    path = io.write_table(wide, tmp_path / f"data{suffix}")
    back = io.read_table(path, time_col="time")
    pd.testing.assert_frame_equal(back, wide, check_freq=False)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_panel_sorted(tmp_path, panel, suffix):
    shuffled = panel.iloc[[3, 0, 5, 1, 4, 2]]
    path = io.write_table(shuffled, tmp_path / f"p{suffix}")
    back = io.read_table(path, time_col="t", id_col="id")
    pd.testing.assert_frame_equal(back, panel)


def test_without_time_col_keeps_file_order(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,\n,2\n3,4\n")
    df = io.read_table(path)
    assert list(df.columns) == ["a", "b"]
    assert df.isna().to_numpy().sum() == 2


def test_numeric_time_is_not_parsed_as_dates(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("step,v\n0,1\n1,\n2,3\n")
    df = io.read_table(path, time_col="step")
    assert df.index.dtype.kind == "i"


@pytest.mark.parametrize("name", ["data.txt", "data", "data.xlsx"])
def test_unknown_format(tmp_path, name):
    with pytest.raises(ValueError, match="cannot tell the format"):
        io.table_format(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        io.read_table(tmp_path / "nope.csv")


def test_missing_columns(tmp_path, wide):
    path = io.write_table(wide, tmp_path / "w.csv")
    with pytest.raises(ValueError, match="time_col 'when' is not a column"):
        io.read_table(path, time_col="when")
    with pytest.raises(ValueError, match="id_col needs time_col"):
        io.read_table(path, id_col="a")


def test_parquet_without_pyarrow(tmp_path, wide, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "tsimpute\[parquet\]"'):
        io.write_table(wide, tmp_path / "w.parquet")
    (tmp_path / "r.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match="pyarrow"):
        io.read_table(tmp_path / "r.parquet")
