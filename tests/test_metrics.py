"""Tests for tsimpute.metrics: hand-computed values, CSDI equivalence, masking and checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tsimpute import metrics as M

# 3 samples x 4 entries, worked out by hand below.
SAMPLES = np.array(
    [
        [1.0, 2.0, 0.0, 5.0],
        [3.0, 2.0, 4.0, 1.0],
        [2.0, 8.0, 1.0, 3.0],
    ]
)
TARGET = np.array([2.0, 3.0, -1.0, 4.0])
ALL = np.ones(4, dtype=bool)


def test_hand_computed_median_errors():
    # per-entry medians: 2, 2, 1, 3 -> absolute errors 0, 1, 2, 1
    assert M.mae(SAMPLES, TARGET, ALL) == pytest.approx(1.0)
    assert M.rmse(SAMPLES, TARGET, ALL) == pytest.approx(math.sqrt((0 + 1 + 4 + 1) / 4))
    np.testing.assert_array_equal(M.sample_median(SAMPLES), [2.0, 2.0, 1.0, 3.0])
    assert M.mae_point(np.array([2.0, 2.0, 1.0, 3.0]), TARGET, ALL) == pytest.approx(1.0)
    assert M.rmse_point(np.array([2.0, 2.0, 1.0, 3.0]), TARGET, ALL) == pytest.approx(math.sqrt(1.5))


def test_even_sample_count_median_convention():
    s = np.array([[1.0], [2.0], [3.0], [10.0]])
    t = np.array([0.0])
    m = np.array([True])
    assert M.mae(s, t, m) == pytest.approx(2.0)  # lower middle value, as torch.median
    assert M.mae(s, t, m, median="midpoint") == pytest.approx(2.5)
    with pytest.raises(ValueError, match="median"):
        M.mae(s, t, m, median="mean")


def test_hand_computed_crps_ensemble():
    # CRPS = mean|x - y| - 0.5 mean|x - x'| per entry:
    # 2/3 - 4/9 = 2/9;  7/3 - 4/3 = 1;  8/3 - 8/9 = 16/9;  5/3 - 8/9 = 7/9  -> mean 17/18
    assert M.crps_ensemble(SAMPLES, TARGET, ALL) == pytest.approx(17 / 18)


def test_hand_computed_crps_quantile():
    # samples {0, 1}: linear quantile Q_q = q < y = 1, so the loss is 2 q (1 - q);
    # mean over q = 0.05..0.95 of 2 q (1 - q) = 2 (9.5 - 6.175) / 19 = 0.35.
    s = np.array([[0.0], [1.0]])
    assert M.crps_quantile(s, np.array([1.0]), np.array([True])) == pytest.approx(0.35)
    # adding an exact entry (samples {2, 2}, y = 2) adds no loss but 2 to the denominator
    s2 = np.array([[0.0, 2.0], [1.0, 2.0]])
    assert M.crps_quantile(s2, np.array([1.0, 2.0]), np.array([True, True])) == pytest.approx(0.35 / 3)
    assert len(M.CRPS_QUANTILES) == 19 and M.CRPS_QUANTILES[0] == 0.05


def test_masked_entries_do_not_matter():
    mask = np.array([True, True, False, True])
    wild = SAMPLES.copy()
    wild[:, 2] = [np.nan, 1e9, -1e9]
    target = TARGET.copy()
    target[2] = np.nan
    for fn in (M.mae, M.rmse, M.crps_quantile, M.crps_ensemble):
        assert fn(wild, target, mask) == pytest.approx(fn(SAMPLES, TARGET, mask))
    assert M.mae(SAMPLES, TARGET, mask) == pytest.approx((0 + 1 + 1) / 3)
    assert M.crps_ensemble(SAMPLES, TARGET, mask) == pytest.approx((2 / 9 + 1 + 7 / 9) / 3)


def _csdi_reference(samples_bnlk, target_blk, eval_blk, exact_weights=False):
    """CSDI's utils.py, transcribed with torch (scaler 1, mean 0)."""
    torch = pytest.importorskip("torch")
    samples = torch.from_numpy(samples_bnlk)
    target = torch.from_numpy(target_blk)
    eval_points = torch.from_numpy(eval_blk)

    def quantile_loss(target, forecast, q, eval_points):
        indicator = (target <= forecast) * 1.0  # float32 in torch: CSDI's weights round q to float32
        if exact_weights:
            indicator = indicator.double()
        return 2 * torch.sum(torch.abs((forecast - target) * eval_points * (indicator - q)))

    quantiles = np.arange(0.05, 1.0, 0.05)
    denom = torch.sum(torch.abs(target * eval_points))
    crps = 0
    for i in range(len(quantiles)):
        q_pred = torch.cat(
            [torch.quantile(samples[j : j + 1], quantiles[i], dim=1) for j in range(len(samples))], 0
        )
        crps += quantile_loss(target, q_pred, quantiles[i], eval_points) / denom
    med = samples.median(dim=1).values
    mae = (torch.abs((med - target) * eval_points)).sum() / eval_points.sum()
    rmse = torch.sqrt((((med - target) * eval_points) ** 2).sum() / eval_points.sum())
    return crps.item() / len(quantiles), mae.item(), rmse.item()


def test_matches_csdi_code_on_random_data():
    rng = np.random.default_rng(0)
    b, n, length, k = 3, 10, 6, 4
    samples = rng.normal(size=(b, n, length, k)) * 2 + 1
    target = rng.normal(size=(b, length, k)) * 2 + 1
    eval_mask = rng.random((b, length, k)) < 0.4
    ref_crps, ref_mae, ref_rmse = _csdi_reference(samples, target, eval_mask.astype(np.float64))
    # CSDI's (target <= forecast) * 1.0 is a float32 tensor, so its weights 1{.} - q carry q
    # rounded to float32 (relative effect ~1e-8); with float64 weights the match is exact.
    assert M.crps_quantile(samples, target, eval_mask, sample_axis=1) == pytest.approx(ref_crps, rel=1e-7)
    exact, _, _ = _csdi_reference(samples, target, eval_mask.astype(np.float64), exact_weights=True)
    assert M.crps_quantile(samples, target, eval_mask, sample_axis=1) == pytest.approx(exact, rel=1e-12)
    assert M.mae(samples, target, eval_mask, sample_axis=1) == pytest.approx(ref_mae, rel=1e-12)
    assert M.rmse(samples, target, eval_mask, sample_axis=1) == pytest.approx(ref_rmse, rel=1e-12)
    # sample axis first gives the same
    first = np.moveaxis(samples, 1, 0)
    assert M.crps_quantile(first, target, eval_mask) == pytest.approx(exact, rel=1e-12)


def test_evaluate_bundle_and_float_masks():
    out = M.evaluate(SAMPLES, TARGET, ALL.astype(np.float32))
    assert out["mae"] == pytest.approx(1.0)
    assert out["crps_ensemble"] == pytest.approx(17 / 18)
    assert out["crps"] == pytest.approx(M.crps_quantile(SAMPLES, TARGET, ALL))
    assert out["n_samples"] == 3 and out["n_eval"] == 4


def test_inputs_not_mutated():
    s, t, m = SAMPLES.copy(), TARGET.copy(), ALL.copy()
    M.evaluate(s, t, m)
    M.sample_median(s)
    np.testing.assert_array_equal(s, SAMPLES)
    np.testing.assert_array_equal(t, TARGET)
    np.testing.assert_array_equal(m, ALL)


@pytest.mark.parametrize("fn", [M.mae, M.rmse, M.crps_quantile, M.crps_ensemble])
def test_bad_shapes_and_types(fn):
    with pytest.raises(ValueError, match="one more axis"):
        fn(SAMPLES[0], TARGET, ALL)
    with pytest.raises(ValueError, match="entry shape"):
        fn(SAMPLES[:, :3], TARGET, ALL)
    with pytest.raises(ValueError, match="mask has shape"):
        fn(SAMPLES, TARGET, ALL[:3])
    with pytest.raises(ValueError, match="no evaluation entry"):
        fn(SAMPLES, TARGET, np.zeros(4, dtype=bool))
    with pytest.raises(TypeError, match="mask"):
        fn(SAMPLES, TARGET, np.array(["a", "b", "c", "d"]))
    with pytest.raises(TypeError, match="samples"):
        fn(SAMPLES.astype(str), TARGET, ALL)
    with pytest.raises(ValueError, match="finite"):
        fn(SAMPLES, np.array([np.nan, 1.0, 1.0, 1.0]), ALL)
    with pytest.raises(ValueError, match="sample_axis"):
        fn(SAMPLES, TARGET, ALL, sample_axis=3)


def test_point_shape_checks_and_zero_denominator():
    with pytest.raises(ValueError, match="pred has shape"):
        M.mae_point(TARGET[:3], TARGET, ALL)
    with pytest.raises(ValueError, match="undefined"):
        M.crps_quantile(SAMPLES, np.zeros(4), ALL)
