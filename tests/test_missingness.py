"""Tests for tsimpute.missingness: seeded, exact, hide only observed entries, never mutate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsimpute import missingness as MS


def _observed(shape, p=0.7, seed=0):
    return np.random.default_rng(seed).random(shape) < p


SIMULATORS = {
    "mcar": lambda obs, rate, seed: MS.mcar(obs, rate, seed),
    "block": lambda obs, rate, seed: MS.block_missing(obs, rate, 4, seed),
    "feature": lambda obs, rate, seed: MS.feature_outage(obs, rate, seed),
}


@pytest.mark.parametrize("kind", list(SIMULATORS))
@pytest.mark.parametrize("shape", [(50, 6), (8, 30, 5), (2, 3, 20, 4)])
def test_subset_exact_seeded_and_pure(kind, shape):
    fn = SIMULATORS[kind]
    obs = _observed(shape)
    before = obs.copy()
    hidden = fn(obs, 0.3, 7)
    np.testing.assert_array_equal(obs, before)  # input untouched
    assert hidden.shape == obs.shape and hidden.dtype == bool
    assert not (hidden & ~obs).any()
    np.testing.assert_array_equal(hidden, fn(obs, 0.3, 7))  # same seed, same mask
    np.testing.assert_array_equal(hidden, fn(obs, 0.3, np.random.default_rng(7)))
    assert not np.array_equal(hidden, fn(obs, 0.3, 8))
    if kind == "feature":
        pairs = obs.reshape(-1, shape[-2], shape[-1]).any(axis=1)
        hid_pairs = hidden.reshape(-1, shape[-2], shape[-1]).any(axis=1)
        assert hid_pairs.sum() == round(0.3 * pairs.sum())
    else:
        assert hidden.sum() == round(0.3 * obs.sum())
    assert not fn(obs, 0.0, 1).any()
    np.testing.assert_array_equal(fn(obs, 1.0, 1), obs)


def test_block_missing_hides_contiguous_runs():
    obs = np.ones((1, 200, 3), dtype=bool)
    hidden = MS.block_missing(obs, 0.2, 10, 3)
    assert hidden.sum() == 120
    short_runs = 0
    for k in range(3):
        col = np.concatenate([[0], hidden[0, :, k].astype(int), [0]])
        starts, ends = np.flatnonzero(np.diff(col) == 1), np.flatnonzero(np.diff(col) == -1)
        short_runs += int(((ends - starts) < 10).sum())
    assert short_runs <= 1  # only the last, trimmed block may be shorter than block_len


def test_block_longer_than_series_and_sparse_data():
    obs = _observed((20, 5, 3), p=0.3)
    hidden = MS.block_missing(obs, 0.5, 50, 0)
    assert hidden.sum() == round(0.5 * obs.sum()) and not (hidden & ~obs).any()


def test_feature_outage_hides_whole_series_features():
    obs = _observed((10, 24, 6), p=0.8)
    hidden = MS.feature_outage(obs, 0.25, 0)
    for b in range(10):
        for k in range(6):
            h, o = hidden[b, :, k], obs[b, :, k]
            assert (not h.any()) or np.array_equal(h, o)


@pytest.mark.parametrize("kind", ["mcar", "block", "feature"])
def test_hide_dataframe(kind):
    idx = pd.date_range("2020-01-01", periods=60, freq="h")
    df = pd.DataFrame({"a": np.arange(60), "b": np.linspace(0, 1, 60), "c": np.ones(60)}, index=idx)
    df.iloc[::7, 1] = np.nan
    before = df.copy()
    gaps, hidden = MS.hide(df, kind=kind, rate=0.3, seed=5, block_len=5)
    pd.testing.assert_frame_equal(df, before)
    assert gaps.index.equals(df.index) and list(hidden.columns) == list(df.columns)
    assert hidden.dtypes.eq(bool).all()
    assert not (hidden & df.isna()).to_numpy().any()
    assert gaps[hidden].isna().all().all()
    keep = ~hidden.to_numpy() & df.notna().to_numpy()
    np.testing.assert_array_equal(gaps.to_numpy()[keep], df.to_numpy(dtype=float)[keep])
    assert hidden.to_numpy().any()


def test_argument_checks():
    obs = _observed((10, 3))
    with pytest.raises(TypeError, match="boolean"):
        MS.mcar(obs.astype(int), 0.1, 0)
    with pytest.raises(ValueError, match="shape"):
        MS.mcar(obs[:, 0], 0.1, 0)
    with pytest.raises(ValueError, match="rate"):
        MS.mcar(obs, 1.5, 0)
    with pytest.raises(TypeError, match="rate"):
        MS.mcar(obs, "0.1", 0)
    with pytest.raises(TypeError, match="seed"):
        MS.mcar(obs, 0.1, 1.5)
    with pytest.raises(TypeError, match="seed"):
        MS.mcar(obs, 0.1, True)
    with pytest.raises(ValueError, match="block_len"):
        MS.block_missing(obs, 0.1, 0, 0)
    with pytest.raises(ValueError, match="kind"):
        MS.hide(pd.DataFrame({"a": [1.0, 2.0]}), kind="nope")
    with pytest.raises(TypeError, match="non-numeric"):
        MS.hide(pd.DataFrame({"a": ["x", "y"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        MS.hide(np.zeros((3, 2)))
