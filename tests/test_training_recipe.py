"""Training length in steps and seconds, weight averaging, held-out checkpoint choice, interpolated
conditioning, clipped sampling and the guard against exploding samples."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tsimpute import Imputer
from tsimpute.data import WindowSet
from tsimpute.denoisers import SeriesDenoiser
from tsimpute.diffusion.conditioning import conditional_values, interpolate_given
from tsimpute.diffusion.samplers import sample_ddim, sample_ddpm
from tsimpute.diffusion.schedules import NoiseSchedule, uniform_steps
from tsimpute.holdout import HoldoutScore
from tsimpute.inference import SamplingError, impute_windows
from tsimpute.models import CSDIConfig, CSDIDenoiser
from tsimpute.step_learning import ensemble_crps
from tsimpute.training import TrainConfig, train_denoiser

from .conftest import TINY


def _windows(n=24, k=2, length=12, seed=0) -> WindowSet:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    phase = torch.rand(n, k, 1, generator=g) * 6
    values = torch.sin(t / 2 + phase) + 0.05 * torch.randn(n, k, length, generator=g)
    observed = (torch.rand(n, k, length, generator=g) < 0.8).float()
    return WindowSet(values * observed, observed)


def _model(k=2, conditioning="observed") -> SeriesDenoiser:
    torch.manual_seed(0)
    net = CSDIDenoiser(CSDIConfig(n_features=k, n_steps=10, channels=8, n_layers=1, n_heads=2, ff_dim=8))
    return SeriesDenoiser(net, conditioning=conditioning)


def test_interpolation_matches_pandas_and_keeps_given_values():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 4, 15, generator=g)
    given = (torch.rand(3, 4, 15, generator=g) < 0.4).float()
    given[0, 0] = 0  # a row with nothing given
    out = interpolate_given(values * given, given)
    assert torch.equal(out[given > 0], values[given > 0])
    assert torch.all(out[0, 0] == 0)
    for b in range(3):
        frame = pd.DataFrame(np.where(given[b].numpy() > 0, values[b].numpy(), np.nan).T)
        ref = frame.interpolate(limit_direction="both").fillna(0.0).to_numpy().T
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5)
    assert torch.equal(conditional_values(values, given, "observed"), values * given)
    with pytest.raises(ValueError, match="conditioning"):
        conditional_values(values, given, "nearest")


def test_training_length_in_steps_with_an_evaluation_curve():
    data = _windows()
    model = _model()
    calls = []

    def score(denoiser):
        calls.append(denoiser.net.training)
        return 1.0 / (len(calls))  # improves at every evaluation

    cfg = TrainConfig(epochs=None, max_steps=7, eval_every=3, batch_size=8, patience=None, verbose=False,
                      lr_schedule="cosine", warmup=0.2, ema_decay=0.9)
    h = train_denoiser(model, NoiseSchedule(10), data, None, cfg, torch.Generator().manual_seed(0), score_fn=score)
    # the weights before training are scored first (step 0)
    assert h.steps == 7 and h.eval_steps == [0, 3, 6, 7]
    assert h.valid_loss == pytest.approx([1.0, 0.5, 1 / 3, 0.25]) and h.best_step == 7
    assert calls == [False] * 4  # the averaged weights are scored in eval mode
    assert len(h.eval_seconds) == 4 and h.eval_seconds == sorted(h.eval_seconds)


def test_training_time_budget_and_a_length_is_required():
    data = _windows()
    cfg = TrainConfig(epochs=None, max_time=0.5, batch_size=4, patience=None, verbose=False)
    h = train_denoiser(_model(), NoiseSchedule(10), data, None, cfg, torch.Generator().manual_seed(0))
    assert h.steps >= 1 and h.seconds < 30
    with pytest.raises(ValueError, match="length"):
        train_denoiser(_model(), NoiseSchedule(10), data, None, TrainConfig(epochs=None), torch.Generator())


def test_checkpoint_is_the_best_scored_one():
    data = _windows()
    model = _model()
    states = []

    def score(denoiser):
        states.append({k: v.clone() for k, v in denoiser.net.state_dict().items()})
        return [5.0, 3.0, 1.0, 2.0, 4.0][len(states) - 1]

    cfg = TrainConfig(epochs=None, max_steps=8, eval_every=2, batch_size=8, patience=None, verbose=False)
    h = train_denoiser(model, NoiseSchedule(10), data, None, cfg, torch.Generator().manual_seed(0), score_fn=score)
    assert h.best_step == 4
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, states[2][k])


def test_callback_sees_every_evaluation_and_the_kept_weights():
    data = _windows()
    model = _model()
    states, seen = [], []

    def score(denoiser):
        states.append({k: v.clone() for k, v in denoiser.net.state_dict().items()})
        return [5.0, 3.0, 1.0, 2.0, 4.0][len(states) - 1]

    def callback(history, kept):
        seen.append((history.eval_steps[-1], history.best_step, {k: v.clone() for k, v in kept.items()}))

    cfg = TrainConfig(epochs=None, max_steps=8, eval_every=2, batch_size=8, patience=None, verbose=False)
    h = train_denoiser(model, NoiseSchedule(10), data, None, cfg, torch.Generator().manual_seed(0), score_fn=score,
                       callback=callback)
    assert [s for s, _, _ in seen] == h.eval_steps == [0, 2, 4, 6, 8]
    assert [b for _, b, _ in seen] == [0, 2, 4, 4, 4]
    for (_, _, kept), expected in zip(seen, (0, 1, 2, 2, 2), strict=True):
        assert all(torch.equal(kept[k], states[expected][k]) for k in kept)


def test_imputer_fit_passes_the_callback(sinusoids):
    X = sinusoids[0]
    calls = []
    imp = Imputer(**TINY, random_state=0).fit(X, callback=lambda h, kept: calls.append((h.eval_steps[-1], kept)))
    assert calls and [s for s, _ in calls] == imp.history_.eval_steps
    final = calls[-1][1]
    assert final is not None and all(torch.equal(final[k], v) for k, v in imp.model_.state_dict().items())


def test_untrained_weights_are_kept_when_training_never_beats_them():
    data = _windows()
    model = _model()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    scores = iter([1.0, 2.0, 3.0, 4.0, 5.0])
    cfg = TrainConfig(epochs=None, max_steps=8, eval_every=2, batch_size=8, patience=None, verbose=False)
    h = train_denoiser(model, NoiseSchedule(10), data, None, cfg, torch.Generator().manual_seed(0),
                       score_fn=lambda net: next(scores))
    assert h.best_step == 0 and h.steps == 8
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, before[k])


def test_holdout_score_is_repeatable_and_interpolation_conditioning_starts_near_interpolation():
    data = _windows(n=16, k=2, length=16)
    sched = NoiseSchedule(10)
    scorer = HoldoutScore(data, sched, hide=0.3, clip=(-3.0, 3.0))
    model = _model(conditioning="interpolated")
    assert scorer(model) == scorer(model)
    assert math.isfinite(scorer(model))


def test_holdout_crps_scores_independent_samples_of_the_hidden_cells():
    data = _windows(n=16, k=2, length=16)
    sched = NoiseSchedule(10)
    model = _model(conditioning="interpolated")
    crps = HoldoutScore(data, sched, hide=0.3, clip=(-3.0, 3.0), metric="crps", sampler="ddpm")
    assert crps(model) == crps(model) and math.isfinite(crps(model))
    # the same cells, samples and noise as sampling them by hand: the fair CRPS of two independent draws
    gen = torch.Generator().manual_seed(crps.seed + 1)
    res = impute_windows(model, crps.given, crps.chain, n_samples=2, sampler="ddpm", generator=gen,
                         clip=(-3.0, 3.0))
    assert crps(model) == pytest.approx(ensemble_crps(res.samples, crps.values, crps.hidden), rel=1e-6)
    with pytest.raises(ValueError, match="metric must be one of"):
        HoldoutScore(data, sched, metric="rmse")
    with pytest.raises(ValueError, match="n_samples >= 2"):
        HoldoutScore(data, sched, metric="crps", n_samples=1)


def test_clipped_ddpm_equals_unclipped_when_bounds_are_wide_and_bounds_the_output():
    sched = NoiseSchedule(50)
    chain = sched.chain(torch.arange(50))
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def eps(x_t, t):
        return torch.tanh(0.3 * x_t) * 5  # a poor network

    free = sample_ddpm(eps, x.clone(), chain, generator=torch.Generator().manual_seed(1))
    wide = sample_ddpm(eps, x.clone(), chain, generator=torch.Generator().manual_seed(1), clip=(-1e9, 1e9))
    torch.testing.assert_close(free, wide)
    tight = sample_ddpm(eps, x.clone(), chain, generator=torch.Generator().manual_seed(1), clip=(-2.0, 2.0))
    assert tight.abs().max() <= 2.0 + 1e-9
    ddim = sample_ddim(eps, x.clone(), sched.chain(uniform_steps(50, 5)), clip=(-2.0, 2.0))
    assert ddim.abs().max() <= 2.0 + 1e-9


class _Broken(torch.nn.Module):
    """A denoiser that returns ``value`` everywhere (NaN, or huge)."""

    def __init__(self, value):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.value = value

    def encode_side(self, cond):
        return [torch.zeros(cond.shape[0], 1)]

    def forward(self, x, t, side):
        return torch.full(x.shape[:3], self.value) + 0 * self.w


@pytest.mark.parametrize("value,match", [(float("nan"), "non-finite"), (1e6, "exploded")])
def test_non_finite_or_exploding_samples_raise_naming_the_settings(value, match):
    data = _windows(n=2)
    chain = NoiseSchedule(10).full_chain()
    with pytest.raises(SamplingError, match=match) as info:
        impute_windows(SeriesDenoiser(_Broken(value)), data, chain, n_samples=2,
                       generator=torch.Generator().manual_seed(0), limit=100.0)
    assert "sampler='ddpm'" in str(info.value) and "10 steps" in str(info.value)


def test_imputer_never_returns_non_finite_samples(sinusoids):
    X, _ = sinusoids
    imp = Imputer(random_state=0, sample_clip=None, **TINY).fit(X)
    with torch.no_grad():
        imp.model_.output_projection2.bias.fill_(float("nan"))
    with pytest.raises(SamplingError, match="non-finite"):
        imp.transform(X)
    with torch.no_grad():  # a wildly wrong network: clipping keeps the samples within the data's range
        imp.model_.output_projection2.bias.fill_(50.0)
    imp.set_params(sample_clip=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = imp.transform(X)
    lo = imp.mean_ + (imp.data_min_ - 1.0) * imp.scale_
    hi = imp.mean_ + (imp.data_max_ + 1.0) * imp.scale_
    assert np.all(out.to_numpy() >= lo - 1e-6) and np.all(out.to_numpy() <= hi + 1e-6)


def test_training_length_parameters_are_checked(sinusoids):
    X, _ = sinusoids
    for bad in (dict(max_steps=0), dict(max_time=-1.0), dict(epochs=None, max_steps=None),
                dict(ema_decay=1.5), dict(sample_clip=-1.0), dict(conditioning="zeros")):
        with pytest.raises(ValueError):
            Imputer(**{**TINY, **bad}).fit(X)
    imp = Imputer(**{**TINY, "epochs": None, "max_steps": 5}, random_state=0).fit(X)
    assert imp.history_.steps == 5


def test_auto_step_limit_gives_way_to_epochs_or_a_time_budget():
    assert Imputer()._step_limit() == 1000
    assert Imputer(max_time=3600)._step_limit() is None
    assert Imputer(epochs=20)._step_limit() is None
    assert Imputer(max_time=3600, max_steps=50)._step_limit() == 50
    assert Imputer(max_time=3600, step_selection="learned")._step_limit() == 1000  # the mask plans in steps
    # epochs with a time cap: evaluations stay at every epoch
    assert Imputer(epochs=20, max_time=3600, verbose=False)._train_config(100).eval_every_seconds is None
    cfg = Imputer(max_time=600, verbose=False)._train_config(100)
    assert cfg.max_steps is None and cfg.eval_every is None and cfg.eval_every_seconds == 30.0
    with pytest.raises(ValueError, match="max_steps"):
        Imputer(max_steps="all")._check_params()


def test_time_budget_evaluations_and_no_early_stop_in_its_first_half():
    data = _windows()
    cfg = TrainConfig(epochs=None, max_time=1.5, eval_every_seconds=0.3, batch_size=4, patience=1, verbose=False)
    h = train_denoiser(_model(), NoiseSchedule(10), data, None, cfg, torch.Generator().manual_seed(0),
                       score_fn=lambda d: 1.0)  # never improves: patience 1 would stop at once
    gaps = np.diff(h.eval_seconds)
    assert len(h.eval_seconds) >= 3 and h.stopped_early
    assert gaps[:-1].min() >= 0.3 - 1e-6  # evaluations are spaced by the time interval
    assert h.eval_seconds[-1] >= 0.75 - 0.05  # and the stop waits for half of the budget


def test_training_steps_uniform_or_dense_at_low_noise():
    from tsimpute.diffusion.losses import draw_training_steps

    g = torch.Generator().manual_seed(0)
    uniform = draw_training_steps(50, 20000, "uniform", g)
    low = draw_training_steps(50, 20000, "low", g)
    for t in (uniform, low):
        assert t.dtype == torch.long and int(t.min()) == 0 and int(t.max()) == 49
    assert abs(float((uniform < 12.5).float().mean()) - 0.25) < 0.02
    assert abs(float((low < 12.5).float().mean()) - 0.5) < 0.02  # P(t < T/4) = 1/2
    with pytest.raises(ValueError, match="noise_levels"):
        draw_training_steps(50, 4, "high")


def test_warm_start_goes_on_from_the_fitted_network_and_scaler(sinusoids):
    X = sinusoids[0]
    imp = Imputer(**TINY, random_state=0).fit(X)
    fitted = {k: v.clone() for k, v in imp.model_.state_dict().items()}
    mean, scale, guess = imp.mean_.copy(), imp.scale_.copy(), imp.denoiser_.parameterization
    first = []
    imp.set_params(warm_start=True, epochs=1)
    imp.fit(X * 10 + 3, callback=lambda h, kept: first.append({k: v.clone() for k, v in kept.items()})
            if not first else None)
    # the first evaluation scores the fitted weights; the scaler and first guess are the fitted ones
    assert all(torch.equal(first[0][k], v) for k, v in fitted.items())
    np.testing.assert_array_equal(imp.mean_, mean)
    np.testing.assert_array_equal(imp.scale_, scale)
    assert imp.denoiser_.parameterization is guess
    with pytest.raises(ValueError, match="columns differ"):
        imp.fit(X.rename(columns={X.columns[0]: "other"}))
    # without warm_start a new network is drawn and the scaler refitted
    imp.set_params(warm_start=False).fit(X * 10 + 3)
    assert not np.allclose(imp.scale_, scale)
    assert not all(torch.equal(imp.model_.state_dict()[k], v) for k, v in fitted.items())
