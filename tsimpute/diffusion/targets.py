"""CSDI's training target strategies: which observed entries are given and which are denoised (METHOD.md §1).

Masks are float tensors of any shape ``(B, ...)`` with 1 = observed. The returned conditional mask is a
subset of the observed mask; the training targets are ``observed - conditional``.
"""

from __future__ import annotations

import torch

TARGET_STRATEGIES = ("random", "hist", "mix")


def random_conditional_mask(observed: torch.Tensor, generator: torch.Generator | None = None,
                            ratio: float | None = None) -> torch.Tensor:
    """Hide a fraction ``r ~ U(0, 1)`` of each sample's observed entries (CSDI ``get_randmask``), or the fixed
    fraction ``ratio`` (SAITS's masked imputation task)."""
    b = observed.shape[0]
    flat = observed.reshape(b, -1)
    scores = torch.rand(flat.shape, generator=generator, device=observed.device) * flat
    if ratio is None:
        ratio = torch.rand(b, generator=generator, device=observed.device)
    else:
        ratio = torch.full((b,), float(ratio), device=observed.device)
    n_hidden = torch.round(flat.sum(1) * ratio).long()
    # hide the n_hidden observed entries with the largest random scores
    order = scores.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=observed.device).expand_as(order))
    hidden = ranks < n_hidden[:, None]
    return (flat * (~hidden)).reshape(observed.shape)


def hist_conditional_mask(
    observed: torch.Tensor,
    patterns: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Use another sample's observation pattern: ``observed * patterns[j]`` with ``j`` drawn at random.

    ``patterns`` is a bank of observation masks of the same per-sample shape (e.g. the training windows);
    drawing from a bank avoids CSDI's dependence on batch order.
    """
    j = torch.randint(patterns.shape[0], (observed.shape[0],), generator=generator, device=patterns.device)
    return observed * patterns[j].to(observed.device)


def conditional_mask(
    observed: torch.Tensor,
    strategy: str = "random",
    *,
    patterns: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    ratio: float | None = None,
) -> torch.Tensor:
    """Draw the conditional mask for ``strategy`` in ``{"random", "hist", "mix"}``.

    ``mix`` picks ``random`` or ``hist`` with probability 1/2 per sample. ``hist`` and ``mix`` need ``patterns``.
    ``ratio``: the fraction that ``random`` hides (default: a uniform draw per sample).
    """
    if strategy not in TARGET_STRATEGIES:
        raise ValueError(f"unknown target strategy {strategy!r}; expected one of {TARGET_STRATEGIES}")
    rand = random_conditional_mask(observed, generator, ratio)
    if strategy == "random":
        return rand
    if patterns is None:
        raise ValueError(f"target strategy {strategy!r} needs a bank of observation patterns")
    hist = hist_conditional_mask(observed, patterns, generator)
    if strategy == "hist":
        return hist
    pick = torch.rand(observed.shape[0], generator=generator, device=observed.device) < 0.5
    shape = (-1,) + (1,) * (observed.dim() - 1)
    return torch.where(pick.view(shape), rand, hist)
