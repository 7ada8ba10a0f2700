"""Which diffusion steps sampling keeps: the ``step_selection`` settings shared by the time-series and image
imputers (all steps, uniform or quadratic spacing, or the learned step mask of METHOD.md §4)."""

from __future__ import annotations

import torch

from .diffusion.schedules import Chain, quadratic_steps, uniform_steps
from .step_learning import StepLearner, StepLearningConfig

STEP_SELECTIONS = ("all", "uniform", "quadratic", "learned")


class StepSelectionMixin:
    """Kept steps and step-mask learning for an estimator with the parameters ``n_steps``, ``step_selection``,
    ``target_steps``, ``chain``, ``mask_objective``, ``mask_weight``, ``n_masks``, ``mask_lr``, ``precision``
    and a fitted noise schedule ``_schedule``."""

    def inference_steps(self) -> torch.Tensor:
        """The kept steps (ascending) that sampling uses: those of ``step_selection``, or of the distilled sampler
        (``distillation_``, set by ``distill``), which replaces it."""
        distilled = getattr(self, "distillation_", None)
        if distilled is not None:
            self._check_distilled_sampler()
            return torch.tensor(distilled.timesteps, dtype=torch.long)
        sel = self.step_selection
        if sel not in STEP_SELECTIONS:
            raise ValueError(f"step_selection must be one of {STEP_SELECTIONS}, got {sel!r}")
        if sel == "all":
            return torch.arange(self.n_steps)
        if sel == "uniform":
            return uniform_steps(self.n_steps, min(self.target_steps, self.n_steps))
        if sel == "quadratic":
            return quadratic_steps(self.n_steps, min(self.target_steps, self.n_steps))
        learned = getattr(self, "learned_steps_", None)
        if learned is None:
            raise ValueError(
                "step_selection='learned' needs a learned step mask: fit with step_selection='learned' "
                "or call learn_steps(X) first"
            )
        return torch.as_tensor(learned, dtype=torch.long)

    def _check_distilled_sampler(self) -> None:
        if self.sampler != "ddim" or float(self.eta) != 0.0:
            raise ValueError(
                "this estimator samples with a distilled network over its own deterministic DDIM chain: keep "
                f"sampler='ddim' and eta=0 (got sampler={self.sampler!r}, eta={self.eta!r}), or sample with the "
                "estimator it was distilled from")

    def inference_chain(self) -> Chain:
        """The reverse chain that sampling uses with the current settings (a distilled sampler's own chain)."""
        distilled = getattr(self, "distillation_", None)
        if distilled is not None:
            self._check_distilled_sampler()
            return distilled.chain()
        return self._schedule.chain(self.inference_steps(), self.chain)

    def _step_learner(self, generator, reward_data, *, total_epochs, budget_epochs, warmup_epochs, k=None,
                      **settings) -> StepLearner:
        """The mask learner for these settings; ``settings`` override :class:`StepLearningConfig` fields."""
        cfg = StepLearningConfig(
            target_steps=self.target_steps if k is None else k, total_epochs=total_epochs,
            budget_epochs=budget_epochs, warmup_epochs=warmup_epochs, objective=self.mask_objective,
            weight=self.mask_weight, chain=self.chain, n_masks=self.n_masks, lr=self.mask_lr,
            precision=self.precision, **settings,
        )
        return StepLearner(self._schedule, cfg, generator, reward_data=reward_data)
