"""Tests for tsimpute.benchmark: baselines by hand, tasks, profiles, the runner on tiny data, outputs."""

from __future__ import annotations

import builtins
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tsimpute import benchmark as B
from tsimpute.benchmark import baselines as BL
from tsimpute.benchmark import plotting
from tsimpute.metrics import evaluate

from ._realdata import data_root

nan = np.nan


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread: much faster than two on a CPU shared with other jobs (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- baselines
def _windows(*series):
    """One window per feature list: ``(1, L, K)`` from K time series."""
    return np.asarray(series, dtype=np.float64).T[None]


def test_forward_fill_by_hand():
    x = _windows([nan, 1.0, nan, nan, 4.0, nan], [2.0, nan, 3.0, nan, nan, nan])
    out = BL.forward_fill(x)[0].T
    np.testing.assert_array_equal(out[0], [nan, 1, 1, 1, 4, 4])
    np.testing.assert_array_equal(out[1], [2, 2, 3, 3, 3, 3])


def test_interpolate_by_hand():
    x = _windows([nan, 1.0, nan, nan, 4.0, nan], [nan] * 6)
    out = BL.interpolate(x)[0].T
    np.testing.assert_allclose(out[0], [1, 1, 2, 3, 4, 4])
    assert np.isnan(out[1]).all()


def test_baselines_fill_everything_and_keep_observed():
    train = np.array([[1.0, 10.0], [3.0, nan], [nan, 30.0]])
    x = _windows([nan, 5.0, nan], [nan, nan, nan])
    expected = {
        "mean": [[2, 5, 2], [20, 20, 20]],
        "ffill": [[2, 5, 5], [20, 20, 20]],
        "interpolate": [[5, 5, 5], [20, 20, 20]],
    }
    for name, want in expected.items():
        out = BL.Baseline(name).fit(train).predict(x)
        np.testing.assert_allclose(out[0].T, want, err_msg=name)
    for name in ("knn", "iterative", "first-guess"):
        out = BL.Baseline(name, n_neighbors=2, max_iter=2).fit(train).predict(x)
        assert np.isfinite(out).all(), name
        assert out[0, 1, 0] == 5.0


def test_first_guess_baseline_beats_interpolation_on_related_columns():
    from tsimpute.synthetic import correlated_sinusoids

    X, complete = correlated_sinusoids(n_rows=800, n_features=4, missing_rate=0.2, seed=0)
    rows, truth = X.to_numpy(), complete.to_numpy()
    x = np.stack([rows[s : s + 48] for s in range(600, 752, 24)])
    want = np.stack([truth[s : s + 48] for s in range(600, 752, 24)])
    gaps = np.isnan(x)
    guess = BL.Baseline("first-guess").fit(rows[:600]).predict(x)
    interp = BL.Baseline("interpolate").fit(rows[:600]).predict(x)
    assert np.array_equal(guess[~gaps], x[~gaps])
    assert np.abs(guess - want)[gaps].mean() < 0.95 * np.abs(interp - want)[gaps].mean()


def test_iterative_stays_in_training_range():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 4))
    train[rng.random(train.shape) < 0.7] = nan
    x = rng.normal(size=(3, 5, 4)) * 10
    x[rng.random(x.shape) < 0.6] = nan
    out = BL.Baseline("iterative", max_iter=3).fit(train).predict(x)
    gaps = np.isnan(x)
    lo, hi = np.nanmin(train, axis=0), np.nanmax(train, axis=0)
    assert ((out >= lo - 1e-9) & (out <= hi + 1e-9))[gaps].all()


def test_iterative_with_a_constant_feature():
    train = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, nan], [nan, 2.0]])  # feature 1 takes one value
    x = _windows([nan, 2.0, nan], [2.0, nan, nan])
    out = BL.Baseline("iterative", max_iter=2).fit(train).predict(x)
    assert np.isfinite(out).all() and out[0, 1, 0] == 2.0


def test_baseline_errors():
    with pytest.raises(ValueError, match="baseline must be one of"):
        BL.Baseline("median")
    with pytest.raises(RuntimeError, match="fit"):
        BL.Baseline("mean").predict(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match=r"\(N, L, K\)"):
        BL.Baseline("mean").fit(np.zeros((3, 2))).predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no observed value"):
        BL.training_rows(np.full((3, 2), nan))


def test_training_rows_subsample():
    rows = np.arange(40.0).reshape(20, 2)
    rows[0] = nan
    sub = BL.training_rows(rows, max_rows=5, seed=1)
    assert sub.shape == (5, 2) and np.isfinite(sub).all()
    np.testing.assert_array_equal(sub, BL.training_rows(rows, max_rows=5, seed=1))


def test_point_estimate_crps_is_normalised_mae():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 6, 3)) + 3
    pred = target + rng.normal(size=target.shape)
    mask = rng.random(target.shape) < 0.5
    m = evaluate(pred[None], target, mask)
    err = np.abs(pred - target)[mask]
    assert m["mae"] == pytest.approx(err.mean())
    assert m["crps_ensemble"] == pytest.approx(err.mean())
    assert m["crps"] == pytest.approx(err.sum() / np.abs(target[mask]).sum())


# ----------------------------------------------------------------------------- profiles and steps
def test_profiles():
    assert set(B.PROFILES) == {"smoke", "quick", "converged", "paper"}
    paper = B.get_profile("paper")
    assert (paper.epochs, paper.n_samples, paper.n_test) == (200, 100, None)
    assert (paper.channels, paper.n_layers, paper.n_heads) == (64, 4, 8)
    assert B.get_profile("quick").for_dataset("pm25").overrides == {}
    assert json.dumps(B.get_profile("smoke").as_dict())
    with pytest.raises(ValueError, match="profile must be one of"):
        B.get_profile("huge")


def test_parse_steps():
    assert B.parse_steps("5,50, 10,10") == (50, 10, 5)
    assert B.parse_steps([25, 5]) == (25, 5)
    for bad in ("0,10", "51", "a,b", ""):
        with pytest.raises(ValueError):
            B.parse_steps(bad)


# ----------------------------------------------------------------------------- tasks
def test_physionet_task_shapes():
    prof = B.get_profile("smoke").replace(n_train=20, n_test=5)
    task = B.build_task("physionet", prof, missing_ratio=0.1)
    assert task.test_given.shape == (5, 48, 35) and task.target.shape == (5, 48, 35)
    assert task.train_frame.shape == (20 * 48, 35) and task.test_frame.shape == (5 * 48, 35)
    assert task.eval_mask.any() and not np.isnan(task.target[task.eval_mask]).any()
    assert np.isnan(task.test_given[task.eval_mask]).all()  # targets hidden from the methods
    assert task.units == "z-score" and task.info["source"] in ("full", "sample")
    np.testing.assert_array_equal(task.test_frame.to_numpy().reshape(5, 48, 35), task.test_given)


def test_pm25_task_units_and_targets():
    prof = B.get_profile("smoke").replace(n_train=6, n_test=4)
    task = B.build_task("pm25", prof, data_dir=data_root("pm25"))
    assert task.test_given.shape == (4, 36, 36) and task.window == 36 and task.units == "ug/m3"
    assert task.train_frame.index.get_level_values(0).nunique() == 6
    # given values de-normalise back to the raw µg/m³ values
    given = ~np.isnan(task.test_given)
    np.testing.assert_allclose(task.to_metric(task.test_given)[given], task.target[given])
    assert np.isnan(task.test_given[task.eval_mask]).all()


def test_build_task_errors(tmp_path):
    prof = B.get_profile("smoke")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        B.build_task("mnist", prof)
    with pytest.raises(ValueError, match="missing_ratio"):
        B.build_task("physionet", prof, missing_ratio=1.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        B.build_task("pm25", prof, data_dir=tmp_path / "absent")


# ----------------------------------------------------------------------------- runner and outputs
TINY = dict(epochs=1, channels=8, n_layers=1, n_heads=2, n_samples=2, n_train=8, n_test=3)


@pytest.fixture(scope="module")
def synthetic_result() -> B.BenchResult:
    methods = ["diffusion-all", "diffusion-uniform", "ddim-uniform", "learned-pretrained", "mean",
               "interpolate"]
    return B.run_benchmark("synthetic", profile="smoke", steps="50,5", seeds=[0, 1], methods=methods, **TINY)


def test_runner_rows(synthetic_result):
    rows = synthetic_result.rows
    assert list(rows.columns) == list(B.ROW_FIELDS)
    got = set(zip(rows["method"], rows["steps"], rows["seed"], strict=True))
    for seed in (0, 1):
        assert ("diffusion-all", 50, seed) in got and ("ddim-uniform", 50, seed) in got
        assert ("diffusion-uniform", 5, seed) in got and ("learned-pretrained", 5, seed) in got
        assert ("mean", 0, seed) in got and ("interpolate", 0, seed) in got
    assert ("diffusion-uniform", 50, 0) not in got  # identical to the full chain: not run
    diff = rows[rows["family"] == "diffusion"]
    assert (diff["nfe"] == diff["steps"]).all() and (diff["n_samples"] == 2).all()
    assert (rows.loc[rows["family"] == "classical", ["nfe", "steps"]] == 0).all().all()
    assert (rows.loc[rows["family"] == "classical", "n_samples"] == 1).all()
    metrics = rows[["mae", "rmse", "crps", "crps_ensemble"]].to_numpy()
    assert np.isfinite(metrics).all() and (metrics >= 0).all()
    learned = rows[rows["method"] == "learned-pretrained"]
    assert (learned["learn_seconds"] > 0).all()
    assert [len(m["kept_steps"]) for m in synthetic_result.learned_masks] == [5, 5]
    assert synthetic_result.metadata["profile"]["epochs"] == 1  # overrides recorded


def test_calibration_columns(synthetic_result):
    rows = synthetic_result.rows
    assert B.CALIBRATION_FIELDS == ("cov50", "cov80", "cov90", "cov95", "width90")
    assert set(B.CALIBRATION_FIELDS) <= set(rows.columns)
    covs = ["cov50", "cov80", "cov90", "cov95"]
    sampled = rows[rows["n_samples"] > 1]
    assert len(sampled) and (sampled["family"] == "diffusion").all()
    values = sampled[covs].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    assert (np.diff(values, axis=1) >= 0).all()  # the bands are nested
    assert (sampled["width90"] > 0).all()
    point = rows[rows["family"] == "classical"]
    assert len(point) and point[list(B.CALIBRATION_FIELDS)].isna().all().all()
    assert any("no band" in n for n in synthetic_result.notes)
    assert any("2 samples per value" in n for n in synthetic_result.notes)


def test_uniform_rows_share_one_model(synthetic_result):
    rows = synthetic_result.rows
    for seed in (0, 1):
        train = rows[(rows["seed"] == seed) & rows["method"].isin(["diffusion-all", "diffusion-uniform"])]
        assert train["train_seconds"].nunique() == 1


def test_summary_and_table(synthetic_result):
    s = B.summarize(synthetic_result.rows)
    assert (s["n_seeds"] == 2).all()
    assert s["method"].iloc[0] == "diffusion-all"
    table = B.format_table(synthetic_result.rows)
    assert "±" in table and "interpolate" in table
    header, *lines = table.splitlines()
    assert header.split()[5:11] == ["mae", "rmse", "crps", "crps_ensemble", "cov50", "cov90"]
    assert "width90" in header and "cov95" not in header
    interp = next(line for line in lines if " interpolate " in line)
    assert interp.split()[-6:-3] == ["-", "-", "-"]  # no band for a point estimate
    diff = s[s["method"] == "diffusion-all"].iloc[0]
    assert 0 <= diff["cov90"] <= 1 and diff["cov90_std"] >= 0
    assert s.loc[s["method"] == "mean", "cov90"].isna().all()
    # rows saved before the calibration columns existed still summarise and print
    old = synthetic_result.rows.drop(columns=list(B.CALIBRATION_FIELDS))
    assert "cov90" not in B.summarize(old) and "cov90" not in B.format_table(old)


def test_write_results(tmp_path, synthetic_result):
    paths = B.write_results(synthetic_result, tmp_path, command="tsimpute bench synthetic")
    assert paths["json"].name == "bench_synthetic_smoke.json"
    payload = json.loads(paths["json"].read_text())
    meta = payload["metadata"]
    assert meta["command"] == "tsimpute bench synthetic" and meta["commit"] and meta["machine"]["torch"]
    assert len(payload["rows"]) == len(synthetic_result.rows)
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == list(B.ROW_FIELDS) and len(csv) == len(synthetic_result.rows)
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the reliability diagrams add a row of panels under CRPS and MAE (12 x 8.8 inches at 120 dpi)
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1440, 1056)
    assert all(r["cov90"] is None for r in payload["rows"] if r["family"] == "classical")
    assert all(0 <= r["cov90"] <= 1 for r in payload["rows"] if r["family"] == "diffusion")
    assert csv.loc[csv["family"] == "classical", "cov90"].isna().all()


def test_plot_without_sampled_rows(tmp_path, synthetic_result):
    rows = synthetic_result.rows[synthetic_result.rows["family"] == "classical"]
    png = plotting.plot_results(rows, tmp_path / "classical.png").read_bytes()
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1440, 576)


def test_calibrated_coverage_reference():
    few, many = plotting.calibrated_coverage(3), plotting.calibrated_coverage(200)
    levels = np.array(plotting.RELIABILITY_LEVELS)
    assert (few < levels - 0.2).all() and (few <= 0.5 + 0.01).all()  # bands inside the range of 3 samples
    np.testing.assert_allclose(many, levels, atol=0.02)


def test_plot_without_matplotlib(tmp_path, synthetic_result, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "tsimpute\[plot\]"'):
        plotting.plot_results(synthetic_result.rows, tmp_path / "x.png")
    paths = B.write_results(synthetic_result, tmp_path)
    assert "tsimpute[plot]" in paths["png"] and paths["json"].is_file()


def test_published_model_gets_an_identity_scaler():
    from tsimpute.benchmark.runner import _Runner
    from tsimpute.pretrained import csdi_physionet_scaler

    prof = B.get_profile("smoke").replace(n_train=4, n_test=2)
    task = B.build_task("physionet", prof, statistics="csdi")
    np.testing.assert_allclose(task.norm_mean, csdi_physionet_scaler()[0])
    run = _Runner(task, prof, steps=(5,), seed=0, device="cpu", verbose=False, log=lambda m: None,
                  mask_options={}, model="csdi-physionet")
    imp = run.make_imputer()
    np.testing.assert_array_equal(imp.mean_, np.zeros(35))
    np.testing.assert_array_equal(imp.scale_, np.ones(35))
    # a task normalised with its own training statistics does not fit the published network
    own = B.build_task("physionet", prof, statistics="train")
    run = _Runner(own, prof, steps=(5,), seed=0, device="cpu", verbose=False, log=lambda m: None,
                  mask_options={}, model="csdi-physionet")
    with pytest.raises(ValueError, match="not normalised with the published model's statistics"):
        run.make_imputer()


def test_profile_time_budget_reaches_the_trained_imputer():
    from tsimpute.benchmark.runner import _Runner

    prof = B.get_profile("smoke").replace(max_time=90.0)
    task = B.build_task("synthetic", prof.replace(n_train=4, n_test=2))
    run = _Runner(task, prof, steps=(5,), seed=0, device="cpu", verbose=False, log=lambda m: None, mask_options={})
    imp = run.make_imputer()
    assert imp.max_time == 90.0 and imp.epochs == prof.epochs
    assert B.get_profile("smoke").max_time is None and "max_time" in prof.as_dict()


def test_runner_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown methods"):
        B.run_benchmark("synthetic", methods=["csdi"])
    with pytest.raises(ValueError, match="at least one seed"):
        B.run_benchmark("synthetic", seeds=[], methods=["mean"])


def test_classical_only_run_is_fast_and_finite():
    res = B.run_benchmark("synthetic", methods=list(B.BASELINES), n_train=6, n_test=4)
    assert sorted(res.rows["method"]) == sorted(B.BASELINES)
    assert all(math.isfinite(v) for v in res.rows["crps"])
    # interpolation beats the mean on smooth sinusoids
    mae = dict(zip(res.rows["method"], res.rows["mae"], strict=True))
    assert mae["interpolate"] < mae["mean"]
