"""Learning which diffusion steps to keep (EDDPM Algorithm 1, METHOD.md §4) for the conditional denoiser.

:class:`StepLearner` owns a :class:`~tsimpute.diffusion.step_mask.StepMask` and turns one minibatch into
(a) the network's training loss and (b) a projected policy-gradient step on the mask scores. It plugs into
:func:`~tsimpute.training.train_denoiser` as its ``loss_hook`` (joint training) or runs alone on a fitted
model (:meth:`StepLearner.learn_on`, "from a pretrained model").

Objectives
    ``loss`` (the paper): the reward of a mask is the denoising loss of the minibatch under that mask. The
    batch is split into J groups, one mask each, so J masks cost one forward pass.
    ``imputation`` (ours): the reward is the fair ensemble CRPS (:func:`ensemble_crps`) of the k-step sampler
    on held-out observed entries of a small validation batch, with common random numbers across the J masks.
    Being unbiased for the sampler's CRPS, it does not reward a mask whose chain draws too narrow a spread.
    The network is then trained on the steps of the sampled masks with the ordinary loss. The denoiser adapter
    (:mod:`tsimpute.denoisers`) samples the held-out entries (``reward_samples``), whatever its network family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import WindowSet
from .diffusion.schedules import NoiseSchedule
from .diffusion.step_mask import StepMask, cubic_budget, effective_masks, loss_weight, sample_kept_timestep
from .diffusion.targets import random_conditional_mask
from .distributed import all_mean_tensor
from .precision import autocast

MASK_OBJECTIVES = ("loss", "imputation")


@dataclass
class StepLearningConfig:
    """Settings of the mask loop.

    ``budget_epochs`` is the (fractional) epoch at which the budget reaches ``target_steps``; before
    ``warmup_epochs`` all steps are kept. ``lr`` decays linearly to ``lr * final_lr_ratio`` at
    ``total_epochs``, which helps the scores settle near 0/1.
    """

    target_steps: int
    total_epochs: float
    budget_epochs: float
    warmup_epochs: float = 0.0
    objective: str = "loss"
    weight: str = "simple"
    chain: str = "respaced"
    n_masks: int = 2
    lr: float = 0.05
    final_lr_ratio: float = 0.1
    reward_every: int = 4
    reward_windows: int = 8
    reward_samples: int = 4
    precision: str = "fp32"


@dataclass
class StepLearner:
    """Joint (or stand-alone) learner of the step mask; see the module docstring."""

    schedule: NoiseSchedule
    config: StepLearningConfig
    generator: torch.Generator
    reward_data: WindowSet | None = None
    mask: StepMask = field(init=False)
    log: list[dict] = field(default_factory=list)
    _iteration: int = 0
    _mask_gen: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.config.objective not in MASK_OBJECTIVES:
            raise ValueError(f"mask objective must be one of {MASK_OBJECTIVES}, got {self.config.objective!r}")
        if self.config.objective == "imputation" and self.reward_data is None:
            raise ValueError("the imputation objective needs validation windows (reward_data)")
        self.mask = StepMask(self.schedule.n_steps)
        # the mask lives on the CPU: it gets its own generator, seeded from the (possibly CUDA) one
        seed = torch.randint(2**31 - 1, (1,), generator=self.generator, device=self.generator.device)
        self._mask_gen = torch.Generator().manual_seed(int(seed))

    # -------------------------------------------------------------- schedule of the budget and step size
    def budget(self, progress: float) -> float:
        """Absolute step budget ``K_e = gamma_e T`` at fractional epoch ``progress``."""
        c = self.config
        gamma = cubic_budget(progress, c.budget_epochs, c.warmup_epochs, c.target_steps / self.schedule.n_steps)
        return gamma * self.schedule.n_steps

    def lr(self, progress: float) -> float:
        c = self.config
        frac = min(max(progress / max(c.total_epochs, 1e-9), 0.0), 1.0)
        return c.lr * (1 - (1 - c.final_lr_ratio) * frac)

    # -------------------------------------------------------------- per-batch work
    def _group_steps(self, masks: torch.Tensor, n_windows: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Split ``n_windows`` into one group per mask; draw each window's step among its mask's kept steps."""
        j = masks.shape[0]
        group = torch.arange(n_windows) * j // n_windows  # balanced, contiguous groups
        counts = torch.bincount(group, minlength=j)
        t = torch.cat([sample_kept_timestep(masks[g : g + 1], int(counts[g]), self._mask_gen)[0]
                       for g in range(j) if counts[g] > 0])
        return group, t.to(device)

    def _signal_levels(self, masks: torch.Tensor, group: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.config.chain == "masked":
            return self.schedule.masked_alphas_cumprod(masks)[group, t.cpu()]
        return self.schedule.alphas_cumprod[t.cpu()]

    def loss_hook(self, denoiser, batch: WindowSet, cond: torch.Tensor, epoch: int, progress: float):
        """Training loss of a batch under sampled masks; also takes the mask step (see module docstring)."""
        c = self.config
        n_masks = max(1, min(c.n_masks, len(batch)))  # a short last batch gets fewer masks
        masks = effective_masks(self.mask.sample(n_masks, self._mask_gen))
        group, t = self._group_steps(masks, len(batch), batch.values.device)
        weights = loss_weight(c.weight, self.schedule, masks[group], t.cpu()[:, None])[:, 0]
        per_window = denoiser.loss(
            batch, cond, t, self._signal_levels(masks, group, t), self.generator,
            weight=weights.to(batch.values.device), reduction="none",
        )
        if c.objective == "loss" and n_masks >= 2:
            rewards = torch.stack([per_window[group.to(per_window.device) == g].mean() for g in range(n_masks)])
            self._mask_step(rewards.detach().float().cpu(), masks, progress)
        elif c.objective == "imputation" and self._iteration % c.reward_every == 0:
            self._imputation_round(denoiser, progress)
        self._iteration += 1
        return per_window.mean()

    def _mask_step(self, rewards: torch.Tensor, masks: torch.Tensor, progress: float) -> None:
        # (ours) rewards are standardised over the J draws, so the step size does not depend on the
        # loss scale; the leave-one-out baseline inside the estimator is unchanged. Under data-parallel
        # training every rank draws the same masks (same mask generator) on its own batch: the mean reward
        # over the ranks is the reward on the global batch, and the scores stay identical across ranks.
        rewards = all_mean_tensor(rewards.double()).float()
        spread = rewards.std() if len(rewards) > 1 else torch.tensor(0.0)
        scaled = (rewards - rewards.mean()) / spread if spread > 1e-12 else torch.zeros_like(rewards)
        grad = self.mask.policy_gradient(scaled, masks)
        self.mask.step(grad, self.lr(progress), self.budget(progress))
        self.log.append({"progress": progress, "reward": float(rewards.mean()),
                         "scores_sum": float(self.mask.scores.sum())})

    @torch.no_grad()
    def _imputation_round(self, denoiser, progress: float) -> None:
        c = self.config
        masks = effective_masks(self.mask.sample(c.n_masks, self._mask_gen))
        if bool((masks == masks[0]).all()):
            # identical draws: the leave-one-out estimator is exactly zero; only the projection acts
            self.mask.step(torch.zeros_like(self.mask.scores), self.lr(progress), self.budget(progress))
            return
        model = denoiser.net
        was_training = model.training
        data = self.reward_data
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(self._iteration))[: c.reward_windows]
        batch = WindowSet(data.values[idx], data.observed[idx])
        seed = int(torch.randint(2**31 - 1, (1,), generator=self._mask_gen))
        cond = random_conditional_mask(batch.observed, torch.Generator(batch.values.device).manual_seed(seed))
        target = batch.observed - cond
        given = WindowSet(batch.values * cond, cond)
        rewards = []
        for m in masks:
            chain = self.schedule.chain(torch.nonzero(m).flatten(), c.chain)
            gen = torch.Generator(batch.values.device).manual_seed(seed)  # common random numbers
            samples = denoiser.reward_samples(given, chain, c.reward_samples, gen, c.precision)
            rewards.append(ensemble_crps(samples.to(batch.values.device), batch.values, target))
        model.train(was_training)
        self._mask_step(torch.tensor(rewards), masks, progress)

    # -------------------------------------------------------------- from a pretrained model
    def learn_on(
        self,
        denoiser,
        data: WindowSet,
        *,
        epochs: int,
        batch_size: int,
        target_strategy_fn,
        optimizer: torch.optim.Optimizer | None = None,
        verbose: bool = False,
    ) -> None:
        """Run the mask loop over ``data`` for ``epochs`` epochs on a fitted denoiser (an adapter of
        :mod:`tsimpute.denoisers`).

        With ``optimizer=None`` the weights are frozen (no gradient is computed); otherwise they are
        fine-tuned by ``optimizer`` with the same loss.
        """
        model = denoiser.net
        device = data.values.device
        n_batches = max(1, math.ceil(len(data) / batch_size))
        bar = tqdm(total=epochs * n_batches, desc="learn steps", unit="batch", disable=not verbose, leave=False)
        model.train(optimizer is not None)
        for epoch in range(epochs):
            for it, batch in enumerate(data.batches(batch_size, self.generator)):
                cond = target_strategy_fn(batch)
                with torch.set_grad_enabled(optimizer is not None), autocast(device, self.config.precision):
                    loss = self.loss_hook(denoiser, batch, cond, epoch, epoch + it / n_batches)
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                bar.update(1)
        bar.close()
        model.eval()

    def kept_steps(self) -> torch.Tensor:
        """Read-out: exactly ``target_steps`` steps, the top scores (plus the pinned last step)."""
        return self.mask.kept_steps(self.config.target_steps)


def ensemble_crps(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, fair: bool = True) -> float:
    """Mean ensemble CRPS over entries where ``mask`` is 1 (samples first, drawn independently).

    ``fair=True`` (the rewards' and checkpoint scores' choice): ``E|X - y| - sum|X_i - X_j| / (2 n (n - 1))``,
    unbiased for the CRPS of the distribution the ``n`` samples come from (Ferro 2014), so that its expected
    value is lowest for an ensemble with the true spread. ``fair=False``: the plain ensemble CRPS
    ``E|X - y| - sum|X_i - X_j| / (2 n^2)`` (properscoring's), which with few samples rewards a narrow spread:
    with 4 Gaussian samples its expected value is lowest at 0.63 times the true standard deviation.
    """
    n = samples.shape[0]
    if fair and n < 2:
        raise ValueError(f"the fair ensemble CRPS needs at least 2 samples, got {n}")
    err = (samples - target).abs().mean(0)
    spread = (samples[:, None] - samples[None]).abs().sum((0, 1)) / (2 * n * (n - 1 if fair else n))
    crps = (err - spread) * mask
    return float(crps.sum() / mask.sum().clamp(min=1))
