"""Finding, verifying and downloading the data files behind the dataset loaders.

Search order
------------
Every loader takes ``data_dir`` and looks for its files, relative to a *data root*, in these
roots, in this order (the first existing file wins; a file that exists but fails its checksum
raises, it is never skipped):

1. the ``data_dir`` argument;
2. the environment variable ``TSIMPUTE_DATA_DIR`` (several roots may be joined with
   ``os.pathsep``);
3. the user cache (:func:`tsimpute.cache.cache_dir`: ``$TSIMPUTE_CACHE_DIR``, else the platform's user
   cache folder, ``~/.cache/tsimpute`` on Linux), where downloads go by default;
4. ``../shared/data`` relative to the current working directory.

The layout under a root mirrors the shared data folder, e.g.
``physionet2012/set-a.tar.gz`` or ``ett/ETTh1.csv.gz``.

Checksums
---------
Each accepted file variant may pin a sha256. A file whose hash differs raises ``ValueError``
naming the file and both hashes, unless a sidecar ``<file>.sha256`` written by
:func:`fetch_url` records the actual hash: official archives that are not byte-identical to the
pinned copies (their hash is not known in advance) are accepted on that basis, "trust on first
download". Hashes are computed once per process per (path, size, mtime).

Downloads
---------
:func:`fetch_url` downloads with pooch (:func:`pooch.retrieve`: streamed to a temporary file, checked
against the pinned sha256 before it takes the file's name); ``file://`` URLs are copied.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pooch

from ..cache import cache_dir
from ..checksums import sha256_file as _sha256_uncached

logger = logging.getLogger("tsimpute.datasets")

ENV_VAR = "TSIMPUTE_DATA_DIR"
DOWNLOAD_HINT = (
    "Download it with `download=True` (e.g. `{loader}(download=True)`) or the command "
    "`tsimpute datasets --download {name}`, or put the file in one of the places above "
    "(or point TSIMPUTE_DATA_DIR at a folder that has it)."
)

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
    """Return tsimpute's user cache folder (not created): see :func:`tsimpute.cache.cache_dir`.

    Returns
    -------
    pathlib.Path
        The folder downloads and parsed caches go to by default: ``$TSIMPUTE_CACHE_DIR``, else the
        platform's user cache folder (``~/.cache/tsimpute`` on Linux).
    """
    return cache_dir()


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
        Lower-case hex digest (:func:`tsimpute.checksums.sha256_file`).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        digest = _HASH_CACHE[key] = _sha256_uncached(p)
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
def _copy_file_url(url: str, output_file: str, pooch_obj: Any = None) -> None:
    """A pooch downloader for ``file://`` URLs (pooch has none): copy the local file."""
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), output_file)


def _downloader(url: str, timeout: float) -> Callable[..., Any]:
    """The pooch downloader for ``url`` (tests replace this function: no test touches the network)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "file":
        return _copy_file_url
    if scheme in ("http", "https"):
        return pooch.HTTPDownloader(progressbar=False, timeout=timeout)
    return pooch.downloaders.choose_downloader(url)  # ftp, sftp, doi; a ValueError names an unknown protocol


@contextlib.contextmanager
def _pooch_info_silenced() -> Iterator[None]:
    """pooch logs each download at INFO through its own stderr handler; this module logs it instead."""
    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


def fetch_url(
    url: str, dest: str | os.PathLike[str], *, sha256: str | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` atomically and check or record its sha256.

    The file is downloaded by :func:`pooch.retrieve` into a temporary folder beside ``dest`` (pooch checks the
    pinned hash before the file takes its name) and then moved onto ``dest``, so an existing ``dest`` is replaced
    only by a complete, verified download.

    Parameters
    ----------
    url : str
        Source: ``http``, ``https``, ``ftp`` or ``file://``.
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
    if not isinstance(dest, str | os.PathLike):
        raise TypeError(f"dest must be a str or path-like, got {type(dest).__name__}")
    dest = Path(dest)
    downloader = _downloader(url, timeout)
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s -> %s", url, dest)
    known_hash = None if sha256 is None else f"sha256:{sha256}"
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp, _pooch_info_silenced():
        try:
            got = pooch.retrieve(url, known_hash, fname=dest.name, path=tmp, downloader=downloader,
                                 progressbar=False)
        except ValueError as exc:  # pooch's hash check (the download is already deleted)
            raise ValueError(f"Checksum mismatch for {url} (downloaded to {dest}): expected sha256 {sha256}; "
                             f"{exc}") from exc
        os.replace(got, dest)
    side = _sidecar(dest)
    if sha256 is None:
        side.write_text(f"{sha256_file(dest)}  {dest.name}\n")
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
    os.replace(part, dest)
    actual = sha256_file(dest)
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
