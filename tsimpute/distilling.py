"""Training a few-call sampler by progressive distillation of a fitted denoiser's DDIM chain.

Joins the model-agnostic rule of :mod:`tsimpute.diffusion.distillation` (targets, loss, how chains
coarsen) with a denoiser adapter (:mod:`tsimpute.denoisers`), whose ``batch_eps(values, cond, alpha_bar)``
gives the network's ``eps(x_t, t)`` on a batch whatever the network family. Every round trains a copy of
the previous round's network (the first round's teacher is the fitted one) on training batches whose given
entries are drawn as in training and whose other entries are forward-noised at the student's steps, except
at the noisiest step, where they are pure noise as in sampling (whatever the chain's signal level there: a
``masked`` chain ends well above zero). The loss counts the hidden observed entries, those whose noisy
state comes from a known value (the training targets).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import WindowSet
from .diffusion.distillation import (
    WEIGHTINGS,
    auto_start_level,
    coarsen_chain,
    distillation_loss,
    distillation_plan,
    distillation_target,
    kept_indices,
    raise_start_level,
)
from .diffusion.schedules import Chain, add_noise

__all__ = ["DistillationConfig", "DistillationRound", "DistilledSampler", "distil"]

#: ``targets(batch) -> cond_mask``: the given entries of a training batch (drawn as in training).
TargetsFn = Callable[[WindowSet], torch.Tensor]


@dataclass
class DistillationConfig:
    """Settings of :func:`distil`.

    Every round ends at the first of ``max_steps_per_round`` optimizer steps and its share of ``max_time``
    seconds (the time left divided by the rounds left); at least one must be set. In every round Adam's rate
    rises linearly to ``lr`` over its first ``warmup`` and decays linearly to zero over the rest; gradients
    are clipped to the norm ``grad_clip`` (None: not clipped). With a noise-predicting network the clean
    error at the noisiest step is ``sigma / alpha`` times the noise error (173 at CSDI's last step), and
    single batches' losses spike by hundreds of times the typical one.

    ``start_level``: the ``alpha_bar`` at which a student reads its step from pure noise (the start of sampling)
    when its chain's is lower (:func:`~tsimpute.diffusion.distillation.raise_start_level`); ``"auto"``:
    :func:`~tsimpute.diffusion.distillation.auto_start_level` (0.01 when the next step's level is at least 0.1,
    0.1 for a one-call student, the chain's own otherwise); None: the chain's own.

    ``clip``: bounds of the teacher's clean predictions (:func:`~tsimpute.diffusion.distillation.ddim_step`).
    None (default): the targets follow the unclipped teacher, even where its sampling clips. From the pure
    noise where sampling starts, the first clean predictions of a noise-predicting network often lie beyond
    the data's range; clipped, the two-step target is a kinked function of the state that a student does not
    learn in a short round, and it drowned the other steps' loss in tests. The student's own sampling clips
    as the teacher's does.
    """

    calls: int
    max_steps_per_round: int | None = 500
    max_time: float | None = None
    lr: float = 3e-4
    batch_size: int = 16
    weighting: str = "truncated_snr"
    warmup: float = 0.05
    grad_clip: float | None = 1.0
    clip: tuple | None = None
    start_level: float | str | None = "auto"
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.max_steps_per_round is None and self.max_time is None:
            raise ValueError("distillation needs a length: set max_steps_per_round or max_time")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.start_level not in (None, "auto"):
            if isinstance(self.start_level, bool) or not isinstance(self.start_level, numbers.Real) \
                    or not 0 < self.start_level < 1:
                raise ValueError(f"start_level must be an alpha_bar in (0, 1), 'auto' or None, "
                                 f"got {self.start_level!r}")
            self.start_level = float(self.start_level)


@dataclass
class DistillationRound:
    """One round: the teacher's and the student's timesteps, optimizer steps, seconds and the mean loss of the
    round's last quarter of steps."""

    teacher_steps: list[int]
    student_steps: list[int]
    steps: int = 0
    seconds: float = 0.0
    loss: float = math.nan
    losses: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"teacher_steps": list(self.teacher_steps), "student_steps": list(self.student_steps),
                "steps": int(self.steps), "seconds": float(self.seconds), "loss": float(self.loss)}

    @classmethod
    def from_dict(cls, d: dict) -> DistillationRound:
        return cls([int(t) for t in d["teacher_steps"]], [int(t) for t in d["student_steps"]], int(d["steps"]),
                   float(d["seconds"]), float(d["loss"]))


@dataclass
class DistilledSampler:
    """A distilled sampler's chain (what a fitted estimator samples with in place of its step selection) and
    the record of the rounds that trained it. Sampled by deterministic DDIM."""

    timesteps: list[int]
    alphas_cumprod: list[float]
    teacher_steps: list[int]
    rounds: list[DistillationRound] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Network calls per sample."""
        return len(self.timesteps)

    def chain(self) -> Chain:
        return Chain(torch.tensor(self.timesteps, dtype=torch.long),
                     torch.tensor(self.alphas_cumprod, dtype=torch.float64))

    def to_dict(self) -> dict:
        """Plain values and tensors (a checkpoint's ``distilled`` entry)."""
        return {"timesteps": torch.tensor(self.timesteps, dtype=torch.long),
                "alphas_cumprod": torch.tensor(self.alphas_cumprod, dtype=torch.float64),
                "sampler": "ddim", "eta": 0.0, "teacher_steps": list(self.teacher_steps),
                "rounds": [r.to_dict() for r in self.rounds]}

    @classmethod
    def from_dict(cls, d: dict) -> DistilledSampler:
        if d.get("sampler", "ddim") != "ddim":
            raise ValueError(f"unknown distilled sampler {d.get('sampler')!r}")
        return cls([int(t) for t in torch.as_tensor(d["timesteps"]).tolist()],
                   [float(a) for a in torch.as_tensor(d["alphas_cumprod"], dtype=torch.float64).tolist()],
                   [int(t) for t in d["teacher_steps"]], [DistillationRound.from_dict(r) for r in d["rounds"]])

    @classmethod
    def of(cls, chain: Chain, teacher: Chain, rounds: list[DistillationRound]) -> DistilledSampler:
        return cls(chain.timesteps.tolist(), chain.alphas_cumprod.tolist(), teacher.timesteps.tolist(), rounds)


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of a round, then linear decay to zero."""
    if progress < warmup:
        return max(progress / warmup, 1e-2)
    return max(1.0 - progress, 0.0) / max(1.0 - warmup, 1e-9)


def _batches(data: WindowSet, batch_size: int, generator: torch.Generator):
    """Shuffled minibatches, epoch after epoch, without end."""
    while True:
        yield from data.batches(batch_size, generator)


def _batch_loss(teacher, student, batch: WindowSet, cond: torch.Tensor, chain: Chain, kept: torch.Tensor,
                config: DistillationConfig, generator: torch.Generator, start_level: float) -> torch.Tensor:
    """The distillation loss of one batch: every window at a student step drawn uniformly, grouped by step;
    the student reads its step from pure noise at ``start_level``."""
    device = batch.values.device
    levels = dict(zip(chain.timesteps.tolist(), chain.alphas_cumprod.tolist(), strict=True))
    student_levels = {**levels, int(chain.timesteps[-1]): start_level}  # the signal levels the student reads
    which = torch.randint(len(kept), (len(batch),), generator=generator, device=device)
    noise = torch.randn(batch.values.shape, generator=generator, device=device)
    clip = None if config.clip is None else tuple(torch.as_tensor(c, dtype=torch.float32, device=device)
                                                  for c in config.clip)
    total = torch.zeros((), device=device)
    count = torch.zeros((), device=device)
    for j in torch.unique(which).tolist():
        rows = torch.nonzero(which == j).flatten()
        values, given = batch.values[rows], cond[rows]
        start = int(kept[j])
        stop = int(kept[j - 1]) if j > 0 else -1
        ab = float(chain.alphas_cumprod[start])
        if start == len(chain) - 1:  # where sampling starts: pure noise, whatever the chain's signal level there
            x_t = noise[rows]
            ab = start_level
        else:
            x_t = add_noise(values, noise[rows], torch.full((len(rows),), ab, dtype=torch.float64))
        with torch.no_grad():
            target = distillation_target(teacher.batch_eps(values, given, levels), x_t, chain, start, stop, clip,
                                         student_level=ab)
        mask = batch.observed[rows] - given  # the hidden observed entries: forward-noised from known values
        total = total + distillation_loss(student.batch_eps(values, given, student_levels), x_t,
                                          int(chain.timesteps[start]), ab, target, mask, config.weighting,
                                          reduction="sum")
        count = count + mask.sum()
    return total / count.clamp(min=1)


def distil(denoiser, chain: Chain, data: WindowSet, targets: TargetsFn, config: DistillationConfig,
           generator: torch.Generator) -> tuple[object, Chain, list[DistillationRound]]:
    """Progressively distil ``denoiser``'s deterministic DDIM sampler over ``chain`` into ``config.calls`` calls.

    Parameters
    ----------
    denoiser
        The teacher: an adapter of :mod:`tsimpute.denoisers` with ``net``, ``with_net`` and ``batch_eps``. Its
        network is not modified.
    chain : Chain
        The teacher's reverse chain (its kept steps, sampled by DDIM with ``eta = 0``).
    data : WindowSet
        Training windows (or images); ``targets(batch)`` draws their given entries.

    Returns
    -------
    (student, chain, rounds)
        The student adapter (around a new network), its chain of ``config.calls`` steps and one
        :class:`DistillationRound` per round.
    """
    plan = distillation_plan(len(chain), config.calls)
    teacher = denoiser
    rounds: list[DistillationRound] = []
    start_time = time.perf_counter()
    batches = _batches(data, config.batch_size, generator)
    for r, (n, m) in enumerate(zip(plan[:-1], plan[1:], strict=True)):
        kept = kept_indices(n, m)
        student_chain = coarsen_chain(chain, m)
        level = auto_start_level(student_chain) if config.start_level == "auto" else config.start_level
        student_chain = raise_start_level(student_chain, level)
        net = copy.deepcopy(teacher.net)
        student = teacher.with_net(net)
        teacher.net.eval()
        net.eval()  # the student regresses a deterministic map: no dropout
        opt = torch.optim.Adam(net.parameters(), lr=config.lr)
        record = DistillationRound(chain.timesteps.tolist(), student_chain.timesteps.tolist())
        budget = None
        if config.max_time is not None:
            budget = max(config.max_time - (time.perf_counter() - start_time), 0.0) / (len(plan) - 1 - r)
        round_start = time.perf_counter()
        bar = tqdm(total=config.max_steps_per_round, desc=f"distil {n}->{m} calls", unit="step",
                   disable=not config.verbose, leave=False)
        step = 0
        while True:
            seconds = time.perf_counter() - round_start
            progress = step / config.max_steps_per_round if config.max_steps_per_round else 0.0
            if budget is not None:
                progress = max(progress, seconds / budget if budget > 0 else 1.0)
            if progress >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = config.lr * _lr_factor(progress, config.warmup)
            batch = next(batches)
            loss = _batch_loss(teacher, student, batch, targets(batch), chain, kept, config, generator,
                               float(student_chain.alphas_cumprod[-1]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            opt.step()
            record.losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{record.losses[-1]:.4f}")
        bar.close()
        record.steps, record.seconds = step, time.perf_counter() - round_start
        tail = record.losses[-max(1, len(record.losses) // 4):]
        record.loss = sum(tail) / len(tail) if record.losses else math.nan
        rounds.append(record)
        teacher, chain = student, student_chain
    return teacher, chain, rounds
