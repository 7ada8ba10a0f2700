"""Model-agnostic diffusion core: schedules, chains, samplers, objective and the learned step mask."""

from .losses import masked_eps_mse
from .samplers import NFECounter, get_sampler, sample_ddim, sample_ddpm
from .schedules import Chain, NoiseSchedule, beta_schedule, quadratic_steps, uniform_steps
from .step_mask import StepMask, cubic_budget, mask_update, project_capped_simplex
from .targets import conditional_mask

__all__ = [
    "Chain",
    "NFECounter",
    "NoiseSchedule",
    "StepMask",
    "beta_schedule",
    "conditional_mask",
    "cubic_budget",
    "get_sampler",
    "mask_update",
    "masked_eps_mse",
    "project_capped_simplex",
    "quadratic_steps",
    "sample_ddim",
    "sample_ddpm",
    "uniform_steps",
]
