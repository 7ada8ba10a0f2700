"""Reading and writing tables for batch imputation: CSV (optionally gzipped) and Parquet.

The format follows the file suffix: ``.csv``, ``.csv.gz``, ``.tsv`` (tab-separated), ``.parquet`` / ``.pq``.
Parquet needs the optional ``pyarrow`` package (``pip install "tsimpute[parquet]"``).

Frames come back in the layout :class:`~tsimpute.Imputer` accepts: with ``time_col`` the time column becomes
the index (parsed as dates when it holds date strings); with ``id_col`` as well, a panel with a
``(id, time)`` MultiIndex, sorted. :func:`write_table` writes the index back as ordinary columns, so
``read_table(write_table(df))`` gives the same frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["PARQUET_HINT", "read_table", "table_format", "write_table"]

PARQUET_HINT = 'reading and writing Parquet needs pyarrow: pip install "tsimpute[parquet]"'
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str | os.PathLike[str]) -> str:
    """``"csv"``, ``"tsv"`` or ``"parquet"`` from the suffix, skipping a compression suffix (``.gz``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz"):
        suffixes = suffixes[:-1]
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {os.fspath(path)!r}: use a .csv, .csv.gz, .tsv, .parquet or .pq file"
        )
    return fmt


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(PARQUET_HINT) from None


def _parse_time(col: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col
    try:
        return pd.to_datetime(col)
    except (ValueError, TypeError):
        return col


def read_table(
    path: str | os.PathLike[str],
    *,
    time_col: str | None = None,
    id_col: str | None = None,
) -> pd.DataFrame:
    """Read a CSV or Parquet table into a frame for :class:`~tsimpute.Imputer`.

    Parameters
    ----------
    path : str or path-like
        Input file (format from the suffix, see :func:`table_format`).
    time_col : str, optional
        Column holding time; it becomes the index (dates are parsed). Without it the rows are taken in
        file order with a default integer index.
    id_col : str, optional
        Column holding the series id of a panel (needs ``time_col``); the index becomes ``(id, time)``,
        sorted by id then time.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Unknown format, unreadable or empty file (naming it), missing index column, or ``id_col`` without
        ``time_col``.
    ImportError
        Parquet without pyarrow.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {os.fspath(path)!r} not found")
    if id_col is not None and time_col is None:
        raise ValueError("id_col needs time_col (a panel is indexed by (id, time))")
    if fmt == "parquet":
        _require_pyarrow()
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
            if not isinstance(df.index, pd.RangeIndex):
                df = df.reset_index()
        else:
            df = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
    except (ValueError, OSError) as exc:  # empty or malformed file: the reader's message does not name it
        raise ValueError(f"cannot read {os.fspath(path)!r}: {exc}") from None
    for name, col in (("time_col", time_col), ("id_col", id_col)):
        if col is not None and col not in df.columns:
            raise ValueError(
                f"{name} {col!r} is not a column of {os.fspath(path)!r}; columns: {list(df.columns)}"
            )
    if time_col is None:
        return df
    df[time_col] = _parse_time(df[time_col])
    if id_col is None:
        return df.set_index(time_col)
    return df.set_index([id_col, time_col]).sort_index()


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write ``df`` as CSV or Parquet (from the suffix, or ``fmt``); a named index is written as columns.

    Parent folders are created. Returns the path written.
    """
    path = Path(path)
    fmt = fmt or table_format(path)
    named = any(n is not None for n in df.index.names)
    out = df.reset_index() if named else df
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        _require_pyarrow()
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    return path
