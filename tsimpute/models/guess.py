"""A deterministic imputer network over time steps: the learned first guess of the residual diffusion.

Each time step of a window is one token holding every feature's given value, its mask and a classical first
guess (SAITS-style attention over time, Du et al. 2023); a small transformer encoder reads the tokens and
outputs a correction of the classical guess at every entry. The output layer starts at zero, so an untrained
network returns the classical guess unchanged. Tensors are ``(B, K, L)`` windows, as in
:mod:`tsimpute.diffusion`; the network knows nothing of diffusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import sinusoidal_position_embedding


@dataclass
class GuessConfig:
    """Architecture of :class:`GuessNetwork`."""

    n_features: int
    d_model: int = 256
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 512
    dropout: float = 0.1


class GuessNetwork(nn.Module):
    """``net(values, given, base) -> base + correction``, all ``(B, K, L)``; ``values`` is read where ``given``
    is 1 only."""

    def __init__(self, config: GuessConfig):
        super().__init__()
        self.config = config
        k, d = config.n_features, config.d_model
        self.input_projection = nn.Linear(3 * k, d)
        layer = nn.TransformerEncoderLayer(d, config.n_heads, config.ff_dim, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.output_projection = nn.Linear(d, k)
        nn.init.zeros_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    def forward(self, values: torch.Tensor, given: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        b, k, length = values.shape
        if k != self.config.n_features:
            raise ValueError(f"the network has {self.config.n_features} features, the windows {k}")
        tokens = torch.cat([values * given, given, base], dim=1).transpose(1, 2)  # (B, L, 3K)
        positions = torch.arange(length, device=values.device)
        h = self.input_projection(tokens) + sinusoidal_position_embedding(positions, self.config.d_model)
        h = self.encoder(h)
        return base + self.output_projection(self.norm(h)).transpose(1, 2)
