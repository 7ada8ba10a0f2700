"""Model-agnostic diffusion core: schedules, chains, samplers, objective and the learned step mask."""

from .losses import masked_eps_mse
from .samplers import NFECounter, get_sampler, sample_ddim, sample_ddpm
from .schedules import Chain, NoiseSchedule, beta_schedule, quadratic_steps, uniform_steps
from .targets import conditional_mask

__all__ = [
    "Chain",
    "NFECounter",
    "NoiseSchedule",
    "beta_schedule",
    "conditional_mask",
    "get_sampler",
    "masked_eps_mse",
    "quadratic_steps",
    "sample_ddim",
    "sample_ddpm",
    "uniform_steps",
]
