"""Training loop of the conditional denoiser: targets, noise, loss, validation and early stopping.

Joins the model-agnostic diffusion core (schedules, target strategies, loss) with a denoiser that follows
the CSDI contract ``model(x (N, K, L, 2), t, side)``, ``model.encode_side(cond_mask)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .diffusion.losses import masked_eps_mse
from .diffusion.schedules import NoiseSchedule, add_noise
from .diffusion.targets import conditional_mask
from .precision import resolve_precision


@dataclass
class WindowSet:
    """Windows in model units: ``values (N, K, L)`` (0 where unobserved) and ``observed (N, K, L)`` in {0, 1}."""

    values: torch.Tensor
    observed: torch.Tensor

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to(self, device: torch.device | str) -> WindowSet:
        return WindowSet(self.values.to(device), self.observed.to(device))

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[WindowSet]:
        """Minibatches; shuffled when a generator is given."""
        n = len(self)
        if generator is None:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=generator, device=generator.device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size].to(self.values.device)
            yield WindowSet(self.values[idx], self.observed[idx])


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`train_denoiser` (defaults follow CSDI)."""

    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-6
    target_strategy: str = "random"
    patience: int | None = 20
    precision: str = "fp32"
    verbose: bool = True
    select_from_epoch: int = 0


@dataclass
class TrainHistory:
    """Per-epoch losses, the best epoch and its validation loss."""

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_loss: float = math.inf
    stopped_early: bool = False


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` in {"fp32", "bf16", "auto"} (fp32 master weights either way; "auto":
    see :func:`tsimpute.precision.resolve_precision`)."""
    precision = resolve_precision(precision, device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def model_input(values: torch.Tensor, cond_mask: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """The two input channels ``(M_cond * x, (1 - M_cond) * x_t)``, channels-last ``(N, K, L, 2)``.

    ``x_t`` may hold several samples per window folded in front: ``N = n_samples * B``.
    """
    b = values.shape[0]
    n = x_t.shape[0] // b
    cond = (values * cond_mask).expand(n, *values.shape).reshape(x_t.shape)
    noisy = ((1 - cond_mask) * x_t.view(n, *values.shape)).reshape(x_t.shape)
    return torch.stack([cond, noisy], dim=-1)


def denoising_loss(
    model: nn.Module,
    batch: WindowSet,
    cond_mask: torch.Tensor,
    t: torch.Tensor,
    alpha_bar: torch.Tensor,
    generator: torch.Generator | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Noise-prediction loss on the target entries ``observed - cond_mask`` of a batch at steps ``t``.

    ``alpha_bar`` (B,) is the signal level used to noise each window: the schedule's ``alpha_bar[t]`` for
    the full chain, or a masked chain's ``alpha_t(m)``.
    """
    eps = torch.randn(batch.values.shape, generator=generator, device=batch.values.device)
    x_t = add_noise(batch.values, eps, alpha_bar)
    side = model.encode_side(cond_mask)
    eps_pred = model(model_input(batch.values, cond_mask, x_t), t, side)
    return masked_eps_mse(eps_pred, eps, batch.observed - cond_mask, weight=weight, reduction=reduction)


def draw_targets(
    batch: WindowSet, strategy: str, patterns: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Conditional mask for a batch under a CSDI target strategy."""
    return conditional_mask(batch.observed, strategy, patterns=patterns, generator=generator)


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    data: WindowSet,
    config: TrainConfig,
    patterns: torch.Tensor | None,
    seed: int = 0,
    repeats: int = 2,
) -> float:
    """Mean denoising loss on validation windows with fixed targets, steps and noise.

    The same draws every epoch make the losses comparable across epochs.
    """
    was_training = model.training
    model.eval()
    device = data.values.device
    gen = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0.0
    ac = schedule.alphas_cumprod.to(device)
    for _ in range(repeats):
        for batch in data.batches(config.batch_size):
            cond = draw_targets(batch, config.target_strategy, patterns, gen)
            t = torch.randint(schedule.n_steps, (len(batch),), generator=gen, device=device)
            with autocast(device, config.precision):
                loss = denoising_loss(model, batch, cond, t, ac[t], gen)
            n = float((batch.observed - cond).sum())
            total += float(loss) * n
            count += n
    model.train(was_training)
    return total / max(count, 1.0)


StepHook = Callable[[nn.Module, WindowSet, torch.Tensor, int, float], torch.Tensor]


def train_denoiser(
    model: nn.Module,
    schedule: NoiseSchedule,
    train: WindowSet,
    valid: WindowSet | None,
    config: TrainConfig,
    generator: torch.Generator,
    loss_hook: StepHook | None = None,
) -> TrainHistory:
    """Fit ``model`` with Adam; keep the weights of the epoch with the best validation loss.

    Parameters
    ----------
    loss_hook : callable, optional
        ``loss_hook(model, batch, cond_mask, epoch, progress)`` returns the training loss of a batch in
        place of the default (a uniformly drawn step on the full chain); used by joint step-mask training.
        ``progress`` is the fractional epoch ``epoch + iteration / iterations_per_epoch``.

    Checkpoint selection and early stopping start at ``config.select_from_epoch`` (joint step-mask training
    sets it to the epoch where the step budget reaches its final value).
    """
    device = train.values.device
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    milestones = [int(0.75 * config.epochs), int(0.9 * config.epochs)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    patterns = train.observed if config.target_strategy in ("hist", "mix") else None
    ac = schedule.alphas_cumprod.to(device)
    history = TrainHistory()
    best_state = None
    n_batches = max(1, math.ceil(len(train) / config.batch_size))
    bar = tqdm(range(config.epochs), desc="fit", unit="epoch", disable=not config.verbose, leave=False)
    for epoch in bar:
        model.train()
        running = 0.0
        for it, batch in enumerate(train.batches(config.batch_size, generator)):
            cond = draw_targets(batch, config.target_strategy, patterns, generator)
            with autocast(device, config.precision):
                if loss_hook is None:
                    t = torch.randint(schedule.n_steps, (len(batch),), generator=generator, device=device)
                    loss = denoising_loss(model, batch, cond, t, ac[t], generator)
                else:
                    loss = loss_hook(model, batch, cond, epoch, epoch + it / n_batches)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
        sched.step()
        history.train_loss.append(running / n_batches)
        score = history.train_loss[-1]
        if valid is not None and len(valid):
            score = validation_loss(model, schedule, valid, config, patterns)
            history.valid_loss.append(score)
        if epoch >= config.select_from_epoch and score < history.best_loss:
            history.best_loss, history.best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", valid=f"{score:.4f}", best=history.best_epoch)
        since = epoch - max(history.best_epoch, config.select_from_epoch)
        if config.patience is not None and since >= config.patience:
            history.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
