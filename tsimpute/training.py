"""Training loop of the conditional denoiser: targets, noise, loss, validation and early stopping.

Joins the model-agnostic diffusion core (schedules, target strategies, loss) with a denoiser that follows
the CSDI contract ``model(x (N, K, L, 2), t, side)``, ``model.encode_side(cond_mask)``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .diffusion.conditioning import conditional_values, conditioning_of
from .diffusion.losses import draw_training_steps, masked_eps_mse
from .diffusion.parameterization import parameterization_of
from .diffusion.schedules import NoiseSchedule, add_noise
from .diffusion.targets import conditional_mask
from .distributed import all_mean, broadcast_from_zero, world
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

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[WindowSet]:
        """Minibatches; shuffled when a generator is given.

        ``shard=(rank, world_size)``: this rank's share of the (shared) order, every ``world_size``-th window
        from ``rank`` on, the order first padded by repeating it so that every rank gets as many windows
        (and batches) as the others (as :class:`torch.utils.data.DistributedSampler` does).
        """
        n = len(self)
        if generator is None:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=generator, device=generator.device)
        rank, size = shard
        if size > 1 and n:
            total = -(-n // size) * size
            order = order.repeat(-(-total // n))[:total][rank::size]
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size].to(self.values.device)
            yield WindowSet(self.values[idx], self.observed[idx])


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`train_denoiser` (the defaults follow CSDI).

    Training ends at the first of ``epochs`` passes over the data, ``max_steps`` optimizer steps and
    ``max_time`` seconds (each ``None`` = no such limit; at least one must be set), or by early stopping
    after ``patience`` evaluations without improvement (not before half of a planned ``max_steps`` or
    ``epochs`` length). An evaluation (checkpoint choice) takes place after
    every epoch, or every ``eval_every`` steps when that is set.

    ``lr_schedule``: ``"multistep"`` (CSDI: the rate divided by 10 at 75% and 90% of training) or
    ``"cosine"`` (linear warm-up over ``warmup`` of training, then cosine decay to zero). Progress is the
    larger of the fractions of ``max_steps`` (or ``epochs``) and ``max_time`` used. ``ema_decay``: keep an
    exponential moving average of the weights, evaluated and returned in place of the raw weights.
    ``noise_levels``: how training steps are drawn (:func:`~tsimpute.diffusion.losses.draw_training_steps`).
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
    lr_schedule: str = "multistep"
    warmup: float = 0.0
    ema_decay: float | None = None
    noise_levels: str = "uniform"


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


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` in {"fp32", "bf16", "auto"} (fp32 master weights either way; "auto":
    see :func:`tsimpute.precision.resolve_precision`)."""
    precision = resolve_precision(precision, device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def model_input(values: torch.Tensor, cond_mask: torch.Tensor, noisy: torch.Tensor,
                conditioning: str = "observed") -> torch.Tensor:
    """The two input channels ``(c(x, M_cond), (1 - M_cond) * noisy)``, channels-last ``(N, K, L, 2)``.

    ``c`` is ``M_cond * x`` for ``conditioning="observed"`` (CSDI) or the linear interpolation of the given
    values for ``"interpolated"`` (see :mod:`tsimpute.diffusion.conditioning`); ``noisy`` is what the network
    sees of the noisy state (``x_t``, or its preconditioned residual: see
    :mod:`tsimpute.diffusion.parameterization`). ``noisy`` may hold several samples per window folded in
    front: ``N = n_samples * B``.
    """
    b = values.shape[0]
    n = noisy.shape[0] // b
    cond = conditional_values(values, cond_mask, conditioning).expand(n, *values.shape).reshape(noisy.shape)
    masked = ((1 - cond_mask) * noisy.view(n, *values.shape)).reshape(noisy.shape)
    return torch.stack([cond, masked], dim=-1)


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
    the full chain, or a masked chain's ``alpha_t(m)``. The network's output is read as noise through the
    model's parameterization (:mod:`tsimpute.diffusion.parameterization`).
    """
    eps = torch.randn(batch.values.shape, generator=generator, device=batch.values.device)
    x_t = add_noise(batch.values, eps, alpha_bar)
    side = model.encode_side(cond_mask)
    param = parameterization_of(model)
    base = param.base(batch.values, cond_mask)
    ab = alpha_bar.to(x_t.device).view(-1, *(1,) * (x_t.dim() - 1))
    noisy, readout = param.precondition(x_t, base, ab, param.scale(cond_mask))
    eps_pred = readout(model(model_input(batch.values, cond_mask, noisy, conditioning_of(model)), t, side))
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
    loss_fn: LossFn | None = None,
    targets_fn: TargetsFn | None = None,
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
            if targets_fn is None:
                cond = draw_targets(batch, config.target_strategy, patterns, gen)
            else:
                cond = targets_fn(batch, gen)
            t = torch.randint(schedule.n_steps, (len(batch),), generator=gen, device=device)
            with autocast(device, config.precision):
                loss = (loss_fn or denoising_loss)(model, batch, cond, t, ac[t], gen)
            n = float((batch.observed - cond).sum())
            total += float(loss) * n
            count += n
    model.train(was_training)
    return total / max(count, 1.0)


StepHook = Callable[[nn.Module, WindowSet, torch.Tensor, int, float], torch.Tensor]
ScoreFn = Callable[[nn.Module], float]
#: ``loss_fn(model, batch, cond_mask, t, alpha_bar, generator, weight=None, reduction="mean")``, as
#: :func:`denoising_loss` (the CSDI denoiser's); another network family brings its own.
LossFn = Callable[..., torch.Tensor]
#: ``targets_fn(batch, generator) -> cond_mask``: which observed entries a training batch is given.
TargetsFn = Callable[[WindowSet, torch.Generator | None], torch.Tensor]


class _WeightAverage:
    """Exponential moving average of a model's weights (buffers copied), with the usual short-run warm-up
    ``decay_n = min(decay, (1 + n) / (10 + n))``."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.updates = 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(b)


class _BatchLoss(nn.Module):
    """The training loss of one batch as a module, so that DistributedDataParallel can wrap all of it (the
    side information, the network and any loss hook run inside its ``forward``)."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule, noise_levels: str, loss_hook: StepHook | None,
                 loss_fn: LossFn, device: torch.device):
        super().__init__()
        self.model = model
        self.n_steps, self.noise_levels = schedule.n_steps, noise_levels
        self.loss_hook, self.loss_fn = loss_hook, loss_fn
        self.alphas_cumprod = schedule.alphas_cumprod.to(device)  # a plain attribute: no buffer to synchronise

    def forward(self, batch: WindowSet, cond: torch.Tensor, progress: float,
                generator: torch.Generator) -> torch.Tensor:
        if self.loss_hook is not None:
            return self.loss_hook(self.model, batch, cond, int(progress), progress)
        device = batch.values.device
        t = draw_training_steps(self.n_steps, len(batch), self.noise_levels, generator, device)
        return self.loss_fn(self.model, batch, cond, t, self.alphas_cumprod[t], generator)


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
    model: nn.Module,
    schedule: NoiseSchedule,
    train: WindowSet,
    valid: WindowSet | None,
    config: TrainConfig,
    generator: torch.Generator,
    loss_hook: StepHook | None = None,
    score_fn: ScoreFn | None = None,
    loss_fn: LossFn | None = None,
    targets_fn: TargetsFn | None = None,
) -> TrainHistory:
    """Fit ``model`` with Adam; keep the weights of the best evaluation.

    Parameters
    ----------
    loss_hook : callable, optional
        ``loss_hook(model, batch, cond_mask, epoch, progress)`` returns the training loss of a batch in
        place of the default (a uniformly drawn step on the full chain); used by joint step-mask training.
        ``progress`` is the fractional epoch ``epoch + iteration / iterations_per_epoch``.
    score_fn : callable, optional
        ``score_fn(model) -> float`` (lower is better), e.g. a held-out imputation error
        (:class:`tsimpute.holdout.HoldoutScore`); chooses the checkpoint in place of the validation
        denoising loss (or, without validation data, the training loss). The weights before the first
        step are scored too (step 0 of the history), and kept if no later evaluation beats them.
    loss_fn, targets_fn : callable, optional
        The batch loss (default :func:`denoising_loss`, the CSDI denoiser's) and the draw of the given
        entries of a batch (default: ``config.target_strategy``), for other network families (images).

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
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    patterns = train.observed if config.target_strategy in ("hist", "mix") and targets_fn is None else None
    loss_fn = loss_fn or denoising_loss
    if targets_fn is None:
        def targets_fn(batch: WindowSet, gen: torch.Generator | None) -> torch.Tensor:
            return draw_targets(batch, config.target_strategy, patterns, gen)
    rank, world_size = world()
    draws = generator  # targets and noise; the shuffling order always comes from the shared generator
    if world_size > 1:
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        draws = torch.Generator(device=generator.device).manual_seed(seed + 1 + rank)
    batch_loss = _data_parallel(_BatchLoss(model, schedule, config.noise_levels, loss_hook, loss_fn, device), device)
    history = TrainHistory()
    best_state = None
    n_batches = max(1, math.ceil(math.ceil(len(train) / world_size) / config.batch_size))
    planned = config.max_steps
    if config.epochs is not None:
        planned = min(planned or math.inf, config.epochs * n_batches)
    average = _WeightAverage(model, config.ema_decay) if config.ema_decay else None
    bar = tqdm(total=planned if planned != math.inf else None, desc="fit", unit="step",
               disable=not config.verbose or rank > 0, leave=False)
    start = time.perf_counter()
    step, epoch, evals_since_best, done = 0, 0, 0, False

    def elapsed() -> float:
        """Seconds since the start (rank 0's, so that every rank sees the same time limit and rate)."""
        seconds = time.perf_counter() - start
        return broadcast_from_zero(seconds) if config.max_time else seconds

    def progress(seconds: float) -> float:
        frac = step / planned if planned else 0.0
        if config.max_time:
            frac = max(frac, seconds / config.max_time)
        return frac

    def evaluate(epoch_loss: float) -> bool:
        """Score the current (averaged) weights, keep them if best; True when early stopping says stop."""
        nonlocal best_state, evals_since_best
        net = average.model if average is not None else model
        if score_fn is not None:
            score = broadcast_from_zero(score_fn(net))
        elif valid is not None and len(valid):
            score = broadcast_from_zero(validation_loss(net, schedule, valid, config, patterns, loss_fn=loss_fn,
                                                        targets_fn=targets_fn))
        else:
            score = epoch_loss
        if score_fn is not None or (valid is not None and len(valid)):
            history.valid_loss.append(score)
        history.eval_steps.append(step)
        history.eval_seconds.append(time.perf_counter() - start)
        if epoch >= config.select_from_epoch:
            if score < history.best_loss:
                history.best_loss, history.best_epoch, history.best_step = score, epoch, step
                best_state = copy.deepcopy(net.state_dict())
                evals_since_best = 0
            else:
                evals_since_best += 1
        bar.set_postfix(loss="-" if math.isnan(epoch_loss) else f"{epoch_loss:.4f}", score=f"{score:.4f}",
                        best=history.best_step)
        # no early stop in the first half of a planned length: an untrained network scores flat
        half = planned is None or planned == math.inf or step >= planned / 2
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
                average.update(model)
            running += loss.item()
            seen += 1
            step += 1
            bar.update(1)
            out_of_time = config.max_time is not None and elapsed() >= config.max_time
            finished = (planned is not None and step >= planned) or out_of_time
            if config.eval_every and (step % config.eval_every == 0 or finished):
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
        if not config.eval_every and evaluate(history.train_loss[-1]):
            history.stopped_early = True
            done = True
        epoch += 1
        if config.epochs is not None and epoch >= config.epochs:
            done = True
    if config.eval_every and (not history.eval_steps or history.eval_steps[-1] != step) and not history.stopped_early:
        model.eval()
        evaluate(history.train_loss[-1])
    bar.close()
    history.steps, history.seconds = step, time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    elif average is not None:
        model.load_state_dict(average.model.state_dict())
    model.eval()
    return history
