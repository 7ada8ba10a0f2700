"""Split-conformal recalibration of the samples' spread (tsimpute.calibration, Imputer(calibration=...))."""

import numpy as np
import pytest
import torch

from tsimpute import Imputer
from tsimpute.calibration import LEVELS, SpreadCalibration, fit_spread_calibration
from tsimpute.metrics import coverage

from .conftest import TINY


def _draws(n_windows=40, k=2, length=24, n=200, spread=(1.0, 1.0), truth=(2.0, 0.5), seed=0):
    """Samples N(0, spread_k^2) and truths N(0, truth_k^2) per feature; every other entry given."""
    g = torch.Generator().manual_seed(seed)
    cond = torch.zeros(n_windows, k, length)
    cond[..., ::2] = 1
    s = torch.tensor(spread).view(1, 1, k, 1)
    t = torch.tensor(truth).view(1, k, 1)
    samples = torch.randn(n, n_windows, k, length, generator=g, dtype=torch.float64) * s
    target = torch.randn(n_windows, k, length, generator=g, dtype=torch.float64) * t
    samples = torch.where(cond.bool(), target, samples)  # given entries: every sample is the value
    return samples, target, 1 - cond, cond


def test_factors_undo_a_known_miscalibration_per_feature():
    samples, target, hidden, cond = _draws()
    cal = fit_spread_calibration(samples, target, hidden, cond)
    # the truth is 2x (feature 0) and 0.5x (feature 1) as wide as the samples, at every level and gap range
    assert cal.factors.shape == (2, 4, len(LEVELS)) and cal.counts.sum() == int(hidden.sum())
    assert np.all(np.abs(cal.factors[0][cal.counts[0] >= 100] - 2.0) < 0.3)
    assert np.all(np.abs(cal.factors[1][cal.counts[1] >= 100] - 0.5) < 0.08)
    # on fresh draws of the same kind, each feature's rescaled bands cover their level, the raw ones do not
    fresh, truth, hidden2, cond2 = _draws(n_windows=120, seed=1)
    out = cal.apply(fresh, cond2)
    for k in (0, 1):
        mask = hidden2[:, k].numpy() > 0
        for level in (0.5, 0.9):
            raw = coverage(fresh[:, :, k].numpy(), truth[:, k].numpy(), mask, level=level)
            fixed = coverage(out[:, :, k].numpy(), truth[:, k].numpy(), mask, level=level)
            assert abs(fixed - level) < 0.04 and abs(raw - level) > 0.09


def test_heavy_tails_get_a_factor_per_level():
    samples, target, hidden, cond = _draws(n_windows=120, truth=(1.0, 1.0))
    g = torch.Generator().manual_seed(2)
    heavy = torch.randn(target.shape, generator=g, dtype=torch.float64) / torch.rand(
        target.shape, generator=g, dtype=torch.float64).clamp(min=0.05).sqrt()  # a heavy-tailed truth
    cal = fit_spread_calibration(samples, heavy, hidden, cond)
    assert cal.factors[0, 0, -1] > 1.3 * cal.factors[0, 0, 2]  # the 95% band grows more than the 50% band
    fresh, _, hidden2, cond2 = _draws(n_windows=120, seed=3)
    truth2 = torch.randn(hidden2.shape, generator=g, dtype=torch.float64) / torch.rand(
        hidden2.shape, generator=g, dtype=torch.float64).clamp(min=0.05).sqrt()
    out = cal.apply(fresh, cond2).numpy()
    mask = hidden2.numpy() > 0
    for level in (0.5, 0.9):
        assert abs(coverage(out, truth2.numpy(), mask, level=level) - level) < 0.03
    # ranks are kept: the same sample is the smallest before and after
    assert torch.equal(torch.as_tensor(out).argsort(0)[:, 0, 0, 1], fresh.argsort(0)[:, 0, 0, 1])


def test_apply_keeps_the_median_and_the_given_entries():
    samples, target, hidden, cond = _draws(n=9)
    cal = SpreadCalibration(np.full((2, 4, len(LEVELS)), 3.0), np.zeros((2, 4), dtype=int))
    out = cal.apply(samples, cond)
    torch.testing.assert_close(out.median(0).values, samples.median(0).values)
    assert torch.equal(out[:, cond.bool()], samples[:, cond.bool()])
    torch.testing.assert_close(out.std(0), 3 * samples.std(0))
    with pytest.raises(ValueError, match="features"):
        cal.apply(samples[:, :, :1], cond[:, :1])


def test_small_groups_take_their_features_or_the_overall_factor():
    samples, target, hidden, cond = _draws(n_windows=2, length=24)  # 24 hidden entries per feature
    cal = fit_spread_calibration(samples, target, hidden, cond, min_count=30)
    assert np.all(cal.factors == cal.factors[:1, :1])  # the overall factors for all
    with pytest.raises(ValueError, match="at least 100 hidden"):
        fit_spread_calibration(samples, target, hidden, cond, min_count=100)
    with pytest.raises(ValueError, match="levels"):
        fit_spread_calibration(samples, target, hidden, cond, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="2 samples"):
        fit_spread_calibration(samples[:1], target, hidden, cond)


def test_imputer_calibrates_in_fit_keeps_the_median_and_saves_it(sinusoids, tmp_path):
    X, _ = sinusoids
    params = {**TINY, "n_samples": 10, "random_state": 0}
    plain = Imputer(**params).fit(X)
    calibrated = Imputer(**params, calibration="conformal").fit(X)
    assert plain.calibration_ is None and calibrated.calibration_ is not None
    assert calibrated.calibration_.sampling["steps"] == list(calibrated.steps_)
    # same network and seeds: the median is the same, the spread is not
    np.testing.assert_allclose(calibrated.transform(X).to_numpy(), plain.transform(X).to_numpy(), atol=1e-9)
    bands = calibrated.predict_quantiles(X, quantiles=(0.05, 0.95)).to_numpy()
    raw = plain.predict_quantiles(X, quantiles=(0.05, 0.95)).to_numpy()
    assert not np.allclose(bands, raw)
    calibrated.save(tmp_path / "m.pt")
    back = Imputer.load(tmp_path / "m.pt")
    assert np.array_equal(back.calibration_.factors, calibrated.calibration_.factors)
    np.testing.assert_array_equal(back.predict_quantiles(X, quantiles=(0.05, 0.95)).to_numpy(), bands)
    # other sampling settings: the factors do not describe them, so they are not applied (and it says so)
    back.set_params(step_selection="all")
    with pytest.warns(UserWarning, match="calibrate"):
        back.sample(X, n_samples=2)
    back.calibrate(X, n_samples=4)
    assert back.calibration_.sampling["steps"] == list(range(back.n_steps))
    with pytest.raises(ValueError, match="n_samples"):
        back.calibrate(X, n_samples=1)
    with pytest.raises(ValueError, match="calibration"):
        Imputer(calibration="isotonic").fit(X)


def test_ddpm_variance_widens_the_samples_and_is_checked(sinusoids):
    X, _ = sinusoids
    imp = Imputer(**{**TINY, "n_samples": 6}, step_selection="uniform", target_steps=3, random_state=0).fit(X)
    narrow = imp.sample(X, n_samples=6)
    wide = imp.set_params(variance=1.0).sample(X, n_samples=6)
    gaps = X.isna().to_numpy()
    assert wide.std(axis=0)[gaps].mean() > narrow.std(axis=0)[gaps].mean()
    np.testing.assert_array_equal(wide[:, ~gaps], narrow[:, ~gaps])  # observed cells untouched
    with pytest.raises(ValueError, match="variance"):
        Imputer(**TINY, variance=1.5).fit(X)
    with pytest.raises(ValueError, match="variance"):
        Imputer(**TINY, sampler="ddim", variance=0.5).fit(X)
