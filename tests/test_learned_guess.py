"""The learned first guess: an attention network over time steps trained on masked values, corrected by the
residual diffusion."""

import numpy as np
import pytest
import torch

from tsimpute import Imputer
from tsimpute.data import WindowSet
from tsimpute.diffusion.first_guess import first_guess_of, fit_first_guess
from tsimpute.diffusion.targets import conditional_mask, random_conditional_mask
from tsimpute.learned_guess import GuessTrainConfig, LearnedGuess, fit_learned_guess, guess_from_dict
from tsimpute.models.guess import GuessConfig, GuessNetwork

from .conftest import TINY


def _nonlinear_windows(n=192, length=16, seed=0) -> WindowSet:
    """Column 1 is the square of column 0 at the same step (noisy): interpolation along time and a linear
    regression on related columns miss it; a network reading the whole time step does not."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    x0 = torch.sin(t / 1.5 + torch.rand(n, 1, generator=g) * 6) * (0.5 + torch.rand(n, 1, generator=g))
    x1 = 2 * x0**2 - 0.5 + 0.02 * torch.randn(n, length, generator=g)
    x2 = torch.cos(t / 2 + torch.rand(n, 1, generator=g) * 6)
    values = torch.stack([x0, x1, x2], dim=1)
    observed = (torch.rand(values.shape, generator=g) < 0.9).float()
    return WindowSet(values * observed, observed)


def test_random_mask_with_a_fixed_ratio_hides_that_share_of_each_windows_observed_entries():
    g = torch.Generator().manual_seed(0)
    observed = (torch.rand(6, 3, 20, generator=g) < 0.7).float()
    cond = random_conditional_mask(observed, g, ratio=0.2)
    hidden = (observed - cond).reshape(6, -1).sum(1)
    torch.testing.assert_close(hidden, torch.round(observed.reshape(6, -1).sum(1) * 0.2))
    assert bool((cond <= observed).all())
    mixed = conditional_mask(observed, "mix", patterns=observed.flip(0), generator=g, ratio=0.2)
    assert bool((mixed <= observed).all())


def test_an_untrained_network_returns_the_classical_guess_and_checks_its_features():
    g = torch.Generator().manual_seed(1)
    values, base = torch.randn(4, 3, 10, generator=g), torch.randn(4, 3, 10, generator=g)
    given = (torch.rand(4, 3, 10, generator=g) < 0.5).float()
    net = GuessNetwork(GuessConfig(n_features=3, d_model=16, ff_dim=16))
    assert torch.equal(net(values, given, base), base)
    with pytest.raises(ValueError, match="3 features"):
        net(values[:, :2], given[:, :2], base[:, :2])


def test_the_learned_guess_beats_the_classical_one_on_held_out_values_and_round_trips():
    torch.manual_seed(0)
    train, valid = _nonlinear_windows(seed=0), _nonlinear_windows(n=64, seed=1)
    classical = fit_first_guess(train.values, train.observed, generator=torch.Generator().manual_seed(0))
    config = GuessTrainConfig(max_steps=400, batch_size=32, lr=3e-3, patience=20, verbose=False)
    guess, history = fit_learned_guess(train, valid, classical, config, torch.Generator().manual_seed(0),
                                       network=GuessConfig(n_features=3, d_model=32, ff_dim=64))
    assert history.steps == 400 and len(history.valid_error) == len(history.eval_steps) > 1
    assert history.best_step > 0 and min(history.valid_error) < 0.7 * history.classical_error

    # on new windows, the learned guess is closer to the hidden values than the classical one
    test = _nonlinear_windows(n=64, seed=2)
    given = test.observed * (torch.rand(test.observed.shape, generator=torch.Generator().manual_seed(3)) >= 0.2)
    hidden = test.observed - given

    def error(fn) -> float:
        return float(((fn(test.values, given) - test.values).abs() * hidden).sum() / hidden.sum())

    learned = error(guess)
    assert learned < 0.7 * error(lambda v, m: first_guess_of(v, m, classical))
    out = guess(test.values, given)
    assert torch.equal(out[given > 0], test.values[given > 0])

    # stored as plain values and tensors, read back to the same function
    restored = guess_from_dict(guess.to_dict())
    assert isinstance(restored, LearnedGuess) and torch.equal(restored(test.values, given), out)
    assert guess_from_dict(classical.to_dict()) == classical and guess_from_dict(None) is None


def test_a_guess_that_never_beats_the_classical_one_is_the_classical_one():
    train = _nonlinear_windows(n=32, seed=0)
    config = GuessTrainConfig(max_steps=1, lr=1e-9, verbose=False)
    guess, history = fit_learned_guess(train, None, None, config, torch.Generator().manual_seed(0),
                                       network=GuessConfig(n_features=3, d_model=16, ff_dim=16))
    assert history.best_step == 0
    given = train.observed * 0.5
    given = (given > 0).float() * (torch.rand(given.shape, generator=torch.Generator().manual_seed(0)) < 0.5)
    assert torch.equal(guess(train.values, given), first_guess_of(train.values, given, None))


def test_imputer_with_a_learned_guess_is_reproducible_saved_and_keeps_observed_values(sinusoids, tmp_path):
    X, _ = sinusoids
    params = {**TINY, "first_guess": "learned", "random_state": 0}
    imp = Imputer(**params).fit(X)
    history = imp.guess_history_
    assert history is not None and history.steps > 0 and np.isfinite(history.classical_error)
    assert isinstance(imp.denoiser_.parameterization.first_guess, LearnedGuess)
    out = imp.transform(X)
    observed = X.notna().to_numpy()
    np.testing.assert_array_equal(out.to_numpy()[observed], X.to_numpy()[observed])
    assert not out.isna().any().any()
    again = Imputer(**params).fit(X).transform(X)
    np.testing.assert_array_equal(again.to_numpy(), out.to_numpy())
    imp.save(tmp_path / "imp.pt")
    loaded = Imputer.load(tmp_path / "imp.pt")
    assert isinstance(loaded.denoiser_.parameterization.first_guess, LearnedGuess)
    assert loaded.guess_history_ is None  # the training history is not stored
    np.testing.assert_array_equal(loaded.transform(X).to_numpy(), out.to_numpy())
    # the other guesses fit none; without validation windows the guess is chosen on (a copy of) the training ones
    assert Imputer(**{**params, "first_guess": "fitted"}).fit(X).guess_history_ is None
    alone = Imputer(**{**params, "validation_fraction": 0.0}).fit(X)
    assert alone.guess_history_.steps > 0 and np.isfinite(alone.guess_history_.valid_error).all()


def test_the_guess_spends_its_share_of_max_time_and_the_diffusion_the_rest(sinusoids):
    X, _ = sinusoids
    imp = Imputer(**{**TINY, "epochs": None, "max_steps": None, "max_time": 8.0}, first_guess="learned",
                  random_state=0).fit(X)
    spent = imp.guess_history_.seconds
    assert 0 < spent <= 4.0 + 1.0  # at most half of max_time (and one batch past it)
    assert imp._train_config(100).max_time == pytest.approx(8.0 - spent)
    # with a time budget the guess's steps follow its share of the time; without one, a fixed cap
    timed = imp._guess_config()
    assert timed.max_steps is None and timed.max_time == 4.0 and timed.max_epochs == 100
    untimed = Imputer(first_guess="learned", epochs=7)._guess_config()
    assert untimed.max_steps == 3000 and untimed.max_time is None and untimed.max_epochs == 7


def test_the_network_can_be_shown_the_first_guess_of_the_residual_parameterization(sinusoids):
    from tsimpute.denoisers import SeriesDenoiser, model_input
    from tsimpute.diffusion.conditioning import conditional_values
    from tsimpute.diffusion.parameterization import Parameterization
    from tsimpute.models import CSDIConfig, CSDIDenoiser

    g = torch.Generator().manual_seed(0)
    values, base = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    given = (torch.rand(2, 3, 8, generator=g) < 0.5).float()
    assert torch.equal(conditional_values(values, given, "guess", base), base)
    assert torch.equal(model_input(values, given, base.repeat(2, 1, 1), "guess", base)[..., 0], base.repeat(2, 1, 1))
    with pytest.raises(ValueError, match="first guess"):
        conditional_values(values, given, "guess")
    net = CSDIDenoiser(CSDIConfig(n_features=3, n_steps=10, channels=8, n_layers=1, n_heads=2, ff_dim=8))
    with pytest.raises(ValueError, match="residual"):
        SeriesDenoiser(net, "guess", Parameterization("epsilon"))
    X, _ = sinusoids
    out = Imputer(**{**TINY, "conditioning": "guess"}, random_state=0).fit_transform(X)
    assert not out.isna().any().any()
    with pytest.raises(ValueError, match="residual"):
        Imputer(**{**TINY, "conditioning": "guess", "parameterization": "epsilon"}).fit(X)


def test_a_single_short_epoch_is_still_evaluated_and_kept_when_it_helps():
    train = _nonlinear_windows(n=64, seed=0)
    config = GuessTrainConfig(max_epochs=1, batch_size=8, lr=3e-3, min_eval_steps=50, verbose=False)
    guess, history = fit_learned_guess(train, _nonlinear_windows(n=32, seed=1), None, config,
                                       torch.Generator().manual_seed(0),
                                       network=GuessConfig(n_features=3, d_model=32, ff_dim=64))
    assert history.steps == 8 and history.eval_steps == [8]
    assert history.best_step == 8 and history.valid_error[0] < history.classical_error
