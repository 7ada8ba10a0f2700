"""Electricity Transformer Temperature (ETT-small): ETTh1, ETTh2 (hourly), ETTm1 (15 minutes).

Accepted files: ``ett/<name>.csv.gz`` (the shared, gzipped copy) or ``ett/<name>.csv`` (the
official file, which downloads produce); both are pinned, the csv by the hash of the official
file, which the gzipped copy decompresses to.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ._locate import (
    DataFile,
    DatasetInfo,
    FileVariant,
    download_root,
    fetch_url,
    find_file,
    locate,
    verify_file,
)

__all__ = ["ETT_COLUMNS", "ETT_NAMES", "download_ett", "load_ett"]

ETT_NAMES: tuple[str, ...] = ("ETTh1", "ETTh2", "ETTm1")
ETT_COLUMNS: tuple[str, ...] = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
_RAW = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{}.csv"
# name: (sha256 of .csv.gz, size of .csv.gz, sha256 of the official .csv)
_HASHES = {
    "ETTh1": (
        "3c56c865b8f6fc9b760a07f055ff8a993d3cf2a747235dc382b98821ed35f029",
        405540,
        "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    ),
    "ETTh2": (
        "a549927e8cd45bd1c20a8ec51529cd037bf6da38fe37c2ba3dc0e9c8446d6cb5",
        428740,
        "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    ),
    "ETTm1": (
        "ca45123028f1acad120b5f971ca64594746aa9b881d56cdff589ee9aa6cdbd8f",
        1551162,
        "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
    ),
}
_FILES = {
    name: DataFile(
        name,
        (FileVariant(f"ett/{name}.csv.gz", gz), FileVariant(f"ett/{name}.csv", csv)),
        _RAW.format(name),
        size,
    )
    for name, (gz, size, csv) in _HASHES.items()
}
INFO = DatasetInfo(
    name="ett",
    title="ETT-small (ETTh1, ETTh2, ETTm1)",
    description=(
        "Electricity transformer load and oil temperature, 7 variables, 2016-07-01 to 2018-06-26; "
        "hourly (ETTh1/ETTh2, 17420 rows) and every 15 minutes (ETTm1, 69680 rows); no gaps."
    ),
    shape="(17420, 7) for ETTh1/ETTh2, (69680, 7) for ETTm1",
    license="CC BY-ND 4.0 (zhouhaoyi/ETDataset); redistribute unmodified, with attribution",
    citation=(
        "Zhou H, Zhang S, Peng J, Zhang S, Li J, Xiong H, Zhang W. Informer: Beyond Efficient "
        "Transformer for Long Sequence Time-Series Forecasting. AAAI 2021."
    ),
    url="https://github.com/zhouhaoyi/ETDataset",
    files=tuple(_FILES.values()),
    loader="load_ett",
    card="datasets/ett.md",
    notes="Downloads fetch the official csv, pinned by sha256.",
)


def _check_name(name: str) -> DataFile:
    if name not in _FILES:
        raise ValueError(f"name must be one of {list(ETT_NAMES)}, got {name!r}")
    return _FILES[name]


def download_ett(
    data_dir: str | os.PathLike[str] | None = None, *, names: tuple[str, ...] = ETT_NAMES, force: bool = False
) -> list[Path]:
    """Download official ETT csv files (checked against their pinned sha256).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root (``<root>/ett/``); default ``~/.cache/tsimpute``.
    names : tuple of str, default=all
        Which of :data:`ETT_NAMES`.
    force : bool, default=False
        Download even when a verified copy is already found.

    Returns
    -------
    list of pathlib.Path
        The files (downloaded or already present).
    """
    out = []
    for name in names:
        spec = _check_name(name)
        found = None if force else find_file(INFO, spec, data_dir)
        if found is not None:
            verify_file(*found)
            out.append(found[0])
            continue
        csv = spec.variants[1]
        out.append(fetch_url(spec.url, download_root(data_dir) / csv.relpath, sha256=csv.sha256))
    return out


def load_ett(
    name: str = "ETTh1", *, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> pd.DataFrame:
    """Load one ETT-small series.

    Parameters
    ----------
    name : {"ETTh1", "ETTh2", "ETTm1"}, default="ETTh1"
        Which file.
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`).
    download : bool, default=False
        Download the official csv when not found.

    Returns
    -------
    pandas.DataFrame
        Float64, DatetimeIndex ``date``, the 7 :data:`ETT_COLUMNS`.
    """
    spec = _check_name(name)
    try:
        path, _variant, _sha = locate(INFO, spec, data_dir)
    except FileNotFoundError:
        if not download:
            raise
        download_ett(data_dir, names=(name,))
        path, _variant, _sha = locate(INFO, spec, data_dir)
    df = pd.read_csv(path, dtype={"date": str})
    stamps = pd.to_datetime(df.pop("date"), format="%Y-%m-%d %H:%M:%S")
    df = df.astype("float64")
    df.index = pd.DatetimeIndex(stamps, name="date")
    if tuple(df.columns) != ETT_COLUMNS:
        raise ValueError(f"{path}: expected columns {list(ETT_COLUMNS)}, got {list(df.columns)}")
    return df
