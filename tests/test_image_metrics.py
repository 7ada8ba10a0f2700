"""Tests for tsimpute.image_metrics: Fréchet distance, the feature classifier, class balance, inpainting errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tsimpute import datasets as D
from tsimpute import image_metrics as M

from ._realdata import data_root

FIT = dict(epochs=12, batch_size=64, lr=3e-3, random_state=0)
ONE = dict(num_threads=1)  # small network: one thread is as fast, and robust on a busy machine


@pytest.fixture(scope="module")
def digits():
    return D.load_digits("train"), D.load_digits("test")


@pytest.fixture(scope="module")
def clf(digits):
    train, _ = digits
    return M.FeatureClassifier(classes=train.classes, **ONE).fit(train.images, train.labels, **FIT)


# ----------------------------------------------------------------------------- Fréchet distance
def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert M.frechet_distance(x, x[::-1]) == pytest.approx(0.0, abs=1e-8)  # order does not matter
    # rank-deficient covariances (more dimensions than samples, dead features) are fine
    y = np.maximum(np.random.default_rng(1).normal(size=(20, 64)), 0)
    y[:, :10] = 0
    assert M.frechet_distance(y, y) == pytest.approx(0.0, abs=1e-8)


def test_frechet_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, -1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    closed = float(np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2)))
    exact = M.frechet_distance_from_stats(mu1, np.diag(s1), mu2, np.diag(s2))
    assert exact == pytest.approx(closed, rel=1e-12)
    rng = np.random.default_rng(0)
    a = mu1 + rng.normal(size=(200_000, 3)) * np.sqrt(s1)
    b = mu2 + rng.normal(size=(200_000, 3)) * np.sqrt(s2)
    assert M.frechet_distance(a, b) == pytest.approx(closed, rel=0.01)
    mu_a, cov_a = M.feature_stats(a)
    assert M.frechet_distance_from_stats(mu_a, cov_a, *M.feature_stats(b)) == pytest.approx(M.frechet_distance(a, b))


def test_frechet_symmetric_and_matches_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) + 0.3
    d_ab, d_ba = M.frechet_distance(a, b), M.frechet_distance(b, a)
    assert d_ab == pytest.approx(d_ba, rel=1e-9)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert d_ab == pytest.approx(ref, rel=1e-8)


def test_frechet_bad_inputs():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="feats_b has 3 features"):
        M.frechet_distance(x, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="feats_a must be a 2-D array"):
        M.frechet_distance(np.zeros(10), x)
    with pytest.raises(ValueError, match="feats_b needs at least 2 samples"):
        M.frechet_distance(x, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="feats_a contains NaN"):
        M.frechet_distance(np.full((10, 4), np.nan), x)
    with pytest.raises(ValueError, match="cov_b must have shape"):
        M.frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    assert "not the Inception FID" in M.frechet_distance.__doc__


# ----------------------------------------------------------------------------- classifier
def test_classifier_on_digits(clf, digits):
    _, test = digits
    assert clf.accuracy(test.images, test.labels) > 0.9
    feats = clf.features(test.images)
    assert feats.shape == (len(test.images), 128) and feats.dtype == np.float32 and feats.min() >= 0
    pred = clf.predict(test.images)
    assert pred.dtype == np.int64 and pred.shape == (len(test.images),)
    proba = clf.predict_proba(test.images[:5])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    # floats in [0, 1] and uint8 give the same answer; a channel axis is optional
    np.testing.assert_allclose(clf.features(test.images[:, None] / 255.0), feats, atol=1e-5)
    # held-out digits are close to the training digits; noise images are far
    train_feats = clf.features(digits[0].images)
    noise = np.random.default_rng(0).integers(0, 256, size=test.images.shape, dtype=np.uint8)
    assert M.frechet_distance(train_feats, feats) < 0.1 * M.frechet_distance(train_feats, clf.features(noise))


def test_classifier_is_deterministic(clf, digits):
    train, test = digits
    again = M.FeatureClassifier(classes=train.classes, **ONE).fit(train.images, train.labels, **FIT)
    np.testing.assert_array_equal(again.features(test.images), clf.features(test.images))
    state = torch.get_rng_state()
    other = M.FeatureClassifier(**ONE).fit(train.images[:200], train.labels[:200], epochs=1, random_state=1)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    assert not np.array_equal(other.features(test.images[:10]), clf.features(test.images[:10]))


def test_classifier_save_load(clf, digits, tmp_path):
    _, test = digits
    path = clf.save(tmp_path / "digits-classifier.pt")
    loaded = M.FeatureClassifier.load(path, num_threads=1)
    assert loaded.classes == clf.classes and loaded.input_shape == (1, 8, 8) and loaded.n_classes == 10
    np.testing.assert_array_equal(loaded.features(test.images), clf.features(test.images))
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"format", "version", "config", "state_dict"}
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a FeatureClassifier file"):
        M.FeatureClassifier.load(tmp_path / "other.pt")


def test_classifier_shapes_and_bad_inputs(clf):
    rng = np.random.default_rng(0)
    rgb = rng.random((40, 3, 32, 32)).astype(np.float32)
    small = M.FeatureClassifier(feature_dim=32, **ONE).fit(rgb, np.arange(40) % 10, epochs=1, max_images=20)
    assert small.features(rgb[:3]).shape == (3, 32) and small.input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\)"):
        clf.features(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="images must be floats in"):
        clf.features(np.full((2, 8, 8), 200.0))
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\)"):
        clf.features(np.zeros((8, 8)))
    with pytest.raises(TypeError, match="images must be uint8"):
        clf.features(np.zeros((2, 8, 8), np.int32))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        M.FeatureClassifier().fit(np.zeros((3, 8, 8)), [0, 1])
    with pytest.raises(ValueError, match="labels must be below n_classes=2"):
        M.FeatureClassifier(2).fit(np.zeros((3, 8, 8)), [0, 1, 2])
    with pytest.raises(ValueError, match="at least 4x4"):
        M.FeatureClassifier().fit(np.zeros((3, 2, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="epochs"):
        M.FeatureClassifier().fit(np.zeros((3, 8, 8)), [0, 1, 0], epochs=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        M.FeatureClassifier().predict(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="num_threads"):
        M.FeatureClassifier(num_threads=0)
    before = torch.get_num_threads()
    clf.features(np.zeros((2, 8, 8), np.uint8))
    assert torch.get_num_threads() == before  # restored


def test_classifier_on_mnist_subset():
    root = data_root("mnist")
    train, test = D.load_mnist("train", data_dir=root), D.load_mnist("test", data_dir=root)
    clf = M.FeatureClassifier(**ONE).fit(
        train.images, train.labels, epochs=1, batch_size=32, lr=2e-3, max_images=3000, random_state=0
    )
    assert clf.input_shape == (1, 28, 28)
    assert clf.accuracy(test.images[:2000], test.labels[:2000]) > 0.8


# ----------------------------------------------------------------------------- class balance
def test_class_balance():
    even = M.class_balance(np.repeat(np.arange(4), 5), 4)
    assert even.counts.tolist() == [5, 5, 5, 5] and even.frequencies.tolist() == [0.25] * 4
    assert even.normalized_entropy == pytest.approx(1.0) and even.max_min_ratio == 1.0 and even.n_missing == 0
    skew = M.class_balance([0, 0, 0, 1], 3)
    assert skew.counts.tolist() == [3, 1, 0] and skew.n_missing == 1 and math.isinf(skew.max_min_ratio)
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert skew.entropy == pytest.approx(expected) and skew.normalized_entropy == pytest.approx(expected / math.log(3))
    assert even.entropy == pytest.approx(math.log(4))
    assert M.class_balance([2, 2], 3).normalized_entropy == 0.0
    assert M.class_balance([0, 1, 1, 1], 2).max_min_ratio == 3.0
    with pytest.raises(ValueError, match="predicted_labels must be below n_classes=3"):
        M.class_balance([0, 3], 3)
    with pytest.raises(ValueError, match="n_classes"):
        M.class_balance([0, 1], 1)
    with pytest.raises(ValueError, match="predicted_labels must be a non-empty 1-D"):
        M.class_balance(np.zeros((2, 2), int), 3)


# ----------------------------------------------------------------------------- inpainting errors
def test_masked_mae_and_psnr_by_hand():
    truth = np.array([[[0.0, 0.5], [1.0, 0.25]]])
    pred = np.array([[[0.1, 0.5], [0.0, 0.25]]])
    mask = np.array([[[True, False], [True, False]]])
    # hidden errors 0.1 and 1.0; visible pixels (even if wrong) are ignored
    assert M.masked_mae(pred, truth, mask) == pytest.approx(0.55)
    mse = (0.1**2 + 1.0**2) / 2
    assert M.psnr(pred, truth, mask) == pytest.approx(10 * math.log10(1 / mse))
    assert M.psnr(pred * 255, truth * 255, mask, data_range=255) == pytest.approx(10 * math.log10(1 / mse))
    wrong_visible = pred.copy()
    wrong_visible[0, 0, 1] = 9.0
    assert M.masked_mae(wrong_visible, truth, mask) == pytest.approx(0.55)
    assert M.psnr(truth, truth, mask) == math.inf
    # per image: image 0 error 0.2 on one pixel (PSNR 10 log10(25)), image 1 error 0.1 (10 log10(100))
    t2 = np.zeros((2, 1, 2, 2))
    p2 = t2.copy()
    p2[0, 0, 0, 0], p2[1, 0, 1, 1] = 0.2, 0.1
    m2 = np.zeros((2, 1, 2, 2), bool)
    m2[0, 0, 0, 0] = m2[1, 0, 1, 1] = True
    assert M.psnr(p2, t2, m2, per_image=True) == pytest.approx((10 * math.log10(25) + 20) / 2)
    # a (N, 1, H, W) mask applies to every channel of (N, C, H, W) images
    t3 = np.zeros((1, 3, 2, 2))
    p3 = np.ones((1, 3, 2, 2))
    m3 = np.array([[[[1, 0], [0, 0]]]])
    assert M.masked_mae(p3, t3, m3) == 1.0


def test_masked_metrics_bad_inputs():
    x = np.zeros((2, 4, 4))
    m = np.ones((2, 4, 4), bool)
    with pytest.raises(ValueError, match="pred has shape .* but truth"):
        M.masked_mae(np.zeros((2, 4, 5)), x, m)
    with pytest.raises(ValueError, match="hidden_mask has shape"):
        M.psnr(x, x, np.ones((3, 4, 4), bool))
    with pytest.raises(ValueError, match="hidden_mask hides no pixel"):
        M.masked_mae(x, x, ~m)
    with pytest.raises(ValueError, match="hidden_mask must be boolean"):
        M.masked_mae(x, x, np.full((2, 4, 4), 0.5))
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(x, x, m, data_range=0)
    with pytest.raises(ValueError, match="pred contains NaN"):
        M.masked_mae(np.full((2, 4, 4), np.nan), x, m)


# ----------------------------------------------------------------------------- Inception FID
def test_inception_fid_without_backend_or_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no weights there
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    x = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(RuntimeError, match="Inception FID unavailable.*torch_fidelity.*pytorch_fid"):
        M.inception_fid(x, x)
    with pytest.raises(ValueError, match="backend"):
        M.inception_fid(x, x, backend="tensorflow")
