"""Tests for the ``tsimpute`` command line (typer's CliRunner): bench smoke run, datasets, fit, impute."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import tsimpute
from tsimpute import __version__
from tsimpute.benchmark import DEFAULT_METHODS, ROW_FIELDS
from tsimpute.cache import CACHE_ENV_VAR
from tsimpute.cli import app
from tsimpute.datasets import _locate
from tsimpute.models import cpu_kernels

from ._realdata import data_root

runner = CliRunner()
REQUIRED = ("dataset", "method", "steps", "nfe", "n_samples", "mae", "rmse", "crps", "crps_ensemble",
            "train_seconds", "impute_seconds", "seed", "profile")


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """Make every default data root empty: $TSIMPUTE_DATA_DIR, the user cache, ../shared/data."""
    empty = tmp_path / "empty"
    (empty / "cwd").mkdir(parents=True)
    monkeypatch.setenv(_locate.ENV_VAR, str(empty))
    monkeypatch.setenv("HOME", str(empty / "home"))
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(empty / "cwd")
    return empty


def _fail(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


# ----------------------------------------------------------------------------- basics
def test_version_and_help():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"tsimpute {__version__}"
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("bench", "datasets", "fit", "impute"):
        assert cmd in res.output
    res = runner.invoke(app, ["bench", "--help"])
    assert res.exit_code == 0 and "--profile" in res.output and "--steps" in res.output


def test_datasets_lists_six_with_locations_and_licenses():
    res = runner.invoke(app, ["datasets"])
    assert res.exit_code == 0, res.output
    for name in ("physionet2012", "pm25", "beijing_multisite", "ett", "mnist", "fashion_mnist"):
        assert name in res.output
    assert res.output.count("license:") == 6 and "ODC-By" in res.output
    assert "Searched, in order" in res.output


def test_datasets_not_found(no_data):
    res = runner.invoke(app, ["datasets", "--data-dir", str(no_data)])
    assert res.exit_code == 0, res.output
    assert res.output.count("found, not found") == 6


# ----------------------------------------------------------------------------- bench
def _check_smoke_results(out: Path, source: str) -> None:
    """The smoke bench's files: every method, every field, finite metrics, the data source recorded."""
    payload = json.loads((out / "bench_physionet10_smoke.json").read_text())
    rows = payload["rows"]
    methods = {r["method"] for r in rows}
    assert methods == set(DEFAULT_METHODS)
    for row in rows:
        for key in REQUIRED:
            assert key in row, key
        for key in ("mae", "rmse", "crps", "crps_ensemble", "train_seconds", "impute_seconds"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (row["method"], key)
        assert row["profile"] == "smoke" and row["dataset"] == "physionet"
        assert row["nfe"] == (row["steps"] if row["family"] == "diffusion" else 0)
    meta = payload["metadata"]
    assert meta["command"].startswith("tsimpute bench physionet --profile smoke")
    assert meta["profile"]["name"] == "smoke" and meta["task"]["source"] == source
    assert meta["machine"]["cpu_count"] and "commit" in meta
    csv = pd.read_csv(out / "bench_physionet10_smoke.csv")
    assert list(csv.columns) == list(ROW_FIELDS) and len(csv) == len(rows)
    assert (out / "bench_physionet10_smoke.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_smoke_physionet_end_to_end_on_the_real_data(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "results"
    args = ["bench", "physionet", "--profile", "smoke", "--out", str(out), "--threads", "1", "--quiet",
            "--data-dir", str(data_root("physionet2012"))]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == threads  # restored
    assert "diffusion-all" in res.output and "interpolate" in res.output
    _check_smoke_results(out, source="full")


def test_newcomer_smoke_bench_with_no_data_anywhere(tmp_path):
    """The README's main command as a newcomer runs it: the package outside any checkout (no ``shared/data``
    beside it), no data directory, no $TSIMPUTE_DATA_DIR, an empty home (no user cache), run from a folder
    with no ``../shared/data``. It must fall back to the embedded PhysioNet sample and write its results."""
    package = tmp_path / "clone" / "main" / "tsimpute"
    shutil.copytree(Path(tsimpute.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (_locate.ENV_VAR, "PYTHONPATH", "XDG_CACHE_HOME")}
    cache = tmp_path / "cache"  # an empty user cache
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(package.parent), **{CACHE_ENV_VAR: str(cache)})
    probe = subprocess.run([sys.executable, "-c", "import tsimpute.datasets._locate as L; "
                            "print(L.__file__); print(*[str(p) for p, _ in L.search_roots()], sep='\\n')"],
                           cwd=tmp_path / "work", env=env, capture_output=True, text=True, check=True)
    lines = probe.stdout.split()
    assert lines[0].startswith(str(package))  # the copy, not the checkout
    assert not any(Path(p).exists() for p in lines[1:]), lines  # no data root exists
    # compiled kernels are reused from this machine's cache (their build is tested in test_cpu_kernels)
    if cpu_kernels.cache_dir().is_dir():
        shutil.copytree(cpu_kernels.cache_dir(), cache / "kernels")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "tsimpute.cli", "bench", "physionet", "--profile", "smoke",
                          "--out", str(out), "--quiet"],
                         cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "embedded real sample" in res.stdout and "interpolate" in res.stdout
    _check_smoke_results(out, source="sample")
    # the image benchmark's smoke run: scikit-learn's embedded digits, no data either
    res = subprocess.run([sys.executable, "-m", "tsimpute.cli", "bench", "digits", "--profile", "smoke",
                          "--out", str(tmp_path / "images"), "--quiet"],
                         cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not Inception FID" in res.stdout
    _check_image_smoke_results(tmp_path / "images")


def _check_image_smoke_results(out: Path) -> None:
    """Every selection at every step count, finite metrics, the plot and one sample grid per run."""
    payload = json.loads((out / "images-digits-smoke.json").read_text())
    rows = pd.DataFrame(payload["rows"])
    generation = rows[rows["task"] == "generation"]
    assert set(generation["method"]) == {"full", "learned", "learned-ddim", "uniform", "quadratic", "ddim"}
    assert sorted(set(generation["steps"])) == [5, 10, 50]
    assert np.isfinite(generation["frechet_distance"]).all() and (generation["frechet_distance"] >= 0).all()
    for task in ("inpainting-random", "inpainting-centre"):
        part = rows[rows["task"] == task]
        assert {"full", "learned", "uniform", "full (replace)"} <= set(part["method"])
        assert ((part["mae"] > 0) & (part["mae"] < 1)).all() and np.isfinite(part["psnr"]).all()
    assert "not Inception FID" in payload["metadata"]["metric_note"]
    assert len(payload["learned_masks"]["10 (joint)"]) == 10
    assert (out / "images-digits-smoke.png").is_file()
    assert (out / "images-digits-smoke-samples-learned-10.png").is_file()


def test_bench_unknown_dataset():
    out = _fail(runner.invoke(app, ["bench", "cifar100"]), code=2)
    assert "unknown dataset 'cifar100'" in out and "physionet, pm25, synthetic, digits, mnist" in out


def test_bench_bad_options():
    assert "choose one of smoke" in _fail(runner.invoke(app, ["bench", "pm25", "--profile", "x"]), code=2)
    assert "--seed takes integers" in _fail(runner.invoke(app, ["bench", "pm25", "--seed", "1,a"]), code=2)
    assert "at least 1" in _fail(runner.invoke(app, ["bench", "pm25", "--threads", "0"]), code=2)
    assert "--max-time must be a positive" in _fail(runner.invoke(app, ["bench", "pm25", "--max-time", "0"]), code=2)
    out = _fail(runner.invoke(app, ["datasets", "--download", "cifar100"]), code=2)
    assert "unknown dataset 'cifar100'" in out and "physionet2012" in out
    out = _fail(runner.invoke(app, ["bench", "synthetic", "--methods", "mean,csdi"]))
    assert "unknown methods ['csdi']" in out
    out = _fail(runner.invoke(app, ["bench", "synthetic", "--steps", "100", "--methods", "mean"]))
    assert "step counts must lie in [1, 50]" in out


def test_bench_missing_data_dir(no_data):
    out = _fail(runner.invoke(app, ["bench", "pm25", "--data-dir", str(no_data), "-q"]))
    assert out.startswith("Error: ") and "not found. Searched" in out
    assert "tsimpute datasets --download pm25" in out
    args = ["bench", "physionet", "--source", "full", "--data-dir", str(no_data), "-q"]
    out = _fail(runner.invoke(app, args))
    assert "set-a.tar.gz" in out and "not found" in out
    out = _fail(runner.invoke(app, ["bench", "pm25", "--data-dir", str(no_data / "nowhere"), "-q"]))
    assert "does not exist" in out


def test_bench_physionet_falls_back_to_sample_with_a_note(no_data, tmp_path):
    res = runner.invoke(app, ["bench", "physionet", "--methods", "mean,ffill", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "embedded real sample" in res.output
    payload = json.loads((tmp_path / "o" / "bench_physionet10_smoke.json").read_text())
    assert payload["metadata"]["task"]["source"] == "sample" and payload["notes"]


def test_bench_published_csdi_model_without_data_dir(no_data, tmp_path):
    """The converged network ships with the package: a fresh install benchmarks it on the embedded sample."""
    args = ["bench", "physionet", "--model", "csdi-physionet", "--profile", "converged", "--steps", "3",
            "--n-test", "2", "--n-samples", "2", "--n-train", "16",
            "--methods", "diffusion-uniform,learned-pretrained,interpolate", "--out", str(tmp_path / "o"), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "o" / "bench_physionet10_converged.json").read_text())
    rows = {r["method"]: r for r in payload["rows"]}
    assert set(rows) == {"diffusion-uniform", "learned-pretrained", "interpolate"}
    for name in ("diffusion-uniform", "learned-pretrained"):
        assert rows[name]["nfe"] == 3 and rows[name]["train_seconds"] == 0.0 and math.isfinite(rows[name]["crps"])
    assert rows["learned-pretrained"]["learn_seconds"] > 0
    meta = payload["metadata"]
    assert meta["model"] == "csdi-physionet" and "--model csdi-physionet" in meta["command"]
    assert "CSDI's statistics" in meta["task"]["statistics"]
    assert any("published CSDI model" in n for n in payload["notes"])  # sample stays are not CSDI's test fold


def test_bench_model_errors():
    out = _fail(runner.invoke(app, ["bench", "physionet", "--model", "csdi-pm25"]), code=2)
    assert "unknown model 'csdi-pm25'" in out and "csdi-physionet" in out
    out = _fail(runner.invoke(app, ["bench", "synthetic", "--model", "csdi-physionet", "--methods", "mean"]))
    assert "not a published network for 'synthetic'" in out


def test_bench_corrupt_archive_checksum(no_data):
    data = no_data / "data"
    real = data_root("pm25")
    for name in ("pm25_ground.txt", "pm25_missing.txt", "pm25_latlng.txt"):
        (data / "pm25" / "SampleData").mkdir(parents=True, exist_ok=True)
        shutil.copy(real / "pm25" / "SampleData" / name, data / "pm25" / "SampleData" / name)
    ground = data / "pm25" / "SampleData" / "pm25_ground.txt"
    with open(ground, "r+b") as fh:
        fh.seek(200)
        fh.write(b"9")
    out = _fail(runner.invoke(app, ["bench", "pm25", "--data-dir", str(data), "-q"]))
    assert "Checksum mismatch" in out and "pm25_ground.txt" in out
    res = runner.invoke(app, ["datasets", "--data-dir", str(data), "--verify"])
    assert res.exit_code == 0 and "MISMATCH" in res.output


# ----------------------------------------------------------------------------- fit / impute
@pytest.fixture
def small_csv(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(60)
    df = pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=60, freq="h").astype(str),
        "a": np.sin(t / 5) + 0.1 * rng.normal(size=60),
        "b": np.cos(t / 7) + 0.1 * rng.normal(size=60),
    })
    df.loc[rng.random(60) < 0.2, "a"] = np.nan
    df.loc[rng.random(60) < 0.2, "b"] = np.nan
    path = tmp_path / "in.csv"
    df.to_csv(path, index=False)
    return path, df


FAST = ["--epochs", "1", "--window", "12", "--n-samples", "2", "--steps", "5", "--step-selection", "uniform",
        "--seed", "0", "--device", "cpu", "--threads", "1", "-q"]


def test_impute_round_trip_csv(tmp_path, small_csv):
    path, df = small_csv
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["impute", str(path), str(out), "--time-col", "time", *FAST])
    assert res.exit_code == 0, res.output
    assert f"{int(df[['a', 'b']].isna().sum().sum())} gaps filled" in res.output
    filled = pd.read_csv(out)
    assert list(filled.columns) == ["time", "a", "b"] and len(filled) == 60
    assert not filled[["a", "b"]].isna().any().any()
    seen = df[["a", "b"]].notna().to_numpy()
    np.testing.assert_allclose(filled[["a", "b"]].to_numpy()[seen], df[["a", "b"]].to_numpy()[seen])


def test_fit_then_impute_with_model_parquet(tmp_path, small_csv):
    path, df = small_csv
    model = tmp_path / "m" / "imp.pt"
    res = runner.invoke(app, ["fit", str(path), str(model), "--time-col", "time", *FAST])
    assert res.exit_code == 0 and model.is_file(), res.output
    out = tmp_path / "out.parquet"
    res = runner.invoke(app, ["impute", str(path), str(out), "--model", str(model), "--time-col", "time",
                              "--n-samples", "3", "-q"])
    assert res.exit_code == 0, res.output
    filled = pd.read_parquet(out)
    assert len(filled) == 60 and not filled[["a", "b"]].isna().any().any()


def test_impute_errors(tmp_path, small_csv):
    path, _ = small_csv
    out = _fail(runner.invoke(app, ["impute", str(tmp_path / "nope.csv"), str(tmp_path / "o.csv")]))
    assert "not found" in out
    out = _fail(runner.invoke(app, ["impute", str(path), str(tmp_path / "o.csv"), *FAST]))  # "time" is text
    assert "non-numeric columns ['time']" in out
    args = ["impute", str(path), str(tmp_path / "o.xlsx"), "--time-col", "time", *FAST]
    out = _fail(runner.invoke(app, args))
    assert "cannot tell the format" in out
    bad_model = tmp_path / "bad.pt"
    bad_model.write_bytes(b"not a model")
    out = _fail(runner.invoke(app, ["impute", str(path), str(tmp_path / "o.csv"), "--model", str(bad_model),
                                    "--time-col", "time"]))
    assert "not a readable tsimpute imputer file" in out
