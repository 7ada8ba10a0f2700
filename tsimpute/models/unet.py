"""UNet noise predictor for images: diffusers' ``UNet2DModel`` with the conditioning channels of inpainting.

The network predicts the noise ``eps`` from ``(x_t, t)``; a conditional one also sees the observed pixels and
their mask, concatenated as channels (as CSDI conditions on observed values): its input is
``[(1 - m) * x_t, m * x_0, m]`` for a mask ``m`` (1 = observed). With an empty mask it is an unconditional
model, so one network both generates and inpaints. It knows nothing of step masks or samplers.

diffusers is an optional dependency: ``pip install "tsimpute[image]"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

IMAGE_EXTRA_HINT = 'pip install "tsimpute[image]" (or pip install diffusers)'


def require_diffusers():
    """Import diffusers' ``UNet2DModel``, or raise an ImportError that keeps the cause and says how to install it.

    The message quotes the original import error: diffusers may be installed but fail to import (e.g. with an
    incompatible huggingface_hub), and then reinstalling the extra is not the fix.
    """
    try:
        from diffusers import UNet2DModel
    except ImportError as err:
        raise ImportError(f"the image backend needs diffusers (import failed: {err}): {IMAGE_EXTRA_HINT}") from err
    return UNet2DModel


@dataclass
class UNetConfig:
    """Architecture of :class:`UNetDenoiser`.

    ``channels`` is the number of image channels (1 for greyscale); ``widths`` the channels of each resolution
    level of the UNet (each level after the first halves the image, so the image sides must be divisible by
    ``2 ** (len(widths) - 1)``); ``attention`` adds self-attention at the lowest resolution;
    ``conditional`` adds the observed pixels and their mask as input channels.
    """

    height: int
    width: int
    channels: int = 1
    n_steps: int = 100
    widths: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention: bool = True
    conditional: bool = True

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        factor = 2 ** (len(self.widths) - 1)
        if self.height % factor or self.width % factor:
            raise ValueError(f"images of {self.height}x{self.width} cannot be halved {len(self.widths) - 1} times "
                             f"(widths={self.widths}): use fewer levels")
        if any(w % 8 for w in self.widths):
            raise ValueError(f"widths must be multiples of 8 (group normalisation), got {self.widths}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def levels_for(height: int, width: int, most: int = 3) -> int:
    """Resolution levels a UNet can have on ``height x width`` images (sides halved exactly, sides >= 4)."""
    levels = 1
    while levels < most and height % 2**levels == 0 and width % 2**levels == 0 and min(height, width) // 2**levels >= 4:
        levels += 1
    return levels


class UNetDenoiser(nn.Module):
    """Noise prediction ``eps(x_t, t[, x_0 observed, mask])`` for images (N, C, H, W); see the module docstring."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        UNet2DModel = require_diffusers()
        self.config = config
        n = len(config.widths)
        down = ["DownBlock2D"] * n
        up = ["UpBlock2D"] * n
        if config.attention and n > 1:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        c = config.channels
        self.unet = UNet2DModel(
            sample_size=(config.height, config.width), in_channels=c * 2 + 1 if config.conditional else c,
            out_channels=c, block_out_channels=config.widths, layers_per_block=config.layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=8,
            attention_head_dim=8, add_attention=config.attention,
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, given: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise (N, C, H, W). ``given``/``mask`` (N, C, H, W) / (N, 1, H, W): observed pixels and where.

        A conditional network called without them sees an empty mask (unconditional generation).
        """
        if not torch.is_tensor(t) or t.dim() == 0:
            t = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=x_t.device)
        if self.config.conditional:
            if mask is None:
                mask = x_t.new_zeros(x_t.shape[0], 1, *x_t.shape[2:])
                given = torch.zeros_like(x_t)
            mask = mask.to(x_t.dtype)
            x_t = torch.cat([(1 - mask) * x_t, mask * given, mask], dim=1)
        return self.unet(x_t, t).sample
