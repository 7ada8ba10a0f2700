"""scikit-learn's estimator checks, and the parts of the contract they exercise on data with gaps."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from tsimpute import Imputer
from tsimpute.synthetic import correlated_sinusoids

from .conftest import panel_frame

# the default window ("auto"), a network small enough for the checks to run in seconds each
FAST = dict(epochs=1, channels=8, n_layers=1, n_heads=2, n_samples=2, n_steps=5, device="cpu", verbose=False)


# Every check passes, so no check is listed as expected to fail (``expected_failed_checks=``).
@parametrize_with_checks([Imputer(random_state=0, **FAST)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*window='auto'", category=UserWarning)  # short check data
        check(estimator)


def _window_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "window" in str(w.message)]


@pytest.mark.parametrize("rows, expected", [(20, 20), (60, 48)])
def test_auto_window_fits_short_series_without_warning(rows, expected):
    X, _ = correlated_sinusoids(rows, 3, seed=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        imp = Imputer(random_state=0, **FAST).fit(X)
        out = imp.transform(X)
    assert imp.window_ == expected and _window_warnings(record) == []
    obs = X.notna().to_numpy()
    assert np.array_equal(out.to_numpy()[obs], X.to_numpy()[obs]) and not out.isna().any().any()


def test_auto_window_warns_when_series_are_very_short():
    X, _ = correlated_sinusoids(10, 3, seed=1)
    with pytest.warns(UserWarning, match=r"at most 10 rows per series, so window='auto' is 10 rows"):
        imp = Imputer(random_state=0, **FAST).fit(X)
    assert not imp.transform(X).isna().any().any()


def test_auto_window_of_a_panel_is_its_longest_series():
    X = panel_frame(n_series=4, rows=20)
    X = X.drop(index=[("s0", t) for t in range(5)])  # series of 15 and 20 rows
    imp = Imputer(random_state=0, **FAST).fit(X)
    assert imp.window_ == 20
    out = imp.transform(X)
    assert out.index.equals(X.index) and not out.isna().any().any()


def test_explicit_window_longer_than_the_data_is_an_error():
    X, _ = correlated_sinusoids(20, 3, seed=1)
    with pytest.raises(ValueError, match=r"window=30.*window='auto'"):
        Imputer(window=30, **FAST).fit(X)
    with pytest.raises(ValueError, match="window must be 'auto' or an integer"):
        Imputer(**{**FAST, "window": "full"}).fit(X)


def test_tags():
    tags = get_tags(Imputer())
    assert tags.input_tags.allow_nan and not tags.input_tags.sparse
    assert not get_tags(Imputer(device="cpu")).non_deterministic


@pytest.fixture(scope="module")
def fitted():
    X, _ = correlated_sinusoids(40, 4, seed=2)
    return Imputer(random_state=0, **FAST).fit(X), X


def test_sampling_writes_no_state_and_reports_its_cost(fitted):
    imp, X = fitted
    before = dict(imp.__dict__)
    imp.transform(X)
    imp.predict_quantiles(X)
    samples, info = imp.sample(X, n_samples=3, return_info=True)
    assert imp.__dict__ == before
    assert samples.shape == (3, *X.shape)
    # 5 steps; 40 rows in windows of 40: one window, one batch of 3 window-samples
    assert (info.steps, info.windows, info.nfe) == (5, 1, 5)


def test_array_likes_are_accepted(fitted):
    _, X = fitted
    rows = X.to_numpy().tolist()  # a list of lists with NaN gaps
    imp = Imputer(random_state=0, **FAST).fit(rows)
    assert not hasattr(imp, "feature_names_in_") and imp.n_features_in_ == 4
    assert list(imp.get_feature_names_out()) == ["x0", "x1", "x2", "x3"]
    out = imp.transform(rows)
    arr = np.asarray(rows)
    assert isinstance(out, np.ndarray) and out.shape == arr.shape and not np.isnan(out).any()
    obs = ~np.isnan(arr)
    assert np.array_equal(out[obs], arr[obs])
    assert np.array_equal(imp.transform(arr.astype(np.float32))[obs], arr.astype(np.float32)[obs])


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_feature_names_and_counts_as_in_scikit_learn(fitted):
    imp, X = fitted
    arr = X.to_numpy()
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        out = imp.transform(arr)  # columns taken in the fitted order
    assert isinstance(out, np.ndarray)
    with pytest.raises(ValueError, match="X has 3 features, but Imputer is expecting 4 features as input"):
        imp.transform(arr[:, :3])
    on_array = Imputer(random_state=0, **FAST).fit(arr)
    with pytest.raises(ValueError, match="X has 3 features, but Imputer is expecting 4 features"), \
            pytest.warns(UserWarning, match="X has feature names, but Imputer was fitted without feature names"):
        on_array.transform(X.iloc[:, :3])


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_bad_input_messages_follow_scikit_learn(fitted):
    imp, X = fitted
    arr = X.to_numpy()
    with pytest.raises(TypeError, match="Sparse data was passed"):
        Imputer(**FAST).fit(sp.csr_matrix(np.nan_to_num(arr)))
    with pytest.raises(TypeError, match="Sparse data was passed"):
        imp.transform(sp.csr_matrix(np.nan_to_num(arr)))
    with pytest.raises(ValueError, match="Complex data not supported"):
        Imputer(**FAST).fit(arr + 1j)
    with pytest.raises(ValueError, match=r"Complex data not supported.*\['x0'\]"):
        Imputer(**FAST).fit(X.assign(x0=X["x0"] + 1j))
    with pytest.raises(ValueError, match="1 sample"):
        Imputer(**FAST).fit(arr[:1])
    with pytest.raises(ValueError, match="1 sample"):
        Imputer(**FAST).fit(X.dropna().iloc[:1])
    with pytest.raises(ValueError, match="Reshape your data"):
        Imputer(**FAST).fit(arr[:, 0])
    with pytest.raises(ValueError, match="Reshape your data"):
        imp.transform(arr[:, 0])
    with pytest.raises(ValueError, match="infinity"):
        Imputer(**FAST).fit(np.where(np.isnan(arr), np.inf, arr))
    one_row = imp.transform(X.iloc[:1])  # one row is enough to impute (padded window)
    assert one_row.shape == (1, 4)


def test_save_load_keeps_the_fitted_window(fitted, tmp_path):
    imp, X = fitted
    imp.save(tmp_path / "frame.pt")
    loaded = Imputer.load(tmp_path / "frame.pt")
    assert loaded.window == "auto" and loaded.window_ == imp.window_ == 40
    pd.testing.assert_frame_equal(loaded.transform(X), imp.transform(X))
    on_array = Imputer(random_state=0, **FAST).fit(X.to_numpy())
    on_array.save(tmp_path / "array.pt")
    loaded = Imputer.load(tmp_path / "array.pt")
    assert not hasattr(loaded, "feature_names_in_") and loaded.n_features_in_ == 4
    np.testing.assert_array_equal(loaded.transform(X.to_numpy()), on_array.transform(X.to_numpy()))
