"""Finding, verifying and downloading the data files behind the dataset loaders.

Search order
------------
Every loader takes ``data_dir`` and looks for its files, relative to a *data root*, in these
roots, in this order (the first existing file wins; a file that exists but fails its checksum
raises, it is never skipped):

1. the ``data_dir`` argument;
2. the environment variable ``TSIMPUTE_DATA_DIR`` (several roots may be joined with
   ``os.pathsep``);
3. the user cache ``~/.cache/tsimpute`` (where downloads go by default);
4. ``../shared/data`` relative to the current working directory;
5. ``shared/data`` beside the repository checkout (``<repo>/../shared/data``).

The layout under a root mirrors the shared data folder, e.g.
``physionet2012/set-a.tar.gz`` or ``ett/ETTh1.csv.gz``.

Checksums
---------
Each accepted file variant may pin a sha256. A file whose hash differs raises ``ValueError``
naming the file and both hashes, unless a sidecar ``<file>.sha256`` written by
:func:`fetch_url` records the actual hash: official archives that are not byte-identical to the
pinned copies (their hash is not known in advance) are accepted on that basis, "trust on first
download". Hashes are computed once per process per (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

logger = logging.getLogger("tsimpute.datasets")

ENV_VAR = "TSIMPUTE_DATA_DIR"
DOWNLOAD_HINT = (
    "Download it with `download=True` (e.g. `{loader}(download=True)`) or the command "
    "`tsimpute datasets --download {name}`, or put the file in one of the places above "
    "(or point TSIMPUTE_DATA_DIR at a folder that has it)."
)

#: The opener used for downloads; tests replace it (no test touches the network).
_urlopen: Callable[..., IO[bytes]] = urllib.request.urlopen

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class FileVariant:
    """One accepted form of a data file.

    Parameters
    ----------
    relpath : str
        Path relative to a data root, with ``/`` separators.
    sha256 : str or None
        Pinned sha256 of the file, or None when it cannot be pinned (then a sidecar
        ``.sha256`` written at download time is checked when present).
    """

    relpath: str
    sha256: str | None


@dataclass(frozen=True)
class DataFile:
    """A logical data file with its accepted variants and official source.

    Parameters
    ----------
    key : str
        Short name, e.g. ``"set-a"``.
    variants : tuple of FileVariant
        Accepted forms, in order of preference (the first found wins).
    url : str
        Official download URL.
    size : int
        Size in bytes of the first (reference) variant, for status tables.
    """

    key: str
    variants: tuple[FileVariant, ...]
    url: str
    size: int


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry of a dataset.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"physionet2012"``.
    title : str
        Human-readable name.
    description : str
        One paragraph on the content.
    shape : str
        Shape of what the loader returns.
    license : str
        License of the data.
    citation : str
        Reference to cite.
    url : str
        Official landing page.
    files : tuple of DataFile
        Files the dataset is made of.
    loader : str
        Name of the loader function in :mod:`tsimpute.datasets`.
    card : str
        Path of the dataset card in the repository.
    notes : str, default=""
        Remarks, e.g. on which downloads are pinned.
    """

    name: str
    title: str
    description: str
    shape: str
    license: str
    citation: str
    url: str
    files: tuple[DataFile, ...]
    loader: str
    card: str
    notes: str = field(default="")


# ----------------------------------------------------------------------------- search roots
def user_cache_dir() -> Path:
    """Return the user cache folder ``~/.cache/tsimpute`` (not created).

    Returns
    -------
    pathlib.Path
        The folder downloads and parsed caches go to by default.
    """
    return Path.home() / ".cache" / "tsimpute"


def _repo_shared_dir() -> Path:
    # <X>/main/tsimpute/datasets/_locate.py -> parents[3] == <X>
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def search_roots(data_dir: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """List the data roots searched, in order, with where each comes from.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Explicit data root, searched first.

    Returns
    -------
    list of (pathlib.Path, str)
        Root folders (duplicates removed) and a short description of their origin.
    """
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError(f"data_dir must be a str or path-like, got {type(data_dir).__name__}")
        roots.append((Path(data_dir).expanduser(), "data_dir argument"))
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            roots.append((Path(part.strip()).expanduser(), f"${ENV_VAR}"))
    roots.append((user_cache_dir(), "user cache"))
    roots.append((Path.cwd().parent / "shared" / "data", "../shared/data from the working directory"))
    roots.append((_repo_shared_dir(), "shared/data beside the repository"))
    seen: set[str] = set()
    unique: list[tuple[Path, str]] = []
    for root, why in roots:
        key = os.path.normcase(os.path.abspath(root))
        if key not in seen:
            seen.add(key)
            unique.append((root, why))
    return unique


# ----------------------------------------------------------------------------- checksums
def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the sha256 of a file, cached per process by (path, size, mtime).

    Parameters
    ----------
    path : str or path-like
        File to hash.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        _HASH_CACHE[key] = digest
    return digest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_file(path: Path, variant: FileVariant) -> str:
    """Check a file against its pinned hash (or its download sidecar).

    Parameters
    ----------
    path : pathlib.Path
        The file found.
    variant : FileVariant
        The variant it was found as.

    Returns
    -------
    str
        The file's sha256.

    Raises
    ------
    ValueError
        If the hash matches neither the pinned value nor the sidecar written at download.
    """
    actual = sha256_file(path)
    if variant.sha256 is not None and actual == variant.sha256:
        return actual
    side = _sidecar(path)
    recorded = side.read_text().split()[0].strip().lower() if side.is_file() else None
    if recorded is not None:
        if recorded == actual:
            return actual
        raise ValueError(
            f"Checksum mismatch for {path}: the sha256 recorded at download in {side} is {recorded}, "
            f"the file now has {actual}. Delete the file and download it again."
        )
    if variant.sha256 is None:
        logger.info("%s has no pinned checksum (sha256 %s)", path, actual)
        return actual
    raise ValueError(
        f"Checksum mismatch for {path}: expected sha256 {variant.sha256}, got {actual}. "
        f"If this is an unmodified official file that tsimpute does not pin, write its hash to "
        f"{side} to accept it; otherwise delete it and download it again."
    )


# ----------------------------------------------------------------------------- locating
def _not_found(
    dataset: DatasetInfo, datafile: DataFile, tried: Sequence[tuple[Path, str]]
) -> FileNotFoundError:
    lines = "\n".join(f"  - {p} ({why})" for p, why in tried)
    hint = DOWNLOAD_HINT.format(loader=dataset.loader, name=dataset.name)
    return FileNotFoundError(
        f"{dataset.title}: file {datafile.variants[0].relpath!r} not found. Searched:\n{lines}\n"
        f"Official source: {datafile.url} (landing page {dataset.url}).\n{hint}"
    )


def find_file(
    dataset: DatasetInfo, datafile: DataFile, data_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, FileVariant] | None:
    """Find a data file in the search roots without verifying it.

    Parameters
    ----------
    dataset : DatasetInfo
        Dataset the file belongs to.
    datafile : DataFile
        The file to look for.
    data_dir : str or path-like, optional
        Explicit data root, searched first.

    Returns
    -------
    (pathlib.Path, FileVariant) or None
        The first match, or None.
    """
    for root, _why in search_roots(data_dir):
        for variant in datafile.variants:
            p = root / variant.relpath
            if p.is_file():
                return p, variant
    return None


def locate(
    dataset: DatasetInfo, datafile: DataFile, data_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, FileVariant, str]:
    """Find and verify a data file.

    Parameters
    ----------
    dataset : DatasetInfo
        Dataset the file belongs to (for messages).
    datafile : DataFile
        The file to look for.
    data_dir : str or path-like, optional
        Explicit data root, searched first.

    Returns
    -------
    path : pathlib.Path
        The verified file.
    variant : FileVariant
        Which accepted form it is.
    sha256 : str
        Its hash.

    Raises
    ------
    FileNotFoundError
        Listing every place searched, the official URL and how to download.
    ValueError
        On a checksum mismatch.
    """
    tried: list[tuple[Path, str]] = []
    for root, why in search_roots(data_dir):
        for variant in datafile.variants:
            p = root / variant.relpath
            if p.is_file():
                return p, variant, verify_file(p, variant)
            tried.append((p, why))
    raise _not_found(dataset, datafile, tried)


def download_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return where downloads go: ``data_dir`` if given, else the user cache.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Explicit data root.

    Returns
    -------
    pathlib.Path
        The data root downloads are written under.
    """
    return Path(data_dir).expanduser() if data_dir is not None else user_cache_dir()


# ----------------------------------------------------------------------------- downloading
def fetch_url(
    url: str, dest: str | os.PathLike[str], *, sha256: str | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` atomically and check or record its sha256.

    Parameters
    ----------
    url : str
        Source (any scheme :func:`urllib.request.urlopen` handles, ``file://`` included).
    dest : str or path-like
        Destination file; parent folders are created.
    sha256 : str, optional
        Expected hash. When given, a mismatch deletes the download and raises ``ValueError``;
        when None, the hash is written to the sidecar ``<dest>.sha256`` so later loads can
        check the file has not changed.
    timeout : float, default=60.0
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    logger.info("downloading %s -> %s", url, dest)
    try:
        with _urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = h.hexdigest()
    if sha256 is not None and actual != sha256:
        part.unlink(missing_ok=True)
        raise ValueError(
            f"Checksum mismatch for {url} (downloaded to {dest}): expected sha256 {sha256}, got {actual}"
        )
    os.replace(part, dest)
    side = _sidecar(dest)
    if sha256 is None:
        side.write_text(f"{actual}  {dest.name}\n")
    else:
        side.unlink(missing_ok=True)
    return dest


def write_verified(data: bytes | IO[bytes], dest: Path, expected: str | None, what: str) -> Path:
    """Write bytes (e.g. a member extracted from an archive) and check or record their hash.

    Parameters
    ----------
    data : bytes or binary file object
        Content to write.
    dest : pathlib.Path
        Destination file.
    expected : str or None
        Pinned hash. On a mismatch the file is kept but a sidecar records the actual hash and
        a warning is logged (the official archive is not the pinned copy).
    what : str
        Description for messages.

    Returns
    -------
    pathlib.Path
        ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with open(part, "wb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out)
    actual = sha256_file(part)
    os.replace(part, dest)
    side = _sidecar(dest)
    if expected is not None and actual == expected:
        side.unlink(missing_ok=True)
    else:
        if expected is not None:
            logger.warning("%s differs from the pinned copy (sha256 %s, pinned %s)", what, actual, expected)
        side.write_text(f"{actual}  {dest.name}\n")
    return dest


def file_size(path: Path | None) -> int | None:
    """Return a file's size in bytes, or None when there is no file."""
    return path.stat().st_size if path is not None and path.is_file() else None
