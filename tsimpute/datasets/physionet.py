"""PhysioNet/Computing in Cardiology Challenge 2012, binned as in CSDI.

Each ICU stay becomes a ``(48, 35)`` array: 48 hourly bins (hour = ``int(HH)`` of ``HH:MM``,
the last value of a variable within an hour wins, hours >= 48 dropped) of CSDI's 35
variables, NaN where nothing was recorded. Values are kept exactly as in the files (a few
negative temperatures included), as CSDI does. Stays are ordered by RecordID.

Sources (``source=``):

- ``"full"``: parse ``physionet2012/set-a.tar.gz`` (or ``set-b``) straight from the archive;
  raise ``FileNotFoundError`` if it is missing (unless ``download=True``).
- ``"sample"``: the embedded real subset shipped with the package (the first
  :data:`SAMPLE_STAYS` stays of set-a, ODC-By 1.0, see ``datasets/physionet2012.md``).
- ``"auto"`` (default): full if found, otherwise the embedded sample with a
  :class:`SampleDataWarning`. set-b has no sample, so ``"auto"`` raises for it.

Caching: parsed archives are kept in memory (the last 4) and, with ``cache=True``, on disk as
``<cache_dir>/physionet2012_<set>_<sha256[:16]>_v1.npz`` (default cache_dir
``~/.cache/tsimpute/parsed``), keyed by the archive's sha256 so a changed archive is re-parsed.
"""

from __future__ import annotations

import io
import os
import tarfile
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._locate import (
    DataFile,
    DatasetInfo,
    FileVariant,
    download_root,
    fetch_url,
    find_file,
    locate,
    logger,
    user_cache_dir,
    verify_file,
)

__all__ = [
    "PHYSIONET_VARIABLES",
    "SAMPLE_STAYS",
    "PhysioNetData",
    "SampleDataWarning",
    "download_physionet",
    "load_physionet",
]

#: CSDI's 35 variables, in CSDI's order.
PHYSIONET_VARIABLES: tuple[str, ...] = (
    "DiasABP", "HR", "Na", "Lactate", "NIDiasABP", "PaO2", "WBC", "pH", "Albumin", "ALT", "Glucose",
    "SaO2", "Temp", "AST", "Bilirubin", "HCO3", "BUN", "RespRate", "Mg", "HCT", "SysABP", "FiO2", "K",
    "GCS", "Cholesterol", "NISysABP", "TroponinT", "MAP", "TroponinI", "PaCO2", "Platelets", "Urine",
    "NIMAP", "Creatinine", "ALP",
)  # fmt: skip
N_HOURS = 48
#: Number of set-a stays in the embedded sample.
SAMPLE_STAYS = 1000
SAMPLE_PATH = Path(__file__).resolve().parents[1] / "data" / "physionet2012_seta_sample.npz"
_CACHE_VERSION = 1
_BASE = "https://physionet.org/files/challenge-2012/1.0.0/"


class SampleDataWarning(UserWarning):
    """Warned when a loader falls back to the small embedded sample."""


def _pn_file(key: str, fname: str, sha: str, size: int) -> DataFile:
    return DataFile(key, (FileVariant(f"physionet2012/{fname}", sha),), _BASE + fname, size)


INFO = DatasetInfo(
    name="physionet2012",
    title="PhysioNet/CinC Challenge 2012",
    description=(
        "4000 ICU stays per set (set-a, set-b): first 48 h of 37 vital signs and lab values, "
        "irregularly sampled; CSDI's 35 variables in 48 hourly bins, about 80.5% missing."
    ),
    shape="(4000, 48, 35) per set",
    license="ODC-By 1.0 (Open Data Commons Attribution License v1.0); attribution required",
    citation=(
        "Silva I, Moody G, Scott DJ, Celi LA, Mark RG. Predicting In-Hospital Mortality of ICU "
        "Patients: The PhysioNet/Computing in Cardiology Challenge 2012. Computing in Cardiology "
        "2012;39:245-248. Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet. "
        "Circulation 101(23):e215-e220 (2000)."
    ),
    url="https://physionet.org/content/challenge-2012/1.0.0/",
    files=(
        _pn_file(
            "set-a",
            "set-a.tar.gz",
            "abcd119bae0f9f98d5e63b7bce5b2d37c64328e7c1acacab3836d17787d841df",
            6550872,
        ),
        _pn_file(
            "set-b",
            "set-b.tar.gz",
            "668734f4ddf290edde891057c29349a04af51090b308fd5f352d0eabeb89a975",
            6571203,
        ),
        _pn_file(
            "outcomes-a",
            "Outcomes-a.txt",
            "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2",
            79219,
        ),
        _pn_file(
            "outcomes-b",
            "Outcomes-b.txt",
            "1305f29734da374a809483229a99f33a9230aa8d4fa74b1a2d6ad788136423d5",
            79149,
        ),
    ),
    loader="load_physionet",
    card="datasets/physionet2012.md",
    notes=(
        "The pinned archives are deterministic repacks of the official files; official downloads "
        "are not byte-identical, so their hash is recorded at download (.sha256 sidecar)."
    ),
)
_FILES = {f.key: f for f in INFO.files}


# ----------------------------------------------------------------------------- containers
@dataclass(frozen=True, eq=False)
class PhysioNetData:
    """Binned PhysioNet 2012 stays.

    Attributes
    ----------
    values : ndarray of float64, shape (N, 48, 35)
        Last value per hour and variable, NaN where missing.
    record_ids : ndarray of int64, shape (N,)
        RecordIDs, ascending.
    variables : tuple of str
        The 35 variable names (:data:`PHYSIONET_VARIABLES`).
    set_name : str
        ``"set-a"`` or ``"set-b"``.
    source : str
        ``"full"`` (parsed archive) or ``"sample"`` (embedded subset).
    path : pathlib.Path or None
        File the data came from.
    """

    values: np.ndarray
    record_ids: np.ndarray
    variables: tuple[str, ...]
    set_name: str
    source: str
    path: Path | None

    @property
    def observed_mask(self) -> np.ndarray:
        """Boolean array ``(N, 48, 35)``, True where a value was recorded."""
        return ~np.isnan(self.values)

    @property
    def missing_rate(self) -> float:
        """Fraction of missing entries."""
        return float(np.isnan(self.values).mean())


# ----------------------------------------------------------------------------- parsing
def _parse_record(text: str, index: dict[str, int]) -> np.ndarray:
    out = np.full((N_HOURS, len(index)), np.nan)
    lines = text.splitlines()
    start = 1 if lines and lines[0].startswith("Time") else 0
    for line in lines[start:]:
        t, param, value = line.split(",")
        k = index.get(param)
        if k is None:
            continue
        hour = int(t[: t.index(":")])
        if 0 <= hour < N_HOURS:
            out[hour, k] = float(value)  # later lines overwrite: last value in the hour wins
    return out


def parse_physionet_archive(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Parse a PhysioNet 2012 ``set-X.tar.gz`` in memory (nothing is extracted to disk).

    Parameters
    ----------
    path : str or path-like
        The archive; every member named ``<digits>.txt`` is one stay.

    Returns
    -------
    values : ndarray of float64, shape (N, 48, 35)
        Binned values, NaN where missing, stays sorted by RecordID.
    record_ids : ndarray of int64, shape (N,)
        The RecordIDs, ascending.
    """
    index = {v: k for k, v in enumerate(PHYSIONET_VARIABLES)}
    ids: list[int] = []
    arrays: list[np.ndarray] = []
    with tarfile.open(path, "r:gz") as tf:
        for member in tf:
            base = member.name.rsplit("/", 1)[-1]
            if not (member.isfile() and base.endswith(".txt") and base[:-4].isdigit()):
                continue
            fh = tf.extractfile(member)
            if fh is None:  # pragma: no cover - isfile() members always have data
                continue
            try:
                arrays.append(_parse_record(fh.read().decode("ascii"), index))
            except ValueError as exc:
                raise ValueError(f"cannot parse {member.name} in {path}: {exc}") from exc
            ids.append(int(base[:-4]))
    if not ids:
        raise ValueError(f"{path} holds no PhysioNet record files (<RecordID>.txt)")
    order = np.argsort(np.asarray(ids), kind="stable")
    return np.stack(arrays)[order], np.asarray(ids, dtype=np.int64)[order]


# ----------------------------------------------------------------------------- npz (cache + sample)
def _pack(values: np.ndarray, record_ids: np.ndarray) -> dict[str, np.ndarray]:
    observed = ~np.isnan(values)
    return {
        "shape": np.asarray(values.shape, dtype=np.int64),
        "observed_bits": np.packbits(observed.ravel()),
        "observed_values": values[observed].astype(np.float64),
        "record_ids": np.asarray(record_ids, dtype=np.int64),
        "variables": np.asarray(PHYSIONET_VARIABLES),
    }


def _unpack(z: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(int(s) for s in z["shape"])
    if tuple(str(v) for v in z["variables"]) != PHYSIONET_VARIABLES:
        raise ValueError("npz file does not hold the 35 CSDI variables in order")
    observed = np.unpackbits(z["observed_bits"], count=int(np.prod(shape))).astype(bool).reshape(shape)
    values = np.full(shape, np.nan)
    values[observed] = z["observed_values"]
    return values, np.asarray(z["record_ids"], dtype=np.int64)


def save_npz_deterministic(
    path: str | os.PathLike[str], arrays: dict[str, np.ndarray], *, compress: bool
) -> None:
    """Write an ``.npz`` whose bytes depend only on the arrays (fixed zip timestamps).

    Parameters
    ----------
    path : str or path-like
        Destination (written atomically).
    arrays : dict of str to ndarray
        Arrays to store, in this order.
    compress : bool
        Deflate the members.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + f".{os.getpid()}.part")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(part, "w", compression=method) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9 if compress else None)
    os.replace(part, path)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return _unpack(z)


# ----------------------------------------------------------------------------- loading
_MEMORY: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_MEMORY_SIZE = 4


def _parsed(
    path: Path, sha: str, set_name: str, cache: bool, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    key = (sha, set_name)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    npz = (
        cache_dir or user_cache_dir() / "parsed"
    ) / f"physionet2012_{set_name}_{sha[:16]}_v{_CACHE_VERSION}.npz"
    result = None
    if cache and npz.is_file():
        try:
            result = _load_npz(npz)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable cache %s: %s", npz, exc)
    if result is None:
        result = parse_physionet_archive(path)
        if cache:
            try:
                save_npz_deterministic(npz, _pack(*result), compress=False)
            except OSError as exc:
                logger.warning("could not write cache %s: %s", npz, exc)
    for arr in result:
        arr.flags.writeable = False
    _MEMORY[key] = result
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return result


def load_physionet_sample() -> PhysioNetData:
    """Load the embedded real sample (first :data:`SAMPLE_STAYS` stays of set-a).

    Returns
    -------
    PhysioNetData
        With ``source="sample"``.
    """
    values, ids = _load_npz(SAMPLE_PATH)
    return PhysioNetData(values, ids, PHYSIONET_VARIABLES, "set-a", "sample", SAMPLE_PATH)


def download_physionet(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    files: tuple[str, ...] | None = None,
    force: bool = False,
) -> list[Path]:
    """Download PhysioNet 2012 files from physionet.org.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root to write under (``<root>/physionet2012/``); default ``~/.cache/tsimpute``.
    files : tuple of str, optional
        Keys among ``"set-a"``, ``"set-b"``, ``"outcomes-a"``, ``"outcomes-b"``; default all.
    force : bool, default=False
        Download even when a verified copy is already in the search roots.

    Returns
    -------
    list of pathlib.Path
        The files (downloaded or already present).

    Notes
    -----
    The official archives are not byte-identical to the pinned repacks, so their sha256 is not
    pinned: it is recorded in a ``.sha256`` sidecar at download and checked on later loads.
    """
    keys = files if files is not None else tuple(_FILES)
    unknown = [k for k in keys if k not in _FILES]
    if unknown:
        raise ValueError(f"files: unknown keys {unknown}; choose from {sorted(_FILES)}")
    out: list[Path] = []
    for key in keys:
        spec = _FILES[key]
        found = None if force else find_file(INFO, spec, data_dir)
        if found is not None:
            verify_file(*found)
            out.append(found[0])
            continue
        out.append(fetch_url(spec.url, download_root(data_dir) / spec.variants[0].relpath, sha256=None))
    return out


def load_physionet(
    set_name: str = "set-a",
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> PhysioNetData:
    """Load PhysioNet 2012 stays binned as in CSDI (48 hours x 35 variables).

    Parameters
    ----------
    set_name : {"set-a", "set-b"}, default="set-a"
        Which set.
    source : {"auto", "full", "sample"}, default="auto"
        ``"full"``: the archive, else ``FileNotFoundError``; ``"sample"``: the embedded first
        :data:`SAMPLE_STAYS` set-a stays; ``"auto"``: full when found, else the sample with a
        :class:`SampleDataWarning`.
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`).
    download : bool, default=False
        Download the archive from physionet.org when it is not found.
    cache : bool, default=True
        Use and write the on-disk parse cache (the in-memory cache is always used).
    cache_dir : str or path-like, optional
        Folder of the parse cache; default ``~/.cache/tsimpute/parsed``.

    Returns
    -------
    PhysioNetData
        Fresh arrays (callers may modify them).

    Raises
    ------
    FileNotFoundError
        The archive is missing and neither ``download`` nor the sample applies.
    ValueError
        Bad argument, or checksum mismatch.
    """
    if set_name not in ("set-a", "set-b"):
        raise ValueError(f"set_name must be 'set-a' or 'set-b', got {set_name!r}")
    if source not in ("auto", "full", "sample"):
        raise ValueError(f"source must be 'auto', 'full' or 'sample', got {source!r}")
    if source == "sample":
        if set_name != "set-a":
            raise ValueError("the embedded sample is of set-a only")
        return load_physionet_sample()
    spec = _FILES[set_name]
    try:
        path, _variant, sha = locate(INFO, spec, data_dir)
    except FileNotFoundError as exc:
        if download:
            download_physionet(data_dir, files=(set_name,))
            path, _variant, sha = locate(INFO, spec, data_dir)
        elif source == "auto" and set_name == "set-a":
            warnings.warn(
                f"PhysioNet 2012 set-a archive not found; using the embedded real sample of the first "
                f"{SAMPLE_STAYS} stays (results are not comparable with published full-data figures). "
                f"Details:\n{exc}",
                SampleDataWarning,
                stacklevel=2,
            )
            return load_physionet_sample()
        else:
            raise
    values, ids = _parsed(path, sha, set_name, cache, Path(cache_dir) if cache_dir is not None else None)
    return PhysioNetData(values.copy(), ids.copy(), PHYSIONET_VARIABLES, set_name, "full", path)
