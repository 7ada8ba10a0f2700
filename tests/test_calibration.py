"""Split-conformal recalibration of the samples' spread (tsimpute.calibration, Imputer(calibration=...))."""

import numpy as np
import pytest
import torch

from tsimpute import Imputer
from tsimpute.calibration import LEVELS, SpreadCalibration, conformal_quantile, fit_spread_calibration
from tsimpute.data import WindowSet, hide_observed, window_starts
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
    assert fit_spread_calibration(samples, target, hidden, cond, value_bins=3).factors.shape == (2, 4, 3, len(LEVELS))
    cal = fit_spread_calibration(samples, target, hidden, cond, value_bins=1)
    # the truth is 2x (feature 0) and 0.5x (feature 1) as wide as the samples, at every level and gap range
    assert cal.factors.shape == (2, 4, 1, len(LEVELS)) and cal.counts.sum() == int(hidden.sum())
    assert np.all(np.abs(cal.factors[0][cal.counts[0] >= 100] - 2.0) < 0.3)
    assert np.all(np.abs(cal.factors[1][cal.counts[1] >= 100] - 0.5) < 0.08)
    # on fresh draws of the same kind, each feature's rescaled bands cover their level, the raw ones do not;
    # averaged over ten calibrations (one of ~500 entries per feature varies by 2-3 points)
    fixed, raw = np.zeros((2, 2)), np.zeros((2, 2))
    for seed in range(10):
        cal = fit_spread_calibration(*_draws(seed=10 + seed))
        fresh, truth, hidden2, cond2 = _draws(n_windows=120, seed=20 + seed)
        out = cal.apply(fresh, cond2)
        for k in (0, 1):
            mask = hidden2[:, k].numpy() > 0
            for j, level in enumerate((0.5, 0.9)):
                raw[k, j] += coverage(fresh[:, :, k].numpy(), truth[:, k].numpy(), mask, level=level) / 10
                fixed[k, j] += coverage(out[:, :, k].numpy(), truth[:, k].numpy(), mask, level=level) / 10
    levels = np.array([[0.5, 0.9]])
    assert np.all(np.abs(fixed - levels) < 0.025), fixed
    assert np.all(np.abs(raw - levels) > 0.09), raw


def _level_dependent(n_windows, seed):
    """Samples N(mu, 1) about a per-entry value mu in [-3, 3]; the truth N(mu, s^2), s = 0.5 below -1, 2 above 1."""
    g = torch.Generator().manual_seed(seed)
    cond = torch.zeros(n_windows, 1, 24)
    cond[..., ::2] = 1
    mu = (torch.rand(n_windows, 1, 24, generator=g, dtype=torch.float64) - 0.5) * 6
    s = torch.where(mu < -1, 0.5, torch.where(mu > 1, 2.0, 1.0))
    samples = mu + torch.randn(100, n_windows, 1, 24, generator=g, dtype=torch.float64)
    target = mu + s * torch.randn(n_windows, 1, 24, generator=g, dtype=torch.float64)
    samples = torch.where(cond.bool(), target, samples)
    return samples, target, 1 - cond, cond, mu


def test_value_ranges_get_factors_of_their_own():
    samples, target, hidden, cond, _ = _level_dependent(200, 0)
    cal = fit_spread_calibration(samples, target, hidden, cond, value_bins=3)
    assert cal.value_edges.shape == (1, 2)
    np.testing.assert_allclose(cal.value_edges[0], [-1, 1], atol=0.15)  # the medians' terciles
    np.testing.assert_allclose(cal.factors[0, 0, :, 4], [0.5, 1.0, 2.0], rtol=0.15)  # the 80% band's factor
    flat = fit_spread_calibration(samples, target, hidden, cond)  # the default: one range
    fresh, truth, hidden2, cond2, mu = _level_dependent(200, 1)
    for name, c, tol in (("by value range", cal, 0.05), ("one range", flat, None)):
        out = c.apply(fresh, cond2).numpy()
        for sel in (mu < -1, mu > 1):
            mask = (hidden2 > 0).numpy() & sel.numpy()
            got = coverage(out, truth.numpy(), mask, level=0.8)
            if tol is None:
                assert abs(got - 0.8) > 0.08, (name, got)
            else:
                assert abs(got - 0.8) < tol, (name, got)
    back = SpreadCalibration.from_dict(cal.to_dict())
    assert np.array_equal(back.factors, cal.factors) and np.array_equal(back.value_edges, cal.value_edges)
    # written before value ranges existed: (K, B, J) factors, no edges
    old = SpreadCalibration.from_dict({"factors": np.ones((1, 4, len(LEVELS))).tolist(),
                                       "counts": np.zeros((1, 4), dtype=int).tolist(), "levels": list(LEVELS)})
    assert old.factors.shape == (1, 4, 1, len(LEVELS)) and old.value_edges.shape == (1, 0)
    torch.testing.assert_close(old.apply(fresh, cond2), fresh)
    with pytest.raises(ValueError, match="value_bins"):
        fit_spread_calibration(samples, target, hidden, cond, value_bins=0)
    with pytest.raises(ValueError, match="value_edges"):
        SpreadCalibration(np.ones((1, 4, 3, len(LEVELS))), np.zeros((1, 4, 3), dtype=int))


def test_heavy_tails_get_a_factor_per_level():
    samples, target, hidden, cond = _draws(n_windows=120, truth=(1.0, 1.0))
    g = torch.Generator().manual_seed(2)
    heavy = torch.randn(target.shape, generator=g, dtype=torch.float64) / torch.rand(
        target.shape, generator=g, dtype=torch.float64).clamp(min=0.05).sqrt()  # a heavy-tailed truth
    cal = fit_spread_calibration(samples, heavy, hidden, cond)
    assert np.all(cal.factors[0, 0, :, -1] > 1.3 * cal.factors[0, 0, :, 2])  # the 95% band grows more than the 50%
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


def test_conformal_quantile_is_the_ceil_n_plus_1_level_order_statistic():
    scores = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))  # 1..100 shuffled
    assert conformal_quantile(scores, 0.9) == 91.0  # ceil(101 * 0.9) = 91st smallest
    assert conformal_quantile(scores, 0.5) == 51.0
    assert conformal_quantile(scores, 0.995) == 100.0  # rank beyond n: the largest
    # exchangeable scores: a new one is at most the quantile with probability ceil((n+1) l) / (n+1)
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((20000, 21))
    held = np.array([conformal_quantile(d[:20], 0.8) for d in draws])
    assert abs(np.mean(draws[:, 20] <= held) - 17 / 21) < 0.01


def test_hist_hiding_hides_other_windows_gaps():
    values = torch.randn(50, 3, 40)
    observed = torch.ones(50, 3, 40)
    observed[::2, :, 10:30] = 0  # every other window has a long gap
    data = WindowSet(values * observed, observed)
    gen = torch.Generator().manual_seed(0)
    given, vals, hidden = hide_observed(data, 0.2, 50, gen, strategy="hist")
    assert torch.all(hidden <= observed) and torch.all(given.observed + hidden == observed)
    per_window = hidden.sum((1, 2))
    assert set(per_window.tolist()) <= {0.0, 60.0}  # a whole gap of another window, or nothing
    assert (per_window > 0).sum() > 3  # about a quarter of the windows: full ones given a gapped pattern
    assert torch.equal(hidden[:, :, :10], torch.zeros_like(hidden[:, :, :10]))  # only where others had gaps
    mixed = hide_observed(data, 0.2, 50, torch.Generator().manual_seed(0), strategy="mix")[2]
    assert torch.any(mixed[:, :, :10] > 0) and torch.all(mixed <= observed)
    with pytest.raises(ValueError, match="target strategy"):
        hide_observed(data, 0.2, 50, gen, strategy="other")


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


def test_imputer_calibrates_in_fit_keeps_the_median_and_saves_it(sinusoids, tmp_path, monkeypatch):
    X, _ = sinusoids
    params = {**TINY, "n_samples": 10, "random_state": 0}
    plain = Imputer(**params).fit(X)
    seen = []
    fit_calibration = Imputer._fit_calibration
    monkeypatch.setattr(Imputer, "_fit_calibration", lambda self, data, n=None: (seen.append(data),
                                                                                fit_calibration(self, data, n)))
    calibrated = Imputer(**params, calibration="conformal").fit(X)
    def n_windows(rows):  # windows of 12 rows, 6 apart
        return len(window_starts(rows, 12, 6))

    # 30 validation rows hold fewer than 200 observed values: the validation windows and the training ones
    assert len(seen[0]) == n_windows(30) + n_windows(270)
    Imputer(**params, calibration="conformal", validation_fraction=0.3).fit(X)
    # 90 validation rows: each validation window hidden anew in several copies, up to 256 windows
    v = n_windows(90)
    assert len(seen[1]) == v * -(-256 // v) and torch.equal(seen[1].values[v:2 * v], seen[1].values[:v])
    monkeypatch.undo()
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
    back.calibrate(X, n_samples=4, value_bins=2)  # value ranges: two per feature, applied with their edges
    assert back.calibration_.factors.shape[2] == 2 and back.calibration_.value_edges.shape == (X.shape[1], 1)
    assert np.isfinite(back.sample(X, n_samples=4)).all()
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="value_bins"):
            back.calibrate(X, n_samples=4, value_bins=bad)
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
