"""Pixel masks for image inpainting: what training gives the network, and the benchmark's hidden pixels.

Masks are float tensors ``(N, 1, H, W)`` with 1 = the pixel is given (observed) and 0 = hidden.
"""

from __future__ import annotations

import torch

HIDDEN_PATTERNS = ("random", "centre")


def random_pixels(n: int, height: int, width: int, keep: torch.Tensor | float,
                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Each pixel of image ``i`` given with probability ``keep[i]`` (a float or a tensor (N,))."""
    keep = torch.as_tensor(keep, dtype=torch.float32, device=device).reshape(-1, 1, 1, 1)
    return (torch.rand((n, 1, height, width), generator=generator, device=device) < keep).float()


def hidden_box(n: int, height: int, width: int, generator: torch.Generator | None = None,
               device=None) -> torch.Tensor:
    """Everything given but one rectangle per image, of random sides (a quarter to three quarters of the image's)
    at a random place."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    gen_dev = generator.device if generator is not None else dev

    def draw(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:  # integers in [low, high]
        u = torch.rand(n, generator=generator, device=gen_dev).to(dev)
        return (low + (u * (high - low + 1)).floor()).long()

    def span(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = max(1, size // 4), max(1, 3 * size // 4)
        side = draw(torch.full((n,), low, device=dev), torch.full((n,), high, device=dev))
        start = draw(torch.zeros(n, device=dev), (size - side).to(torch.float32))
        return start, side

    top, h = span(height)
    left, w = span(width)
    rows = torch.arange(height, device=dev).view(1, height, 1)
    cols = torch.arange(width, device=dev).view(1, 1, width)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
    return (~inside).float().unsqueeze(1)


def training_masks(n: int, height: int, width: int, generator: torch.Generator | None = None, device=None,
                   unconditional: float = 0.2) -> torch.Tensor:
    """Given pixels for a training batch: with probability ``unconditional`` none (the network learns to
    generate), else half the time random pixels (a fraction ``U(0, 1)`` given), half the time all but a box."""
    gen_dev = generator.device if generator is not None else device
    kind = torch.rand(n, generator=generator, device=gen_dev).to(device)
    keep = torch.rand(n, generator=generator, device=gen_dev).to(device)
    pixels = random_pixels(n, height, width, keep, generator, device)
    box = hidden_box(n, height, width, generator, device)
    rest = (1 - unconditional) / 2
    choice = kind.view(-1, 1, 1, 1)
    return torch.where(choice < unconditional, torch.zeros_like(box),
                       torch.where(choice < unconditional + rest, pixels, box))


def hidden_pattern(kind: str, n: int, height: int, width: int, generator: torch.Generator | None = None,
                   fraction: float = 0.5) -> torch.Tensor:
    """The benchmark's masks: ``"random"`` hides a ``fraction`` of the pixels at random, ``"centre"`` hides
    the centre square of half the image's side. Returns the *given* pixels (1) as ``(N, 1, H, W)``."""
    if kind == "random":
        return random_pixels(n, height, width, 1.0 - fraction, generator)
    if kind == "centre":
        mask = torch.ones(n, 1, height, width)
        h, w = height // 2, width // 2
        top, left = (height - h) // 2, (width - w) // 2
        mask[:, :, top:top + h, left:left + w] = 0
        return mask
    raise ValueError(f"hidden pattern must be one of {HIDDEN_PATTERNS}, got {kind!r}")
