"""Image datasets for diffusion generation and inpainting: MNIST, Fashion-MNIST, 8x8 digits, CIFAR-10.

Every loader returns an :class:`ImageData` (uint8 ``images``, int64 ``labels``, class names), which also unpacks
as ``images, labels = load_mnist()``.

- :func:`load_mnist` and :func:`load_fashion_mnist` read the original idx files
  (``train-images-idx3-ubyte.gz`` and so on) under ``<root>/mnist/`` and ``<root>/fashion_mnist/``, found like
  every other dataset file (see :mod:`tsimpute.datasets`) and checked against pinned sha256 hashes. The
  uncompressed files (``train-images-idx3-ubyte``) are accepted too, pinned by the hash of the official content.
- :func:`load_digits` needs no file: scikit-learn's embedded 8x8 digits with a fixed stratified split.
- :func:`load_cifar10` reads the CIFAR-10 *binary* distribution (``cifar-10-binary.tar.gz`` or its extracted
  folder ``cifar-10-batches-bin``) from a path you give; the Python (pickle) distribution is refused, as
  unpickling a file can run arbitrary code.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._locate import DataFile, DatasetInfo, FileVariant, download_root, fetch_url, find_file, locate, verify_file

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "DIGITS_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_INFO",
    "MNIST_CLASSES",
    "MNIST_INFO",
    "ImageData",
    "download_fashion_mnist",
    "download_mnist",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "parse_idx",
    "read_idx",
]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
DIGITS_CLASSES: tuple[str, ...] = MNIST_CLASSES
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
#: Official download of the CIFAR-10 binary distribution.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"

_SPLITS = ("train", "test")
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
# idx type code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True, eq=False)
class ImageData:
    """Images with their labels.

    Unpacks as ``images, labels = data``.

    Attributes
    ----------
    images : ndarray of uint8, shape (N, H, W) or (N, C, H, W)
        Pixel values 0..255; greyscale sets have no channel axis, CIFAR-10 has ``C=3`` (R, G, B).
    labels : ndarray of int64, shape (N,)
        Class indices into ``classes``.
    classes : tuple of str
        Class names.
    name : str
        Dataset name, e.g. ``"mnist"``.
    split : str
        ``"train"`` or ``"test"``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    split: str

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.images, self.labels))

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    return split


# ----------------------------------------------------------------------------- idx format
def parse_idx(data: bytes, *, name: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Parse the content of an (uncompressed) idx file.

    The format: a big-endian 32-bit magic number ``0x0000TTDD`` (type code ``TT``, ``DD`` dimensions), ``DD``
    big-endian 32-bit sizes, then the values in row-major order.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    name : str, default="<bytes>"
        Name used in error messages (the file).
    expected_magic : int, optional
        Required magic number, e.g. 2051 for images or 2049 for labels.

    Returns
    -------
    ndarray
        Native-endian array of the shape the header gives.

    Raises
    ------
    ValueError
        Naming ``name`` when the magic number is wrong or unknown or the size disagrees with the header.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an idx file ({len(data)} bytes, shorter than the 4-byte magic number)")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{name}: idx magic number is {magic} (0x{magic:08x}), expected {expected_magic}")
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{name}: not an idx file (magic number {magic}, 0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: idx header truncated ({len(data)} bytes, the header needs {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{name}: idx header gives shape {dims} ({expected} bytes with the header), "
            f"but the file has {len(data)} bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file, gzip-compressed or not (told apart by content, not by name).

    Parameters
    ----------
    path : str or path-like
        The file.
    expected_magic : int, optional
        Required magic number (2051 images, 2049 labels).

    Returns
    -------
    ndarray
        The array the file holds.

    Raises
    ------
    ValueError
        Naming the file when it is not a valid idx file or its gzip stream is damaged.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: damaged gzip stream ({exc})") from exc
    return parse_idx(raw, name=str(path), expected_magic=expected_magic)


# ----------------------------------------------------------------------------- MNIST / Fashion-MNIST
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
_IDX_NAMES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}
# key: (sha256 of the .gz, size of the .gz, sha256 of the uncompressed file)
_MNIST_HASHES = {
    "train-images": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        9912422,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        28881,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "test-images": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        1648877,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "test-labels": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        4542,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
_FASHION_HASHES = {
    "train-images": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        26421880,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        29515,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test-images": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        4422102,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test-labels": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        5148,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}


def _idx_files(folder: str, base_url: str, hashes: dict[str, tuple[str, int, str]]) -> dict[str, DataFile]:
    return {
        key: DataFile(
            key,
            (
                FileVariant(f"{folder}/{_IDX_NAMES[key]}.gz", gz),
                FileVariant(f"{folder}/{_IDX_NAMES[key]}", raw),
            ),
            f"{base_url}{_IDX_NAMES[key]}.gz",
            size,
        )
        for key, (gz, size, raw) in hashes.items()
    }


_MNIST_FILES = _idx_files("mnist", _MNIST_URL, _MNIST_HASHES)
_FASHION_FILES = _idx_files("fashion_mnist", _FASHION_URL, _FASHION_HASHES)

MNIST_INFO = DatasetInfo(
    name="mnist",
    title="MNIST handwritten digits",
    description=(
        "28x28 greyscale handwritten digits 0-9: 60000 training and 10000 test images, in the original idx "
        "files (uint8 pixels, 0 background, 255 ink)."
    ),
    shape="(60000, 28, 28) train, (10000, 28, 28) test, uint8",
    license="Commonly cited as CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J.C. Burges)",
    citation=(
        "LeCun Y, Bottou L, Bengio Y, Haffner P. Gradient-based learning applied to document recognition. "
        "Proceedings of the IEEE 86(11):2278-2324, 1998."
    ),
    url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    files=tuple(_MNIST_FILES.values()),
    loader="load_mnist",
    card="datasets/mnist.md",
    notes="Downloads fetch the idx .gz files from torchvision's mirror (ossci-datasets) of "
          "http://yann.lecun.com/exdb/mnist/, pinned by sha256.",
)
FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    title="Fashion-MNIST (Zalando)",
    description=(
        "28x28 greyscale images of 10 kinds of clothing (T-shirt/top ... Ankle boot): 60000 training and 10000 "
        "test images, 6000 and 1000 per class, in idx files laid out exactly like MNIST's."
    ),
    shape="(60000, 28, 28) train, (10000, 28, 28) test, uint8",
    license="MIT (c) 2017 Zalando SE",
    citation=(
        "Xiao H, Rasul K, Vollgraf R. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
        "Algorithms. arXiv:1708.07747, 2017."
    ),
    url="https://github.com/zalandoresearch/fashion-mnist",
    files=tuple(_FASHION_FILES.values()),
    loader="load_fashion_mnist",
    card="datasets/fashion_mnist.md",
    notes="Downloads fetch the idx .gz files from the authors' repository (zalandoresearch/fashion-mnist, "
          "data/fashion/), pinned by sha256.",
)


def _download_idx(
    info: DatasetInfo,
    files: dict[str, DataFile],
    data_dir: str | os.PathLike[str] | None,
    splits: tuple[str, ...],
    force: bool,
) -> list[Path]:
    out = []
    for split in splits:
        for part in ("images", "labels"):
            spec = files[f"{_check_split(split)}-{part}"]
            found = None if force else find_file(info, spec, data_dir)
            if found is not None:
                verify_file(*found)
                out.append(found[0])
                continue
            gz = spec.variants[0]
            out.append(fetch_url(spec.url, download_root(data_dir) / gz.relpath, sha256=gz.sha256))
    return out


def download_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, splits: tuple[str, ...] = _SPLITS, force: bool = False
) -> list[Path]:
    """Download the MNIST idx files (checked against their pinned sha256).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root (``<root>/mnist/``); default ``~/.cache/tsimpute``.
    splits : tuple of str, default=("train", "test")
        Which splits.
    force : bool, default=False
        Download even when a verified copy is already found.

    Returns
    -------
    list of pathlib.Path
        The files (downloaded or already present), images then labels for each split.
    """
    return _download_idx(MNIST_INFO, _MNIST_FILES, data_dir, splits, force)


def download_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, splits: tuple[str, ...] = _SPLITS, force: bool = False
) -> list[Path]:
    """Download the Fashion-MNIST idx files (checked against their pinned sha256).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Data root (``<root>/fashion_mnist/``); default ``~/.cache/tsimpute``.
    splits : tuple of str, default=("train", "test")
        Which splits.
    force : bool, default=False
        Download even when a verified copy is already found.

    Returns
    -------
    list of pathlib.Path
        The files (downloaded or already present), images then labels for each split.
    """
    return _download_idx(FASHION_MNIST_INFO, _FASHION_FILES, data_dir, splits, force)


def _load_idx_dataset(
    info: DatasetInfo,
    files: dict[str, DataFile],
    classes: tuple[str, ...],
    split: str,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
) -> ImageData:
    _check_split(split)
    paths = []
    for part in ("images", "labels"):
        spec = files[f"{split}-{part}"]
        try:
            path, _variant, _sha = locate(info, spec, data_dir)
        except FileNotFoundError:
            if not download:
                raise
            _download_idx(info, files, data_dir, (split,), force=False)
            path, _variant, _sha = locate(info, spec, data_dir)
        paths.append(path)
    images = read_idx(paths[0], expected_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(paths[1], expected_magic=IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{paths[0]}: expected 28x28 images, got shape {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{paths[1]}: {len(labels)} labels for {len(images)} images in {paths[0]}")
    if labels.size and int(labels.max()) >= len(classes):
        raise ValueError(f"{paths[1]}: label {int(labels.max())} out of range 0..{len(classes) - 1}")
    return ImageData(images, labels.astype(np.int64), classes, info.name, split)


def load_mnist(
    split: str = "train", *, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> ImageData:
    """Load MNIST from its original idx files.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        60000 training or 10000 test images.
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`); files are ``<root>/mnist/*-idx?-ubyte.gz``.
    download : bool, default=False
        Download the official files when not found.

    Returns
    -------
    ImageData
        ``images`` uint8 (N, 28, 28), ``labels`` int64 (N,), ``classes`` "0".."9".

    Raises
    ------
    FileNotFoundError
        Listing the places searched and the official URL.
    ValueError
        On a checksum mismatch or a malformed file (naming it).
    """
    return _load_idx_dataset(MNIST_INFO, _MNIST_FILES, MNIST_CLASSES, split, data_dir, download)


def load_fashion_mnist(
    split: str = "train", *, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> ImageData:
    """Load Fashion-MNIST from its original idx files.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        60000 training or 10000 test images.
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`); files are
        ``<root>/fashion_mnist/*-idx?-ubyte.gz``.
    download : bool, default=False
        Download the official files when not found.

    Returns
    -------
    ImageData
        ``images`` uint8 (N, 28, 28), ``labels`` int64 (N,), ``classes`` from :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    FileNotFoundError
        Listing the places searched and the official URL.
    ValueError
        On a checksum mismatch or a malformed file (naming it).
    """
    return _load_idx_dataset(FASHION_MNIST_INFO, _FASHION_FILES, FASHION_MNIST_CLASSES, split, data_dir, download)


# ----------------------------------------------------------------------------- 8x8 digits
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SEED = 0


def _digits_indices(labels: np.ndarray, split: str) -> np.ndarray:
    perm = np.random.default_rng(_DIGITS_SEED).permutation(len(labels))
    chosen = []
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        n_train = len(members) - int(round(_DIGITS_TEST_FRACTION * len(members)))
        chosen.append(members[:n_train] if split == "train" else members[n_train:])
    return np.sort(np.concatenate(chosen))


def load_digits(split: str = "train") -> ImageData:
    """Load scikit-learn's embedded 8x8 handwritten digits (1797 images, no file needed).

    Pixel values are rescaled from the original 0..16 range to uint8 0..255 (``round(v * 255 / 16)``). The
    split is fixed and stratified: within each class, in the order of one permutation drawn with seed 0, the
    first 80% go to ``"train"`` and the last 20% to ``"test"`` (1438 and 359 images); both keep the original
    order.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        Which part.

    Returns
    -------
    ImageData
        ``images`` uint8 (N, 8, 8), ``labels`` int64 (N,), ``classes`` "0".."9".
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    _check_split(split)
    bunch = _sklearn_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    idx = _digits_indices(labels, split)
    images = np.rint(np.asarray(bunch.images, dtype=np.float64)[idx] * (255.0 / 16.0)).astype(np.uint8)
    return ImageData(images, labels[idx], DIGITS_CLASSES, "digits", split)


# ----------------------------------------------------------------------------- CIFAR-10 (binary)
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_FOLDER = "cifar-10-batches-bin"
_CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
_CIFAR_BATCHES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
_PICKLE_HINT = (
    "this is the Python (pickle) distribution of CIFAR-10, which is not read (unpickling a file can run "
    f"arbitrary code); use the binary distribution {_CIFAR_ARCHIVE} from {CIFAR10_URL}"
)


def _decode_cifar(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise ValueError(
            f"{name}: {len(data)} bytes is not a whole number of CIFAR-10 records of {_CIFAR_RECORD} bytes "
            "(1 label byte + 3072 pixel bytes)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if int(labels.max()) > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{name}: record {bad} has label {int(labels[bad])}, CIFAR-10 labels are 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _cifar_from_folder(folder: Path, names: tuple[str, ...]) -> list[tuple[bytes, str]]:
    out = []
    for name in names:
        f = folder / name
        if not f.is_file():
            raise FileNotFoundError(f"CIFAR-10: batch file {f} not found")
        out.append((f.read_bytes(), str(f)))
    return out


def _cifar_from_archive(archive: Path, names: tuple[str, ...]) -> list[tuple[bytes, str]]:
    found: dict[str, tuple[bytes, str]] = {}
    try:
        with tarfile.open(archive, "r|*") as tf:  # one streaming pass, nothing written to disk
            for m in tf:
                if "cifar-10-batches-py" in m.name:
                    raise ValueError(f"{archive}: {_PICKLE_HINT}")
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base in names and base not in found:
                    fh = tf.extractfile(m)
                    if fh is not None:
                        found[base] = (fh.read(), f"{archive}:{m.name}")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ValueError(f"{archive}: not a readable tar archive ({exc})") from exc
    except OSError as exc:  # gzip.BadGzipFile and other read errors
        raise ValueError(f"{archive}: not a readable tar archive ({exc})") from exc
    missing = [n for n in names if n not in found]
    if missing:
        raise FileNotFoundError(f"CIFAR-10: member {missing[0]} not found in the archive {archive}")
    return [found[n] for n in names]


def load_cifar10(path: str | os.PathLike[str], split: str = "train") -> ImageData:
    """Load CIFAR-10 from its binary distribution, read directly from the archive or the extracted folder.

    Each batch file is a sequence of 3073-byte records: the label byte, then 1024 red, 1024 green and 1024 blue
    pixel bytes, each plane row-major 32x32. Archive members are read in memory (nothing is extracted).

    Parameters
    ----------
    path : str or path-like
        ``cifar-10-binary.tar.gz`` (from :data:`CIFAR10_URL`), its extracted ``cifar-10-batches-bin`` folder,
        or a folder that holds either.
    split : {"train", "test"}, default="train"
        ``data_batch_1.bin`` .. ``data_batch_5.bin`` (50000 images) or ``test_batch.bin`` (10000).

    Returns
    -------
    ImageData
        ``images`` uint8 (N, 3, 32, 32) in R, G, B order, ``labels`` int64 (N,), ``classes`` from
        :data:`CIFAR10_CLASSES`.

    Raises
    ------
    FileNotFoundError
        Naming the path (or the batch file or archive member) that is missing.
    ValueError
        Naming the file when a batch is not a whole number of records or holds a label above 9, or when
        ``path`` is the Python (pickle) distribution.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    names = _CIFAR_BATCHES[_check_split(split)]
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"CIFAR-10: {p} not found; give the path of {_CIFAR_ARCHIVE} (from {CIFAR10_URL}) "
            f"or of its extracted folder {_CIFAR_FOLDER}"
        )
    if p.is_dir():
        if any((p / n).is_file() for n in (*_CIFAR_BATCHES["train"], *_CIFAR_BATCHES["test"])):
            chunks = _cifar_from_folder(p, names)
        elif (p / _CIFAR_FOLDER).is_dir():
            chunks = _cifar_from_folder(p / _CIFAR_FOLDER, names)
        elif (p / _CIFAR_ARCHIVE).is_file():
            chunks = _cifar_from_archive(p / _CIFAR_ARCHIVE, names)
        elif (p / "cifar-10-batches-py").exists() or (p / "cifar-10-python.tar.gz").exists() or (
            p / "data_batch_1"
        ).is_file():
            raise ValueError(f"{p}: {_PICKLE_HINT}")
        else:
            raise FileNotFoundError(
                f"CIFAR-10: {p} holds neither the batch files ({', '.join(names)}), nor {_CIFAR_FOLDER}/, "
                f"nor {_CIFAR_ARCHIVE} (download it from {CIFAR10_URL})"
            )
    else:
        chunks = _cifar_from_archive(p, names)
    decoded = [_decode_cifar(data, name) for data, name in chunks]
    images = np.concatenate([d[0] for d in decoded])
    labels = np.concatenate([d[1] for d in decoded])
    return ImageData(images, labels, CIFAR10_CLASSES, "cifar10", split)
