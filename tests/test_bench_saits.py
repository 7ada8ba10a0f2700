"""The ``saits`` benchmark method: PyPOTS' SAITS on the diffusion model's training windows, and its absence."""

from __future__ import annotations

import builtins
import importlib.util
import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tsimpute import benchmark as B
from tsimpute.benchmark.baselines import Baseline
from tsimpute.benchmark.saits import (
    PEERS_HINT,
    Saits,
    pypots_missing,
    require_saits,
    training_windows,
    with_historical_gaps,
)
from tsimpute.cli import app
from tsimpute.datasets import holdout_mask
from tsimpute.synthetic import correlated_sinusoids

HAS_PYPOTS = importlib.util.find_spec("pypots") is not None
needs_pypots = pytest.mark.skipif(not HAS_PYPOTS, reason='PyPOTS is not installed (pip install "tsimpute[peers]")')
TINY_SAITS = dict(n_layers=1, d_model=32, n_heads=2, d_ffn=32, batch_size=16, patience=None)
WINDOW = 16


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # PyPOTS keeps a configuration file in the home folder


def _without_pypots(monkeypatch, error: ImportError) -> None:
    """Make ``import pypots`` (and its submodules) raise ``error``, installed or not."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pypots" or name.startswith("pypots."):
            raise error
        return real_import(name, *args, **kwargs)

    for loaded in [m for m in sys.modules if m == "pypots" or m.startswith("pypots.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def _not_installed(monkeypatch) -> None:
    _without_pypots(monkeypatch, ModuleNotFoundError("No module named 'pypots'", name="pypots"))


@pytest.fixture(scope="module")
def easy_task():
    """Standardised correlated sinusoids: 12 training series of 48 rows, 8 test windows with 20% held out."""
    n_series, chunk = 12, 48
    X, complete = correlated_sinusoids(n_rows=n_series * chunk + 8 * WINDOW, n_features=4, missing_rate=0.1, seed=0)
    mean, std = X.mean(), X.std()
    z, zc = (X - mean) / std, (complete - mean) / std
    split = n_series * chunk
    train = pd.concat([z.iloc[s : s + chunk] for s in range(0, split, chunk)], keys=range(n_series),
                      names=["series", "time"])
    test = z.iloc[split:].to_numpy().reshape(8, WINDOW, 4)
    truth = zc.iloc[split:].to_numpy().reshape(8, WINDOW, 4)
    hidden = holdout_mask(~np.isnan(test), 0.2, np.random.default_rng(1))
    return train, np.where(hidden, np.nan, test), truth, hidden


# ----------------------------------------------------------------------------- windows
def test_training_windows_are_the_diffusion_models_windows(easy_task):
    train, *_ = easy_task
    fit, valid = training_windows(train, WINDOW)
    # 12 series of 48 rows: 2 whole series held out (the Imputer's 1/8, rounded), windows every L/4 (9 per
    # series) for training and every L/2 (5 per series) for validation
    assert fit.shape == (10 * 9, WINDOW, 4) and valid.shape == (2 * 5, WINDOW, 4)
    # every window is a run of consecutive rows of one series
    rows = train.to_numpy().astype(np.float32)  # PyPOTS trains in float32
    for w in np.concatenate([fit, valid])[::7]:
        hits = [s for s in range(len(rows) - WINDOW + 1) if np.array_equal(rows[s : s + WINDOW], w, equal_nan=True)]
        assert hits and hits[0] % 48 <= 48 - WINDOW


def test_small_data_splits_as_the_imputer_does(easy_task):
    train, *_ = easy_task
    fit, valid = training_windows(train.loc[[0, 1, 2]], WINDOW)  # 3 series too short to hold 1/8 out
    assert len(fit) == 3 * 9 and len(valid) == 0
    wide = train.droplevel(0).iloc[:200]  # one series: its last 25 rows validate
    fit, valid = training_windows(wide, WINDOW)
    rows = wide.to_numpy().astype(np.float32)
    assert len(valid) == 3 and np.array_equal(valid[-1], rows[-WINDOW:], equal_nan=True)
    assert np.array_equal(fit[-1], rows[175 - WINDOW : 175], equal_nan=True)


def test_historical_gaps_add_a_copy_of_each_window_missing_where_another_window_is():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(6, 8, 3))
    windows[rng.random(windows.shape) < 0.3] = np.nan
    windows[2, :5] = np.nan  # a long gap for the others to borrow
    windows[3] = np.nan  # nothing observed: its copy is dropped too (and others may lose everything to it)
    before = windows.copy()
    out = with_historical_gaps(windows, np.random.default_rng(1))
    np.testing.assert_array_equal(windows, before)  # the input is left as it was
    np.testing.assert_array_equal(out[:6], windows)  # the originals first, unchanged
    copies = out[6:]
    assert 1 <= len(copies) <= 5 and not np.isnan(copies).all(axis=(1, 2)).any()
    gaps = np.isnan(windows)
    for c in copies:
        # each copy is one original's values with the gaps of that original and of some other window
        sources = [i for i in range(6) if np.array_equal(np.where(np.isnan(c), np.nan, windows[i]), c,
                                                         equal_nan=True) and (np.isnan(c) >= gaps[i]).all()]
        assert sources
        assert any(np.array_equal(np.isnan(c), gaps[i] | gaps[j]) for i in sources for j in range(6))
    assert np.isnan(copies).mean() > np.isnan(windows[[0, 1, 2, 4, 5]]).mean()  # more missing than the originals
    np.testing.assert_array_equal(with_historical_gaps(windows, np.random.default_rng(1)), out)  # seeded


def test_the_profile_trains_saits_with_other_windows_gaps_where_the_task_draws_them():
    from tsimpute.benchmark.profiles import get_profile

    profile = get_profile("quick")
    assert [Saits.from_profile(profile, WINDOW, target_strategy=s).historical_gaps
            for s in ("random", "hist", "mix")] == [False, True, True]
    assert Saits.from_profile(profile, WINDOW).d_model == profile.saits_d_model


# ----------------------------------------------------------------------------- the model
@needs_pypots
def test_saits_fills_gaps_and_beats_the_mean(easy_task):
    train, given, truth, hidden = easy_task
    state = np.random.get_state()[1].copy()
    model = Saits(window=WINDOW, epochs=20, seed=0, **TINY_SAITS).fit(train)
    out = model.predict(given)
    assert np.array_equal(np.random.get_state()[1], state)  # the caller's global RNG is left as it was
    assert out.shape == given.shape and np.isfinite(out).all()
    seen = ~np.isnan(given)
    assert np.array_equal(out[seen], given[seen])  # observed values unchanged
    mean = Baseline("mean").fit(train.to_numpy()).predict(given)
    mae, mae_mean = np.abs(out - truth)[hidden].mean(), np.abs(mean - truth)[hidden].mean()
    assert mae < 0.6 * mae_mean, (mae, mae_mean)  # about 0.35 against 0.85
    assert model.n_train_windows_ == 90 and model.n_valid_windows_ == 10 and 1 <= model.best_epoch_ <= 20
    gaps = Saits(window=WINDOW, epochs=1, seed=0, historical_gaps=True, **TINY_SAITS).fit(train)
    assert gaps.n_train_windows_ == 180  # every window, and a copy of each with another window's gaps
    # seeded: the same seed gives the same imputation
    again = Saits(window=WINDOW, epochs=20, seed=0, **TINY_SAITS).fit(train).predict(given)
    np.testing.assert_array_equal(again, out)


@needs_pypots
def test_saits_early_stopping_and_errors(easy_task):
    train, given, *_ = easy_task
    model = Saits(window=WINDOW, epochs=3, seed=1, **{**TINY_SAITS, "patience": 1}).fit(train)
    assert model.best_epoch_ <= 3
    with pytest.raises(ValueError, match=r"shape \(N, 16, 4\)"):
        model.predict(given[:, :8])
    with pytest.raises(RuntimeError, match="call fit"):
        Saits(window=WINDOW).predict(given)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        Saits(window=WINDOW, d_model=30, n_heads=4).fit(train)


# ----------------------------------------------------------------------------- without PyPOTS
def test_missing_pypots_gives_the_extra(monkeypatch):
    _not_installed(monkeypatch)
    with pytest.raises(ImportError) as err:
        require_saits()
    assert str(err.value) == f"saits needs PyPOTS, which is not installed: {PEERS_HINT}"
    assert PEERS_HINT == 'pip install "tsimpute[peers]"'
    assert pypots_missing() == str(err.value)


def test_broken_pypots_keeps_the_cause(monkeypatch):
    _without_pypots(monkeypatch, ImportError("cannot import name 'X' from 'transformers'"))
    message = pypots_missing()
    assert "failed to import (cannot import name 'X' from 'transformers')" in message and PEERS_HINT in message


def test_bench_skips_saits_without_pypots(monkeypatch):
    _not_installed(monkeypatch)
    res = B.run_benchmark("synthetic", methods=["mean", "saits"], n_train=6, n_test=4)
    assert list(res.rows["method"]) == ["mean"]
    assert f"saits skipped: saits needs PyPOTS, which is not installed: {PEERS_HINT}" in res.notes
    assert res.metadata["methods"] == ["mean"]


def test_cli_skips_saits_without_pypots(monkeypatch, tmp_path):
    _not_installed(monkeypatch)
    args = ["bench", "synthetic", "--methods", "interpolate,saits", "--n-train", "6", "--n-test", "4", "--quiet",
            "--no-plot", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert 'note: saits skipped: saits needs PyPOTS, which is not installed: pip install "tsimpute[peers]"' in (
        res.output)
    table = res.output.split("\nnote:")[0]
    assert " interpolate " in table and " saits " not in table


# ----------------------------------------------------------------------------- the runner and the command line
def test_saits_runs_by_default_except_in_smoke():
    assert "saits" in B.METHODS and "saits" not in B.DEFAULT_METHODS
    assert B.default_methods("smoke") == B.DEFAULT_METHODS
    for name in ("quick", "converged", "paper"):
        assert B.default_methods(name) == (*B.DEFAULT_METHODS, "saits")
    paper = B.get_profile("paper")
    assert (paper.saits_n_layers, paper.saits_d_model, paper.saits_n_heads, paper.saits_d_ffn) == (2, 256, 4, 128)
    assert (paper.saits_dropout, paper.saits_epochs, paper.saits_patience) == (0.1, 100, 10)


@needs_pypots
def test_cli_bench_with_saits(tmp_path):
    args = ["bench", "synthetic", "--methods", "mean,interpolate,saits", "--n-train", "12", "--n-test", "4",
            "--seed", "0,1", "--threads", "1", "--quiet", "--no-plot", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if " saits " in line)
    assert line.split()[2:4] == ["-", "0"]  # no steps, no network calls per sample
    payload = json.loads((tmp_path / "bench_synthetic_smoke.json").read_text())
    rows = [r for r in payload["rows"] if r["method"] == "saits"]
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        assert r["family"] == "peer" and r["nfe"] == 0 and r["steps"] == 0 and r["n_samples"] == 1
        assert np.isfinite(r["mae"]) and r["crps_ensemble"] == pytest.approx(r["mae"])  # a point estimate
        assert all(r[c] is None for c in B.CALIBRATION_FIELDS)
        assert r["train_seconds"] > 0 and r["impute_seconds"] > 0
    assert payload["metadata"]["profile"]["saits_epochs"] == 2
    assert [s["method"] for s in payload["summary"]] == ["mean", "interpolate", "saits"]
