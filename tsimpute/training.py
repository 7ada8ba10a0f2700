"""Training loop of a denoiser: targets, noise levels, optimizer, weight average, validation, early stopping.

Joins the model-agnostic diffusion core (schedules, target strategies) with a denoiser adapter
(:mod:`tsimpute.denoisers`), whose ``loss`` turns a batch into the noise MSE; the loop knows nothing of the
network family.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from .data import WindowSet
from .diffusion.losses import draw_training_steps
from .diffusion.schedules import NoiseSchedule
from .diffusion.targets import conditional_mask
from .distributed import all_mean, broadcast_from_zero, world
from .precision import autocast


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`train_denoiser` (the defaults follow CSDI).

    Training ends at the first of ``epochs`` passes over the data, ``max_steps`` optimizer steps and
    ``max_time`` seconds (each ``None`` = no such limit; at least one must be set), or by early stopping
    after ``patience`` evaluations without improvement (not before half of a planned ``max_steps`` or
    ``epochs`` length, or of ``max_time``). An evaluation (checkpoint choice) takes place after
    every epoch, or every ``eval_every`` steps, or (when ``eval_every`` is not set) every
    ``eval_every_seconds`` of training.

    ``lr_schedule``: ``"multistep"`` (CSDI: the rate divided by 10 at 75% and 90% of training) or
    ``"cosine"`` (linear warm-up over ``warmup`` of training, then cosine decay to zero). Progress is the
    larger of the fractions of ``max_steps`` (or ``epochs``) and ``max_time`` used. ``ema_decay``: keep an
    exponential moving average of the weights, evaluated and returned in place of the raw weights.
    ``noise_levels``: how training steps are drawn (:func:`~tsimpute.diffusion.losses.draw_training_steps`).
    ``loss_weighting``: the ``weighting`` of the adapter's loss (``"noise"`` or ``"output"``); a loss hook
    (joint step-mask training) keeps its own.
    """

    epochs: int | None = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-6
    target_strategy: str = "random"
    patience: int | None = 20
    precision: str = "fp32"
    verbose: bool = True
    select_from_epoch: int = 0
    max_steps: int | None = None
    max_time: float | None = None
    eval_every: int | None = None
    eval_every_seconds: float | None = None
    lr_schedule: str = "multistep"
    warmup: float = 0.0
    ema_decay: float | None = None
    noise_levels: str = "uniform"
    loss_weighting: str = "noise"


LR_SCHEDULES = ("multistep", "cosine")


@dataclass
class TrainHistory:
    """Per-epoch training losses, every evaluation (step, seconds, score), the best one, how training ended.

    ``valid_loss`` holds the score of each evaluation: the held-out score when one is given, else the
    validation denoising loss (empty without validation data). ``best_epoch`` is the epoch during which the
    kept weights were evaluated, ``best_step`` their optimizer step.
    """

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_step: int = -1
    best_loss: float = math.inf
    stopped_early: bool = False
    steps: int = 0
    seconds: float = 0.0


def draw_targets(
    batch: WindowSet, strategy: str, patterns: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Conditional mask for a batch under a CSDI target strategy."""
    return conditional_mask(batch.observed, strategy, patterns=patterns, generator=generator)


@torch.no_grad()
def validation_loss(
    denoiser,
    schedule: NoiseSchedule,
    data: WindowSet,
    config: TrainConfig,
    patterns: torch.Tensor | None,
    seed: int = 0,
    repeats: int = 2,
    targets_fn: TargetsFn | None = None,
) -> float:
    """Mean denoising loss on validation windows with fixed targets, steps and noise.

    The same draws every epoch make the losses comparable across epochs.
    """
    model = denoiser.net
    was_training = model.training
    model.eval()
    device = data.values.device
    gen = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0.0
    ac = schedule.alphas_cumprod.to(device)
    for _ in range(repeats):
        for batch in data.batches(config.batch_size):
            if targets_fn is None:
                cond = draw_targets(batch, config.target_strategy, patterns, gen)
            else:
                cond = targets_fn(batch, gen)
            t = torch.randint(schedule.n_steps, (len(batch),), generator=gen, device=device)
            with autocast(device, config.precision):
                loss = denoiser.loss(batch, cond, t, ac[t], gen)
            n = float((batch.observed - cond).sum())
            total += float(loss) * n
            count += n
    model.train(was_training)
    return total / max(count, 1.0)


#: ``loss_hook(denoiser, batch, cond_mask, epoch, progress) -> loss``: replaces the default batch loss.
StepHook = Callable[..., torch.Tensor]
#: ``score_fn(denoiser) -> float`` (lower is better): chooses the checkpoint.
ScoreFn = Callable[..., float]
#: ``targets_fn(batch, generator) -> cond_mask``: which observed entries a training batch is given.
TargetsFn = Callable[[WindowSet, torch.Generator | None], torch.Tensor]
#: ``callback(history, kept_weights)`` after every evaluation: the history so far and the state dict of the
#: weights kept so far (None before any is kept; shared with the loop: copy it to keep it).
FitCallback = Callable[[TrainHistory, "dict[str, torch.Tensor] | None"], None]


def _ema_with_warmup(decay: float):
    """``multi_avg_fn`` of :class:`~torch.optim.swa_utils.AveragedModel`: an exponential moving average with the
    usual short-run warm-up ``decay_n = min(decay, (1 + n) / (10 + n))`` at the n-th update.

    The update count is kept here, on the host, rather than read from the average's ``n_averaged`` buffer: on a
    GPU that read would wait for the device at every training step.
    """
    updates = 0

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        nonlocal updates
        updates += 1
        d = min(decay, (1 + updates) / (10 + updates))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


def _weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """The weight average of ``model``: its initial weights count as the first average; buffers follow the model."""
    average = AveragedModel(model, multi_avg_fn=_ema_with_warmup(decay), use_buffers=False).eval()
    average.n_averaged.fill_(1)
    for p in average.parameters():
        p.requires_grad_(False)
    return average


class _BatchLoss(nn.Module):
    """The training loss of one batch as a module, so that DistributedDataParallel can wrap all of it (the
    side information, the network and any loss hook run inside its ``forward``)."""

    def __init__(self, denoiser, schedule: NoiseSchedule, noise_levels: str, loss_hook: StepHook | None,
                 device: torch.device, weighting: str = "noise"):
        super().__init__()
        self.model = denoiser.net  # registered, so that DistributedDataParallel sees its parameters
        self.denoiser = denoiser
        self.n_steps, self.noise_levels = schedule.n_steps, noise_levels
        self.loss_hook, self.weighting = loss_hook, weighting
        self.alphas_cumprod = schedule.alphas_cumprod.to(device)  # a plain attribute: no buffer to synchronise

    def forward(self, batch: WindowSet, cond: torch.Tensor, progress: float,
                generator: torch.Generator) -> torch.Tensor:
        if self.loss_hook is not None:
            return self.loss_hook(self.denoiser, batch, cond, int(progress), progress)
        device = batch.values.device
        t = draw_training_steps(self.n_steps, len(batch), self.noise_levels, generator, device)
        return self.denoiser.loss(batch, cond, t, self.alphas_cumprod[t], generator, weighting=self.weighting)


def _data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel under a process group of several ranks, else itself."""
    if world()[1] == 1:
        return module
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # buffers (first-guess weights, scale tables) are equal on every rank and never change: no syncing per step
    options = inspect.signature(DistributedDataParallel).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in options else "broadcast_buffers"
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None, **{no_sync: False})


def _lr_factor(config: TrainConfig, progress: float) -> float:
    if config.lr_schedule == "cosine":
        if config.warmup > 0 and progress < config.warmup:
            return max(progress / config.warmup, 1e-3)
        rest = (progress - config.warmup) / max(1.0 - config.warmup, 1e-9)
        return 0.5 * (1.0 + math.cos(math.pi * min(max(rest, 0.0), 1.0)))
    if config.lr_schedule == "multistep":
        return 1.0 if progress < 0.75 else (0.1 if progress < 0.9 else 0.01)
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}")


def train_denoiser(
    denoiser,
    schedule: NoiseSchedule,
    train: WindowSet,
    valid: WindowSet | None,
    config: TrainConfig,
    generator: torch.Generator,
    loss_hook: StepHook | None = None,
    score_fn: ScoreFn | None = None,
    targets_fn: TargetsFn | None = None,
    callback: FitCallback | None = None,
) -> TrainHistory:
    """Fit the network of ``denoiser`` (an adapter of :mod:`tsimpute.denoisers`) with Adam; keep the weights
    of the best evaluation.

    Parameters
    ----------
    loss_hook : callable, optional
        ``loss_hook(denoiser, batch, cond_mask, epoch, progress)`` returns the training loss of a batch in
        place of the default (``denoiser.loss`` at a step drawn on the full chain); used by joint step-mask
        training. ``progress`` is the fractional epoch ``epoch + iteration / iterations_per_epoch``.
    score_fn : callable, optional
        ``score_fn(denoiser) -> float`` (lower is better), e.g. a held-out imputation error
        (:class:`tsimpute.holdout.HoldoutScore`); chooses the checkpoint in place of the validation
        denoising loss (or, without validation data, the training loss). The weights before the first
        step are scored too (step 0 of the history), and kept if no later evaluation beats them.
    targets_fn : callable, optional
        The draw of the given entries of a batch (default: ``config.target_strategy``), for other network
        families (images).
    callback : callable, optional
        ``callback(history, kept_weights)`` after every evaluation (see :data:`FitCallback`), e.g. to record
        the kept weights at wall-clock marks for a learning curve. Its time counts towards ``max_time``.

    Checkpoint selection and early stopping start at ``config.select_from_epoch`` (joint step-mask training
    sets it to the epoch where the step budget reaches its final value). See :class:`TrainConfig` for the
    training length, the learning-rate schedule and the weight average.

    Under a ``torch.distributed`` process group of N ranks (``torchrun``) training is data parallel: every
    rank passes the same model, data and ``generator``; each takes its share of every epoch's shuffled
    windows (``config.batch_size`` per rank per step), draws its own targets and noise, and gradients are
    averaged by DistributedDataParallel. Scores and time limits are rank 0's, so that every rank keeps the
    same checkpoint and stops at the same step; the returned weights are identical on every rank.
    """
    if config.epochs is None and config.max_steps is None and config.max_time is None:
        raise ValueError("training needs a length: set epochs, max_steps or max_time")
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}")
    device = train.values.device
    model = denoiser.net
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    patterns = train.observed if config.target_strategy in ("hist", "mix") and targets_fn is None else None
    if targets_fn is None:
        def targets_fn(batch: WindowSet, gen: torch.Generator | None) -> torch.Tensor:
            return draw_targets(batch, config.target_strategy, patterns, gen)
    rank, world_size = world()
    draws = generator  # targets and noise; the shuffling order always comes from the shared generator
    if world_size > 1:
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        draws = torch.Generator(device=generator.device).manual_seed(seed + 1 + rank)
    batch_loss = _data_parallel(_BatchLoss(denoiser, schedule, config.noise_levels, loss_hook, device,
                                           config.loss_weighting), device)
    history = TrainHistory()
    best_state = None
    n_batches = max(1, math.ceil(math.ceil(len(train) / world_size) / config.batch_size))
    planned = config.max_steps
    if config.epochs is not None:
        planned = min(planned or math.inf, config.epochs * n_batches)
    average = _weight_average(model, config.ema_decay) if config.ema_decay else None
    bar = tqdm(total=planned if planned != math.inf else None, desc="fit", unit="step",
               disable=not config.verbose or rank > 0, leave=False)
    start = time.perf_counter()
    step, epoch, evals_since_best, done = 0, 0, 0, False
    last_eval = 0.0
    within_epochs = bool(config.eval_every or config.eval_every_seconds)  # evaluations inside epochs, not after
    timed = bool(config.max_time or config.eval_every_seconds)  # decisions read the (shared) clock

    def elapsed() -> float:
        """Seconds since the start (rank 0's, so that every rank sees the same time limit and rate)."""
        seconds = time.perf_counter() - start
        return broadcast_from_zero(seconds) if timed else seconds

    def progress(seconds: float) -> float:
        frac = step / planned if planned else 0.0
        if config.max_time:
            frac = max(frac, seconds / config.max_time)
        return frac

    def evaluate(epoch_loss: float) -> bool:
        """Score the current (averaged) weights, keep them if best; True when early stopping says stop."""
        nonlocal best_state, evals_since_best, last_eval
        net = average.module if average is not None else model
        if score_fn is not None:
            score = broadcast_from_zero(score_fn(denoiser.with_net(net)))
        elif valid is not None and len(valid):
            score = broadcast_from_zero(validation_loss(denoiser.with_net(net), schedule, valid, config, patterns,
                                                        targets_fn=targets_fn))
        else:
            score = epoch_loss
        if score_fn is not None or (valid is not None and len(valid)):
            history.valid_loss.append(score)
        history.eval_steps.append(step)
        history.eval_seconds.append(time.perf_counter() - start)
        last_eval = elapsed()
        if epoch >= config.select_from_epoch:
            if score < history.best_loss:
                history.best_loss, history.best_epoch, history.best_step = score, epoch, step
                best_state = copy.deepcopy(net.state_dict())
                evals_since_best = 0
            else:
                evals_since_best += 1
        bar.set_postfix(loss="-" if math.isnan(epoch_loss) else f"{epoch_loss:.4f}", score=f"{score:.4f}",
                        best=history.best_step)
        if callback is not None:
            history.steps, history.seconds = step, time.perf_counter() - start
            callback(history, best_state)
        # no early stop in the first half of a planned length or time budget: an untrained network scores flat
        bounded = (planned is not None and planned != math.inf) or config.max_time
        half = not bounded or progress(last_eval) >= 0.5
        return config.patience is not None and evals_since_best >= config.patience and half

    if score_fn is not None and config.select_from_epoch == 0:
        # the network before training is a candidate too: with the residual parameterization it samples the
        # first guess plus noise of its error, which a short or unlucky training may not improve on
        model.eval()
        evaluate(math.nan)
    while not done:
        model.train()
        running, seen = 0.0, 0
        for it, batch in enumerate(train.batches(config.batch_size, generator, (rank, world_size))):
            seconds = elapsed()
            for group in opt.param_groups:
                group["lr"] = config.lr * _lr_factor(config, progress(seconds))
            cond = targets_fn(batch, draws)
            with autocast(device, config.precision):
                loss = batch_loss(batch, cond, epoch + it / n_batches, draws)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if average is not None:
                average.update_parameters(model)
            running += loss.item()
            seen += 1
            step += 1
            bar.update(1)
            now = elapsed() if timed else 0.0
            out_of_time = config.max_time is not None and now >= config.max_time
            finished = (planned is not None and step >= planned) or out_of_time
            due = bool(config.eval_every) and step % config.eval_every == 0
            if config.eval_every_seconds and not config.eval_every:
                due = now - last_eval >= config.eval_every_seconds
            if within_epochs and (due or finished):
                model.eval()
                stop = evaluate(all_mean(running / seen))
                model.train()
                if stop:
                    history.stopped_early = True
                    finished = True
            if finished:
                done = True
                break
        history.train_loss.append(all_mean(running / max(seen, 1)))
        if not within_epochs and evaluate(history.train_loss[-1]):
            history.stopped_early = True
            done = True
        epoch += 1
        if config.epochs is not None and epoch >= config.epochs:
            done = True
    if within_epochs and (not history.eval_steps or history.eval_steps[-1] != step) and not history.stopped_early:
        model.eval()
        evaluate(history.train_loss[-1])
    bar.close()
    history.steps, history.seconds = step, time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    elif average is not None:
        model.load_state_dict(average.module.state_dict())
    model.eval()
    return history
