import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from tsimpute import Imputer
from tsimpute.synthetic import correlated_sinusoids

from .conftest import TINY, panel_frame


def test_short_fit_beats_column_means_by_30_percent():
    X_all, full_all = correlated_sinusoids(1000, 6, seed=0)
    X, full = X_all.iloc[700:], full_all.iloc[700:]  # evaluated on rows never seen in fit
    imp = Imputer(epochs=80, batch_size=32, window=24, channels=32, n_layers=2, n_heads=4, n_samples=9,
                  lr=3e-3, random_state=0, verbose=False)
    out = imp.fit(X_all.iloc[:700]).transform(X)
    gaps = X.isna().to_numpy()
    mae = np.abs(out.to_numpy() - full.to_numpy())[gaps].mean()
    mean_mae = np.abs(X.fillna(X.mean()).to_numpy() - full.to_numpy())[gaps].mean()
    assert mae <= 0.7 * mean_mae, (mae, mean_mae)


def test_transform_keeps_index_columns_and_observed_cells_exactly(tiny_imputer, sinusoids):
    X, _ = sinusoids
    before = X.copy()
    out = tiny_imputer.transform(X)
    pd.testing.assert_frame_equal(X, before)  # input not modified
    assert out.index.equals(X.index) and list(out.columns) == list(X.columns)
    obs = X.notna().to_numpy()
    assert np.array_equal(out.to_numpy()[obs], X.to_numpy()[obs])
    assert not out.isna().any().any()


def test_same_random_state_gives_identical_output(sinusoids):
    X, _ = sinusoids
    a = Imputer(random_state=7, **TINY).fit_transform(X)
    b = Imputer(random_state=7, **TINY).fit_transform(X)
    pd.testing.assert_frame_equal(a, b)
    c = Imputer(random_state=8, **TINY).fit_transform(X)
    assert not a.equals(c)


def test_transform_is_repeatable_for_a_seeded_imputer(tiny_imputer, sinusoids):
    X, _ = sinusoids
    pd.testing.assert_frame_equal(tiny_imputer.transform(X), tiny_imputer.transform(X))


def test_save_load_gives_identical_output(tiny_imputer, sinusoids, tmp_path):
    X, _ = sinusoids
    path = tmp_path / "model.pt"
    tiny_imputer.save(path)
    loaded = Imputer.load(path)
    assert loaded.get_params() == tiny_imputer.get_params()
    pd.testing.assert_frame_equal(loaded.transform(X), tiny_imputer.transform(X))


def test_load_rejects_foreign_truncated_and_newer_files(tiny_imputer, tmp_path):
    import torch

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a tsimpute imputer"):
        Imputer.load(foreign)
    good = tmp_path / "good.pt"
    tiny_imputer.save(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a readable"):
        Imputer.load(truncated)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ValueError):
        Imputer.load(text)
    payload = torch.load(good, weights_only=True)
    payload["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(ValueError, match="newer"):
        Imputer.load(newer)
    with pytest.raises(FileNotFoundError):
        Imputer.load(tmp_path / "missing.pt")


def test_sample_and_quantiles(tiny_imputer, sinusoids):
    X, _ = sinusoids
    s = tiny_imputer.sample(X, n_samples=3)
    assert s.shape == (3, *X.shape)
    obs = X.notna().to_numpy()
    assert np.array_equal(s[:, obs], np.broadcast_to(X.to_numpy()[obs], (3, obs.sum())))
    gaps = ~obs
    assert np.ptp(s[:, gaps], axis=0).max() > 0  # samples differ in the gaps
    q = tiny_imputer.predict_quantiles(X, quantiles=(0.1, 0.5, 0.9))
    assert q.columns.names == ["quantile", "column"]
    assert list(q.columns.get_level_values(0).unique()) == [0.1, 0.5, 0.9]
    lo, hi = q[0.1].to_numpy(), q[0.9].to_numpy()
    assert (lo <= hi + 1e-12).all()
    with pytest.raises(ValueError, match="quantiles"):
        tiny_imputer.predict_quantiles(X, quantiles=(1.5,))


def test_sklearn_contract(tiny_imputer, sinusoids):
    X, _ = sinusoids
    imp = Imputer(window=10, random_state=3, verbose=False)
    params = imp.get_params()
    assert params["window"] == 10 and params["random_state"] == 3
    cloned = clone(imp)
    assert cloned.get_params() == params
    assert imp.set_params(epochs=2) is imp and imp.epochs == 2
    fitted_clone = clone(tiny_imputer)
    assert not hasattr(fitted_clone, "model_")
    assert list(tiny_imputer.get_feature_names_out()) == list(X.columns)


def test_pipeline(sinusoids):
    X, _ = sinusoids
    pipe = Pipeline([("scale", FunctionTransformer(lambda d: d * 2.0)), ("impute", Imputer(random_state=0, **TINY))])
    out = pipe.fit(X).transform(X)
    assert out.shape == X.shape and not out.isna().any().any()


def test_panel_frames_and_short_series():
    X = panel_frame()
    imp = Imputer(random_state=0, **TINY).fit(X)
    short = X.loc[["s0", "s1"]].groupby(level=0).head(7)  # 7 rows per series < window 12: padded
    out = imp.transform(short)
    assert out.index.equals(short.index)
    obs = short.notna().to_numpy()
    assert np.array_equal(out.to_numpy()[obs], short.to_numpy()[obs]) and not out.isna().any().any()
    long = imp.transform(X)  # every series windowed on its own
    assert long.shape == X.shape


def test_long_series_are_windowed_and_stitched(tiny_imputer):
    X, _ = correlated_sinusoids(101, 4, seed=9)  # 101 rows, window 12: overlapping windows, uneven end
    out = tiny_imputer.transform(X)
    assert not out.isna().any().any()


def test_numpy_input_gives_numpy_output(sinusoids):
    X, _ = sinusoids
    arr = X.to_numpy()
    imp = Imputer(random_state=0, **TINY).fit(arr)
    out = imp.transform(arr)
    assert isinstance(out, np.ndarray) and out.shape == arr.shape
    obs = ~np.isnan(arr)
    assert np.array_equal(out[obs], arr[obs])


def test_inference_settings_change_without_refit(tiny_imputer, sinusoids):
    X, _ = sinusoids
    imp = copy.deepcopy(tiny_imputer)
    weights = {k: v.clone() for k, v in imp.model_.state_dict().items()}
    imp.set_params(step_selection="uniform", target_steps=5)
    _, info = imp.sample(X, return_info=True)
    assert info.steps == 5 and info.nfe % 5 == 0 and imp.inference_steps().numel() == 5
    imp.set_params(step_selection="all", sampler="ddim")
    _, info = imp.sample(X, return_info=True)
    assert info.steps == 50 and info.nfe % 50 == 0
    for k, v in imp.model_.state_dict().items():
        assert np.array_equal(v.numpy(), weights[k].numpy())
    imp.set_params(step_selection="learned")
    with pytest.raises(ValueError, match="learn_steps"):
        imp.transform(X)


# ---------------------------------------------------------------- bad input


def test_non_numeric_columns_are_listed(sinusoids):
    X, _ = sinusoids
    bad = X.assign(city="paris", flag=True)
    with pytest.raises(TypeError, match=r"\['city', 'flag'\]"):
        Imputer(**TINY).fit(bad)


def test_all_nan_column_at_fit_is_warned_left_out_and_kept_in_the_output(sinusoids, tmp_path):
    X, _ = sinusoids
    bad = X.assign(x1=np.nan)
    with pytest.warns(UserWarning, match=r"\['x1'\].*entirely missing"):
        imp = Imputer(random_state=0, **TINY).fit(bad)
    assert list(imp.empty_features_) == ["x1"]
    assert imp.model_.config.n_features == X.shape[1] - 1
    out = imp.transform(bad)
    assert list(out.columns) == list(X.columns)
    assert out["x1"].isna().all()
    others = [c for c in X.columns if c != "x1"]
    assert not out[others].isna().any().any()
    # a value observed later in that column comes back unchanged; the others are imputed as before
    later = bad.copy()
    later.iloc[5, list(X.columns).index("x1")] = 7.25
    out2 = imp.transform(later)
    assert out2["x1"].iloc[5] == 7.25 and out2["x1"].isna().sum() == len(X) - 1
    assert np.array_equal(out2[others].to_numpy(), out[others].to_numpy())
    assert imp.sample(bad, n_samples=2)[..., list(X.columns).index("x1")].shape == (2, len(X))
    imp.save(tmp_path / "m.pt")
    again = Imputer.load(tmp_path / "m.pt")
    assert list(again.empty_features_) == ["x1"]
    assert np.array_equal(again.transform(bad).to_numpy(), out.to_numpy(), equal_nan=True)


def test_every_column_missing_at_fit(sinusoids):
    X, _ = sinusoids
    with pytest.raises(ValueError, match="every column"):
        Imputer(**TINY).fit(X * np.nan)


def test_infinite_values(sinusoids):
    X, _ = sinusoids
    bad = X.copy()
    bad.iloc[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"infinite.*x2"):
        Imputer(**TINY).fit(bad)


def test_empty_frame():
    with pytest.raises(ValueError, match="empty"):
        Imputer(**TINY).fit(pd.DataFrame())
    with pytest.raises(ValueError, match="empty"):
        Imputer(**TINY).fit(pd.DataFrame({"a": []}, dtype=float))


def test_fewer_rows_than_window(sinusoids):
    X, _ = sinusoids
    with pytest.raises(ValueError, match="window=12"):
        Imputer(**TINY).fit(X.iloc[:8])


def test_columns_differ_at_transform(tiny_imputer, sinusoids):
    X, _ = sinusoids
    with pytest.raises(ValueError, match=r"missing \['x3'\], extra \['y'\]"):
        tiny_imputer.transform(X.drop(columns="x3").assign(y=1.0))
    reordered = X[list(reversed(X.columns))]
    out = tiny_imputer.transform(reordered)
    assert list(out.columns) == list(reordered.columns)


def test_duplicated_or_unsorted_index(sinusoids):
    X, _ = sinusoids
    with pytest.raises(ValueError, match="duplicated"):
        Imputer(**TINY).fit(pd.concat([X.iloc[:50], X.iloc[:50]]))
    with pytest.raises(ValueError, match="unsorted"):
        Imputer(**TINY).fit(X.iloc[::-1])
    panel = panel_frame()
    with pytest.raises(ValueError, match="not increasing"):
        Imputer(**TINY).fit(panel.iloc[::-1])


def test_multiindex_with_three_levels(sinusoids):
    X, _ = sinusoids
    idx = pd.MultiIndex.from_arrays([np.zeros(len(X)), np.zeros(len(X)), np.arange(len(X))])
    with pytest.raises(ValueError, match="3 levels"):
        Imputer(**TINY).fit(X.set_axis(idx))


def test_input_that_is_not_2d_or_3d():
    # 3-D arrays are panels (tests/test_pypots_shapes.py); 4-D is refused, naming the accepted shapes
    with pytest.raises(ValueError, match=r"3-D array-like \(n_series, n_steps, n_features\).*4-D input"):
        Imputer(**TINY).fit(np.zeros((2, 3, 4, 5)))
    with pytest.raises(TypeError, match="got str 'data.csv'"):  # a path is not data: read it first
        Imputer(**TINY).fit("data.csv")


@pytest.mark.parametrize(
    "params, match",
    [
        ({"epochs": -1}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"schedule": "sigmoid"}, "schedule"),
        ({"target_strategy": "future"}, "target_strategy"),
        ({"sampler": "euler"}, "sampler"),
        ({"step_selection": "random"}, "step_selection"),
        ({"step_selection": "learned", "target_steps": 60}, "target_steps"),
        ({"step_selection": "uniform", "target_steps": 0}, "target_steps"),
        ({"parameterization": "x0"}, "parameterization"),
        ({"lr": 0}, "lr"),
        ({"window": 1}, "window"),
        ({"eta": 2.0}, "eta"),
        ({"device": "tpu"}, "device"),
        ({"precision": "fp8"}, "precision"),
        ({"channels": 10, "n_heads": 4}, "divisible"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_invalid_arguments(sinusoids, params, match):
    X, _ = sinusoids
    with pytest.raises(ValueError, match=match):
        Imputer(**{**TINY, **params}).fit(X)


def test_transform_before_fit(sinusoids):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        Imputer().transform(sinusoids[0])


def test_uniform_steps_beyond_the_chain_keep_every_step(sinusoids):
    X, _ = sinusoids
    imp = Imputer(**{**TINY, "n_steps": 5, "step_selection": "uniform", "target_steps": 10}).fit(X)
    assert np.array_equal(imp.steps_, np.arange(5))
    assert imp.sample(X, n_samples=1, return_info=True)[1].steps == 5
