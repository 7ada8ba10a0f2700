"""Convert the state_dict of CSDI's reference network (``CSDI_Physio`` / ``CSDI_base``) to :class:`CSDIDenoiser`.

CSDI (github.com/ermongroup/CSDI) stores its conditional model as ``embed_layer`` (the feature embedding)
plus ``diffmodel.*`` (``diff_CSDI``): Conv1d layers of kernel width 1, whose ``(out, in, 1)`` weights are
our ``nn.Linear`` weights with a trailing axis, and one-layer ``nn.TransformerEncoder``\\ s whose
``layers.0.self_attn.in_proj_*`` / ``out_proj`` are our :class:`~tsimpute.models.layers.TransformerLayer`'s
``in_proj`` / ``out_proj``. The side information is the same (128 time + 16 feature dimensions + the
conditional mask, in that order), so the mapping is exact: no retraining, no approximation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .csdi import CSDIConfig, CSDIDenoiser

__all__ = ["config_from_csdi_state", "convert_csdi_state_dict", "load_csdi_denoiser"]

# CSDI name (after the leading "diffmodel.") -> our name; {i} = residual layer, {layer} = time/feature
_TOP = {
    "embed_layer.weight": "feature_embedding.weight",
    "diffmodel.diffusion_embedding.projection1.weight": "step_embedding.projection1.weight",
    "diffmodel.diffusion_embedding.projection1.bias": "step_embedding.projection1.bias",
    "diffmodel.diffusion_embedding.projection2.weight": "step_embedding.projection2.weight",
    "diffmodel.diffusion_embedding.projection2.bias": "step_embedding.projection2.bias",
    "diffmodel.input_projection.weight": "input_projection.weight",
    "diffmodel.input_projection.bias": "input_projection.bias",
    "diffmodel.output_projection1.weight": "output_projection1.weight",
    "diffmodel.output_projection1.bias": "output_projection1.bias",
    "diffmodel.output_projection2.weight": "output_projection2.weight",
    "diffmodel.output_projection2.bias": "output_projection2.bias",
}
_BLOCK = {
    "diffusion_projection": "diffusion_projection",
    "cond_projection": "side_projection",
    "mid_projection": "mid_projection",
    "output_projection": "output_projection",
}
_TRANSFORMER = {
    "self_attn.in_proj_weight": "in_proj.weight",
    "self_attn.in_proj_bias": "in_proj.bias",
    "self_attn.out_proj.weight": "out_proj.weight",
    "self_attn.out_proj.bias": "out_proj.bias",
}
_BLOCK_RE = re.compile(r"^diffmodel\.residual_layers\.(\d+)\.(\w+)\.(weight|bias)$")
_TRANS_RE = re.compile(r"^diffmodel\.residual_layers\.(\d+)\.(time_layer|feature_layer)\.layers\.0\.(.+)$")


def _our_name(name: str) -> str | None:
    """Our parameter name for CSDI's ``name`` (None if CSDI's network has no such tensor)."""
    if name in _TOP:
        return _TOP[name]
    m = _TRANS_RE.match(name)
    if m:
        i, layer, rest = m.groups()
        return f"blocks.{i}.{layer}.{_TRANSFORMER.get(rest, rest)}"
    m = _BLOCK_RE.match(name)
    if m and m.group(2) in _BLOCK:
        i, part, kind = m.groups()
        return f"blocks.{i}.{_BLOCK[part]}.{kind}"
    return None


def _check_state(state: object) -> Mapping[str, torch.Tensor]:
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("a CSDI checkpoint must be a state_dict: a mapping of parameter names to tensors")
    if "embed_layer.weight" not in state or "diffmodel.input_projection.weight" not in state:
        raise ValueError(
            "not a CSDI conditional model state_dict: 'embed_layer.weight' or "
            "'diffmodel.input_projection.weight' is missing"
        )
    return state


def config_from_csdi_state(state: Mapping[str, torch.Tensor], n_steps: int = 50) -> CSDIConfig:
    """The :class:`CSDIConfig` whose shapes a CSDI state_dict has (heads are not stored: CSDI's 8 assumed).

    Parameters
    ----------
    state : mapping of str to Tensor
        CSDI's state_dict.
    n_steps : int, default=50
        Diffusion steps T (not stored in the weights; CSDI's ``num_steps``).
    """
    state = _check_state(state)
    n_layers = len({int(m.group(1)) for k in state if (m := re.match(r"diffmodel\.residual_layers\.(\d+)\.", k))})
    n_features, feature_dim = state["embed_layer.weight"].shape
    channels = state["diffmodel.input_projection.weight"].shape[0]
    step_dim = state["diffmodel.diffusion_embedding.projection1.weight"].shape[1]
    side_dim = state["diffmodel.residual_layers.0.cond_projection.weight"].shape[1]
    ff_dim = state["diffmodel.residual_layers.0.time_layer.layers.0.linear1.weight"].shape[0]
    return CSDIConfig(
        n_features=int(n_features), n_steps=n_steps, channels=int(channels), n_layers=n_layers, n_heads=8,
        ff_dim=int(ff_dim), step_emb_dim=int(step_dim), time_emb_dim=int(side_dim - feature_dim - 1),
        feature_emb_dim=int(feature_dim),
    )


def convert_csdi_state_dict(state: Mapping[str, torch.Tensor], config: CSDIConfig) -> dict[str, torch.Tensor]:
    """Map CSDI's state_dict onto the parameters of ``CSDIDenoiser(config)``, exactly.

    Parameters
    ----------
    state : mapping of str to Tensor
        The state_dict of CSDI's conditional model (``CSDI_Physio`` and its siblings).
    config : CSDIConfig
        Architecture to load into; every tensor must have the shape this config gives it.

    Returns
    -------
    dict of str to Tensor
        Our state_dict (fp32 copies), ready for ``load_state_dict(strict=True)``.

    Raises
    ------
    ValueError
        Naming the tensor: a CSDI tensor our network lacks (more layers, an unconditional model...), a
        parameter of ours that the checkpoint lacks (fewer layers), or a shape that differs (features K,
        channels, embedding sizes).
    """
    state = _check_state(state)
    target = CSDIDenoiser(config).state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        ours = _our_name(name)
        if ours is None or ours not in target:
            raise ValueError(
                f"CSDI tensor {name!r} {tuple(tensor.shape)} has no counterpart in a network with "
                f"n_layers={config.n_layers}, n_features={config.n_features}: the config does not match the weights"
            )
        value = tensor.detach().to(torch.float32)
        if value.dim() == 3 and value.shape[-1] == 1 and target[ours].dim() == 2:  # Conv1d, kernel width 1
            value = value[..., 0]
        if value.shape != target[ours].shape:
            raise ValueError(
                f"CSDI tensor {name!r} has shape {tuple(tensor.shape)} but {ours!r} needs "
                f"{tuple(target[ours].shape)} with {config}: the config does not match the weights"
            )
        out[ours] = value.clone().contiguous()
    missing = [k for k in target if k not in out]
    if missing:
        raise ValueError(
            f"the CSDI checkpoint has no tensor for {missing[0]!r} (and {len(missing) - 1} more) of a network "
            f"with n_layers={config.n_layers}: the config does not match the weights"
        )
    return out


def load_csdi_denoiser(state: Mapping[str, torch.Tensor], config: CSDIConfig | None = None) -> CSDIDenoiser:
    """A :class:`CSDIDenoiser` in eval mode holding CSDI's weights ``state`` (config read from the shapes if None)."""
    config = config_from_csdi_state(state) if config is None else config
    if config.channels % config.n_heads:
        raise ValueError(f"channels ({config.channels}) must be divisible by n_heads ({config.n_heads})")
    model = CSDIDenoiser(config)
    model.load_state_dict(convert_csdi_state_dict(state, config), strict=True)
    return model.eval()
