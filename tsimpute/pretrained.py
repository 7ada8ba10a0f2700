"""Published CSDI networks as fitted :class:`~tsimpute.Imputer`\\ s (see :meth:`Imputer.from_csdi`).

The package ships the CSDI authors' PhysioNet 2012 network (``tsimpute/data/csdi_physionet/``: the
unmodified ``model.pth`` with its MIT license, CSDI's ``base.yaml``, and the scaler CSDI trained it with),
so that a converged model runs without any data directory or download. The weights are checked against
their sha256 before use. Other CSDI checkpoints (a ``model.pth`` saved by CSDI's code, with its
``config.json`` or a ``base.yaml``-style file) load the same way, given their feature names and scaler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from .checksums import sha256_file
from .data import resolve_window
from .denoisers import SeriesDenoiser
from .estimator import resolve_device
from .models.csdi import CSDIConfig
from .models.csdi_weights import config_from_csdi_state, load_csdi_denoiser

__all__ = [
    "CSDI_PHYSIONET_DIR",
    "CSDI_PHYSIONET_SHA256",
    "CSDISettings",
    "csdi_physionet_scaler",
    "imputer_from_csdi",
    "read_csdi_config",
    "read_csdi_state",
]

#: Folder of the packaged CSDI PhysioNet network.
CSDI_PHYSIONET_DIR = Path(__file__).resolve().parent / "data" / "csdi_physionet"
#: sha256 of the published ``model.pth``.
CSDI_PHYSIONET_SHA256 = "9acb4ee828a0c271466814c703d00c666caecb826fc5e9c2438ae39bd8d72771"
_WEIGHTS = "model.pth"
_CONFIG_NAMES = ("config.json", "base.yaml")


@dataclass(frozen=True)
class CSDISettings:
    """What a CSDI configuration says about the network and its noise schedule."""

    n_layers: int = 4
    channels: int = 64
    n_heads: int = 8
    step_emb_dim: int = 128
    time_emb_dim: int = 128
    feature_emb_dim: int = 16
    n_steps: int = 50
    schedule: str = "quad"
    beta_start: float = 1e-4
    beta_end: float = 0.5


def read_csdi_config(config: str | os.PathLike[str] | Mapping | None) -> CSDISettings:
    """Read a CSDI configuration: a dict, CSDI's ``config.json`` or a ``base.yaml``-style file (None: CSDI's defaults).

    Only the ``diffusion`` (``layers``, ``channels``, ``nheads``, ``diffusion_embedding_dim``, ``num_steps``,
    ``schedule``, ``beta_start``, ``beta_end``) and ``model`` (``timeemb``, ``featureemb``) sections are used.
    """
    if config is None:
        return CSDISettings()
    if not isinstance(config, Mapping):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"no CSDI configuration file at {str(path)!r}")
        text = path.read_text()
        try:
            config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read the CSDI configuration {str(path)!r}: {exc}") from None
        if not isinstance(config, Mapping):
            raise ValueError(f"the CSDI configuration {str(path)!r} holds no sections")
    diff, model = config.get("diffusion", {}), config.get("model", {})
    if not isinstance(diff, Mapping) or not isinstance(model, Mapping):
        raise ValueError("a CSDI configuration needs 'diffusion' and 'model' sections")
    if int(model.get("is_unconditional", 0)):
        raise ValueError("the CSDI configuration describes an unconditional model; only conditional ones load")
    d = CSDISettings()
    try:
        return CSDISettings(
            n_layers=int(diff.get("layers", d.n_layers)), channels=int(diff.get("channels", d.channels)),
            n_heads=int(diff.get("nheads", d.n_heads)),
            step_emb_dim=int(diff.get("diffusion_embedding_dim", d.step_emb_dim)),
            time_emb_dim=int(model.get("timeemb", d.time_emb_dim)),
            feature_emb_dim=int(model.get("featureemb", d.feature_emb_dim)),
            n_steps=int(diff.get("num_steps", d.n_steps)), schedule=str(diff.get("schedule", d.schedule)),
            beta_start=float(diff.get("beta_start", d.beta_start)), beta_end=float(diff.get("beta_end", d.beta_end)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot read the CSDI configuration: {exc}") from None


def read_csdi_state(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """Load a CSDI state_dict (``torch.load(weights_only=True)``) and the path it came from.

    ``path``: a ``.pth`` file or a folder holding ``model.pth``; None: the packaged PhysioNet network,
    whose sha256 is checked (a mismatch raises ``ValueError``).
    """
    packaged = path is None
    p = CSDI_PHYSIONET_DIR / _WEIGHTS if packaged else Path(path)
    if p.is_dir():
        p = p / _WEIGHTS
    if not p.is_file():
        raise FileNotFoundError(f"no CSDI weights at {str(p)!r}")
    if packaged and (digest := sha256_file(p)) != CSDI_PHYSIONET_SHA256:
        raise ValueError(f"the packaged CSDI weights {str(p)!r} are damaged: sha256 {digest}, "
                         f"expected {CSDI_PHYSIONET_SHA256}; reinstall tsimpute")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise ValueError(f"{str(p)!r} is not a readable PyTorch state_dict: {exc}") from None
    if isinstance(state, Mapping) and "model_state" in state and "embed_layer.weight" not in state:
        raise ValueError(f"{str(p)!r} is a tsimpute imputer file: load it with Imputer.load")
    return state, p


def csdi_physionet_scaler() -> tuple[np.ndarray, np.ndarray]:
    """CSDI's PhysioNet normalisation: per-variable mean and std (ddof=0) of all observed set-a values.

    Read from the packaged ``scaler.json`` (computed with :func:`tsimpute.datasets.zscore_stats` over all
    4000 set-a stays; CSDI's ``dataset_physio.py`` computes the same before its split).
    """
    info = json.loads((CSDI_PHYSIONET_DIR / "scaler.json").read_text())
    return np.asarray(info["mean"], dtype=np.float64), np.asarray(info["std"], dtype=np.float64)


def _config_beside(weights: Path) -> Path | None:
    for name in _CONFIG_NAMES:
        if (weights.parent / name).is_file():
            return weights.parent / name
    return None


def imputer_from_csdi(
    cls,
    path=None,
    *,
    config=None,
    feature_names: Sequence | None = None,
    mean=None,
    scale=None,
    allow_schedule_mismatch: bool = False,
    **params,
):
    """Build a fitted ``cls`` (an :class:`~tsimpute.Imputer`) around CSDI weights; see :meth:`Imputer.from_csdi`."""
    from .datasets.physionet import PHYSIONET_VARIABLES

    state, weights = read_csdi_state(path)
    shapes = config_from_csdi_state(state)  # also checks that this is CSDI's conditional model
    if config is None:
        config = _config_beside(weights)
    settings = read_csdi_config(config)
    for name in ("n_steps", "schedule"):
        if name in params and params[name] != getattr(settings, name) and not allow_schedule_mismatch:
            raise ValueError(
                f"{name}={params[name]!r} differs from the {getattr(settings, name)!r} the weights were trained "
                "with; pass allow_schedule_mismatch=True to sample them under another schedule"
            )
    if (settings.beta_start, settings.beta_end) != (1e-4, 0.5) and not allow_schedule_mismatch:
        raise ValueError(
            f"the weights were trained with beta from {settings.beta_start} to {settings.beta_end}; tsimpute's "
            "schedules run from 1e-4 to 0.5: pass allow_schedule_mismatch=True to sample them anyway"
        )
    arch = {"channels": settings.channels, "n_layers": settings.n_layers, "n_heads": settings.n_heads,
            "n_steps": settings.n_steps, "schedule": settings.schedule, "window": 48,
            # a network trained on the whole chain: step subsets keep its noise levels by default
            "chain": "respaced", "conditioning": "observed", "parameterization": "epsilon",
            "residual_scale": "global", "first_guess": "interpolation", "time_kernel": 0, "noise_levels": "uniform",
            # CSDI's own training and sampling: random targets, every step (fewer: set step_selection)
            "target_strategy": "random", "step_selection": "all"}
    imp = cls(**{**arch, **params})
    imp._check_params()
    if feature_names is None:
        if shapes.n_features != len(PHYSIONET_VARIABLES):
            raise ValueError(f"the weights have K={shapes.n_features} features: pass feature_names (CSDI stores none)")
        feature_names = PHYSIONET_VARIABLES
    feature_names = list(feature_names)
    if mean is None and scale is None:
        if feature_names != list(PHYSIONET_VARIABLES):
            raise ValueError("pass mean and scale (the normalisation the weights were trained with)")
        mean, scale = csdi_physionet_scaler()
    elif mean is None or scale is None:
        raise ValueError("pass both mean and scale, or neither")
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    for name, v in (("mean", mean), ("scale", scale)):
        if v.shape != (len(feature_names),) or not np.isfinite(v).all():
            raise ValueError(f"{name} must be {len(feature_names)} finite numbers, got shape {v.shape}")
    if (scale <= 0).any():
        raise ValueError("scale must be positive")
    cfg = CSDIConfig(
        n_features=len(feature_names), n_steps=imp.n_steps, channels=imp.channels, n_layers=imp.n_layers,
        n_heads=imp.n_heads, ff_dim=shapes.ff_dim, step_emb_dim=settings.step_emb_dim,
        time_emb_dim=settings.time_emb_dim, feature_emb_dim=settings.feature_emb_dim,
    )
    model = load_csdi_denoiser(state, cfg)
    resolve_device(imp.device)
    imp._init_seeds()
    # CSDI's network: noise prediction, observed values as conditioning; the training data's range is unknown
    data = {"feature_names": feature_names, "window": resolve_window(imp.window, 48),  # 48-hour windows
            "mean": mean, "scale": scale, "data_min": None, "data_max": None}
    imp._set_fitted_state(data, SeriesDenoiser(model), imp._sample_seed, imp._seeded)
    imp.source_ = str(weights)
    return imp
