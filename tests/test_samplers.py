import math

import pytest
import torch

from tsimpute.diffusion.samplers import NFECounter, antithetic_noise, ddpm_variance, sample_ddim, sample_ddpm
from tsimpute.diffusion.schedules import Chain, NoiseSchedule, uniform_steps


class DummyEps:
    """A fixed, step-dependent 'network' so samplers can be compared exactly."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t):
        self.calls.append(t)
        return torch.tanh(0.3 * x + 0.01 * (t + 1))


def reference_ddpm(eps_fn, x, betas, noises):
    """Step-by-step DDPM over all T steps, written from the DDPM paper (Ho et al. 2020, Alg. 2)."""
    alphas = [1 - b for b in betas]
    ac = [math.prod(alphas[: i + 1]) for i in range(len(betas))]
    T = len(betas)
    for t in range(T - 1, -1, -1):
        eps = eps_fn(x, t)
        mean = (x - betas[t] / math.sqrt(1 - ac[t]) * eps) / math.sqrt(alphas[t])
        if t > 0:
            var = (1 - ac[t - 1]) / (1 - ac[t]) * betas[t]
            x = mean + math.sqrt(var) * noises[T - 1 - t]
        else:
            x = mean
    return x


def test_full_chain_equals_step_by_step_ddpm_reference():
    sched = NoiseSchedule(50)
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    noises = [torch.randn(x.shape, generator=g, dtype=torch.float64) for _ in range(49)]
    expected = reference_ddpm(DummyEps(), x.clone(), sched.betas.tolist(), noises)
    got = sample_ddpm(DummyEps(), x.clone(), sched.full_chain(), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("semantics", ["respaced", "masked"])
def test_ddim_eta_one_equals_ancestral_ddpm(semantics):
    sched = NoiseSchedule(50)
    chain = sched.chain(uniform_steps(50, 10), semantics)
    x = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = sample_ddpm(DummyEps(), x.clone(), chain, generator=torch.Generator().manual_seed(5))
    b = sample_ddim(DummyEps(), x.clone(), chain, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_eta_zero_is_deterministic_and_differs_from_ddpm():
    sched = NoiseSchedule(50)
    chain = sched.chain(uniform_steps(50, 10))
    x = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    a = sample_ddim(DummyEps(), x.clone(), chain, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = sample_ddim(DummyEps(), x.clone(), chain, eta=0.0, generator=torch.Generator().manual_seed(2))
    c = sample_ddpm(DummyEps(), x.clone(), chain, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="eta"):
        sample_ddim(DummyEps(), x, chain, eta=1.5)


@pytest.mark.parametrize("k", [1, 5, 10, 50])
def test_network_called_once_per_kept_step_in_descending_order(k):
    sched = NoiseSchedule(50)
    steps = uniform_steps(50, k)
    dummy = DummyEps()
    counter = NFECounter(dummy)
    sample_ddpm(counter, torch.zeros(2, 3), sched.chain(steps), generator=torch.Generator().manual_seed(0))
    assert counter.calls == k
    assert dummy.calls == sorted(steps.tolist(), reverse=True)


def test_callback_sees_every_step():
    sched = NoiseSchedule(10)
    seen = []
    sample_ddim(DummyEps(), torch.zeros(1, 2), sched.full_chain(), callback=lambda d: seen.append(d["t"]))
    assert seen == list(range(9, -1, -1))


def test_antithetic_noise_pairs_rows_and_keeps_each_row_standard_normal():
    z = antithetic_noise((7, 3), torch.Generator().manual_seed(0))
    assert torch.equal(z[3:6], -z[:3])  # rows i and i + 3 paired; the 7th row is drawn on its own
    big = antithetic_noise((20000, 2), torch.Generator().manual_seed(1))
    assert abs(float(big[:10000].mean())) < 0.03 and abs(float(big[:10000].std()) - 1) < 0.03


@pytest.mark.parametrize("sampler", [sample_ddpm, sample_ddim])
def test_antithetic_sampling_with_a_linear_denoiser_is_symmetric(sampler):
    sched = NoiseSchedule(50, "quad")
    chain = sched.chain(uniform_steps(50, 10))
    g = torch.Generator().manual_seed(0)
    x = antithetic_noise((8, 5), g)
    extra = {"eta": 1.0} if sampler is sample_ddim else {}
    out = sampler(lambda x_t, t: 0.3 * x_t, x, chain, generator=g, antithetic=True, **extra)
    torch.testing.assert_close(out[:4], -out[4:])  # every noise of a pair is opposite: so is the sample
    # without the option the same start gives different, unpaired noise
    out2 = sampler(lambda x_t, t: 0.3 * x_t, x, chain, generator=torch.Generator().manual_seed(0), **extra)
    assert not torch.allclose(out2[:4], -out2[4:])


# ----------------------------------------------------------------------------- DDPM variance option
def _ddpm_beta_tilde_reference(eps_fn, x, chain, generator, clip=None, antithetic=False):
    """The DDPM update with the posterior variance beta-tilde at every kept step, as sample_ddpm computed it
    before the ``variance`` option (same float operations in the same order)."""
    from tsimpute.diffusion.samplers import _clipped_x0, _noise_like

    steps, ac = chain.timesteps.tolist(), chain.alphas_cumprod.tolist()
    for i in range(len(steps) - 1, -1, -1):
        t, ab, ab_prev = steps[i], ac[i], ac[i - 1] if i > 0 else 1.0
        eps = eps_fn(x, t)
        alpha = ab / ab_prev
        beta = 1.0 - alpha
        if clip is None:
            x = (x - (beta / math.sqrt(1.0 - ab)) * eps) / math.sqrt(alpha)
        else:
            x0 = _clipped_x0(x, eps, ab, clip)
            x = (math.sqrt(ab_prev) * beta / (1.0 - ab)) * x0 + (math.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab)) * x
        if i > 0:
            sigma = math.sqrt((1.0 - ab_prev) / (1.0 - ab) * beta)
            x = x + sigma * _noise_like(x, generator, antithetic)
    return x


@pytest.mark.parametrize("semantics", ["respaced", "masked"])
@pytest.mark.parametrize("k", [50, 10, 3])
@pytest.mark.parametrize("clip,antithetic", [(None, False), ((-0.5, 0.5), True)])
def test_ddpm_variance_zero_reproduces_the_posterior_variance_sampler_bit_for_bit(semantics, k, clip, antithetic):
    chain = NoiseSchedule(50).chain(uniform_steps(50, k), semantics)
    x = antithetic_noise((6, 3, 7), torch.Generator().manual_seed(0))
    expected = _ddpm_beta_tilde_reference(DummyEps(), x.clone(), chain, torch.Generator().manual_seed(3), clip,
                                          antithetic)
    for extra in ({}, {"variance": 0.0}, {"variance": 0}):
        got = sample_ddpm(DummyEps(), x.clone(), chain, generator=torch.Generator().manual_seed(3), clip=clip,
                          antithetic=antithetic, **extra)
        assert torch.equal(got, expected)


@pytest.mark.parametrize("v,sigma2", [(0.0, 0.1875), (1.0, 0.75), (0.5, 0.375), (0.25, 0.1875**0.75 * 0.75**0.25)])
def test_ddpm_variance_interpolates_log_linearly_from_beta_tilde_to_beta_by_hand(v, sigma2):
    # two kept steps with abar = 0.8 (first) and 0.2 (last): the update between them has alpha = 0.25,
    # beta = 0.75 and beta-tilde = (1 - 0.8) / (1 - 0.2) * 0.75 = 0.1875. With eps = 0 the sampler is
    # x -> (x / sqrt(0.25) + sigma z) / sqrt(0.8), with sigma^2 = 0.75^v 0.1875^(1 - v).
    chain = Chain(torch.tensor([3, 7]), torch.tensor([0.8, 0.2], dtype=torch.float64))
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = sample_ddpm(lambda x_t, t: torch.zeros_like(x_t), x.clone(), chain,
                      generator=torch.Generator().manual_seed(1), variance=v)
    expected = (x / 0.5 + math.sqrt(sigma2) * z) / math.sqrt(0.8)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert ddpm_variance(0.2, 0.8, v) == pytest.approx(sigma2, rel=1e-12)


@pytest.mark.parametrize("semantics", ["respaced", "masked"])
def test_ddpm_variance_one_uses_the_chains_own_beta_between_kept_steps(semantics):
    chain = NoiseSchedule(50).chain(uniform_steps(50, 5), semantics)
    ac = chain.alphas_cumprod.tolist()
    betas = chain.betas.tolist()
    for i in range(1, len(ac)):
        assert ddpm_variance(ac[i], ac[i - 1], 1.0) == pytest.approx(betas[i], rel=1e-12)
        beta_tilde = (1 - ac[i - 1]) / (1 - ac[i]) * betas[i]
        assert ddpm_variance(ac[i], ac[i - 1], 0.0) == pytest.approx(beta_tilde, rel=1e-12)
        assert beta_tilde < ddpm_variance(ac[i], ac[i - 1], 0.5) < betas[i]
    # the spread of the samples: eps = 0 and x_T = 0, so the output variance is sum_i sigma_i^2 / abar_{i-1}
    x = torch.zeros(40000, 1, dtype=torch.float64)
    for v in (0.0, 1.0):
        out = sample_ddpm(lambda x_t, t: torch.zeros_like(x_t), x.clone(), chain,
                          generator=torch.Generator().manual_seed(2), variance=v)
        expected = sum(ddpm_variance(ac[i], ac[i - 1], v) / ac[i - 1] for i in range(1, len(ac)))
        assert float(out.var()) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_ddpm_bad_variance_raises_naming_variance(bad):
    chain = NoiseSchedule(10).full_chain()
    with pytest.raises(ValueError, match="variance"):
        sample_ddpm(DummyEps(), torch.zeros(2, 3), chain, variance=bad)


class _PointMassEps(torch.nn.Module):
    """The exact noise prediction when every value is 0: ``eps = x_t / sqrt(1 - abar_t)`` (50-step quad chain)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.ab = NoiseSchedule(50).alphas_cumprod.float()

    def encode_side(self, cond):
        return [torch.zeros(cond.shape[0], 1)]

    def forward(self, x, t, side):
        return x[..., 1] / torch.sqrt(1 - self.ab[t]).view(-1, 1, 1) + 0 * self.w


def _impute(**kwargs):
    from tsimpute.data import WindowSet
    from tsimpute.denoisers import SeriesDenoiser
    from tsimpute.inference import impute_windows

    values = torch.zeros(2, 3, 8)
    observed = torch.zeros(2, 3, 8)
    observed[:, :, :2] = 1
    chain = NoiseSchedule(50).chain(uniform_steps(50, 3))
    return impute_windows(SeriesDenoiser(_PointMassEps()), WindowSet(values, observed), chain, n_samples=64,
                          precision="fp32", generator=torch.Generator().manual_seed(0), **kwargs).samples


def test_impute_windows_variance_keyword_threads_through():
    base = _impute()
    assert torch.equal(_impute(variance=0.0), base)
    wide = _impute(variance=1.0)
    assert torch.equal(wide[..., :2], base[..., :2])  # observed entries untouched
    assert float(wide[..., 2:].std()) > 1.05 * float(base[..., 2:].std())  # beta > beta-tilde: wider samples
    for bad in (-1.0, 2.0, float("nan")):
        with pytest.raises(ValueError, match="variance"):
            _impute(variance=bad)
    with pytest.raises(ValueError, match="variance"):
        _impute(variance=0.5, sampler="ddim")
    assert torch.equal(_impute(sampler="ddim", eta=1.0, variance=0.0), _impute(sampler="ddim", eta=1.0))
