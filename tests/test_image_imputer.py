"""The image backend: a UNet on the same diffusion core (training loop, samplers, step mask) as the time series."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the image backend needs diffusers (the [image] extra, also in [dev])")

from tsimpute.datasets import load_digits  # noqa: E402
from tsimpute.image_imputer import ImageImputer  # noqa: E402
from tsimpute.image_masks import hidden_box, hidden_pattern, training_masks  # noqa: E402
from tsimpute.models.unet import UNetConfig, UNetDenoiser, levels_for  # noqa: E402

TINY = dict(n_steps=20, target_steps=4, widths=(8, 16), attention=False, max_steps=16, batch_size=16,
            verbose=False, random_state=0)


@pytest.fixture(scope="module")
def digits():
    return load_digits("train").images[:400]


@pytest.fixture(scope="module")
def fitted(digits):
    torch.set_num_threads(1)
    return ImageImputer(**TINY).fit(digits)


def _with_holes(images: np.ndarray) -> np.ndarray:
    x = images[:12].astype(np.float64)
    x[:, 2:6, 3:7] = np.nan
    x[0] = np.nan  # one image entirely missing: generated
    return x


def test_transform_fills_holes_and_returns_observed_pixels_bit_for_bit(fitted, digits):
    x = _with_holes(digits)
    before = x.copy()
    out = fitted.transform(x)
    np.testing.assert_array_equal(x, before)  # input not mutated
    assert out.shape == x.shape and out.dtype == np.float64 and not np.isnan(out).any()
    seen = ~np.isnan(x)
    assert np.array_equal(out[seen], x[seen])
    assert out.min() >= 0 and out.max() <= 255  # the training images' range
    np.testing.assert_array_equal(fitted.transform(x), out)  # seeded: the same draws every call


def test_learned_mask_keeps_exactly_target_steps_and_samplers_use_them(fitted):
    steps = fitted.learned_steps_
    assert len(steps) == 4 and steps[-1] == 19 and np.all(np.diff(steps) > 0)
    assert fitted.inference_chain().timesteps.tolist() == steps.tolist()
    assert fitted.step_scores_.shape == (20,)


def test_sample_generates_images_of_the_training_layout(fitted):
    images = fitted.sample(5)
    assert images.shape == (5, 8, 8) and np.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 255
    np.testing.assert_array_equal(fitted.sample(5), images)
    assert not np.array_equal(fitted.sample(5, random_state=1), images)


def test_same_seed_same_fit_and_a_channel_axis_is_kept(digits):
    x = digits[:, None].astype(np.float32) / 255.0  # (N, 1, H, W) floats in [0, 1]
    a = ImageImputer(**TINY).fit(x)
    b = ImageImputer(**TINY).fit(x)
    holes = _with_holes(digits)[:, None] / 255.0
    out = a.transform(holes)
    assert out.shape == holes.shape and (a.data_min_, a.data_max_) == (0.0, 1.0)
    np.testing.assert_array_equal(out, b.transform(holes))


def test_save_load_round_trip(fitted, digits, tmp_path):
    path = tmp_path / "img.pt"
    fitted.save(path)
    again = ImageImputer.load(path)
    x = _with_holes(digits)
    np.testing.assert_array_equal(again.transform(x), fitted.transform(x))
    np.testing.assert_array_equal(again.learned_steps_, fitted.learned_steps_)
    assert again.get_params() == fitted.get_params()
    with pytest.raises(ValueError, match="format 'tsimpute.ImageImputer' .it holds a 'tsimpute.Imputer'"):
        ImageImputer.load(_time_series_model(tmp_path))


def _time_series_model(tmp_path):
    from tsimpute import Imputer

    from .conftest import panel_frame

    path = tmp_path / "ts.pt"
    Imputer(window=12, channels=8, n_layers=1, n_heads=2, max_steps=2, verbose=False).fit(panel_frame(4, 20)).save(path)
    return path


def test_other_selections_samplers_and_replacement_inpainting(fitted, digits):
    x = _with_holes(digits)
    seen = ~np.isnan(x)
    for params in ({"step_selection": "uniform"}, {"step_selection": "quadratic", "sampler": "ddim"},
                   {"step_selection": "all"}, {"inpainting": "replace", "n_samples": 3}):
        imp = ImageImputer(**{**TINY, **params})
        imp.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_") or k.startswith("_")})
        out = imp.transform(x)
        assert not np.isnan(out).any() and np.array_equal(out[seen], x[seen]), params


def test_the_papers_loss_reward_is_available_too(digits):
    imp = ImageImputer(**{**TINY, "mask_objective": "loss"}).fit(digits[:200])
    assert len(imp.learned_steps_) == 4 and imp.learned_steps_[-1] == 19
    with pytest.raises(ValueError, match="mask_objective"):
        ImageImputer(**{**TINY, "mask_objective": "fid"}).fit(digits[:200])


def test_learn_steps_on_the_trained_network(fitted, digits):
    imp = ImageImputer(**{**TINY, "step_selection": "uniform"}).fit(digits[:100])
    before = [p.detach().clone() for p in imp.model_.parameters()]
    imp.learn_steps(digits[:64], target_steps=3)
    assert imp.step_selection == "learned" and len(imp.learned_steps_) == 3 and imp.learned_steps_[-1] == 19
    assert all(torch.equal(a, b) for a, b in zip(before, imp.model_.parameters(), strict=True))  # frozen
    with pytest.raises(ValueError, match="target_steps"):
        imp.learn_steps(digits[:64], target_steps=21)


def test_bad_input_and_parameters(fitted, digits):
    with pytest.raises(ValueError, match="channels must come first"):
        ImageImputer(**TINY).fit(np.zeros((4, 8, 8, 3)))
    with pytest.raises(TypeError, match="numbers"):
        ImageImputer(**TINY).fit(digits > 0)
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        ImageImputer(**TINY).fit(digits[0])
    with pytest.raises(ValueError, match="infinite"):
        ImageImputer(**TINY).fit(np.full((4, 8, 8), np.inf))
    with pytest.raises(ValueError, match="fitted on"):
        fitted.transform(np.zeros((2, 9, 9)))
    with pytest.raises(ValueError, match="n_masks"):
        ImageImputer(**{**TINY, "n_masks": 32}).fit(digits)
    with pytest.raises(ValueError, match="widths"):
        ImageImputer(**{**TINY, "widths": (12,)}).fit(digits)
    with pytest.raises(ValueError, match="n must be"):
        fitted.sample(0)


def test_unet_shapes_and_levels():
    assert levels_for(8, 8) == 2 and levels_for(28, 28) == 3 and levels_for(32, 32) == 3 and levels_for(6, 6) == 1
    net = UNetDenoiser(UNetConfig(height=8, width=8, channels=3, widths=(8, 16), attention=True))
    x = torch.randn(2, 3, 8, 8)
    assert net(x, 5).shape == (2, 3, 8, 8)
    assert net(x, torch.tensor([1, 2]), torch.zeros_like(x), torch.ones(2, 1, 8, 8)).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="halved"):
        UNetConfig(height=6, width=6, widths=(8, 16, 32))


def test_masks():
    gen = torch.Generator().manual_seed(0)
    box = hidden_box(50, 12, 10, gen)
    hidden = (box == 0).sum((1, 2, 3))
    assert box.shape == (50, 1, 12, 10) and (hidden >= 3 * 2).all() and (hidden <= 9 * 7).all()
    m = training_masks(400, 8, 8, gen)
    empty = (m.sum((1, 2, 3)) == 0).float().mean()
    assert 0.12 < float(empty) < 0.28  # about a fifth unconditional
    centre = hidden_pattern("centre", 2, 28, 28)
    assert int((centre == 0).sum()) == 2 * 14 * 14 and centre[0, 0, 14, 14] == 0 and centre[0, 0, 0, 0] == 1
    rand = hidden_pattern("random", 100, 28, 28, torch.Generator().manual_seed(1))
    assert abs(float(rand.mean()) - 0.5) < 0.02
    with pytest.raises(ValueError, match="hidden pattern"):
        hidden_pattern("ring", 1, 8, 8)


def test_distill_gives_a_two_call_image_imputer_that_saves_and_loads(fitted, digits, tmp_path):
    student = fitted.distill(digits[:64], calls=2, max_steps_per_round=3)
    assert fitted.distillation_ is None and len(fitted.inference_chain()) == 4
    assert student.inference_steps().tolist() == fitted.learned_steps_[[1, 3]].tolist()
    assert student.sampler == "ddim" and student.distillation_.calls == 2
    x = _with_holes(digits)
    out = student.transform(x)
    seen = ~np.isnan(x)
    assert np.array_equal(out[seen], x[seen]) and not np.isnan(out).any()
    student.save(tmp_path / "student.pt")
    np.testing.assert_array_equal(ImageImputer.load(tmp_path / "student.pt").transform(x), out)
    with pytest.raises(ValueError, match="replace"):
        copy.deepcopy(fitted).set_params(inpainting="replace").distill(digits[:64], calls=2)
