"""The residual parameterization: the diffusion runs on the correction of the interpolation."""

import math

import pytest
import torch

from tsimpute import Imputer
from tsimpute.data import WindowSet
from tsimpute.denoisers import SeriesDenoiser
from tsimpute.diffusion.conditioning import gap_distance, interpolate_given
from tsimpute.diffusion.parameterization import (
    GAP_BINS,
    Parameterization,
    interpolation_error_scale,
    interpolation_error_table,
)
from tsimpute.diffusion.schedules import NoiseSchedule
from tsimpute.inference import impute_windows
from tsimpute.models import CSDIConfig, CSDIDenoiser


def _windows(n=6, k=2, length=16, seed=0) -> WindowSet:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    values = torch.sin(t / 3 + torch.rand(n, k, 1, generator=g) * 6)
    observed = (torch.rand(n, k, length, generator=g) < 0.7).float()
    observed[..., 0] = 1  # every row has a given value
    return WindowSet(values * observed, observed)


def test_epsilon_is_the_identity_and_bad_settings_are_refused():
    p = Parameterization()
    x = torch.randn(3, 2, 5)
    out = torch.randn(3, 2, 5)
    assert p.base(x, torch.ones_like(x)) is None
    assert p.network_input(x, None, 0.5) is x
    assert torch.equal(p.eps(out, x, None, 0.5), out)
    with pytest.raises(ValueError, match="parameterization"):
        Parameterization("x0")
    with pytest.raises(ValueError, match="sigma_data"):
        Parameterization("residual", 0.0)


@pytest.mark.parametrize("sigma_data", [0.2, 1.0])
def test_residual_output_maps_to_the_true_noise_and_zero_output_is_the_gaussian_denoiser(sigma_data):
    g = torch.Generator().manual_seed(1)
    p = Parameterization("residual", sigma_data)
    base = torch.randn(4, 2, 8, generator=g)
    x0 = base + sigma_data * torch.randn(4, 2, 8, generator=g)
    eps = torch.randn(4, 2, 8, generator=g)
    ab = torch.tensor([0.9, 0.5, 0.1, 0.01]).view(4, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    var = 1 - ab + ab * sigma_data**2
    # the network input is the residual's state at unit variance
    r_t = ab.sqrt() * (x0 - base) + (1 - ab).sqrt() * eps
    torch.testing.assert_close(p.network_input(x_t, base, ab), r_t / var.sqrt())
    # the output that reproduces eps exists and is recovered (the map is affine and invertible in F)
    f = ((1 - ab).sqrt() / var * r_t - eps) / (sigma_data * (ab / var).sqrt())
    torch.testing.assert_close(p.eps(f, x_t, base, ab), eps)
    # zero output: the clean-value estimate is the Wiener estimate E[x0 | x_t] = base + sqrt(abar) sd^2 / v r_t
    x0_hat = (x_t - (1 - ab).sqrt() * p.eps(torch.zeros_like(x_t), x_t, base, ab)) / ab.sqrt()
    torch.testing.assert_close(x0_hat, base + ab.sqrt() * sigma_data**2 * r_t / var, rtol=1e-4, atol=1e-4)
    # samples folded in front of the windows share the window's base
    x2 = torch.cat([x_t, x_t])
    torch.testing.assert_close(p.eps(torch.zeros_like(x2), x2, base, 0.5)[:4],
                               p.eps(torch.zeros_like(x_t), x_t, base, 0.5))


def test_untrained_residual_network_samples_the_interpolation_plus_its_error_scale():
    data = _windows()
    torch.manual_seed(0)
    sd = 0.3
    net = CSDIDenoiser(CSDIConfig(n_features=2, n_steps=50, channels=8, n_layers=1, n_heads=2, ff_dim=8))
    model = SeriesDenoiser(net, parameterization=Parameterization("residual", sigma_data=sd))
    schedule = NoiseSchedule(50, "quad")
    res = impute_windows(model, data, schedule.chain(torch.arange(50), "respaced"), n_samples=400,
                         generator=torch.Generator().manual_seed(0))
    free = data.observed == 0
    base = interpolate_given(data.values, data.observed)
    mean = res.samples.mean(0)
    std = res.samples.std(0)
    assert float((mean - base)[free].abs().max()) < 0.1
    assert abs(float(std[free].mean()) / sd - 1) < 0.1
    assert torch.equal(res.samples[:, ~free], data.values[~free].expand(400, -1))
    # the CSDI parameterization of the same untrained network does not know the interpolation
    eps_res = impute_windows(SeriesDenoiser(net), data, schedule.chain(torch.arange(50), "respaced"), n_samples=50,
                             generator=torch.Generator().manual_seed(0))
    assert float((eps_res.samples.mean(0) - base)[free].abs().mean()) > 0.3


def _loss_setup(step: int):
    """Windows with a hidden block, every window at ``step`` of a 50-step chain, and one untrained network as a
    noise predictor and as a residual (``sigma_data=0.3``) predictor."""
    data = _windows()
    cond = data.observed.clone()
    cond[..., 5:9] = 0
    t = torch.full((len(data),), step)
    ab = NoiseSchedule(50, "quad").alphas_cumprod[t]
    torch.manual_seed(0)
    cfg = dict(n_features=2, n_steps=50, channels=8, n_layers=1, n_heads=2, ff_dim=8)
    eps_model = SeriesDenoiser(CSDIDenoiser(CSDIConfig(**cfg)))
    res_model = SeriesDenoiser(CSDIDenoiser(CSDIConfig(**cfg)), parameterization=Parameterization("residual", 0.3))
    res_model.net.load_state_dict(eps_model.net.state_dict())
    return data, cond, t, ab, eps_model, res_model


def test_loss_reads_the_output_through_the_parameterization():
    data, cond, t, ab, eps_model, res_model = _loss_setup(30)
    # zero output: the noise-MSE is 1 for epsilon (eps vs 0), below 1 for the residual's Gaussian denoiser
    with torch.no_grad():
        loss_eps = float(eps_model.loss(data, cond, t, ab, torch.Generator().manual_seed(0)))
        loss_res = float(res_model.loss(data, cond, t, ab, torch.Generator().manual_seed(0)))
    assert 0.5 < loss_eps < 1.5
    assert loss_res < 0.8 * loss_eps


def test_error_scale_of_interpolation():
    data = _windows()
    cond = data.observed.clone()
    assert interpolation_error_scale(data.values, data.observed, cond) == 1.0  # nothing hidden
    cond[..., 3::4] = 0
    err = (interpolate_given(data.values * cond, cond) - data.values) * (data.observed - cond)
    expected = math.sqrt(float(err.pow(2).sum() / (data.observed - cond).sum()))
    assert interpolation_error_scale(data.values, data.observed, cond) == pytest.approx(expected)


def test_imputer_learns_the_scale_and_round_trips(sinusoids, tmp_path):
    X, _ = sinusoids
    imp = Imputer(window=24, channels=8, n_layers=1, n_heads=2, max_steps=4, n_samples=2, random_state=0,
                  verbose=False).fit(X)
    p = imp.denoiser_.parameterization
    assert p.kind == "residual" and 0.01 <= p.sigma_data < 2
    out = imp.transform(X)
    imp.save(tmp_path / "m.pt")
    again = Imputer.load(tmp_path / "m.pt")
    assert again.denoiser_.parameterization == p
    assert again.transform(X).equals(out)
    eps = Imputer(window=24, channels=8, n_layers=1, n_heads=2, max_steps=4, n_samples=2, random_state=0,
                  parameterization="epsilon", verbose=False).fit(X)
    assert eps.denoiser_.parameterization == Parameterization()
    with pytest.raises(ValueError, match="parameterization"):
        Imputer(parameterization="x0").fit(X)


def test_checkpoint_from_before_the_parameterization_loads_as_noise_prediction(sinusoids, tmp_path):
    X, _ = sinusoids
    imp = Imputer(window=24, channels=8, n_layers=1, n_heads=2, max_steps=4, n_samples=2, random_state=0,
                  parameterization="epsilon", verbose=False).fit(X)
    imp.save(tmp_path / "new.pt")
    new = torch.load(tmp_path / "new.pt", weights_only=True)
    # what an older release wrote: format 2, no parameterization anywhere, the conditioning in the network's config
    params = {k: v for k, v in new["params"].items() if k != "parameterization"}
    data = new["data"]
    config = {**new["network"], "conditioning": new["denoiser"]["conditioning"]}
    old = {"format": "tsimpute.Imputer", "format_version": 2, "params": params, "model_config": config,
           "model_state": new["network_state"], "feature_names": data["feature_names"], "window": data["window"],
           "mean": data["mean"], "scale": data["scale"], "data_min": data["data_min"], "data_max": data["data_max"],
           "sample_seed": new["sample_seed"], "seeded": new["seeded"], "learned_steps": None, "step_scores": None}
    torch.save(old, tmp_path / "old.pt")
    old = Imputer.load(tmp_path / "old.pt")
    assert old.parameterization == "epsilon"
    assert old.denoiser_.parameterization == Parameterization()
    assert old.transform(X).equals(imp.transform(X))


def test_gap_distance_is_the_brownian_bridge_variance_of_each_gap():
    given = torch.tensor([[1, 0, 1, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    d = gap_distance(given)
    torch.testing.assert_close(d[0], torch.tensor([0, 0.5, 0, 0.75, 1.0, 0.75, 0, 1, 2]))
    assert bool((d[1] == 9).all())  # nothing given in the row: the window length


def test_scale_table_gives_each_entry_the_scale_of_its_feature_and_gap():
    table = [[0.1 + 0.01 * j for j in range(len(GAP_BINS) + 1)], [1.0 + j for j in range(len(GAP_BINS) + 1)]]
    p = Parameterization("residual", 0.5, tuple(map(tuple, table)))
    cond = torch.ones(1, 2, 9)
    cond[0, :, [1, 3, 4, 5]] = 0  # a single missing entry (distance 1/2) and a gap of three (3/4, 1, 3/4)
    scale = p.scale(cond)
    assert scale.shape == cond.shape
    assert scale[0, 0, 1] == pytest.approx(0.10) and scale[0, 1, 1] == pytest.approx(1.0)
    assert scale[0, 0, 3] == pytest.approx(0.11) and scale[0, 0, 4] == pytest.approx(0.12)
    assert Parameterization("residual", 0.5).scale(cond) is None
    with pytest.raises(ValueError, match="features"):
        p.scale(torch.ones(1, 3, 9))
    with pytest.raises(ValueError, match="sigma_table"):
        Parameterization("residual", 0.5, ((1.0, 2.0),))
    # a per-entry scale is the scalar formulas entry by entry: a constant table equals one sigma_data
    g = torch.Generator().manual_seed(0)
    x_t, base = torch.randn(3, 2, 9, generator=g), torch.randn(1, 2, 9, generator=g)
    out = torch.randn(3, 2, 9, generator=g)
    flat = Parameterization("residual", 0.3, ((0.3,) * (len(GAP_BINS) + 1),) * 2)
    torch.testing.assert_close(flat.eps(out, x_t, base, 0.6, flat.scale(cond)),
                               Parameterization("residual", 0.3).eps(out, x_t, base, 0.6))


def test_error_table_per_feature_and_gap_and_its_fallback():
    g = torch.Generator().manual_seed(0)
    values = torch.cumsum(torch.randn(64, 2, 32, generator=g), -1) * torch.tensor([0.1, 1.0]).view(1, 2, 1)
    observed = torch.ones_like(values)
    cond = (torch.rand(values.shape, generator=g) > 0.6).float()
    table = torch.tensor(interpolation_error_table(values, observed, cond))
    assert table.shape == (2, len(GAP_BINS) + 1)
    assert bool((table[1, :4] > 5 * table[0, :4]).all())  # the noisier feature has the larger scale
    assert float(table[1, 0]) < float(table[1, 6])  # interpolation's error grows with the gap (random walk)
    # no hidden entry at all: every bin falls back to 1
    assert interpolation_error_table(values, observed, observed) == [[1.0] * (len(GAP_BINS) + 1)] * 2


def test_gap_scale_imputer_round_trips(sinusoids, tmp_path):
    X, _ = sinusoids
    imp = Imputer(window=24, channels=8, n_layers=1, n_heads=2, max_steps=4, n_samples=2, random_state=0,
                  residual_scale="gap", time_kernel=3, verbose=False).fit(X)
    p = imp.denoiser_.parameterization
    assert p.sigma_table is not None and len(p.sigma_table) == X.shape[1]
    out = imp.transform(X)
    assert not out.isna().any().any()
    imp.save(tmp_path / "m.pt")
    again = Imputer.load(tmp_path / "m.pt")
    assert again.denoiser_.parameterization == p and again.model_.config.time_kernel == 3
    assert again.transform(X).equals(out)
    for bad in ({"residual_scale": "cell"}, {"time_kernel": 4}, {"time_kernel": -1}, {"noise_levels": "high"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Imputer(**bad).fit(X)


def test_antithetic_samples_of_an_untrained_residual_network_are_symmetric_about_the_first_guess():
    data = _windows()
    torch.manual_seed(0)
    model = SeriesDenoiser(CSDIDenoiser(CSDIConfig(n_features=2, n_steps=50, channels=8, n_layers=1, n_heads=2,
                                                   ff_dim=8)), parameterization=Parameterization("residual", 0.3))
    chain = NoiseSchedule(50, "quad").chain(torch.arange(0, 50, 5), "respaced")
    res = impute_windows(model, data, chain, n_samples=10, generator=torch.Generator().manual_seed(0),
                         antithetic=True, batch_size=4)
    base = interpolate_given(data.values, data.observed)
    # each pair is symmetric about the first guess: so are the mean and the median of the samples
    torch.testing.assert_close(res.samples.mean(0), base, atol=1e-4, rtol=0)
    torch.testing.assert_close(res.samples.quantile(0.5, dim=0), base, atol=1e-4, rtol=0)
    independent = impute_windows(model, data, chain, n_samples=10, generator=torch.Generator().manual_seed(0),
                                 batch_size=4)
    assert float((independent.samples.mean(0) - base).abs().max()) > 0.05


@pytest.mark.parametrize("table", [False, True])
def test_output_weight_turns_the_noise_error_into_the_output_error(table):
    g = torch.Generator().manual_seed(1)
    cond = (torch.rand(3, 2, 8, generator=g) < 0.6).float()
    rows = tuple(tuple(0.1 + 0.05 * (i + j) for j in range(len(GAP_BINS) + 1)) for i in range(2))
    p = Parameterization("residual", 0.3, rows if table else None)
    scale = p.scale(cond)
    sd = scale if table else torch.tensor(0.3)
    ab = torch.tensor([0.999, 0.5, 1e-3]).view(3, 1, 1)
    base, res, eps, out = (torch.randn(3, 2, 8, generator=g) for _ in range(4))
    x_t = ab.sqrt() * (base + res) + (1 - ab).sqrt() * eps
    eps_pred = p.eps(out, x_t, base, ab, scale)
    # the output a perfect network gives (Karras et al.'s training target), written without the readout
    v = 1 - ab + ab * sd**2
    target = ((1 - ab).sqrt() * res / sd - ab.sqrt() * sd * eps) / v.sqrt()
    torch.testing.assert_close((eps_pred - eps) * p.output_weight(ab, scale), target - out, atol=1e-4, rtol=1e-4)
    # at high noise the noise error hides most of the output error
    assert float(p.output_weight(ab, scale)[2].min()) > 10
    assert Parameterization().output_weight(ab) is None


def test_output_weighted_loss_is_the_noise_loss_for_epsilon_and_reweighted_for_residual():
    data, cond, t, ab, eps_model, res_model = _loss_setup(45)

    def loss(model, weighting):
        with torch.no_grad():
            return float(model.loss(data, cond, t, ab, torch.Generator().manual_seed(0), weighting=weighting))

    assert loss(eps_model, "output") == loss(eps_model, "noise")
    # the untrained residual network outputs 0: its output error is the unit-variance target, its noise
    # error at this high level is a small fraction of it
    assert 0.5 < loss(res_model, "output") < 1.5
    assert loss(res_model, "noise") < 0.1 * loss(res_model, "output")
    with pytest.raises(ValueError, match="weighting"):
        res_model.loss(data, cond, t, ab, weighting="x0")


def test_imputer_trains_with_the_output_weighted_loss(sinusoids):
    imp = Imputer(loss_weighting="output", window=16, max_steps=4, channels=8, n_layers=1, n_samples=2,
                  random_state=0, verbose=False).fit(sinusoids[0])
    assert all(math.isfinite(v) for v in imp.history_.train_loss)
    with pytest.raises(ValueError, match="loss_weighting"):
        Imputer(loss_weighting="x0").fit(sinusoids[0])
