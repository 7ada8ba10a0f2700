"""Tests for tsimpute.datasets.

Tests of the real files find them with :func:`tests._realdata.data_root` (skipped with a reason when no data root
has them, failed instead under ``TSIMPUTE_REQUIRE_DATA=1``, as in CI). The search, checksum and download tests
build their own small files and pass without any real data. No test touches the network: downloads are served
from local files (``file://`` URLs, or a replaced downloader for the official URLs).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickletools
import tarfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsimpute import datasets as D
from tsimpute.datasets import _locate
from tsimpute.datasets import physionet as P

from ._realdata import data_root


@pytest.fixture(scope="module")
def seta() -> D.PhysioNetData:
    """The real set-a, parsed once for the module (no disk cache)."""
    return D.load_physionet("set-a", source="full", cache=False, data_dir=data_root("physionet2012"))


@pytest.fixture(scope="module")
def pm25() -> D.PM25Data:
    return D.load_pm25(data_dir=data_root("pm25"))


def _tiny_set_a(path: Path, records: dict[int, list[str]] | None = None) -> Path:
    """A set-a archive in the official layout with a few short records (not the real data)."""
    records = records or {
        900001: ["00:00,RecordID,900001", "00:00,Age,54", "00:07,HR,73", "00:37,HR,77", "01:10,Temp,35.6"],
        900002: ["00:00,RecordID,900002", "02:00,Na,139", "47:59,HR,88"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for rid, lines in records.items():
            data = ("Time,Parameter,Value\n" + "\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(f"set-a/{rid}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path




@pytest.fixture
def serve(monkeypatch):
    """Replace the downloader: URL -> local file (copied as from its file:// URL); returns the mapping to fill."""
    routes: dict[str, Path] = {}
    seen: list[str] = []

    def fake_downloader(url, timeout):
        def download(url, output_file, pooch_obj=None):
            seen.append(url)
            if url not in routes:
                raise AssertionError(f"unexpected download of {url}")
            _locate._copy_file_url(routes[url].as_uri(), output_file)

        return download

    monkeypatch.setattr(_locate, "_downloader", fake_downloader)
    routes["__seen__"] = seen  # type: ignore[assignment]
    return routes


# ----------------------------------------------------------------------------- PhysioNet
def test_physionet_shape_and_missing_rate(seta):
    assert seta.values.shape == (4000, 48, 35)
    assert seta.values.dtype == np.float64
    assert seta.variables == D.PHYSIONET_VARIABLES and len(set(seta.variables)) == 35
    assert abs(seta.missing_rate - 0.805) <= 0.005
    assert seta.record_ids[0] == 132539 and seta.record_ids[-1] == 142673
    assert np.all(np.diff(seta.record_ids) > 0)
    assert seta.source == "full" and seta.path.name == "set-a.tar.gz"
    # the 3 descriptor-only stays have no time series at all
    empty = seta.record_ids[~seta.observed_mask.any(axis=(1, 2))]
    assert sorted(empty.tolist()) == [140501, 140936, 141264]
    # 132539.txt hour 0: "00:07,HR,73", "00:07,Temp,35.1", "00:37,HR,77", "00:37,Temp,35.6"
    assert seta.values[0, 0, D.PHYSIONET_VARIABLES.index("HR")] == 77.0  # the last value wins
    assert seta.values[0, 0, D.PHYSIONET_VARIABLES.index("Temp")] == 35.6


def _csdi_parse(text: str) -> np.ndarray:
    """CSDI's parse_id / parse_data (dataset_physio.py), on a file's text, with pandas."""
    data = pd.read_csv(io.StringIO(text))
    data["Time"] = data["Time"].apply(lambda x: int(x.split(":")[0]))
    rows = []
    for h in range(48):
        x = data[data["Time"] == h].set_index("Parameter").to_dict()["Value"]
        rows.append([x.get(attr, np.nan) for attr in D.PHYSIONET_VARIABLES])
    return np.array(rows, dtype=np.float64)


def test_physionet_matches_csdi_parser(seta):
    negative = np.flatnonzero((np.nan_to_num(seta.values) < 0).any(axis=(1, 2)))[:5]
    picks = sorted({*range(0, 4000, 100), *negative.tolist(), int(np.searchsorted(seta.record_ids, 140501))})
    wanted = {f"{seta.record_ids[i]}.txt": i for i in picks}
    with tarfile.open(seta.path, "r:gz") as tf:
        for member in tf:
            name = member.name.rsplit("/", 1)[-1]
            if name in wanted:
                text = tf.extractfile(member).read().decode()
                np.testing.assert_array_equal(_csdi_parse(text), seta.values[wanted.pop(name)])
    assert not wanted


def test_embedded_sample_equals_first_stays(seta):
    sample = D.load_physionet(source="sample")
    assert sample.source == "sample" and sample.values.shape == (D.SAMPLE_STAYS, 48, 35)
    np.testing.assert_array_equal(sample.record_ids, seta.record_ids[: D.SAMPLE_STAYS])
    np.testing.assert_array_equal(sample.values, seta.values[: D.SAMPLE_STAYS])
    assert P.SAMPLE_PATH.stat().st_size < 1_000_000


def test_embedded_sample_is_reproducible(seta, tmp_path):
    out = tmp_path / "sample.npz"
    P.save_npz_deterministic(
        out, P._pack(seta.values[: D.SAMPLE_STAYS], seta.record_ids[: D.SAMPLE_STAYS]), compress=True
    )
    assert out.read_bytes() == P.SAMPLE_PATH.read_bytes()


def test_disk_cache_roundtrip(seta, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_MEMORY", type(P._MEMORY)())
    monkeypatch.setattr(
        P, "parse_physionet_archive", lambda path: (seta.values.copy(), seta.record_ids.copy())
    )
    first = D.load_physionet(source="full", cache_dir=tmp_path, data_dir=seta.path.parents[1])
    files = list(tmp_path.glob("physionet2012_set-a_*_v1.npz"))
    assert len(files) == 1 and _locate.sha256_file(seta.path)[:16] in files[0].name
    monkeypatch.setattr(P, "_MEMORY", type(P._MEMORY)())
    monkeypatch.setattr(P, "parse_physionet_archive", lambda path: pytest.fail("cache not used"))
    second = D.load_physionet(source="full", cache_dir=tmp_path, data_dir=seta.path.parents[1])
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(second.values, seta.values)


def test_returned_arrays_are_private(seta):
    a = D.load_physionet(source="full", cache=False, data_dir=seta.path.parents[1])
    a.values[:] = 0.0
    b = D.load_physionet(source="full", cache=False, data_dir=seta.path.parents[1])
    np.testing.assert_array_equal(b.values, seta.values)


def test_physionet_source_fallbacks(isolated):
    with pytest.warns(D.SampleDataWarning, match="embedded real sample"):
        data = D.load_physionet()
    assert data.source == "sample"
    with pytest.raises(FileNotFoundError) as err:
        D.load_physionet(source="full", data_dir=isolated)
    msg = str(err.value)
    assert str(isolated / "physionet2012" / "set-a.tar.gz") in msg
    assert "user cache" in msg and "working directory" in msg
    assert "beside the repository" not in msg  # the installed package knows nothing of a checkout
    assert "https://physionet.org/files/challenge-2012/1.0.0/set-a.tar.gz" in msg
    assert "download=True" in msg and "tsimpute datasets --download physionet2012" in msg
    with pytest.raises(FileNotFoundError):
        D.load_physionet("set-b")  # no sample of set-b


def test_checksum_mismatch(isolated):
    bad = isolated / "physionet2012" / "set-a.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"not the archive")
    actual = hashlib.sha256(b"not the archive").hexdigest()
    with pytest.raises(ValueError) as err:
        D.load_physionet(data_dir=isolated)
    msg = str(err.value)
    assert str(bad) in msg and actual in msg and P.INFO.files[0].variants[0].sha256 in msg


def test_hash_cache(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    h = _locate.sha256_file(f)
    assert h == hashlib.sha256(b"abc").hexdigest()
    assert any(k[0] == str(f.resolve()) for k in _locate._HASH_CACHE)
    f.write_bytes(b"abcd")  # new size -> new key -> rehashed
    assert _locate.sha256_file(f) == hashlib.sha256(b"abcd").hexdigest()


def test_search_order(isolated, tmp_path, monkeypatch):
    env_root = tmp_path / "env"
    for root in (isolated, env_root):  # stand-in files, accepted through their download sidecar
        f = root / "ett" / "ETTh1.csv.gz"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"stand-in for " + str(root).encode())
        f.with_name(f.name + ".sha256").write_text(f"{_locate.sha256_file(f)}  {f.name}\n")
    monkeypatch.setenv(_locate.ENV_VAR, str(env_root))
    roots = [r for r, _ in _locate.search_roots(isolated)]
    assert roots[0] == isolated and roots[1] == env_root
    assert roots[2] == Path.home() / ".cache" / "tsimpute"
    path, _, _ = _locate.locate(D.DATASETS["ett"], D.DATASETS["ett"].files[0], isolated)
    assert path == isolated / "ett" / "ETTh1.csv.gz"
    path, _, _ = _locate.locate(D.DATASETS["ett"], D.DATASETS["ett"].files[0], None)
    assert path == env_root / "ett" / "ETTh1.csv.gz"
    with pytest.raises(TypeError, match="data_dir"):
        D.load_ett(data_dir=3)


# ----------------------------------------------------------------------------- CSDI protocol
def test_physionet_split_matches_csdi():
    train, valid, test = D.physionet_split(4000, fold=0, seed=1)
    assert (len(train), len(valid), len(test)) == (2800, 400, 800)
    assert len(np.unique(np.concatenate([train, valid, test]))) == 4000
    # CSDI's get_dataloader, with the global RNG (state restored afterwards)
    state = np.random.get_state()
    try:
        for nfold in range(5):
            indlist = np.arange(4000)
            np.random.seed(1)
            np.random.shuffle(indlist)
            start, end = int(nfold * 0.2 * 4000), int((nfold + 1) * 0.2 * 4000)
            test_index = indlist[start:end]
            remain_index = np.delete(indlist, np.arange(start, end))
            np.random.seed(1)
            np.random.shuffle(remain_index)
            ours = D.physionet_split(4000, fold=nfold, seed=1)
            np.testing.assert_array_equal(ours[0], remain_index[:2800])
            np.testing.assert_array_equal(ours[1], remain_index[2800:])
            np.testing.assert_array_equal(ours[2], test_index)
    finally:
        np.random.set_state(state)
    tests = np.concatenate([D.physionet_split(4000, fold=f)[2] for f in range(5)])
    assert sorted(tests.tolist()) == list(range(4000))
    for bad in ({"fold": 5}, {"n_folds": 1}, {"train_frac": 0.9}):
        with pytest.raises(ValueError):
            D.physionet_split(4000, **bad)
    with pytest.raises(TypeError):
        D.physionet_split(4000.0)


def test_holdout_mask_matches_csdi(seta):
    obs = seta.observed_mask[:300]
    ours = D.holdout_mask(obs, 0.1, seed=1)
    state = np.random.get_state()
    try:  # CSDI's Physio_Dataset: np.random.seed(seed) once, then per stay in RecordID order
        np.random.seed(1)
        for i in range(len(obs)):
            masks = obs[i].reshape(-1).copy()
            obs_indices = np.where(masks)[0].tolist()
            miss = np.random.choice(obs_indices, int(len(obs_indices) * 0.1), replace=False)
            expected = np.zeros_like(masks)
            expected[miss] = True
            np.testing.assert_array_equal(ours[i].reshape(-1), expected)
    finally:
        np.random.set_state(state)
    for ratio in (0.5, 0.9):
        m = D.holdout_mask(obs, ratio, seed=np.random.default_rng(0))
        assert not (m & ~obs).any()
        np.testing.assert_array_equal(m.sum(axis=(1, 2)), (obs.sum(axis=(1, 2)) * ratio).astype(int))
    with pytest.raises(ValueError):
        D.holdout_mask(obs[0], 0.1)
    with pytest.raises(ValueError):
        D.holdout_mask(obs, 1.5)
    with pytest.raises(TypeError):
        D.holdout_mask(obs.astype(float), 0.1)


def test_physionet_task_uses_train_statistics(seta):
    task = D.physionet_task(seta, missing_ratio=0.1, fold=0, seed=1)
    assert not (task.eval_mask & ~task.observed_mask).any()
    np.testing.assert_array_equal(task.cond_mask, task.observed_mask & ~task.eval_mask)
    flat = seta.values[task.train_index].reshape(-1, 35)
    np.testing.assert_allclose(task.mean, np.nanmean(flat, axis=0))
    np.testing.assert_allclose(task.std, np.nanstd(flat, axis=0))
    all_mean = np.nanmean(seta.values.reshape(-1, 35), axis=0)
    assert not np.allclose(task.mean, all_mean)  # not CSDI's all-stay statistics
    assert abs(task.eval_mask.sum() / task.observed_mask.sum() - 0.1) < 0.01


# ----------------------------------------------------------------------------- PM2.5
def _pickled_float_arrays(path: Path) -> list[np.ndarray]:
    """Raw float64 payloads of pm25_meanstd.pk, read from the opcodes without unpickling."""
    out = []
    for op, arg, _pos in pickletools.genops(path.read_bytes()):
        if op.name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8") and len(arg) == 36 * 8:
            out.append(np.frombuffer(arg, dtype="<f8"))
    return out


def test_pm25_tables(pm25):
    g, m = pm25.ground, pm25.missing
    assert g.shape == (8759, 36) and m.shape == (8759, 36)
    assert isinstance(g.index, pd.DatetimeIndex)
    assert g.index[0] == pd.Timestamp("2014-05-01 01:00") and g.index[-1] == pd.Timestamp("2015-04-30 23:00")
    assert round(float(g.isna().to_numpy().mean()) * 100, 2) == 13.25
    present = m.notna().to_numpy()
    assert not (present & g.isna().to_numpy()).any()  # the missing file only removes values
    np.testing.assert_array_equal(m.to_numpy()[present], g.to_numpy()[present])
    np.testing.assert_array_equal(pm25.eval_mask.to_numpy(), g.notna().to_numpy() & ~present)
    assert pm25.latlng.index.tolist() == list(g.columns)


def test_pm25_statistics_match_csdi_pickle(pm25):
    mean, std = _pickled_float_arrays(data_root("pm25") / "pm25" / "pm25_meanstd.pk")
    np.testing.assert_allclose(pm25.mean.to_numpy(), mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pm25.std.to_numpy(), std, rtol=0, atol=1e-9)


def test_pm25_windows_follow_csdi(pm25):
    g = pm25.ground
    test = D.pm25_windows("test", data=pm25)
    # CSDI: per test month, starts 0, 36, ... plus a last window at len-36 with cut 36 - len % 36
    starts, cuts = [], []
    for month in (3, 6, 9, 12):
        times = g.index[g.index.month == month]
        n = len(times)
        pos = list(range(0, 36 * (n // 36), 36))
        starts += [times[p] for p in pos]
        cuts += [0] * len(pos)
        if n % 36:
            starts.append(times[n - 36])
            cuts.append(36 - n % 36)
    assert test.values.shape == (len(starts), 36, 36) == (82, 36, 36)
    np.testing.assert_array_equal(pd.DatetimeIndex(test.start), pd.DatetimeIndex(starts))
    np.testing.assert_array_equal(test.cut_length, cuts)
    i = int(np.flatnonzero(test.cut_length)[0])
    assert not test.eval_mask[i, : test.cut_length[i]].any()
    # every test evaluation target counted exactly once
    test_months = g.index.month.isin([3, 6, 9, 12])
    assert test.eval_mask.sum() == pm25.eval_mask.to_numpy()[test_months].sum()

    train = D.pm25_windows("train", data=pm25, valid_index=0)
    months = [2, 4, 5, 7, 8, 10, 11]
    assert len(train.values) == sum(int((g.index.month == mo).sum()) - 35 for mo in months)
    k = 1234
    loc = g.index.get_loc(pd.Timestamp(train.start[k]))
    np.testing.assert_array_equal(train.values[k], g.to_numpy()[loc : loc + 36])
    assert not (train.eval_mask & ~train.observed_mask).any()
    # CSDI's hist pairing: a running cyclic pointer over windows of months 2, 5, 8, 11
    flags = pd.DatetimeIndex(train.start).month.isin([2, 5, 8, 11])
    ind, expected = -1, []
    for _ in range(len(flags)):
        while True:
            ind = (ind + 1) % len(flags)
            if flags[ind]:
                expected.append(ind)
                break
    np.testing.assert_array_equal(train.hist_index, expected)

    valid = D.pm25_windows("valid", data=pm25)
    assert set(pd.DatetimeIndex(valid.start).month) == {1} and valid.hist_index is None
    z = D.pm25_windows("valid", data=pm25, normalize=True)
    np.testing.assert_allclose(z.values, (valid.values - pm25.mean.to_numpy()) / pm25.std.to_numpy())
    with pytest.raises(ValueError, match="split"):
        D.pm25_windows("dev", data=pm25)
    with pytest.raises(ValueError, match="valid_index"):
        D.pm25_windows("train", data=pm25, valid_index=8)


# ----------------------------------------------------------------------------- Beijing, ETT
def test_beijing_multisite():
    frames = D.load_beijing_multisite(data_dir=data_root("beijing_multisite"))
    assert list(frames) == list(D.BEIJING_STATIONS)
    total = sum(int(f.isna().to_numpy().sum()) for f in frames.values())
    assert round(total / (12 * 35064 * 11) * 100, 2) == 1.56
    dongsi = D.load_beijing_multisite("Dongsi", data_dir=data_root("beijing_multisite"))
    pd.testing.assert_frame_equal(dongsi, frames["Dongsi"])
    assert dongsi.shape == (35064, 11) and tuple(dongsi.columns) == D.BEIJING_FEATURES
    assert dongsi.index[0] == pd.Timestamp("2013-03-01 00:00") and dongsi.index[-1] == pd.Timestamp(
        "2017-02-28 23:00"
    )
    assert (dongsi.dtypes == np.float64).all()
    assert int(sum(f["PM2.5"].isna().sum() for f in frames.values())) == 8739
    long = D.load_beijing_multisite(["Dongsi", "Tiantan"], layout="long", data_dir=data_root("beijing_multisite"))
    assert long.index.names == ["station", "datetime"] and len(long) == 2 * 35064
    with pytest.raises(ValueError, match="stations"):
        D.load_beijing_multisite("Paris")
    with pytest.raises(ValueError, match="layout"):
        D.load_beijing_multisite(["Dongsi"], layout="wide")


@pytest.mark.parametrize("name,rows", [("ETTh1", 17420), ("ETTh2", 17420), ("ETTm1", 69680)])
def test_ett(name, rows):
    df = D.load_ett(name, data_dir=data_root("ett"))
    assert df.shape == (rows, 7) and tuple(df.columns) == D.ETT_COLUMNS
    assert df.index[0] == pd.Timestamp("2016-07-01 00:00") and df.index.is_monotonic_increasing
    assert not df.isna().to_numpy().any()


def test_ett_bad_name():
    with pytest.raises(ValueError, match="ETTh1"):
        D.load_ett("ETTh3")


# ----------------------------------------------------------------------------- downloads (offline)
def test_fetch_url_file_scheme(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    out = _locate.fetch_url(src.as_uri(), tmp_path / "a" / "dst.bin", sha256=good)
    assert out.read_bytes() == b"payload" and not (tmp_path / "a" / "dst.bin.sha256").exists()
    unpinned = _locate.fetch_url(src.as_uri(), tmp_path / "b" / "dst.bin")
    assert (tmp_path / "b" / "dst.bin.sha256").read_text().split()[0] == good
    assert unpinned.read_bytes() == b"payload"
    with pytest.raises(ValueError, match="Checksum mismatch"):
        _locate.fetch_url(src.as_uri(), tmp_path / "c" / "dst.bin", sha256="0" * 64)
    assert list((tmp_path / "c").iterdir()) == []


def test_fetch_url_replaces_only_with_a_verified_download_and_prints_nothing(tmp_path, capfd):
    src = tmp_path / "src.bin"
    src.write_bytes(b"new payload")
    dest = tmp_path / "d" / "dst.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        _locate.fetch_url(src.as_uri(), dest, sha256="0" * 64)
    assert dest.read_bytes() == b"old" and sorted(p.name for p in dest.parent.iterdir()) == ["dst.bin"]
    _locate.fetch_url(src.as_uri(), dest)  # an existing file is downloaded again (force=True relies on it)
    assert dest.read_bytes() == b"new payload"
    assert dest.with_name("dst.bin.sha256").read_text().split()[0] == hashlib.sha256(b"new payload").hexdigest()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # library code logs, it does not print
    with pytest.raises(ValueError, match="gopher"):
        _locate.fetch_url("gopher://example.org/x", tmp_path / "x")
    with pytest.raises(TypeError, match="dest"):
        _locate.fetch_url(src.as_uri(), 3)


def test_sha256_helper_and_one_cache_folder(tmp_path, monkeypatch):
    from tsimpute.cache import CACHE_ENV_VAR, cache_dir
    from tsimpute.checksums import sha256_file
    from tsimpute.models import cpu_kernels

    f = tmp_path / "x.bin"
    f.write_bytes(b"x" * 3_000_000)
    assert sha256_file(f) == sha256_file(str(f)) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    with pytest.raises(TypeError, match="path"):
        sha256_file(3)
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing.bin")
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "tsimpute"  # platformdirs' user cache folder (Linux layout)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "mine"))
    assert _locate.user_cache_dir() == cache_dir() == tmp_path / "mine"
    assert cpu_kernels.cache_dir() == tmp_path / "mine" / "kernels"
    assert (tmp_path / "mine", "user cache") in _locate.search_roots()


def test_download_ett_pinned(isolated, serve, tmp_path):
    real = data_root("ett")
    csv = tmp_path / "ETTh1.csv"
    csv.write_bytes(gzip.decompress((real / "ett" / "ETTh1.csv.gz").read_bytes()))
    serve[D.DATASETS["ett"].files[0].url] = csv
    df = D.load_ett("ETTh1", data_dir=isolated, download=True)
    assert (isolated / "ett" / "ETTh1.csv").is_file() and df.shape == (17420, 7)
    pd.testing.assert_frame_equal(df, D.load_ett("ETTh1", data_dir=real))
    csv.write_bytes(csv.read_bytes()[:-10])  # a corrupted official file is refused
    with pytest.raises(ValueError, match="Checksum mismatch"):
        D.download_ett(tmp_path / "other", names=("ETTh1",))
    assert not (tmp_path / "other" / "ett" / "ETTh1.csv").exists()


def test_download_physionet_unpinned(isolated, serve, tmp_path):
    url = "https://physionet.org/files/challenge-2012/1.0.0/set-a.tar.gz"
    serve[url] = _tiny_set_a(tmp_path / "served" / "set-a.tar.gz")
    paths = D.download_physionet(files=("set-a",))  # default: the user cache
    assert paths == [Path.home() / ".cache" / "tsimpute" / "physionet2012" / "set-a.tar.gz"]
    assert paths[0].with_name("set-a.tar.gz.sha256").is_file()
    data = D.load_physionet(source="full", cache=False)
    assert data.path == paths[0] and data.values.shape == (2, 48, 35)
    assert data.record_ids.tolist() == [900001, 900002]
    hr = D.PHYSIONET_VARIABLES.index("HR")
    assert data.values[0, 0, hr] == 77.0 and data.values[1, 47, hr] == 88.0  # the last value of an hour wins
    assert D.download_physionet(files=("set-a",)) == paths  # found: no second download
    assert serve["__seen__"] == [url]
    with pytest.raises(ValueError, match="files"):
        D.download_physionet(files=("set-c",))


def test_sidecar_detects_changes(isolated, tmp_path):
    src = _tiny_set_a(tmp_path / "official.tar.gz")  # not the pinned bytes (like the official archive)
    dest = isolated / "physionet2012" / "set-a.tar.gz"
    _locate.fetch_url(src.as_uri(), dest)
    spec = P.INFO.files[0]
    path, _variant, sha = _locate.locate(P.INFO, spec, isolated)
    assert path == dest and sha != spec.variants[0].sha256
    with open(dest, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ValueError, match="recorded at download"):
        D.load_physionet(source="full", data_dir=isolated)
    dest.with_name("set-a.tar.gz.sha256").unlink()
    with pytest.raises(ValueError, match="expected sha256"):
        D.load_physionet(source="full", data_dir=isolated)


def test_download_pm25_from_zip(isolated, serve, tmp_path):
    z = tmp_path / "STMVL-Release.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name in ("pm25_ground.txt", "pm25_missing.txt", "pm25_latlng.txt"):
            zf.write(data_root("pm25") / "pm25" / "SampleData" / name, f"Code/STMVL/SampleData/{name}")
        zf.writestr("Code/STMVL/readme.txt", "other content")
    serve[D.DATASETS["pm25"].files[0].url] = z
    data = D.load_pm25(data_dir=isolated, download=True)
    assert data.ground.shape == (8759, 36)
    assert sorted(p.name for p in (isolated / "pm25" / "SampleData").iterdir()) == [
        "pm25_ground.txt",
        "pm25_latlng.txt",
        "pm25_missing.txt",
    ]
    assert not (isolated / "pm25" / "STMVL-Release.zip").exists()


def _uci_zip(dest: Path, modify: str | None = None) -> Path:
    """The UCI layout: an outer zip holding PRSA2017_Data_20130301-20170228.zip."""
    inner = io.BytesIO()
    tar = data_root("beijing_multisite") / "beijing_multisite_air_quality" / "PRSA_Data_20130301-20170228.tar.gz"
    with tarfile.open(tar) as tf, zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as zin:
        for member in tf:
            if member.isfile():
                data = tf.extractfile(member).read()
                if modify and modify in member.name:
                    data = data.replace(b"Dongsi", b"Dongsi ", 1)
                zin.writestr(member.name, data)
    with zipfile.ZipFile(dest, "w") as zout:
        zout.writestr("PRSA2017_Data_20130301-20170228.zip", inner.getvalue())
    return dest


def test_download_and_read_uci_zip(isolated, serve, tmp_path):
    serve[D.DATASETS["beijing_multisite"].files[0].url] = _uci_zip(tmp_path / "uci.zip")
    frames = D.load_beijing_multisite(["Dongsi", "Shunyi"], data_dir=isolated, download=True)
    ref = D.load_beijing_multisite(["Dongsi", "Shunyi"], data_dir=data_root("beijing_multisite"))
    for s in ("Dongsi", "Shunyi"):
        pd.testing.assert_frame_equal(frames[s], ref[s])
    odd = tmp_path / "odd" / "beijing_multisite_air_quality" / "beijing+multi+site+air+quality+data.zip"
    odd.parent.mkdir(parents=True)
    _uci_zip(odd, modify="Dongsi")
    with pytest.warns(UserWarning, match="differs from the pinned copy"):
        D.load_beijing_multisite("Dongsi", data_dir=tmp_path / "odd")


def test_not_found_for_every_loader(isolated):
    for call in (D.load_pm25, D.load_beijing_multisite, D.load_ett):
        with pytest.raises(FileNotFoundError, match="Searched"):
            call(data_dir=isolated)


# ----------------------------------------------------------------------------- registry
def test_registry_and_status(isolated, monkeypatch):
    assert list(D.DATASETS) == ["physionet2012", "pm25", "beijing_multisite", "ett", "mnist", "fashion_mnist"]
    for info in D.DATASETS.values():
        assert info.license and info.citation and info.url.startswith("https://")
        assert (Path(__file__).resolve().parents[1] / info.card).is_file()
        for f in info.files:
            assert f.url.startswith("https://") and f.size > 0
            pinned = [v.sha256 for v in f.variants if v.sha256 is not None]
            assert pinned and all(len(h) == 64 for h in pinned)
    rows = D.dataset_status(isolated)
    assert [r.found for r in rows] == [False] * 6 and rows[0].embedded_sample
    assert set(asdict(rows[0])) >= {"name", "found", "location", "license", "size"}
    with pytest.raises(ValueError, match="name"):
        D.download_dataset("cifar10")


def test_status_of_the_real_files(isolated, monkeypatch):
    roots = {name: data_root(name) for name in D.DATASETS}
    monkeypatch.setenv(_locate.ENV_VAR, os.pathsep.join(str(r) for r in dict.fromkeys(roots.values())))
    rows = D.dataset_status(verify=True)
    assert all(r.found and r.verified for r in rows)
    assert rows[0].location == roots["physionet2012"] / "physionet2012" and rows[0].size == 13280443
    ett = roots["ett"]
    assert D.download_dataset("ett") == [ett / "ett" / f"{n}.csv.gz" for n in D.ETT_NAMES]  # already there


def test_bad_arguments():
    with pytest.raises(ValueError, match="set_name"):
        D.load_physionet("set-c")
    with pytest.raises(ValueError, match="source"):
        D.load_physionet(source="web")
    with pytest.raises(ValueError, match="set-a"):
        D.load_physionet("set-b", source="sample")
    with pytest.raises(TypeError, match="stations"):
        D.load_beijing_multisite(3)
