"""UCI Beijing Multi-Site Air-Quality data (12 stations, hourly, 2013-03-01 to 2017-02-28).

The CSVs are read in memory from ``PRSA_Data_20130301-20170228.tar.gz`` (pinned) or from the
official UCI zip (which nests a second zip; its hash is not pinned, but each CSV is compared
with the pinned per-file hashes and a difference is warned about). Each station becomes a wide
DataFrame with a DatetimeIndex built from year/month/day/hour and the 11 numeric columns
(``No``, ``wd`` and ``station`` are dropped); 1.56% of the numeric entries are missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
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

__all__ = ["BEIJING_FEATURES", "BEIJING_STATIONS", "download_beijing_multisite", "load_beijing_multisite"]

#: The 12 stations, alphabetical (as in the archive).
BEIJING_STATIONS: tuple[str, ...] = (
    "Aotizhongxin", "Changping", "Dingling", "Dongsi", "Guanyuan", "Gucheng",
    "Huairou", "Nongzhanguan", "Shunyi", "Tiantan", "Wanliu", "Wanshouxigong",
)  # fmt: skip
#: The 11 numeric features, in file order.
BEIJING_FEATURES: tuple[str, ...] = (
    "PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM",
)  # fmt: skip
_CSV_SHA256 = {
    "Aotizhongxin": "a94fbcfc71708b6ffdc033360163d91efb7f675e496f6b5860929aa96b96351b",
    "Changping": "a2e21402a6d95fb7043f87959e6e3dcbecb957aac356a6f8028a85b047c772e7",
    "Dingling": "3d8dff81f18a80d9f455876a785642bffe1e9b9924ec1e6b7ce8cca790432eeb",
    "Dongsi": "9c0020214425e5ee2a64d42f97a1f632e1d8f6b53ad50edd85a686cc7999f27e",
    "Guanyuan": "59390fee3b032597b387491f5230e7edb90a8558e30217ebd6d9befbe669fbf9",
    "Gucheng": "10ae48801ea55869fee56a48b885fb1127859c130551888d71673f34216ba951",
    "Huairou": "812dcbe848b3ba2c2d25731064797bff803c46eb0c602156a1fa044df136dc26",
    "Nongzhanguan": "572cf87b65ef543cd55d3a711b28474def224a46b0ec3fc8add8aaf13b67a487",
    "Shunyi": "520b59e4ead3b0cfe7f1ed673e30275de8441e999db6f413d5172d2277b8c15a",
    "Tiantan": "0743e34799cf1ee36195b73321b91baa5625276532e7263c588f68cdef3b4daa",
    "Wanliu": "0b1a6d754a07f0def2f55434ddfa3870dcd0063b7f766a6f66b6c11bb05a377a",
    "Wanshouxigong": "ab1d6a356d6997a45f6d657ad47de1e05a4a08d4a7015b38a329a90665ab74d0",
}
_URL = "https://archive.ics.uci.edu/static/public/501/beijing+multi+site+air+quality+data.zip"
_ZIP_NAME = "beijing+multi+site+air+quality+data.zip"
_CSV_RE = re.compile(r"PRSA_Data_([A-Za-z]+)_20130301-20170228\.csv$")

_FILE = DataFile(
    "prsa",
    (
        FileVariant(
            "beijing_multisite_air_quality/PRSA_Data_20130301-20170228.tar.gz",
            "d2cf00f972d9677fec1abf4fa85b1f858e5dffcdf7312df785d184bc8186a7f3",
        ),
        FileVariant(f"beijing_multisite_air_quality/{_ZIP_NAME}", None),
    ),
    _URL,
    8686957,
)
INFO = DatasetInfo(
    name="beijing_multisite",
    title="UCI Beijing Multi-Site Air Quality",
    description=(
        "Hourly air-quality and weather data at 12 Beijing stations, 2013-03-01 00:00 to "
        "2017-02-28 23:00; 11 numeric features per station, 1.56% missing."
    ),
    shape="12 stations x (35064, 11)",
    license="CC BY 4.0 (UCI Machine Learning Repository)",
    citation=(
        "Zhang S, Guo B, Dong A, He J, Xu Z, Chen SX. Cautionary Tales on Air-Quality Improvement "
        "in Beijing. Proceedings of the Royal Society A 473(2205):20170457 (2017). UCI dataset 501, "
        "DOI 10.24432/C5RK5G."
    ),
    url="https://archive.ics.uci.edu/dataset/501/beijing+multi+site+air+quality+data",
    files=(_FILE,),
    loader="load_beijing_multisite",
    card="datasets/beijing_multisite.md",
    notes="The UCI zip is read directly (not pinned; its CSVs are checked against pinned hashes).",
)


def _iter_zip(zf: zipfile.ZipFile) -> Iterator[tuple[str, bytes]]:
    for name in zf.namelist():
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(zf.read(name))) as inner:
                yield from _iter_zip(inner)
        elif _CSV_RE.search(name):
            yield name, zf.read(name)


def _read_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if path.name.endswith(".tar.gz"):
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                m = _CSV_RE.search(member.name)
                if member.isfile() and m and m.group(1) in wanted:
                    fh = tf.extractfile(member)
                    if fh is not None:
                        out[m.group(1)] = fh.read()
    else:
        with zipfile.ZipFile(path) as zf:
            for name, data in _iter_zip(zf):
                m = _CSV_RE.search(name)
                if m and m.group(1) in wanted and m.group(1) not in out:
                    out[m.group(1)] = data
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != _CSV_SHA256.get(m.group(1)):
                        warnings.warn(
                            f"{name} in {path} differs from the pinned copy (sha256 {actual}, pinned "
                            f"{_CSV_SHA256.get(m.group(1))})",
                            stacklevel=3,
                        )
    missing = sorted(wanted - set(out))
    if missing:
        raise ValueError(f"{path} has no CSV for stations {missing}")
    return out


def _station_frame(data: bytes, station: str) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(data), na_values=["NA"], keep_default_na=True)
    missing_cols = [c for c in ("year", "month", "day", "hour", *BEIJING_FEATURES) if c not in df.columns]
    if missing_cols:
        raise ValueError(f"CSV of station {station} lacks columns {missing_cols}")
    index = pd.DatetimeIndex(pd.to_datetime(df[["year", "month", "day", "hour"]]), name="datetime")
    out = df.loc[:, list(BEIJING_FEATURES)].astype("float64")
    out.index = index
    out.columns.name = None
    return out


def download_beijing_multisite(
    data_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Download the official UCI zip (hash not pinned; recorded in a ``.sha256`` sidecar).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root (``<root>/beijing_multisite_air_quality/``); default ``~/.cache/tsimpute``.
    force : bool, default=False
        Download even when a verified copy is already found.

    Returns
    -------
    pathlib.Path
        The archive (downloaded or already present).
    """
    found = None if force else find_file(INFO, _FILE, data_dir)
    if found is not None:
        verify_file(*found)
        return found[0]
    return fetch_url(_URL, download_root(data_dir) / _FILE.variants[1].relpath)


def load_beijing_multisite(
    stations: str | Sequence[str] | None = None,
    *,
    layout: str = "dict",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Load the UCI Beijing multi-site air-quality data.

    Parameters
    ----------
    stations : str, sequence of str or None, default=None
        One station (a DataFrame is returned), several, or all 12 (:data:`BEIJING_STATIONS`).
    layout : {"dict", "long"}, default="dict"
        For several stations: ``"dict"`` maps station to its wide DataFrame (35064 x 11);
        ``"long"`` stacks them in one DataFrame indexed by (station, datetime).
        ``pd.concat(result, axis=1)`` on the dict gives one wide frame with (station, feature)
        columns.
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`).
    download : bool, default=False
        Download the UCI zip when no archive is found.

    Returns
    -------
    pandas.DataFrame or dict of str to pandas.DataFrame
        Float64 frames with DatetimeIndex ``datetime`` and the 11 :data:`BEIJING_FEATURES`.
    """
    single = isinstance(stations, str)
    if stations is None:
        names = list(BEIJING_STATIONS)
    elif isinstance(stations, str):
        names = [stations]
    elif isinstance(stations, Sequence):
        names = list(stations)
    else:
        raise TypeError(f"stations must be a str, a sequence of str or None, got {type(stations).__name__}")
    unknown = [s for s in names if s not in BEIJING_STATIONS]
    if unknown or not names:
        raise ValueError(f"stations: unknown {unknown or names}; choose from {list(BEIJING_STATIONS)}")
    if layout not in ("dict", "long"):
        raise ValueError(f"layout must be 'dict' or 'long', got {layout!r}")
    try:
        path, _variant, _sha = locate(INFO, _FILE, data_dir)
    except FileNotFoundError:
        if not download:
            raise
        download_beijing_multisite(data_dir)
        path, _variant, _sha = locate(INFO, _FILE, data_dir)
    raw = _read_members(path, set(names))
    frames = {s: _station_frame(raw[s], s) for s in names}
    if single:
        return frames[names[0]]
    if layout == "long":
        return pd.concat(frames, names=["station", "datetime"])
    return frames
