"""The learned first guess: a deterministic imputer network trained on a masked-value objective, which the
residual diffusion then corrects.

The ``"residual"`` parameterization diffuses the difference between the data and a first guess, so the
sampler's median starts where the guess is. A classical guess (interpolation corrected by a regression,
:mod:`tsimpute.diffusion.first_guess`) sees a few neighbours; an attention network over time steps
(:class:`~tsimpute.models.guess.GuessNetwork`) trained to fill values hidden from the training windows (the
masked imputation task of SAITS, Du et al. 2023) sees the whole window and every column, and is cheap to
train: its tokens are time steps, not entries. The diffusion then models only what the guess misses and the
spread around it (``benchmarks/results/learned_guess.md``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from .data import WindowSet, hide_observed
from .diffusion.first_guess import FirstGuess, first_guess_of
from .diffusion.targets import conditional_mask
from .distributed import broadcast_from_zero, broadcast_module_from_zero, world
from .models.guess import GuessConfig, GuessNetwork

__all__ = ["GuessHistory", "GuessTrainConfig", "LearnedGuess", "fit_learned_guess", "guess_from_dict"]


class LearnedGuess:
    """``guess(values, given)``: the classical guess ``classical`` (None: interpolation) corrected by ``net``.

    Always evaluated in float32 without gradients (the diffusion trains with the guess fixed), ``batch_size``
    windows at a time (bounds memory); given entries are returned unchanged.
    """

    batch_size = 256

    def __init__(self, net: GuessNetwork, classical: FirstGuess | None = None):
        self.net = net.eval().requires_grad_(False)
        self.classical = classical

    def __call__(self, values: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        base = first_guess_of(values, given, self.classical)
        if self.net.output_projection.weight.device != values.device:
            self.net.to(values.device)
        with torch.no_grad(), torch.autocast(values.device.type, enabled=False):
            out = torch.cat([self.net(v.float(), g.float(), b.float()) for v, g, b in
                             zip(values.split(self.batch_size), given.split(self.batch_size),
                                 base.split(self.batch_size), strict=True)]).to(values.dtype)
        return torch.where(given > 0, values, out)

    def to_dict(self) -> dict:
        """The guess as plain values and tensors (a checkpoint's ``denoiser`` settings)."""
        return {"kind": "learned", "network": asdict(self.net.config),
                "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "classical": None if self.classical is None else self.classical.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> LearnedGuess:
        net = GuessNetwork(GuessConfig(**d["network"]))
        net.load_state_dict(d["state"])
        classical = d.get("classical")
        return cls(net, None if classical is None else FirstGuess.from_dict(classical))


def guess_from_dict(d: dict | None) -> FirstGuess | LearnedGuess | None:
    """The first guess stored by ``to_dict`` (None: interpolation)."""
    if d is None:
        return None
    if d.get("kind") == "learned":
        return LearnedGuess.from_dict(d)
    return FirstGuess.from_dict(d)


@dataclass
class GuessTrainConfig:
    """Training of the learned guess: AdamW, linear warm-up then cosine decay over the planned length, the
    weights with the lowest held-out error kept, early stop after ``patience`` evaluations without improvement
    (one per epoch, or per ``min_eval_steps`` steps when epochs are shorter), not before half of the planned
    steps or of ``max_time`` (on PM2.5 a patience of 5 evaluations from the start stopped it at 250 steps, before
    it had beaten the classical guess once).

    Training ends at the first of ``max_epochs``, ``max_steps`` and ``max_time`` seconds. ``hide``: the fraction
    of observed entries hidden at random from a training window (``target_strategy="random"``, SAITS's masked
    imputation task; ``hist`` and ``mix`` add other windows' missing patterns, as the diffusion's training does:
    on PhysioNet that slowed the guess down so much that it never beat the classical one's held-out error
    (0.321) in 450 steps, where ``random`` took it to 0.244 in 3000, ``benchmarks/results/learned_guess.md``).
    """

    max_epochs: int = 100
    max_steps: int | None = 3000
    max_time: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    hide: float = 0.2
    target_strategy: str = "random"
    patience: int = 5
    min_eval_steps: int = 50
    verbose: bool = True


@dataclass
class GuessHistory:
    """Held-out mean absolute error of the classical guess and at each evaluation (after ``eval_steps`` steps),
    the step of the kept weights (0: none beat the classical guess), steps and seconds in all."""

    classical_error: float = math.nan
    valid_error: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    best_step: int = 0
    steps: int = 0
    seconds: float = 0.0


@torch.no_grad()
def _error(guess, given: WindowSet, values: torch.Tensor, hidden: torch.Tensor) -> float:
    """Mean absolute error of ``guess`` on the ``hidden`` entries of the windows ``given``."""
    pred = guess(given.values, given.observed)
    return float(((pred - values).abs() * hidden).sum()) / max(float(hidden.sum()), 1.0)


def fit_learned_guess(train: WindowSet, valid: WindowSet | None, classical: FirstGuess | None,
                      config: GuessTrainConfig, generator: torch.Generator,
                      network: GuessConfig | None = None) -> tuple[LearnedGuess, GuessHistory]:
    """Train a :class:`~tsimpute.models.guess.GuessNetwork` correcting ``classical`` on the windows ``train``
    ``(B, K, L)`` (an :class:`~tsimpute.data.EpochWindows` is re-cut every epoch), choosing the weights by the
    absolute error on values hidden from ``valid`` (``train`` when None).

    The objective is the absolute error on the hidden entries (the imputations are scored by it, and it is
    robust to the rare large values of columns such as rainfall).
    """
    device = train.values.device
    k = train.values.shape[-2]
    net = GuessNetwork(network or GuessConfig(n_features=k)).to(device)
    guess = LearnedGuess(net, classical)
    net.requires_grad_(True)  # frozen by the wrapper, trained here
    # fixed hidden entries, so that evaluations compare (hide_observed indexes a copy: training windows are
    # re-cut every epoch)
    held = valid if valid is not None and len(valid) else train
    scored = hide_observed(held, config.hide, len(held), generator)
    history = GuessHistory(classical_error=_error(lambda v, g: first_guess_of(v, g, classical), *scored))
    best, best_state = history.classical_error, None
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    patterns = train.observed if config.target_strategy in ("hist", "mix") else None
    n_batches = max(1, math.ceil(len(train) / config.batch_size))
    planned = config.max_epochs * n_batches if config.max_steps is None else min(config.max_steps,
                                                                                  config.max_epochs * n_batches)
    bar = tqdm(total=planned, desc="first guess", unit="step", disable=not config.verbose or world()[0] > 0,
               leave=False)
    warmup = max(1, min(config.warmup_steps, planned // 20))
    start = time.perf_counter()

    def elapsed() -> float:  # rank 0's clock, so that every rank takes the same decisions (torchrun)
        return broadcast_from_zero(time.perf_counter() - start)

    def evaluate() -> bool:
        """Score the weights (rank 0's score on every rank), keep them if best; True when patience runs out."""
        nonlocal best, best_state, since_best
        net.eval()
        error = broadcast_from_zero(_error(guess, *scored))
        net.train()
        history.valid_error.append(error)
        history.eval_steps.append(step)
        bar.set_postfix(error=f"{error:.4f}", best=f"{min(best, error):.4f}")
        if error < best:
            best, best_state, history.best_step, since_best = error, copy.deepcopy(net.state_dict()), step, 0
        else:
            since_best += 1
        # no early stop in the first half of the planned steps or time: the guess starts behind the classical one
        half = step >= planned / 2 or (config.max_time is not None and elapsed() >= config.max_time / 2)
        return since_best >= config.patience and half

    eval_every = max(n_batches, config.min_eval_steps)  # an evaluation per epoch, or per so many steps
    step, since_best, done = 0, 0, False
    for _ in range(config.max_epochs):
        net.train()
        for batch in train.batches(config.batch_size, generator):
            seconds = elapsed() if config.max_time else 0.0
            progress = max(step / planned, seconds / config.max_time if config.max_time else 0.0)
            factor = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            for group in opt.param_groups:
                group["lr"] = config.lr * factor
            cond = conditional_mask(batch.observed, config.target_strategy, patterns=patterns, generator=generator,
                                    ratio=config.hide)
            with torch.no_grad():
                base = first_guess_of(batch.values, cond, classical)
            target = batch.observed - cond
            pred = net(batch.values, cond, base)
            loss = ((pred - batch.values).abs() * target).sum() / target.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            out_of_time = config.max_time is not None and elapsed() >= config.max_time
            done = step >= planned or out_of_time
            if (step % eval_every == 0 or done) and evaluate():
                done = True
            if done:
                break
        if done:
            break
    if not history.eval_steps or history.eval_steps[-1] != step:  # the epochs ran out between evaluations
        evaluate()
    net.eval()
    bar.close()
    if best_state is None:  # never better than the classical guess: keep it (the output layer at zero)
        torch.nn.init.zeros_(net.output_projection.weight)
        torch.nn.init.zeros_(net.output_projection.bias)
    else:
        net.load_state_dict(best_state)
    broadcast_module_from_zero(net)  # under torchrun every rank trained its own copy: they must agree
    history.steps, history.seconds = step, elapsed()
    return LearnedGuess(net, classical), history
