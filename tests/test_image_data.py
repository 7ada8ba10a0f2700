"""Tests for the image loaders (tsimpute.datasets.images).

The idx and CIFAR-10 tests build their own small files; the MNIST / Fashion-MNIST tests of the real files find
them with :func:`tests._realdata.data_root` (skipped with a reason when absent, failed under
``TSIMPUTE_REQUIRE_DATA=1``). No test touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tsimpute import datasets as D
from tsimpute.datasets import _locate
from tsimpute.datasets import images as I

from ._realdata import data_root

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]




def _idx(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    magic = (0x08 << 8 | arr.ndim) if magic is None else magic
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes()


def _write(path: Path, data: bytes, *, gz: bool = True, sidecar: bool = True) -> Path:
    """Write a (gzipped) file; the sidecar ``.sha256`` accepts it the way a download is accepted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    if sidecar:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path


def _tiny_mnist(root: Path, folder: str = "mnist", n: int = 5, seed: int = 0, labels=None) -> tuple:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    _write(root / folder / "t10k-images-idx3-ubyte.gz", _idx(images))
    _write(root / folder / "t10k-labels-idx1-ubyte.gz", _idx(labels))
    return images, labels


# ----------------------------------------------------------------------------- idx parsing
def test_parse_idx_roundtrip():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    out = I.parse_idx(_idx(images), expected_magic=I.IDX_IMAGES_MAGIC)
    assert out.dtype == np.uint8 and out.shape == (3, 28, 28)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0] ^= 1  # a private, writable copy
    labels = I.parse_idx(_idx(np.array([7, 2, 1])), expected_magic=I.IDX_LABELS_MAGIC)
    assert labels.tolist() == [7, 2, 1]
    # big-endian multi-byte types are converted to native order
    ints = np.array([[1, -2], [70000, 3]], dtype=">i4")
    raw = struct.pack(">III", 0x0C02, 2, 2) + ints.tobytes()
    np.testing.assert_array_equal(I.parse_idx(raw), ints.astype(np.int32))


def test_parse_idx_rejects_bad_headers_and_sizes():
    good = _idx(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"images\.idx: idx magic number is 2049"):
        I.parse_idx(good[:3] + b"\x01" + good[4:], name="images.idx", expected_magic=2051)
    with pytest.raises(ValueError, match="f.idx: not an idx file"):
        I.parse_idx(b"\x12\x34\x08\x01" + good[4:], name="f.idx")
    with pytest.raises(ValueError, match="f.idx: not an idx file"):
        I.parse_idx(b"\x00\x00", name="f.idx")
    with pytest.raises(ValueError, match=r"f.idx: idx header gives shape \(2, 28, 28\).*1583 bytes"):
        I.parse_idx(good[:-1], name="f.idx")  # truncated data
    with pytest.raises(ValueError, match="but the file has"):
        I.parse_idx(good + b"\x00", name="f.idx")  # trailing bytes
    with pytest.raises(ValueError, match="header truncated"):
        I.parse_idx(good[:10], name="f.idx")


def test_read_idx_files(tmp_path):
    arr = np.arange(20, dtype=np.uint8).reshape(2, 10)
    raw = _write(tmp_path / "plain-idx2-ubyte", _idx(arr), gz=False, sidecar=False)
    gz = _write(tmp_path / "packed-idx2-ubyte.gz", _idx(arr), sidecar=False)
    np.testing.assert_array_equal(I.read_idx(raw), arr)
    np.testing.assert_array_equal(I.read_idx(gz), arr)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gz.read_bytes()[:-12])
    with pytest.raises(ValueError, match="broken.gz"):
        I.read_idx(broken)
    with pytest.raises(ValueError, match="plain-idx2-ubyte.*magic"):
        I.read_idx(raw, expected_magic=I.IDX_IMAGES_MAGIC)


# ----------------------------------------------------------------------------- MNIST loaders (own files)
def test_loader_reads_idx_files_under_data_dir(isolated):
    images, labels = _tiny_mnist(isolated)
    data = D.load_mnist("test", data_dir=isolated)
    assert isinstance(data, D.ImageData) and data.name == "mnist" and data.split == "test"
    assert data.images.dtype == np.uint8 and data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.classes == tuple("0123456789") and data.n_classes == 10
    x, y = data  # unpacks as (images, labels)
    assert x is data.images and y is data.labels
    # the uncompressed official files are accepted as well
    fash_images, _ = _tiny_mnist(isolated, "fashion_mnist", n=3, seed=2)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        gz = isolated / "fashion_mnist" / f"{name}.gz"
        _write(gz.with_suffix(""), gzip.decompress(gz.read_bytes()), gz=False)
        gz.unlink()
    fash = D.load_fashion_mnist("test", data_dir=isolated)
    np.testing.assert_array_equal(fash.images, fash_images)
    assert fash.classes[0] == "T-shirt/top" and fash.classes[9] == "Ankle boot"


def test_loader_rejects_inconsistent_files(isolated):
    _tiny_mnist(isolated, n=4)
    _write(isolated / "mnist" / "t10k-labels-idx1-ubyte.gz", _idx(np.array([1, 2, 3])))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: 3 labels for 4 images"):
        D.load_mnist("test", data_dir=isolated)
    _write(isolated / "mnist" / "t10k-labels-idx1-ubyte.gz", _idx(np.array([1, 2, 3, 10])))
    with pytest.raises(ValueError, match="label 10 out of range"):
        D.load_mnist("test", data_dir=isolated)
    _write(isolated / "mnist" / "t10k-labels-idx1-ubyte.gz", _idx(np.zeros((4, 28, 28), np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: idx magic number is 2051 .*expected 2049"):
        D.load_mnist("test", data_dir=isolated)
    _write(isolated / "mnist" / "t10k-labels-idx1-ubyte.gz", _idx(np.array([1, 2, 3, 4])))
    _write(isolated / "mnist" / "t10k-images-idx3-ubyte.gz", _idx(np.zeros((4, 8, 8), np.uint8)))
    with pytest.raises(ValueError, match="expected 28x28 images"):
        D.load_mnist("test", data_dir=isolated)


def test_checksum_is_checked(isolated):
    _tiny_mnist(isolated)
    (isolated / "mnist" / "t10k-images-idx3-ubyte.gz.sha256").unlink()  # no record of a download: pinned hash
    with pytest.raises(ValueError, match=r"Checksum mismatch for .*t10k-images-idx3-ubyte\.gz: expected sha256 8d42"):
        D.load_mnist("test", data_dir=isolated)


def test_not_found_lists_places_and_url(isolated):
    with pytest.raises(FileNotFoundError) as err:
        D.load_mnist("train", data_dir=isolated)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "Searched" in msg
    assert str(isolated / "mnist" / "train-images-idx3-ubyte.gz") in msg and "data_dir argument" in msg
    assert "user cache" in msg and "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in msg
    assert "tsimpute datasets --download mnist" in msg
    with pytest.raises(FileNotFoundError, match="raw.githubusercontent.com/zalandoresearch/fashion-mnist"):
        D.load_fashion_mnist("test", data_dir=isolated)


def test_bad_split():
    for call in (D.load_mnist, D.load_fashion_mnist, D.load_digits):
        with pytest.raises(ValueError, match="split"):
            call("validation")
    with pytest.raises(ValueError, match="split"):
        D.load_cifar10(".", split="valid")


def test_registry():
    for name, loader in (("mnist", D.load_mnist), ("fashion_mnist", D.load_fashion_mnist)):
        info = D.DATASETS[name]
        assert getattr(D, info.loader) is loader
        assert len(info.files) == 4 and info.license and info.citation
        for f in info.files:
            assert all(v.sha256 is not None and len(v.sha256) == 64 for v in f.variants)
            assert f.url.endswith(f.variants[0].relpath.split("/")[-1]) and f.size > 0


# ----------------------------------------------------------------------------- real MNIST / Fashion-MNIST
def test_mnist_real_files():
    root = data_root("mnist")
    test = D.load_mnist("test", data_dir=root)
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert test.images.max() == 255 and test.images.min() == 0
    train = D.load_mnist("train", data_dir=root)
    assert train.images.shape == (60000, 28, 28)
    assert np.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_fashion_mnist_real_files():
    root = data_root("fashion_mnist")
    for split, n in (("train", 60000), ("test", 10000)):
        data = D.load_fashion_mnist(split, data_dir=root)
        assert data.images.shape == (n, 28, 28) and data.images.dtype == np.uint8
        assert np.bincount(data.labels).tolist() == [n // 10] * 10
    assert data.labels[:5].tolist() == [9, 2, 1, 1, 6]


def test_download_is_checked_and_reused(isolated, monkeypatch):
    """download=True fetches the official files (served here from the real copies) into data_dir."""
    root = data_root("mnist")
    seen = []

    def fake_downloader(url, timeout):
        def download(url, output_file, pooch_obj=None):
            seen.append(url)
            _locate._copy_file_url((root / "mnist" / url.rsplit("/", 1)[-1]).as_uri(), output_file)

        return download

    monkeypatch.setattr(_locate, "_downloader", fake_downloader)
    data = D.load_mnist("test", data_dir=isolated, download=True)
    assert np.bincount(data.labels).tolist() == MNIST_TEST_COUNTS
    assert sorted(p.name for p in (isolated / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert len(seen) == 2 and all(u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in seen)
    assert D.download_mnist(isolated, splits=("test",)) == [
        isolated / "mnist" / "t10k-images-idx3-ubyte.gz",
        isolated / "mnist" / "t10k-labels-idx1-ubyte.gz",
    ]
    assert len(seen) == 2  # already there: nothing fetched again


# ----------------------------------------------------------------------------- 8x8 digits
def test_digits_split():
    train, test = D.load_digits("train"), D.load_digits("test")
    assert train.images.shape == (1438, 8, 8) and test.images.shape == (359, 8, 8)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.images.max() == 255 and train.images.min() == 0
    assert np.all(np.isin(train.images, np.rint(np.arange(17) * 255 / 16)))  # 0..16 rescaled
    assert np.bincount(test.labels).min() >= 35  # stratified: every class ~20%
    # disjoint and complete, compared by index (the set holds a few duplicate images)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    full = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    idx_train = I._digits_indices(bunch.target, "train")
    idx_test = I._digits_indices(bunch.target, "test")
    assert not set(idx_train) & set(idx_test) and len(set(idx_train) | set(idx_test)) == len(full)
    np.testing.assert_array_equal(train.images, full[idx_train])
    np.testing.assert_array_equal(test.labels, bunch.target[idx_test])
    again = D.load_digits("test")
    np.testing.assert_array_equal(again.images, test.images)
    np.testing.assert_array_equal(again.labels, test.labels)


# ----------------------------------------------------------------------------- CIFAR-10 (binary)
def _cifar_batch(n: int, seed: int) -> tuple[bytes, list]:
    """Records written plane by plane (R, G, B, each row-major 32x32), independently of the loader's reshape."""
    rng = np.random.default_rng(seed)
    records, planes = [], []
    for i in range(n):
        label = (seed + i) % 10
        r, g, b = (rng.integers(0, 256, size=(32, 32), dtype=np.uint8) for _ in range(3))
        records.append(bytes([label]) + r.tobytes() + g.tobytes() + b.tobytes())
        planes.append((label, r, g, b))
    return b"".join(records), planes


def _cifar_files(counts: dict[str, int]) -> tuple[dict[str, bytes], dict[str, list]]:
    data, planes = {}, {}
    for seed, (name, n) in enumerate(counts.items()):
        data[name], planes[name] = _cifar_batch(n, seed)
    return data, planes


COUNTS = {f"data_batch_{i}.bin": i % 3 + 1 for i in range(1, 6)} | {"test_batch.bin": 3}


def _write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in {"batches.meta.txt": b"airplane\nautomobile\n", **files}.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _check(data: D.ImageData, planes: dict[str, list], names: list[str]) -> None:
    expected = [p for name in names for p in planes[name]]
    assert data.images.shape == (len(expected), 3, 32, 32) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [p[0] for p in expected]
    for img, (_label, r, g, b) in zip(data.images, expected, strict=True):
        np.testing.assert_array_equal(img[0], r)
        np.testing.assert_array_equal(img[1], g)
        np.testing.assert_array_equal(img[2], b)


def test_cifar10_archive_and_folder(tmp_path):
    files, planes = _cifar_files(COUNTS)
    archive = _write_tar(tmp_path / "cifar-10-binary.tar.gz", files)
    train_names = [f"data_batch_{i}.bin" for i in range(1, 6)]
    train = D.load_cifar10(archive)
    _check(train, planes, train_names)
    assert train.classes[0] == "airplane" and train.classes[9] == "truck" and train.split == "train"
    # byte 1 + 32 * row + col of a record is the red pixel (row, col)
    assert train.images[0, 0, 2, 5] == files["data_batch_1.bin"][1 + 32 * 2 + 5]
    assert train.images[0, 2, 0, 0] == files["data_batch_1.bin"][1 + 2048]
    _check(D.load_cifar10(archive, split="test"), planes, ["test_batch.bin"])
    _check(D.load_cifar10(tmp_path, split="test"), planes, ["test_batch.bin"])  # folder holding the archive
    folder = tmp_path / "extracted" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    _check(D.load_cifar10(folder), planes, train_names)
    _check(D.load_cifar10(str(folder.parent), "test"), planes, ["test_batch.bin"])


def test_cifar10_errors(tmp_path):
    files, _ = _cifar_files(COUNTS)
    with pytest.raises(FileNotFoundError, match="nowhere.tar.gz"):
        D.load_cifar10(tmp_path / "nowhere.tar.gz")
    with pytest.raises(TypeError, match="path"):
        D.load_cifar10(3)
    bad = dict(files, **{"data_batch_3.bin": files["data_batch_3.bin"][:-1]})
    with pytest.raises(ValueError, match=r"data_batch_3\.bin: 3072 bytes is not a whole number .* 3073"):
        D.load_cifar10(_write_tar(tmp_path / "bad.tar.gz", bad))
    label = bytearray(files["test_batch.bin"])
    label[3073] = 10
    with pytest.raises(ValueError, match=r"test_batch\.bin: record 1 has label 10"):
        D.load_cifar10(_write_tar(tmp_path / "label.tar.gz", dict(files, **{"test_batch.bin": bytes(label)})), "test")
    missing = {k: v for k, v in files.items() if k != "data_batch_4.bin"}
    with pytest.raises(FileNotFoundError, match=r"data_batch_4\.bin not found in the archive .*missing\.tar\.gz"):
        D.load_cifar10(_write_tar(tmp_path / "missing.tar.gz", missing))
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(files["test_batch.bin"])
    with pytest.raises(FileNotFoundError, match=r"partial/data_batch_1\.bin"):
        D.load_cifar10(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds neither"):
        D.load_cifar10(tmp_path / "empty")
    not_tar = tmp_path / "junk.tar.gz"
    not_tar.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="junk.tar.gz: not a readable tar archive"):
        D.load_cifar10(not_tar)
    py = tmp_path / "py"
    (py / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(ValueError, match="pickle"):
        D.load_cifar10(py)
