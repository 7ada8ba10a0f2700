"""Real benchmark datasets: loaders, CSDI protocol helpers, a registry and downloads.

Loaders return plain numpy / pandas objects (no torch):

- :func:`load_physionet` (PhysioNet 2012, CSDI binning) with :func:`physionet_split`,
  :func:`holdout_mask`, :func:`zscore_stats`, :func:`physionet_task`;
- :func:`load_pm25` (36-station PM2.5) with :func:`pm25_windows`;
- :func:`load_beijing_multisite` (UCI, 12 stations);
- :func:`load_ett` (ETTh1, ETTh2, ETTm1);
- images (:mod:`tsimpute.datasets.images`): :func:`load_mnist`, :func:`load_fashion_mnist` (original idx
  files), :func:`load_digits` (scikit-learn's 8x8 digits, no file) and :func:`load_cifar10` (binary
  distribution, from a path you give).

Where files are looked for
--------------------------
Every loader takes ``data_dir`` and searches, in order: the argument; ``$TSIMPUTE_DATA_DIR``;
the user cache (:func:`tsimpute.cache.cache_dir`: ``$TSIMPUTE_CACHE_DIR``, else ``~/.cache/tsimpute`` on Linux);
``../shared/data`` from the working directory. The layout below a root is ``physionet2012/set-a.tar.gz``,
``pm25/SampleData/pm25_ground.txt``, ``beijing_multisite_air_quality/PRSA_Data_20130301-20170228.tar.gz``,
``ett/ETTh1.csv.gz``, ``mnist/train-images-idx3-ubyte.gz`` and so on. Files are checked against
pinned sha256 hashes (a mismatch raises ``ValueError``); a missing file raises ``FileNotFoundError``
listing the places searched and the official URL. ``download=True`` (or :func:`download_dataset`) fetches official files
into ``data_dir`` or the user cache.

A real subset of PhysioNet 2012 set-a (ODC-By 1.0) ships with the package, so
``load_physionet()`` works without any data folder (with a :class:`SampleDataWarning`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import beijing, ett, images, physionet, pm25
from ._locate import ENV_VAR, DatasetInfo, find_file, search_roots, user_cache_dir, verify_file
from .beijing import BEIJING_FEATURES, BEIJING_STATIONS, download_beijing_multisite, load_beijing_multisite
from .ett import ETT_COLUMNS, ETT_NAMES, download_ett, load_ett
from .images import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    ImageData,
    download_fashion_mnist,
    download_mnist,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)
from .physionet import (
    PHYSIONET_VARIABLES,
    SAMPLE_STAYS,
    PhysioNetData,
    SampleDataWarning,
    download_physionet,
    load_physionet,
)
from .physionet_protocol import PhysioNetTask, holdout_mask, physionet_split, physionet_task, zscore_stats
from .pm25 import PM25_TEST_MONTHS, PM25Data, PM25Windows, download_pm25, load_pm25, pm25_windows

__all__ = [
    "BEIJING_FEATURES",
    "BEIJING_STATIONS",
    "CIFAR10_CLASSES",
    "DATASETS",
    "ENV_VAR",
    "ETT_COLUMNS",
    "ETT_NAMES",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "PHYSIONET_VARIABLES",
    "PM25_TEST_MONTHS",
    "SAMPLE_STAYS",
    "DatasetInfo",
    "DatasetStatus",
    "ImageData",
    "PM25Data",
    "PM25Windows",
    "PhysioNetData",
    "PhysioNetTask",
    "SampleDataWarning",
    "dataset_status",
    "download_beijing_multisite",
    "download_dataset",
    "download_ett",
    "download_fashion_mnist",
    "download_mnist",
    "download_physionet",
    "download_pm25",
    "holdout_mask",
    "load_beijing_multisite",
    "load_cifar10",
    "load_digits",
    "load_ett",
    "load_fashion_mnist",
    "load_mnist",
    "load_physionet",
    "load_pm25",
    "physionet_split",
    "physionet_task",
    "pm25_windows",
    "search_roots",
    "user_cache_dir",
    "zscore_stats",
]

#: Registry: dataset name -> :class:`DatasetInfo` (description, shape, license, citation,
#: official URL, files with sha256, loader name, card path).
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (physionet.INFO, pm25.INFO, beijing.INFO, ett.INFO, images.MNIST_INFO, images.FASHION_MNIST_INFO)
}

_DOWNLOADERS = {
    "physionet2012": download_physionet,
    "pm25": download_pm25,
    "beijing_multisite": download_beijing_multisite,
    "ett": download_ett,
    "mnist": download_mnist,
    "fashion_mnist": download_fashion_mnist,
}


@dataclass(frozen=True)
class DatasetStatus:
    """One row of :func:`dataset_status`.

    Attributes
    ----------
    name : str
        Registry name.
    found : bool
        Every file of the dataset was found.
    location : pathlib.Path or None
        Folder of the first file found.
    license : str
        License of the data.
    size : int or None
        Total bytes of the files found (None when none is).
    files_found, files_total : int
        Counts of files.
    verified : bool or None
        Whether the found files passed their checksum (None unless ``verify=True``).
    embedded_sample : bool
        Whether a real sample ships with the package (usable without any file).
    """

    name: str
    found: bool
    location: Path | None
    license: str
    size: int | None
    files_found: int
    files_total: int
    verified: bool | None
    embedded_sample: bool


def dataset_status(
    data_dir: str | os.PathLike[str] | None = None, *, verify: bool = False
) -> list[DatasetStatus]:
    """Report, for each registered dataset, whether and where its files are found.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root searched first.
    verify : bool, default=False
        Also check the checksums (about 75 MB of hashing, cached per process).

    Returns
    -------
    list of DatasetStatus
        One row per dataset, in :data:`DATASETS` order (``dataclasses.asdict`` gives dicts).
    """
    rows = []
    for name, info in DATASETS.items():
        hits = [h for h in (find_file(info, f, data_dir) for f in info.files) if h is not None]
        verified = None
        if verify and hits:
            try:
                for path, variant in hits:
                    verify_file(path, variant)
                verified = True
            except ValueError:
                verified = False
        rows.append(
            DatasetStatus(
                name=name,
                found=len(hits) == len(info.files),
                location=hits[0][0].parent if hits else None,
                license=info.license,
                size=sum(p.stat().st_size for p, _ in hits) if hits else None,
                files_found=len(hits),
                files_total=len(info.files),
                verified=verified,
                embedded_sample=name == "physionet2012",
            )
        )
    return rows


def download_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> list[Path]:
    """Download a registered dataset from its official source.

    Files already found (and verified) in the search roots are not downloaded again unless
    ``force=True``.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    data_dir : str or path-like, optional
        Data root to write under; default ``~/.cache/tsimpute``.
    force : bool, default=False
        Download even when present.

    Returns
    -------
    list of pathlib.Path
        The dataset's files.
    """
    if name not in _DOWNLOADERS:
        raise ValueError(f"name must be one of {list(DATASETS)}, got {name!r}")
    out = _DOWNLOADERS[name](data_dir, force=force)
    return out if isinstance(out, list) else [out]
