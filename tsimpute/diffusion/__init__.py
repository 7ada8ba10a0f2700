"""Model-agnostic diffusion core: schedules, chains, samplers, objective, the learned step mask and distillation."""

from .distillation import distillation_loss, distillation_target, halve_chain
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
    "distillation_loss",
    "distillation_target",
    "get_sampler",
    "halve_chain",
    "mask_update",
    "masked_eps_mse",
    "project_capped_simplex",
    "quadratic_steps",
    "sample_ddim",
    "sample_ddpm",
    "uniform_steps",
]
