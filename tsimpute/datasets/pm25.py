"""Beijing PM2.5, 36 stations, hourly (STMVL release), with CSDI's protocol.

``pm25_ground.txt`` holds the data with its natural gaps; ``pm25_missing.txt`` the same with
more values removed. Evaluation targets are the values present in the ground file and absent
from the missing file. Test months are 3, 6, 9 and 12; normalisation statistics come from the
other months of the ground file (pandas ``mean``/``std``, ddof=1, as CSDI's ``download.py``);
CSDI's pickled ``pm25_meanstd.pk`` is never loaded.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    write_verified,
)

__all__ = ["PM25_TEST_MONTHS", "PM25Data", "PM25Windows", "download_pm25", "load_pm25", "pm25_windows"]

#: CSDI's test months.
PM25_TEST_MONTHS: tuple[int, ...] = (3, 6, 9, 12)
#: CSDI's candidate validation months (one is taken out of training) and hist-mask flags.
_TRAIN_MONTHS: tuple[int, ...] = (1, 2, 4, 5, 7, 8, 10, 11)
_HIST_FLAGS: tuple[int, ...] = (0, 1, 0, 1, 0, 1, 0, 1)
_URL = "https://www.microsoft.com/en-us/research/uploads/prod/2016/06/STMVL-Release.zip"
_DATE_FORMAT = "%Y/%m/%d %H:%M:%S"


def _pm_file(key: str, fname: str, sha: str, size: int) -> DataFile:
    return DataFile(
        key,
        (
            FileVariant(f"pm25/SampleData/{fname}", sha),
            FileVariant(f"pm25/Code/STMVL/SampleData/{fname}", sha),
        ),
        _URL,
        size,
    )


INFO = DatasetInfo(
    name="pm25",
    title="Beijing PM2.5 (STMVL, 36 stations)",
    description=(
        "Hourly PM2.5 at 36 Beijing stations, 2014-05-01 01:00 to 2015-04-30 23:00 (8759 x 36, "
        "13.25% missing); a second file with extra gaps defines CSDI's evaluation targets."
    ),
    shape="(8759, 36)",
    license="No explicit license; released by Microsoft Research for research use with the paper (cite it)",
    citation=(
        "Yi X, Zheng Y, Zhang J, Li T. ST-MVL: Filling Missing Values in Geo-Sensory Time Series "
        "Data. IJCAI 2016."
    ),
    url="https://www.microsoft.com/en-us/research/publication/st-mvl-filling-missing-values-in-geo-sensory-time-series-data/",
    files=(
        _pm_file(
            "ground",
            "pm25_ground.txt",
            "8f77b738ae4c50621705a308e606e6229564ad7ad20358986bd6031355f0ab5f",
            1098878,
        ),
        _pm_file(
            "missing",
            "pm25_missing.txt",
            "3f991eab5bbc5e644e61360e6b71ce45179c86cf650b3bb9a53771d8f9953fe3",
            1022029,
        ),
        _pm_file(
            "latlng",
            "pm25_latlng.txt",
            "a7423dafe4ecdec5ba04b4b6b047a53df1b9c04aed0a2957f1c698761715d7c1",
            958,
        ),
    ),
    loader="load_pm25",
    card="datasets/pm25.md",
    notes="Downloaded from the STMVL-Release.zip; the three SampleData files are extracted and checked.",
)
_FILES = {f.key: f for f in INFO.files}


@dataclass(frozen=True, eq=False)
class PM25Data:
    """The PM2.5 tables.

    Attributes
    ----------
    ground : pandas.DataFrame, shape (8759, 36)
        Ground truth with natural gaps (NaN); DatetimeIndex ``datetime``; station-id columns.
    missing : pandas.DataFrame, shape (8759, 36)
        The same with extra gaps.
    eval_mask : pandas.DataFrame of bool
        True where ``ground`` has a value and ``missing`` has none: CSDI's evaluation targets.
    mean, std : pandas.Series (36,)
        Per-station statistics over the non-test months of ``ground`` (ddof=1).
    latlng : pandas.DataFrame
        ``latitude``, ``longitude`` indexed by station id.
    """

    ground: pd.DataFrame
    missing: pd.DataFrame
    eval_mask: pd.DataFrame
    mean: pd.Series
    std: pd.Series
    latlng: pd.DataFrame
    test_months: tuple[int, ...] = PM25_TEST_MONTHS


@dataclass(frozen=True, eq=False)
class PM25Windows:
    """CSDI windows of one split, time-major: arrays ``(N, L, K)`` with L=36 hours, K=36 stations.

    Attributes
    ----------
    values : ndarray of float64, shape (N, L, K)
        Ground values (z-scored when ``normalize=True``), NaN where not observed.
    observed_mask : ndarray of bool
        Present in the ground file.
    cond_mask : ndarray of bool
        Present in the missing file (CSDI's ``gt_mask``): what the model sees at evaluation.
    eval_mask : ndarray of bool
        ``observed_mask & ~cond_mask``, with the first ``cut_length`` steps of a window cleared
        (CSDI's overlap rule for the last test window of a month).
    cut_length : ndarray of int64, shape (N,)
        Leading steps already covered by the previous test window (0 elsewhere).
    start : ndarray of datetime64, shape (N,)
        Timestamp of each window's first step.
    hist_index : ndarray of int64 or None
        Training only: index of the window whose observed mask CSDI's ``hist`` strategy uses.
    mean, std : ndarray (K,)
        Statistics used (see :class:`PM25Data`).
    months : tuple of int
        Calendar months the windows come from, in order.
    """

    values: np.ndarray
    observed_mask: np.ndarray
    cond_mask: np.ndarray
    eval_mask: np.ndarray
    cut_length: np.ndarray
    start: np.ndarray
    hist_index: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray
    months: tuple[int, ...]


def _read_table(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"datetime": str})
    stamps = pd.to_datetime(df.pop("datetime"), format=_DATE_FORMAT)
    df = df.astype(np.float64)
    df.index = pd.DatetimeIndex(stamps, name="datetime")
    df.columns = [str(c) for c in df.columns]
    return df


def download_pm25(data_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> list[Path]:
    """Download the STMVL release and extract the three PM2.5 files.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root (``<root>/pm25/SampleData/``); default ``~/.cache/tsimpute``.
    force : bool, default=False
        Download even when verified copies are already found.

    Returns
    -------
    list of pathlib.Path
        The three files.

    Notes
    -----
    The zip's hash is not pinned. Extracted files are compared with the pinned hashes; a
    difference is logged and recorded in a ``.sha256`` sidecar.
    """
    if not force:
        hits = [x for x in (find_file(INFO, f, data_dir) for f in INFO.files) if x is not None]
        if len(hits) == len(INFO.files):
            for path, variant in hits:
                verify_file(path, variant)
            return [path for path, _ in hits]
    root = download_root(data_dir)
    zpath = fetch_url(_URL, root / "pm25" / "STMVL-Release.zip")
    out: list[Path] = []
    try:
        with zipfile.ZipFile(zpath) as zf:
            names = zf.namelist()
            for spec in INFO.files:
                fname = spec.variants[0].relpath.rsplit("/", 1)[-1]
                member = next((n for n in names if n.endswith(f"SampleData/{fname}")), None)
                if member is None:
                    raise ValueError(f"{_URL} has no member ending in SampleData/{fname}")
                with zf.open(member) as fh:
                    out.append(
                        write_verified(fh, root / spec.variants[0].relpath, spec.variants[0].sha256, member)
                    )
    finally:
        zpath.unlink(missing_ok=True)
        zpath.with_name(zpath.name + ".sha256").unlink(missing_ok=True)
    return out


def load_pm25(*, data_dir: str | os.PathLike[str] | None = None, download: bool = False) -> PM25Data:
    """Load the 36-station PM2.5 data with CSDI's evaluation mask and statistics.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`).
    download : bool, default=False
        Download the STMVL release when the files are not found.

    Returns
    -------
    PM25Data

    Raises
    ------
    FileNotFoundError
        When the files are missing and ``download`` is False.
    ValueError
        Checksum mismatch, or ground and missing tables that do not align.
    """
    try:
        paths = {k: locate(INFO, f, data_dir)[0] for k, f in _FILES.items()}
    except FileNotFoundError:
        if not download:
            raise
        download_pm25(data_dir)
        paths = {k: locate(INFO, f, data_dir)[0] for k, f in _FILES.items()}
    ground = _read_table(paths["ground"])
    missing = _read_table(paths["missing"])
    if not (ground.index.equals(missing.index) and list(ground.columns) == list(missing.columns)):
        raise ValueError(f"{paths['ground']} and {paths['missing']} do not share timestamps and stations")
    eval_mask = ground.notna() & missing.isna()
    train = ground[~ground.index.month.isin(PM25_TEST_MONTHS)]
    latlng = pd.read_csv(paths["latlng"], dtype={"sensor_id": str}).set_index("sensor_id")
    return PM25Data(ground, missing, eval_mask, train.mean(), train.std(ddof=1), latlng)


def pm25_windows(
    split: str,
    *,
    valid_index: int = 0,
    data: PM25Data | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    normalize: bool = False,
    window: int = 36,
) -> PM25Windows:
    """Cut the PM2.5 data into windows exactly as CSDI's ``PM25_Dataset``.

    - ``"train"``: months 1, 2, 4, 5, 7, 8, 10, 11 without the validation month, every
      start position (stride 1) inside each month; ``hist_index`` pairs window ``i`` with the
      ``i``-th (cyclically) window of months 2, 5, 8, 11 (CSDI's hist-mask source).
    - ``"valid"``: month ``(1, 2, 4, 5, 7, 8, 10, 11)[valid_index]``, stride 1.
    - ``"test"``: months 3, 6, 9, 12, non-overlapping windows from each month's start plus,
      when the month length is not a multiple of ``window``, a last window ending at the
      month's end whose first ``cut_length`` steps are excluded from ``eval_mask``.

    Windows never cross month boundaries.

    Parameters
    ----------
    split : {"train", "valid", "test"}
        Which split.
    valid_index : int, default=0
        CSDI's ``validindex`` (0..7).
    data : PM25Data, optional
        Already loaded data; loaded with ``data_dir`` otherwise.
    data_dir : str or path-like, optional
        Data root for loading.
    normalize : bool, default=False
        Z-score values with the non-test-month statistics (CSDI feeds z-scores, with 0 in
        place of missing values; here missing stays NaN).
    window : int, default=36
        Window length in hours.

    Returns
    -------
    PM25Windows
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    if (
        isinstance(valid_index, bool)
        or not isinstance(valid_index, int)
        or not 0 <= valid_index < len(_TRAIN_MONTHS)
    ):
        raise ValueError(f"valid_index must be an int in [0, {len(_TRAIN_MONTHS) - 1}], got {valid_index!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if data is None:
        data = load_pm25(data_dir=data_dir)
    if split == "train":
        months = [m for i, m in enumerate(_TRAIN_MONTHS) if i != valid_index]
        flags = [f for i, f in enumerate(_HIST_FLAGS) if i != valid_index]
    elif split == "valid":
        months, flags = [_TRAIN_MONTHS[valid_index]], [0]
    else:
        months, flags = list(PM25_TEST_MONTHS), [0] * len(PM25_TEST_MONTHS)

    mean = data.mean.to_numpy(dtype=np.float64)
    std = data.std.to_numpy(dtype=np.float64)
    ground = data.ground.to_numpy(dtype=np.float64)
    present = data.missing.notna().to_numpy()
    vals, obs, cond, cuts, starts, hist_ok = [], [], [], [], [], []
    for month, flag in zip(months, flags, strict=True):
        sel = data.ground.index.month == month
        g, c = ground[sel], present[sel]
        times = data.ground.index[sel]
        n = len(g)
        if n < window:
            raise ValueError(f"month {month} has {n} rows, fewer than window={window}")
        if split == "test":
            pos = list(range(0, (n // window) * window, window))
            cut = [0] * len(pos)
            if n % window:
                pos.append(n - window)
                cut.append(window - n % window)
        else:
            pos = list(range(n - window + 1))
            cut = [0] * len(pos)
        idx = np.asarray(pos)[:, None] + np.arange(window)
        x = (g - mean) / std if normalize else g
        vals.append(x[idx])
        obs.append(~np.isnan(g)[idx])
        cond.append(c[idx])
        cuts.extend(cut)
        starts.append(times.to_numpy()[np.asarray(pos)])
        hist_ok.extend([flag] * len(pos))

    observed = np.concatenate(obs)
    cond_mask = np.concatenate(cond) & observed
    cut_length = np.asarray(cuts, dtype=np.int64)
    eval_mask = observed & ~cond_mask
    eval_mask[np.arange(window)[None, :] < cut_length[:, None]] = False
    hist_index = None
    if split == "train":
        valid_src = np.flatnonzero(np.asarray(hist_ok))
        hist_index = valid_src[np.arange(len(hist_ok)) % len(valid_src)].astype(np.int64)
    return PM25Windows(
        values=np.concatenate(vals),
        observed_mask=observed,
        cond_mask=cond_mask,
        eval_mask=eval_mask,
        cut_length=cut_length,
        start=np.concatenate(starts),
        hist_index=hist_index,
        mean=mean,
        std=std,
        months=tuple(months),
    )
