import pytest
import torch

from tsimpute.diffusion.schedules import (
    NoiseSchedule,
    beta_schedule,
    check_steps,
    quadratic_steps,
    uniform_steps,
)


def test_quad_schedule_matches_csdi_formula():
    betas = beta_schedule("quad", 50)
    expected = torch.linspace(1e-4**0.5, 0.5**0.5, 50, dtype=torch.float64) ** 2
    assert torch.equal(betas, expected)
    sched = NoiseSchedule(50, "quad")
    assert sched.alphas_cumprod[-1].item() == pytest.approx(3.354e-5, rel=1e-3)


@pytest.mark.parametrize("name", ["quad", "linear", "cosine"])
def test_schedules_are_valid_noise_levels(name):
    betas = beta_schedule(name, 50)
    assert betas.dtype == torch.float64 and betas.shape == (50,)
    assert bool((betas > 0).all()) and bool((betas < 1).all())
    ac = NoiseSchedule(50, name).alphas_cumprod
    assert bool((ac[1:] < ac[:-1]).all())


def test_unknown_schedule_and_bad_steps():
    with pytest.raises(ValueError, match="unknown schedule"):
        beta_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="n_steps"):
        beta_schedule("quad", 0)


def test_chains_over_all_steps_equal_the_full_chain():
    sched = NoiseSchedule(50)
    full = sched.full_chain()
    for semantics in ("respaced", "masked"):
        chain = sched.chain(torch.arange(50), semantics)
        assert torch.equal(chain.timesteps, full.timesteps)
        torch.testing.assert_close(chain.alphas_cumprod, full.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(full.betas, sched.betas, rtol=1e-10, atol=1e-14)


def test_masked_chain_terminal_level_depends_on_kept_steps():
    sched = NoiseSchedule(50)
    steps = uniform_steps(50, 10)
    masked = sched.chain(steps, "masked")
    respaced = sched.chain(steps, "respaced")
    # METHOD.md: CSDI's schedule with 10 uniform steps under the masked chain ends at alpha_bar = 0.11
    assert masked.terminal_alpha_cumprod == pytest.approx(0.110, abs=1e-3)
    assert respaced.terminal_alpha_cumprod == pytest.approx(sched.alphas_cumprod[-1].item())
    # respaced marginals equal the full chain's at the kept steps
    torch.testing.assert_close(respaced.alphas_cumprod, sched.alphas_cumprod[steps])
    # masked: alpha_bar equals the product over kept steps of (1 - beta)
    m = torch.zeros(50)
    m[steps] = 1
    torch.testing.assert_close(masked.alphas_cumprod, sched.masked_alphas_cumprod(m)[steps])


@pytest.mark.parametrize("k", [1, 5, 10, 25, 49, 50])
def test_step_subsets_have_k_distinct_steps_ending_at_the_last(k):
    for steps in (uniform_steps(50, k), quadratic_steps(50, k)):
        assert steps.numel() == k
        assert bool((steps[1:] > steps[:-1]).all())
        assert int(steps[-1]) == 49 and int(steps[0]) >= 0


def test_check_steps_rejects_bad_subsets():
    assert check_steps([3, 1, 2], 5).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="repeat"):
        check_steps([1, 1], 5)
    with pytest.raises(ValueError, match="lie in"):
        check_steps([5], 5)
    with pytest.raises(ValueError, match="at least one"):
        check_steps([], 5)
    with pytest.raises(TypeError):
        check_steps([0.5], 5)
    with pytest.raises(ValueError):
        uniform_steps(50, 0)
