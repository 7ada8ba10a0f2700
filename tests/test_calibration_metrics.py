"""Tests for the calibration metrics of tsimpute.metrics: known distributions, hand-computed values, checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tsimpute import metrics as M

N_ENTRIES = 4000
N_SAMPLES = 400


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _binomial_tolerance(p: float, m: int, z: float = 4.0) -> float:
    return z * math.sqrt(p * (1.0 - p) / m)


@pytest.fixture(scope="module")
def normal_data():
    """Targets from N(0, 1), one ensemble of N(0, 1) samples per entry, and all-true mask."""
    rng = np.random.default_rng(20240607)
    target = rng.standard_normal(N_ENTRIES)
    samples = rng.standard_normal((N_SAMPLES, N_ENTRIES))
    return samples, target, np.ones(N_ENTRIES, dtype=bool)


# ----------------------------------------------------------------------------- coverage
@pytest.mark.parametrize("level", [0.5, 0.9])
def test_calibrated_samples_cover_the_nominal_share(normal_data, level):
    samples, target, mask = normal_data
    cov = M.coverage(samples, target, mask, level=level)
    assert abs(cov - level) < _binomial_tolerance(level, N_ENTRIES)


def test_overconfident_samples_match_normal_theory(normal_data):
    samples, target, mask = normal_data
    # samples from N(0, 0.5^2): the 90% band is about +-1.645 * 0.5, which covers 2 Phi(0.82) - 1 of N(0, 1)
    expected = 2.0 * _phi(1.6449 * 0.5) - 1.0
    assert expected == pytest.approx(0.589, abs=1e-3)
    cov = M.coverage(0.5 * samples, target, mask, level=0.9)
    assert abs(cov - expected) < _binomial_tolerance(expected, N_ENTRIES)


def test_underconfident_samples_over_cover(normal_data):
    samples, target, mask = normal_data
    expected = 2.0 * _phi(1.6449 * 2.0) - 1.0  # about 0.999
    cov = M.coverage(2.0 * samples, target, mask, level=0.9)
    assert cov > 0.99 and abs(cov - expected) < _binomial_tolerance(0.99, N_ENTRIES)


def test_band_bounds_are_inclusive_and_linearly_interpolated():
    # samples 0..4 per entry: the 50% band is [quantile 0.25, quantile 0.75] = [1, 3]
    samples = np.repeat(np.arange(5.0)[:, None], 5, axis=1)
    target = np.array([1.0, 3.0, 0.999, 3.001, 2.0])
    assert M.coverage(samples, target, np.ones(5, bool), level=0.5) == pytest.approx(3 / 5)
    # two samples {0, 10}: linear interpolation puts the 50% band at [2.5, 7.5]
    two = np.array([[0.0], [10.0]])
    assert M.band_width(two, np.array([True]), level=0.5) == pytest.approx(5.0)
    assert M.coverage(two, np.array([2.5]), np.array([True]), level=0.5) == 1.0
    assert M.coverage(two, np.array([2.49]), np.array([True]), level=0.5) == 0.0


# ----------------------------------------------------------------------------- width
def test_width_of_uniform_samples():
    # an evenly spaced grid on [0, 1]: the 90% band is exactly [0.05, 0.95]
    grid = np.linspace(0.0, 1.0, 101)[:, None] * np.ones((1, 3))
    assert M.band_width(grid, np.ones(3, bool), level=0.9) == pytest.approx(0.9)
    assert M.band_width(3.0 * grid, np.ones(3, bool), level=0.5) == pytest.approx(1.5)
    # random uniform samples on [0, 2]: width close to 2 * 0.8
    rng = np.random.default_rng(1)
    u = rng.uniform(0.0, 2.0, size=(2000, 50))
    assert M.band_width(u, np.ones(50, bool), level=0.8) == pytest.approx(1.6, abs=0.03)
    # one sample: no spread
    assert M.band_width(u[:1], np.ones(50, bool)) == 0.0


def test_calibrated_normal_width_matches_theory(normal_data):
    samples, _, mask = normal_data
    assert M.band_width(samples, mask, level=0.9) == pytest.approx(2 * 1.6449, rel=0.02)


# ----------------------------------------------------------------------------- interval score
def test_interval_score_by_hand():
    # samples 0..4 per entry, level 0.5 (alpha 0.5): band [1, 3], width 2, penalty 2 / alpha = 4 per unit
    samples = np.repeat(np.arange(5.0)[:, None], 4, axis=1)
    target = np.array([2.0, -1.0, 4.5, 3.0])
    # inside: 2; below by 2: 2 + 4 * 2 = 10; above by 1.5: 2 + 4 * 1.5 = 8; on the upper bound: 2
    want = (2 + 10 + 8 + 2) / 4
    assert M.interval_score(samples, target, np.ones(4, bool), level=0.5) == pytest.approx(want)
    # a mask keeps the two outside entries only
    mask = np.array([False, True, True, False])
    assert M.interval_score(samples, target, mask, level=0.5) == pytest.approx(9.0)


def test_interval_score_prefers_calibrated_samples(normal_data):
    samples, target, mask = normal_data
    good = M.interval_score(samples, target, mask)
    assert good < M.interval_score(0.5 * samples, target, mask)
    assert good < M.interval_score(2.0 * samples, target, mask)
    # expected score of the exact N(0, 1) 90% interval: 2 z + (2 / 0.1) * 2 * (phi(z) - z * (1 - Phi(z)))
    z = 1.6449
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    exact = 2 * z + 20.0 * 2 * (pdf - z * (1 - _phi(z)))
    assert good == pytest.approx(exact, rel=0.05)


# ----------------------------------------------------------------------------- PIT
def test_pit_by_hand():
    samples = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    target = np.array([2.5, 2.0])
    pit = M.pit_values(samples, target, np.ones(2, bool), random_state=0)
    # 2.5: two samples below, no tie -> (2 + U) / 4 in [0.5, 0.75)
    assert 0.5 <= pit[0] < 0.75
    # 2.0: one below, one tie -> (1 + 2 U) / 4 in [0.25, 0.75)
    assert 0.25 <= pit[1] < 0.75
    np.testing.assert_array_equal(pit, M.pit_values(samples, target, np.ones(2, bool), random_state=0))


def _chi2_uniform(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


# chi-square with 9 degrees of freedom: 27.88 is its 0.999 quantile
CHI2_9_999 = 27.88


def test_pit_uniform_for_calibrated_samples(normal_data):
    samples, target, mask = normal_data
    hist = M.pit_histogram(samples[:19], target, mask, bins=10, random_state=0)
    assert hist.n_eval == N_ENTRIES and hist.counts.shape == (10,)
    np.testing.assert_allclose(hist.edges, np.linspace(0, 1, 11))
    assert hist.frequencies.sum() == pytest.approx(1.0)
    assert _chi2_uniform(hist.counts) < CHI2_9_999


def test_pit_randomises_ties():
    # discrete values 0..4: most targets tie with samples; only the randomised PIT is flat
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 5, size=(9, N_ENTRIES)).astype(float)
    target = rng.integers(0, 5, size=N_ENTRIES).astype(float)
    hist = M.pit_histogram(samples, target, np.ones(N_ENTRIES, bool), bins=10, random_state=1)
    assert _chi2_uniform(hist.counts) < CHI2_9_999


def test_pit_u_shaped_for_overconfident_samples(normal_data):
    samples, target, mask = normal_data
    freq = M.pit_histogram(0.5 * samples, target, mask, bins=10, random_state=0).frequencies
    # N(0, 0.5^2) samples: PIT ~ Phi(2 y), so the first bin holds P(y < Phi^-1(0.1) / 2) = Phi(-0.6408) = 0.261
    # (about 2.6 times the calibrated 0.1) and the bin [0.4, 0.5) holds Phi(0) - Phi(-0.1267) = 0.050
    outer, middle = _phi(-1.2816 / 2), 0.5 - _phi(-0.2533 / 2)
    for value, want in ((freq[0], outer), (freq[-1], outer), (freq[4], middle), (freq[5], middle)):
        assert abs(value - want) < _binomial_tolerance(want, N_ENTRIES)
    assert freq[0] > 2 * 0.1 > 2 * freq[5]


def test_pit_hump_shaped_for_underconfident_samples(normal_data):
    samples, target, mask = normal_data
    freq = M.pit_histogram(3.0 * samples, target, mask, bins=10, random_state=0).frequencies
    assert freq[0] < 0.05 and freq[-1] < 0.05 and freq[4] > 0.15


# ----------------------------------------------------------------------------- calibration and evaluate
def test_calibration_dict_matches_single_metrics(normal_data):
    samples, target, mask = normal_data
    out = M.calibration(samples[:50, :500], target[:500], mask[:500])
    assert list(out) == ["cov50", "width50", "cov80", "width80", "cov90", "width90", "cov95", "width95"]
    for level in M.CALIBRATION_LEVELS:
        name = f"{round(100 * level)}"
        assert out[f"cov{name}"] == M.coverage(samples[:50, :500], target[:500], mask[:500], level)
        assert out[f"width{name}"] == M.band_width(samples[:50, :500], mask[:500], level)
    covs = [out[f"cov{n}"] for n in (50, 80, 90, 95)]
    assert covs == sorted(covs)
    assert list(M.calibration(samples[:5], target, mask, levels=[0.975])) == ["cov97.5", "width97.5"]


def test_evaluate_levels_option_adds_keys_only(normal_data):
    samples, target, mask = normal_data
    s, t, m = samples[:10, :300], target[:300], mask[:300]
    base = M.evaluate(s, t, m)
    more = M.evaluate(s, t, m, levels=(0.5, 0.9))
    assert {k: more[k] for k in base} == base
    assert set(more) - set(base) == {"cov50", "width50", "cov90", "width90"}
    assert more["cov90"] == M.coverage(s, t, m, 0.9)
    point = M.evaluate(s[:1], t, m, levels=(0.9,))
    assert math.isnan(point["cov90"]) and math.isnan(point["width90"])


def test_mask_and_sample_axis():
    rng = np.random.default_rng(5)
    samples = rng.normal(size=(2, 7, 3, 4))  # (B, n, L, K): CSDI's layout, sample axis 1
    target = rng.normal(size=(2, 3, 4))
    mask = rng.random(target.shape) < 0.5
    mask[0, 0, 0] = True
    garbage_target = np.where(mask, target, np.nan)  # outside the mask anything goes, NaN included
    garbage_samples = np.where(mask[:, None], samples, np.inf)
    flat = np.moveaxis(samples, 1, 0)
    for level in (0.5, 0.9):
        want = M.coverage(flat, target, mask, level)
        assert M.coverage(garbage_samples, garbage_target, mask, level, sample_axis=1) == want
        assert M.band_width(garbage_samples, mask, level, sample_axis=1) == M.band_width(flat, mask, level)
        assert M.interval_score(garbage_samples, garbage_target, mask, level, sample_axis=1) == pytest.approx(
            M.interval_score(flat, target, mask, level))
    np.testing.assert_array_equal(
        M.pit_values(garbage_samples, garbage_target, mask, sample_axis=1, random_state=2),
        M.pit_values(flat, target, mask, random_state=2),
    )
    assert M.calibration(garbage_samples, garbage_target, mask, sample_axis=1) == M.calibration(flat, target, mask)
    # a 0/1 mask works like a boolean one
    assert M.coverage(flat, target, mask.astype(int)) == M.coverage(flat, target, mask)


def test_bad_inputs():
    s, t, m = np.zeros((3, 4)), np.zeros(4), np.ones(4, bool)
    for level in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="level"):
            M.coverage(s, t, m, level=level)
    for level in ("0.9", True, None):
        with pytest.raises(TypeError, match="level"):
            M.band_width(s, m, level=level)
    with pytest.raises(ValueError, match="mask has shape"):
        M.coverage(s, t, np.ones(3, bool))
    with pytest.raises(ValueError, match="mask has shape"):
        M.band_width(s, np.ones((3, 4), bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        M.interval_score(s, t, np.full(4, 0.5))
    with pytest.raises(ValueError, match="no evaluation entry"):
        M.coverage(s, t, np.zeros(4, bool))
    with pytest.raises(ValueError, match="one more axis"):
        M.coverage(s, np.zeros((3, 4)), np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="finite"):
        M.coverage(np.full((3, 4), np.nan), t, m)
    with pytest.raises(ValueError, match="finite"):
        M.band_width(np.full((3, 4), np.inf), m)
    with pytest.raises(TypeError, match="numeric"):
        M.band_width(np.array([["a"] * 4] * 3), m)
    with pytest.raises(ValueError, match="sample_axis"):
        M.band_width(s, m, sample_axis=2)
    with pytest.raises(ValueError, match="bins"):
        M.pit_histogram(s, t, m, bins=0)
    with pytest.raises(TypeError, match="bins"):
        M.pit_histogram(s, t, m, bins=2.5)
    with pytest.raises(ValueError, match="distinct"):
        M.calibration(s, t, m, levels=(0.9, 0.9))
    with pytest.raises(ValueError, match="empty"):
        M.calibration(s, t, m, levels=())
    with pytest.raises(TypeError, match="sequence"):
        M.calibration(s, t, m, levels=0.9)
    with pytest.raises(ValueError, match="level"):
        M.evaluate(s, t, m, levels=(0.5, 2.0))
