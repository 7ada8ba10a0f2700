import math

import pytest
import torch

from tsimpute.diffusion.samplers import NFECounter, antithetic_noise, sample_ddim, sample_ddpm
from tsimpute.diffusion.schedules import NoiseSchedule, uniform_steps


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
