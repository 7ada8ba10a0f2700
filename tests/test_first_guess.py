"""The fitted first guess of the residual parameterization: interpolation corrected by a median regression."""

import pytest
import torch

from tsimpute import Imputer
from tsimpute.diffusion.conditioning import interpolate_given
from tsimpute.diffusion.first_guess import (
    LOESS_WIDTHS,
    N_RELATED,
    FirstGuess,
    fit_first_guess,
    local_quadratic,
    related_columns,
    same_gap_deviation,
)


def test_local_quadratic_is_exact_on_a_parabola_and_refuses_one_sided_support():
    t = torch.arange(40, dtype=torch.float64)
    values = (0.3 + 0.1 * t - 0.02 * t**2).view(1, 1, -1)
    given = torch.ones_like(values)
    given[..., [10, 11, 20, 30]] = 0
    for h in LOESS_WIDTHS:
        est, ok = local_quadratic(values * given, given, h)
        assert bool(ok[0, 0, [10, 11, 20, 30]].all())
        torch.testing.assert_close(est[0, 0, [10, 11, 20, 30]], values[0, 0, [10, 11, 20, 30]])
    # nothing given on the left of the first entry, and too few values around an entry: no estimate
    sparse = torch.zeros_like(values)
    sparse[..., [5, 7]] = 1
    est, ok = local_quadratic(values * given, sparse, 3)
    assert not bool(ok[0, 0, 0]) and not bool(ok[0, 0, 6]) and bool((est[~ok] == 0).all())


def test_same_gap_deviation_carries_a_linearly_related_columns_departure_from_the_line():
    g = torch.Generator().manual_seed(0)
    walk = torch.cumsum(torch.randn(3, 1, 30, generator=g), -1)
    values = torch.cat([walk, 2 * walk + 1, torch.randn(3, 1, 30, generator=g)], dim=1)  # (B, 3, L)
    given = (torch.rand(values.shape, generator=g) < 0.7).float()
    given[:, 0, 0] = given[:, 0, -1] = 1  # column 0 is interpolated on both sides everywhere
    given[:, 1] = 1  # column 1 is given everywhere
    related = torch.tensor([[1, 2], [0, 2], [0, 1]])
    dev = same_gap_deviation(values, given, related)
    assert dev.shape == (3, 3, 2, 30)
    interp = interpolate_given(values * given, given)
    free = given[:, 0] == 0
    # column 1 is 2 x column 0 + 1: its departure across column 0's gaps is twice column 0's own
    torch.testing.assert_close(dev[:, 0, 0][free], 2 * (values[:, 0] - interp[:, 0])[free])
    # a related column that is not given at the entry contributes nothing
    missing = given[:, 2] == 0
    assert bool((dev[:, 0, 1][missing] == 0).all())
    # padding columns contribute nothing
    assert bool((same_gap_deviation(values, given, torch.tensor([[1, -1], [0, -1], [0, -1]]))[:, :, 1] == 0).all())


def test_related_columns_pick_the_correlated_ones_and_pad():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 64, 1, 48, generator=g)
    values = torch.cat([a, torch.randn(64, 1, 48, generator=g), -a + 0.1 * b, b], dim=1)
    rel = related_columns(values, torch.ones_like(values))
    assert rel.shape == (4, N_RELATED)
    assert int(rel[0, 0]) == 2 and int(rel[2, 0]) == 0
    assert bool((rel[:, 3:] == -1).all()) and not bool((rel[:, :3] == -1).any())


def test_fitted_guess_beats_interpolation_where_columns_are_related_and_keeps_it_where_not():
    g = torch.Generator().manual_seed(0)
    n, length = 128, 48
    walk = torch.cumsum(torch.randn(n, 1, length, generator=g), -1) * 0.3
    noise = torch.randn(n, 1, length, generator=g)  # white noise: nothing to learn beyond its mean
    values = torch.cat([walk, 0.5 * walk + 0.01 * torch.randn(n, 1, length, generator=g), noise], dim=1)
    observed = (torch.rand(values.shape, generator=g) < 0.8).float()
    observed[:, 1] = 1  # a reference sensor that never misses
    values = values * observed
    guess = fit_first_guess(values[:96], observed[:96], generator=torch.Generator().manual_seed(1))
    assert len(guess.weights) == 3 and len(guess.weights[0]) == len(LOESS_WIDTHS) + N_RELATED
    # score on held-out windows with 10% of the observed entries hidden
    v, o = values[96:], observed[96:]
    cond = o * (torch.rand(o.shape, generator=g) >= 0.1).float()
    cond[:, 1] = 1
    hidden = (o - cond) > 0
    err_guess = (guess(v, cond) - v).abs()
    err_interp = (interpolate_given(v * cond, cond) - v).abs()
    assert float(err_guess[:, 0][hidden[:, 0]].mean()) < 0.2 * float(err_interp[:, 0][hidden[:, 0]].mean())
    assert float(err_guess[:, 2][hidden[:, 2]].mean()) < 1.05 * float(err_interp[:, 2][hidden[:, 2]].mean())
    # given entries come back unchanged, and the weights round-trip through a plain dict
    assert torch.equal(guess(v, cond)[cond > 0], v[cond > 0])
    assert FirstGuess.from_dict(guess.to_dict()) == guess
    with pytest.raises(ValueError, match="3 features"):
        guess(v[:, :2], cond[:, :2])


def test_imputer_fits_the_first_guess_or_keeps_interpolation(sinusoids, tmp_path):
    X, _ = sinusoids
    small = {"window": 24, "channels": 8, "n_layers": 1, "n_heads": 2, "max_steps": 4, "n_samples": 2,
             "random_state": 0, "verbose": False}
    fitted = Imputer(**small).fit(X)
    guess = fitted.denoiser_.parameterization.first_guess
    assert guess is not None and len(guess.weights) == X.shape[1]
    assert any(any(w) for w in guess.weights)  # the sinusoids are related: some correction is kept
    fitted.save(tmp_path / "m.pt")
    assert Imputer.load(tmp_path / "m.pt").denoiser_.parameterization.first_guess == guess
    plain = Imputer(first_guess="interpolation", **small).fit(X)
    assert plain.denoiser_.settings()["first_guess"] is None and plain.denoiser_.parameterization.first_guess is None
    with pytest.raises(ValueError, match="first_guess"):
        Imputer(first_guess="spline").fit(X)
