"""Noise schedules and the chains sampled over a subset of kept steps (METHOD.md §3-4).

All tables are computed in float64. Steps are 0-based: step ``t`` in ``0..T-1`` has noise
``betas[t]`` and ``alphas_cumprod[t] = prod_{i<=t} (1 - betas[i])``.

A :class:`Chain` is what samplers consume: the kept steps ``tau_1 < ... < tau_k`` (the index
the network is conditioned on) and the chain's own cumulative ``alpha_bar`` at each kept step.
Two semantics build a chain from a full schedule:

``respaced``
    kept steps keep the full chain's marginals, ``alpha_bar'_i = alpha_bar[tau_i]``.
``masked``
    the paper's masked chain (EDDPM Eq. 6): skipped steps add no noise, so
    ``alpha_bar'_i = prod_{j<=i} (1 - betas[tau_j])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("quad", "linear", "cosine")
CHAIN_SEMANTICS = ("respaced", "masked")


def beta_schedule(name: str, n_steps: int, beta_start: float = 1e-4, beta_end: float = 0.5) -> torch.Tensor:
    """Return the float64 noise levels ``beta_t`` of a named schedule.

    Parameters
    ----------
    name : {"quad", "linear", "cosine"}
        ``quad`` is CSDI's: ``linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2``. ``linear`` spaces
        beta linearly between the same end points. ``cosine`` is Nichol & Dhariwal's (beta clipped to 0.999).
    n_steps : int
        Number of diffusion steps T (>= 1).
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if name == "quad":
        return torch.linspace(beta_start**0.5, beta_end**0.5, n_steps, dtype=torch.float64) ** 2
    if name == "linear":
        return torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
    if name == "cosine":
        s = 0.008
        x = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
        f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


@dataclass(frozen=True)
class Chain:
    """A reverse chain over kept steps, in ascending order.

    Attributes
    ----------
    timesteps : LongTensor (k,)
        Kept steps ``tau_1 < ... < tau_k``: the step index the network is conditioned on.
    alphas_cumprod : float64 Tensor (k,)
        The chain's cumulative ``alpha_bar`` at each kept step.
    """

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor

    def __len__(self) -> int:
        return int(self.timesteps.numel())

    @property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        """``alpha_bar`` of the previous kept step (1 before the first one)."""
        one = torch.ones(1, dtype=self.alphas_cumprod.dtype)
        return torch.cat([one, self.alphas_cumprod[:-1]])

    @property
    def betas(self) -> torch.Tensor:
        """Per-kept-step noise ``beta'_i = 1 - alpha_bar_i / alpha_bar_{i-1}``."""
        return 1 - self.alphas_cumprod / self.alphas_cumprod_prev

    @property
    def terminal_alpha_cumprod(self) -> float:
        """``alpha_bar`` at the last kept step: the signal level sampling starts from."""
        return float(self.alphas_cumprod[-1])


class NoiseSchedule:
    """A discrete diffusion schedule: forward process tables and kept-step chains.

    Parameters
    ----------
    n_steps : int
        Number of diffusion steps T.
    name : str
        Schedule name, see :func:`beta_schedule`.
    beta_start, beta_end : float
        End points for ``quad`` and ``linear``.
    """

    def __init__(self, n_steps: int = 50, name: str = "quad", beta_start: float = 1e-4, beta_end: float = 0.5):
        self.n_steps = n_steps
        self.name = name
        self.betas = beta_schedule(name, n_steps, beta_start, beta_end)
        self.alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self._sqrt_ac = self.alphas_cumprod.sqrt().float()
        self._sqrt_one_minus_ac = (1 - self.alphas_cumprod).sqrt().float()

    def __repr__(self) -> str:
        return f"NoiseSchedule(n_steps={self.n_steps}, name={self.name!r})"

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` for a batch of steps ``t``."""
        return add_noise(x0, eps, self.alphas_cumprod.to(x0.device)[t])

    def full_chain(self) -> Chain:
        """The chain over all T steps."""
        return Chain(torch.arange(self.n_steps), self.alphas_cumprod.clone())

    def chain(self, steps: torch.Tensor | list[int], semantics: str = "respaced") -> Chain:
        """Build the chain over ``steps`` (any order, no duplicates) under ``semantics``."""
        steps = check_steps(steps, self.n_steps)
        if semantics == "respaced":
            return Chain(steps, self.alphas_cumprod[steps].clone())
        if semantics == "masked":
            return Chain(steps, torch.cumprod(self.alphas[steps], 0))
        raise ValueError(f"unknown chain semantics {semantics!r}; expected one of {CHAIN_SEMANTICS}")

    def masked_alphas_cumprod(self, mask: torch.Tensor) -> torch.Tensor:
        """``alpha_t(m) = prod_{i<=t} (1 - beta_i m_i)`` for masks ``mask`` of shape (..., T)."""
        betas = self.betas.to(mask.device)
        return torch.cumprod(1 - betas * mask.to(torch.float64), dim=-1)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """``sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` with one ``alpha_bar`` per batch element."""
    a = alpha_bar.to(device=x0.device, dtype=torch.float64)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    sa = a.sqrt().to(x0.dtype).view(shape)
    so = (1 - a).sqrt().to(x0.dtype).view(shape)
    return sa * x0 + so * eps


def check_steps(steps: torch.Tensor | list[int], n_steps: int) -> torch.Tensor:
    """Validate a set of kept steps and return it sorted ascending as a LongTensor."""
    steps = torch.as_tensor(steps).flatten()
    if steps.numel() == 0:
        raise ValueError("at least one step must be kept")
    if steps.dtype.is_floating_point or steps.dtype == torch.bool:
        raise TypeError(f"steps must be integer step indices, got dtype {steps.dtype}")
    steps = torch.sort(steps.long().cpu()).values
    if int(steps[0]) < 0 or int(steps[-1]) >= n_steps:
        raise ValueError(f"steps must lie in [0, {n_steps - 1}], got {steps.tolist()}")
    if bool((steps[1:] == steps[:-1]).any()):
        raise ValueError(f"steps must not repeat, got {steps.tolist()}")
    return steps


def uniform_steps(n_steps: int, k: int) -> torch.Tensor:
    """``k`` evenly spaced steps ending at the last step T-1 (so sampling starts from pure noise)."""
    _check_k(n_steps, k)
    steps = torch.round(torch.linspace(n_steps - 1, 0, k, dtype=torch.float64)).long()
    return torch.sort(torch.unique(steps)).values


def quadratic_steps(n_steps: int, k: int) -> torch.Tensor:
    """``k`` steps spaced quadratically (dense near t=0, DDIM paper), ending at T-1; distinct."""
    _check_k(n_steps, k)
    raw = (torch.linspace(0, 1, k, dtype=torch.float64) ** 2) * (n_steps - 1)
    steps = torch.round(raw).long().tolist()
    # Make steps strictly increasing while staying in range: push collisions upwards.
    out: list[int] = []
    for i, s in enumerate(steps):
        lo = out[-1] + 1 if out else 0
        hi = n_steps - (k - i)
        out.append(min(max(s, lo), hi))
    out[-1] = n_steps - 1
    return torch.tensor(out, dtype=torch.long)


def _check_k(n_steps: int, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_steps:
        raise ValueError(f"number of kept steps must be an integer in [1, {n_steps}], got {k!r}")
