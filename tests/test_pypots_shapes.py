"""3-D arrays ``(n_series, n_steps, n_features)`` and PyPOTS' dict ``{"X": array}`` as Imputer input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tsimpute import Imputer

FAST = dict(window=8, channels=8, n_layers=1, n_heads=2, n_samples=2, n_steps=5, max_steps=3, batch_size=8,
            validation_fraction=0, verbose=False, random_state=0, device="cpu")


def _pypots_like(n_series=6, n_steps=12, n_features=3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps)[None, :, None]
    X = np.sin(t / 3.0 + rng.normal(size=(n_series, 1, n_features))) + 0.1 * rng.normal(
        size=(n_series, n_steps, n_features))
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


@pytest.fixture(scope="module")
def fitted3d():
    X = _pypots_like()
    return Imputer(**FAST).fit({"X": X}), X


def test_pypots_example_fit_and_transform_a_dict(fitted3d):
    imp, X = fitted3d
    before = X.copy()
    out = imp.transform({"X": X})
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == X.shape
    np.testing.assert_array_equal(X, before)  # input untouched
    seen = ~np.isnan(X)
    assert np.array_equal(out[seen], X[seen])  # observed cells bit for bit
    assert np.isfinite(out).all()
    assert imp.n_features_in_ == 3 and not hasattr(imp, "feature_names_in_")


def test_3d_results_keep_the_series_layout(fitted3d):
    imp, X = fitted3d
    samples = imp.sample(X, n_samples=3)
    assert samples.shape == (3, *X.shape)
    seen = ~np.isnan(X)
    assert all(np.array_equal(s[seen], X[seen]) for s in samples)
    q = imp.predict_quantiles({"X": X}, quantiles=(0.1, 0.5, 0.9))
    assert isinstance(q, np.ndarray) and q.shape == (3, *X.shape)
    assert all(np.array_equal(level[seen], X[seen]) for level in q)
    assert np.all(q[0] <= q[2])


def test_a_3d_array_is_windowed_as_the_panel_of_its_series(fitted3d):
    """Series i of the array and series i of the equivalent panel frame give the same imputation."""
    imp, X = fitted3d
    n, steps, k = X.shape
    index = pd.MultiIndex.from_product([range(n), range(steps)], names=["series", "step"])
    frame = pd.DataFrame(X.reshape(n * steps, k), index=index)
    np.testing.assert_array_equal(imp.transform(X), imp.transform(frame).to_numpy().reshape(X.shape))
    # and fitting on the panel frame gives the same model as fitting on the array
    a = Imputer(**FAST).fit(X).transform(X)
    b = Imputer(**FAST).fit(frame).transform(frame).to_numpy().reshape(X.shape)
    np.testing.assert_array_equal(a, b)


def test_fit_on_3d_then_transform_2d_and_the_other_way(fitted3d):
    imp, X = fitted3d
    one = X[2]
    out = imp.transform(one)
    assert out.shape == one.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out, imp.transform(one[None])[0])
    imp2 = Imputer(**FAST).fit(X[0])
    out3 = imp2.transform(X)
    assert out3.shape == X.shape and np.isfinite(out3).all()


def test_3d_float32_and_lists_are_read_as_float64(fitted3d):
    imp, X = fitted3d
    x32 = X.astype(np.float32)
    out = imp.transform(x32)
    seen = ~np.isnan(x32)
    assert out.dtype == np.float64 and np.array_equal(out[seen], x32[seen].astype(np.float64))
    assert x32.dtype == np.float32
    assert imp.transform(X.tolist()).shape == X.shape


def test_3d_round_trip_through_save_and_load(fitted3d, tmp_path):
    imp, X = fitted3d
    path = tmp_path / "m.pt"
    imp.save(path)
    loaded = Imputer.load(path)
    np.testing.assert_array_equal(loaded.transform({"X": X}), imp.transform({"X": X}))
    assert loaded.n_features_in_ == 3


@pytest.mark.parametrize("bad, error, match", [
    (lambda X: X[0, 0], ValueError, r"3-D array-like \(n_series, n_steps, n_features\).*1-D input of shape \(3,\)"),
    (lambda X: X[None], ValueError, r"got a 4-D input of shape \(1, 6, 12, 3\)"),
    (lambda X: X[..., :2], ValueError, r"X has 2 features, but Imputer is expecting 3 features"),
    (lambda X: np.where(np.isnan(X), np.inf, X), ValueError, r"infinity"),
    (lambda X: {"x": X}, ValueError, r"key 'X'.*got keys \['x'\]"),
    (lambda X: {"X": None}, TypeError, r"X\['X'\] must be .*got NoneType"),
    (lambda X: {"X": {"X": X}}, TypeError, r"X\['X'\] must be .*got dict"),
    (lambda X: {"X": "data.npy"}, TypeError, r"X\['X'\] must be .*got str"),
    (lambda X: np.zeros((0, 4, 3)), ValueError, r"0 sample"),
    (lambda X: X.astype(np.complex128), ValueError, r"[Cc]omplex"),
])
def test_bad_3d_and_dict_inputs_are_refused_with_clear_errors(fitted3d, bad, error, match):
    imp, X = fitted3d
    with pytest.raises(error, match=match):
        imp.transform(bad(X))


def test_fit_refuses_a_3d_array_of_single_steps():
    with pytest.raises(ValueError, match=r"1 step per series \(shape \(4, 1, 2\)"):
        Imputer(**FAST).fit(np.zeros((4, 1, 2)))


def test_a_dict_with_a_frame_returns_a_frame_and_pypots_extra_keys_are_not_used(fitted3d):
    imp, X = fitted3d
    frame = pd.DataFrame(X[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fitted on arrays: a frame of the same features matches by position
        out = imp.transform({"X": frame, "X_ori": np.zeros_like(X), "y": np.arange(6)})
    assert isinstance(out, pd.DataFrame) and out.index.equals(frame.index)
    np.testing.assert_array_equal(out.to_numpy(), imp.transform(X[0]))
