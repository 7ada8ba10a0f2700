"""Progressive distillation: the chain arithmetic and targets (exact), and the distilled imputer's behaviour."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tsimpute import Imputer
from tsimpute.diffusion.distillation import (
    auto_start_level,
    coarsen_chain,
    ddim_step,
    distillation_loss,
    distillation_plan,
    distillation_target,
    halve_chain,
    kept_indices,
    raise_start_level,
    target_from_step,
)
from tsimpute.diffusion.parameterization import Parameterization
from tsimpute.diffusion.samplers import sample_ddim
from tsimpute.diffusion.schedules import Chain, NoiseSchedule, uniform_steps
from tsimpute.synthetic import correlated_sinusoids

from .conftest import TINY

TEACHER = {**TINY, "epochs": 5, "step_selection": "uniform", "target_steps": 8}


# ---------------------------------------------------------------------------------------------- chains
@pytest.mark.parametrize("semantics", ["respaced", "masked"])
def test_halve_chain_keeps_every_other_step_ending_at_the_noisiest_with_the_teachers_levels(semantics):
    chain = NoiseSchedule(50).chain(uniform_steps(50, 8), semantics)
    half = halve_chain(chain)
    assert half.timesteps.tolist() == chain.timesteps[1::2].tolist()
    assert half.timesteps[-1] == chain.timesteps[-1]
    torch.testing.assert_close(half.alphas_cumprod, chain.alphas_cumprod[1::2], rtol=0, atol=0)
    odd = Chain(chain.timesteps[:5], chain.alphas_cumprod[:5])
    assert halve_chain(odd).timesteps.tolist() == chain.timesteps[[0, 2, 4]].tolist()  # the lowest covers one step
    with pytest.raises(ValueError):
        halve_chain(Chain(chain.timesteps[:1], chain.alphas_cumprod[:1]))


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 50])
def test_every_coarsening_keeps_the_last_step_and_covers_one_or_two_teacher_steps(n):
    for m in range(math.ceil(n / 2), n + 1):
        idx = kept_indices(n, m).tolist()
        assert len(idx) == m and idx[-1] == n - 1 and idx == sorted(set(idx))
        gaps = np.diff([-1, *idx])
        assert set(gaps.tolist()) <= {1, 2} and int((gaps == 2).sum()) == n - m
    chain = NoiseSchedule(50).chain(uniform_steps(50, n))
    assert len(coarsen_chain(chain, math.ceil(n / 2))) == math.ceil(n / 2)


def test_the_plan_halves_rounding_up_and_ends_at_exactly_calls():
    assert distillation_plan(8, 2) == [8, 4, 2]
    assert distillation_plan(8, 3) == [8, 4, 3]
    assert distillation_plan(10, 1) == [10, 5, 3, 2, 1]
    assert distillation_plan(50, 4) == [50, 25, 13, 7, 4]
    for bad in (0, 8, 9, 2.0, True):
        with pytest.raises(ValueError, match="calls"):
            distillation_plan(8, bad)


# ---------------------------------------------------------------------------------------------- targets
def _linear_teacher(dim: int, n_steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = 0.3 * torch.randn(n_steps, dim, dim, generator=g, dtype=torch.float64)
    c = 0.1 * torch.randn(n_steps, dim, generator=g, dtype=torch.float64)
    return lambda x, t: x @ a[t].T + c[t]


def _implied_eps(x_t: torch.Tensor, x0: torch.Tensor, ab: float) -> torch.Tensor:
    return (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)


def test_one_student_step_to_the_target_lands_where_two_teacher_steps_land():
    chain = NoiseSchedule(50).chain(uniform_steps(50, 8), "masked")
    teacher = _linear_teacher(6, 50)
    x_t = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ac = chain.alphas_cumprod.tolist()
    ts = chain.timesteps.tolist()
    # an intermediate student step 5 -> 3, the teacher through 4 (the DDIM update written out here)
    x = x_t
    for i in (5, 4):
        eps = teacher(x, ts[i])
        x0 = (x - math.sqrt(1 - ac[i]) * eps) / math.sqrt(ac[i])
        x = math.sqrt(ac[i - 1]) * x0 + math.sqrt(1 - ac[i - 1]) * eps
    target = distillation_target(teacher, x_t, chain, 5, 3)
    student, _ = ddim_step(x_t, _implied_eps(x_t, target, ac[5]), ac[5], ac[3])
    torch.testing.assert_close(student, x, rtol=0, atol=1e-6)
    # the last student step 1 -> clean: the teacher's two-step sampler against the student's one-step one
    two = sample_ddim(teacher, x_t, Chain(chain.timesteps[:2], chain.alphas_cumprod[:2]))
    target = distillation_target(teacher, x_t, chain, 1, -1)
    one = sample_ddim(lambda x, t: _implied_eps(x, target, ac[1]), x_t,
                      Chain(chain.timesteps[1:2], chain.alphas_cumprod[1:2]))
    torch.testing.assert_close(one, two, rtol=0, atol=1e-6)
    torch.testing.assert_close(target, two, rtol=0, atol=1e-12)  # to the clean end: the teacher's result itself
    # a student step covering one teacher step: the teacher's own clean prediction
    eps = teacher(x_t, ts[2])
    torch.testing.assert_close(distillation_target(teacher, x_t, chain, 2, 1),
                               (x_t - math.sqrt(1 - ac[2]) * eps) / math.sqrt(ac[2]), rtol=0, atol=1e-9)
    with pytest.raises(ValueError):
        distillation_target(teacher, x_t, chain, 3, 3)


def test_a_raised_start_level_changes_only_how_the_first_step_is_read():
    chain = NoiseSchedule(50).chain(uniform_steps(50, 4), "respaced")  # CSDI's levels: 3e-5 at the last
    raised = raise_start_level(chain, 0.01)
    assert raised.timesteps.tolist() == chain.timesteps.tolist()
    assert raised.alphas_cumprod[-1].item() == 0.01 and chain.alphas_cumprod[-1].item() < 1e-4
    torch.testing.assert_close(raised.alphas_cumprod[:-1], chain.alphas_cumprod[:-1], rtol=0, atol=0)
    assert raise_start_level(chain, None) is chain and raise_start_level(chain, 1e-6) is chain  # already higher
    # the default: 0.01 when the first step is long (two uniform steps: the next level 1.0), the chain's own when
    # it is short (four: 0.05; every step: 1e-4), 0.1 for one call
    two_calls = NoiseSchedule(50).chain(uniform_steps(50, 2), "respaced")
    assert two_calls.alphas_cumprod[-2].item() > 0.1 and auto_start_level(two_calls) == 0.01
    assert chain.alphas_cumprod[-2].item() < 0.1 and auto_start_level(chain) is None
    assert raise_start_level(chain, auto_start_level(chain)) is chain
    assert auto_start_level(NoiseSchedule(50).chain(uniform_steps(50, 50), "respaced")) is None
    one_call = Chain(chain.timesteps[-1:], chain.alphas_cumprod[-1:])
    assert auto_start_level(one_call) == 0.1
    assert raise_start_level(one_call, auto_start_level(one_call)).alphas_cumprod.tolist() == pytest.approx([0.1])
    with pytest.raises(ValueError, match="next step"):
        raise_start_level(chain, float(chain.alphas_cumprod[-2]) + 0.01)
    # the target for a step read at the raised level: one DDIM step read there lands where the teacher lands
    teacher = _linear_teacher(6, 50)
    x_t = torch.randn(5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    landing = distillation_target(teacher, x_t, chain, 3, 1) * 0  # the teacher's two steps 3 -> 2 -> 1
    x = x_t
    for i in (3, 2):
        x, _ = ddim_step(x, teacher(x, int(chain.timesteps[i])), float(chain.alphas_cumprod[i]),
                         float(chain.alphas_cumprod[i - 1]))
    landing += x
    target = distillation_target(teacher, x_t, chain, 3, 1, student_level=0.01)
    one, _ = ddim_step(x_t, _implied_eps(x_t, target, 0.01), 0.01, float(chain.alphas_cumprod[1]))
    torch.testing.assert_close(one, landing, rtol=0, atol=1e-6)


def test_target_from_step_inverts_a_ddim_step():
    x_t = torch.randn(3, 4, dtype=torch.float64)
    x0 = torch.randn(3, 4, dtype=torch.float64)
    x_next, _ = ddim_step(x_t, _implied_eps(x_t, x0, 0.3), 0.3, 0.7)
    torch.testing.assert_close(target_from_step(x_t, x_next, 0.3, 0.7), x0)


@pytest.mark.parametrize("ab", [0.1, 0.5, 0.9])
def test_the_loss_is_the_truncated_snr_weighted_error_on_the_counted_entries_only(ab):
    x_t = torch.randn(2, 3, 4)
    target = torch.randn(2, 3, 4)
    mask = torch.zeros(2, 3, 4)
    mask[:, 0] = 1
    exact = _implied_eps(x_t, target, ab)
    assert float(distillation_loss(lambda x, t: exact, x_t, 7, ab, target, mask)) < 1e-9
    off = exact.clone()
    off[:, 1:] += 5.0  # errors where the mask is 0 do not count
    assert float(distillation_loss(lambda x, t: off, x_t, 7, ab, target, mask)) < 1e-9
    # an error of d in the clean prediction on every counted entry
    d = 0.1
    shifted = exact - d * math.sqrt(ab) / math.sqrt(1 - ab)
    loss = float(distillation_loss(lambda x, t: shifted, x_t, 7, ab, target, mask))
    assert loss == pytest.approx(max(ab / (1 - ab), 1.0) * d**2, rel=1e-4)
    snr = float(distillation_loss(lambda x, t: shifted, x_t, 7, ab, target, mask, weighting="snr"))
    assert snr == pytest.approx(ab / (1 - ab) * d**2, rel=1e-4)


# ---------------------------------------------------------------------------------------------- the imputer
@pytest.fixture(scope="module")
def data():
    return correlated_sinusoids(200, 4, seed=3)


@pytest.fixture(scope="module")
def teacher(data):
    X, _ = data
    return Imputer(random_state=0, parameterization="epsilon", **TEACHER).fit(X)


@pytest.fixture(scope="module")
def student(teacher, data):
    X, _ = data
    return teacher.distill(X, calls=2, max_steps_per_round=60)


def _undistilled_like(student: Imputer, teacher: Imputer) -> Imputer:
    """The teacher's network sampled over the student's chain and settings."""
    base = copy.deepcopy(student)
    base.denoiser_ = copy.deepcopy(teacher.denoiser_)
    base.model_ = base.denoiser_.net
    return base


@pytest.mark.parametrize("parameterization, bound", [("epsilon", 0.6), ("residual", 0.8)])
def test_the_student_follows_the_teachers_many_step_sampler_closer_than_the_undistilled_network(
        data, parameterization, bound):
    X, _ = data
    gaps = X.isna().to_numpy()
    teacher = Imputer(random_state=1, parameterization=parameterization, **TEACHER).fit(X)
    student = teacher.distill(X, calls=2, max_steps_per_round=60)
    assert len(student.inference_chain()) == 2 and len(teacher.inference_chain()) == 8
    # the same seed: the same initial noise; DDIM with eta=0 draws nothing else
    many = copy.deepcopy(teacher).set_params(sampler="ddim", eta=0.0).sample(X, n_samples=4)
    distilled = student.sample(X, n_samples=4)
    undistilled = _undistilled_like(student, teacher).sample(X, n_samples=4)
    d_student = np.abs(distilled - many)[:, gaps].mean()
    d_undistilled = np.abs(undistilled - many)[:, gaps].mean()
    assert d_student < bound * d_undistilled, (d_student, d_undistilled)


def test_distilled_imputer_samples_with_calls_network_calls_and_returns_observed_values(student, teacher, data):
    X, _ = data
    before = X.copy()
    student = copy.deepcopy(student).set_params(inference_batch_size=4096)  # one pass: nfe = calls
    samples, info = student.sample(X, n_samples=3, return_info=True)
    assert info.steps == 2 and info.nfe == 2
    assert student.sampler == "ddim" and student.eta == 0.0 and list(student.steps_) == [21, 49]
    obs = X.notna().to_numpy()
    assert np.array_equal(samples[:, obs], np.broadcast_to(X.to_numpy()[obs], (3, int(obs.sum()))))
    filled = student.transform(X)
    assert np.array_equal(filled.to_numpy()[obs], X.to_numpy()[obs]) and not filled.isna().any().any()
    q = student.predict_quantiles(X, quantiles=(0.1, 0.9))
    assert q.shape == (len(X), 2 * X.shape[1]) and np.isfinite(q.to_numpy()).all()
    assert not np.array_equal(samples[0], samples[1])  # the initial noise still spreads the samples
    pd.testing.assert_frame_equal(X, before)  # input not mutated
    for bad in (dict(sampler="ddpm"), dict(eta=0.5)):  # the distilled chain is a deterministic DDIM chain
        with pytest.raises(ValueError, match="distilled network"):
            copy.deepcopy(student).set_params(**bad).sample(X, n_samples=2)


def test_distill_leaves_the_teacher_unchanged_and_is_reproducible(teacher, data):
    X, _ = data
    weights = {k: v.clone() for k, v in teacher.model_.state_dict().items()}
    params = teacher.get_params()
    a = teacher.distill(X, calls=4, max_steps_per_round=5)
    b = teacher.distill(X, calls=4, max_steps_per_round=5)
    assert teacher.get_params() == params and teacher.distillation_ is None
    assert len(teacher.inference_chain()) == 8 and a.model_ is not teacher.model_
    for k, v in teacher.model_.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    np.testing.assert_array_equal(a.sample(X, n_samples=2), b.sample(X, n_samples=2))
    rounds = a.distillation_.rounds
    assert [len(r.student_steps) for r in rounds] == [4] and rounds[0].steps == 5
    with pytest.raises(ValueError, match="distilled"):
        a.learn_steps(X, target_steps=2)


def test_refitting_a_distilled_imputer_samples_over_its_step_selection_again(student, data):
    X, _ = data
    refit = copy.deepcopy(student).set_params(epochs=1).fit(X)
    assert refit.distillation_ is None and len(refit.inference_chain()) == 8 and refit.sampler == "ddim"
    assert "distilled_from" not in refit._sampling_settings()


def test_distill_again_halves_the_distilled_chain(student, data):
    X, _ = data
    one = student.distill(X, calls=1, max_steps_per_round=3)
    assert one.inference_steps().tolist() == [49]
    assert one.distillation_.teacher_steps == [21, 49]
    own = float(student.inference_chain().alphas_cumprod[-1])  # one call: read at 0.1 or its own, if higher
    assert one.inference_chain().alphas_cumprod.tolist() == pytest.approx([max(own, 0.1)])
    _, info = one.set_params(inference_batch_size=4096).sample(X, n_samples=2, return_info=True)
    assert info.nfe == 1


def test_save_and_load_give_identical_samples_and_record_the_chain(student, data, tmp_path):
    X, _ = data
    path = tmp_path / "student.pt"
    student.save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == Imputer._checkpoint_version == 4
    assert raw["distilled"]["timesteps"].tolist() == [21, 49] and raw["distilled"]["sampler"] == "ddim"
    loaded = Imputer.load(path)
    assert loaded.get_params() == student.get_params()
    torch.testing.assert_close(loaded.inference_chain().alphas_cumprod, student.inference_chain().alphas_cumprod,
                               rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.sample(X, n_samples=2), student.sample(X, n_samples=2))
    # a file of the previous format (no distilled sampler) loads as the network over its step selection
    raw.pop("distilled")
    raw["format_version"] = 3
    torch.save(raw, tmp_path / "v3.pt")
    old = Imputer.load(tmp_path / "v3.pt")
    assert old.distillation_ is None and len(old.inference_chain()) == 8


def test_a_teachers_calibration_is_not_applied_to_the_student(teacher, data):
    X, _ = data
    calibrated = copy.deepcopy(teacher).calibrate(X, n_samples=4)
    assert calibrated.calibration_ is not None
    student = calibrated.distill(X, calls=4, max_steps_per_round=2)
    assert student.calibration_ is None
    assert student._sampling_settings() != calibrated.set_params(sampler="ddim")._sampling_settings()
    assert "distilled_from" in student._sampling_settings()
    student.calibrate(X, n_samples=4)  # calibrating the student itself works and is applied
    assert student.calibration_.sampling == student._sampling_settings()


@pytest.mark.parametrize("calls", [0, -1, 8, 9, 2.5, True, "2", None])
def test_bad_calls_raise_a_value_error_naming_it(teacher, data, calls):
    X, _ = data
    with pytest.raises(ValueError, match="calls"):
        teacher.distill(X, calls=calls, max_steps_per_round=1)


def test_bad_lengths_raise_value_errors(teacher, data):
    X, _ = data
    with pytest.raises(ValueError, match="max_steps_per_round or max_time"):
        teacher.distill(X, calls=2, max_steps_per_round=None)
    with pytest.raises(ValueError, match="max_steps_per_round"):
        teacher.distill(X, calls=2, max_steps_per_round=0)
    with pytest.raises(ValueError, match="max_time"):
        teacher.distill(X, calls=2, max_time=-1.0)
    with pytest.raises(ValueError, match="lr"):
        teacher.distill(X, calls=2, lr=0.0)


def test_the_default_rate_is_lower_for_noise_prediction(teacher):
    assert teacher._distillation_lr() == pytest.approx(teacher.lr / 30)
    residual = copy.deepcopy(teacher)
    residual.denoiser_ = residual.denoiser_.with_net(residual.model_)
    residual.denoiser_.parameterization = Parameterization("residual")
    assert residual._distillation_lr() == pytest.approx(teacher.lr / 3)


def test_a_student_distilled_at_a_raised_start_level_samples_with_it(teacher, data):
    X, _ = data
    plain = teacher.distill(X, calls=2, max_steps_per_round=3).inference_chain()
    level = (plain.alphas_cumprod[-1].item() + plain.alphas_cumprod[-2].item()) / 2  # above the chain's own
    out = teacher.distill(X, calls=2, max_steps_per_round=3, start_level=level)
    chain = out.inference_chain()
    assert chain.timesteps.tolist() == [21, 49] and chain.alphas_cumprod[-1].item() == pytest.approx(level)
    torch.testing.assert_close(chain.alphas_cumprod[:-1], plain.alphas_cumprod[:-1])
    samples = out.sample(X, n_samples=2)
    assert np.isfinite(samples).all()
    for bad in (1.5, 0.0, "high", True):
        with pytest.raises(ValueError, match="start_level"):
            teacher.distill(X, calls=2, max_steps_per_round=1, start_level=bad)


def test_a_time_budget_alone_ends_the_rounds(teacher, data):
    X, _ = data
    out = teacher.distill(X, calls=4, max_steps_per_round=None, max_time=1.0)
    assert out.distillation_.rounds[0].steps >= 1 and out.distillation_.rounds[0].seconds < 5
