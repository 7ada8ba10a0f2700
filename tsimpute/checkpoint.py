"""One-file checkpoints of a fitted :class:`~tsimpute.imputer.Imputer`.

The file is written with ``torch.save`` and read with ``torch.load(weights_only=True)``: it holds only
tensors, numbers, strings, lists and dicts, never arbitrary pickled objects.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch

from ._version import __version__

FORMAT = "tsimpute.Imputer"
FORMAT_VERSION = 2  # 2: the fitted window ("auto" resolves at fit); column names absent for array input


def _plain_names(names) -> list:
    out = []
    for n in names:
        if isinstance(n, str | bool | numbers.Integral):
            out.append(n.item() if hasattr(n, "item") else n)
        else:
            raise ValueError(
                f"cannot save column name {n!r} of type {type(n).__name__}: only str and int column names "
                "can be stored; rename the columns before fitting"
            )
    return out


def _plain_params(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if k == "random_state" and not (v is None or isinstance(v, numbers.Integral)):
            v = None  # a RandomState instance is not stored; the fitted seeds are
        out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def save_imputer(imputer, path, model_config: dict) -> None:
    """Write ``imputer`` (fitted) to ``path``."""
    learned = getattr(imputer, "learned_steps_", None)
    scores = getattr(imputer, "step_scores_", None)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tsimpute_version": __version__,
        "params": _plain_params(imputer.get_params()),
        "feature_names": (_plain_names(imputer.feature_names_in_) if hasattr(imputer, "feature_names_in_")
                          else None),
        "window": int(imputer.window_),
        "mean": torch.from_numpy(np.asarray(imputer.mean_, dtype=np.float64)),
        "scale": torch.from_numpy(np.asarray(imputer.scale_, dtype=np.float64)),
        "model_config": model_config,
        "model_state": {k: v.detach().cpu() for k, v in imputer.model_.state_dict().items()},
        "sample_seed": int(imputer._sample_seed),
        "seeded": bool(imputer._seeded),
        "learned_steps": None if learned is None else torch.as_tensor(np.asarray(learned)),
        "step_scores": None if scores is None else torch.as_tensor(np.asarray(scores)),
        "extra": getattr(imputer, "_checkpoint_extra", lambda: {})(),
    }
    if hasattr(imputer, "data_min_"):  # the range that sampling clips to (files without it sample unclipped)
        payload["data_min"] = torch.from_numpy(np.asarray(imputer.data_min_, dtype=np.float64))
        payload["data_max"] = torch.from_numpy(np.asarray(imputer.data_max_, dtype=np.float64))
    torch.save(payload, Path(path))


def read_checkpoint(path, fmt: str = FORMAT, format_version: int = FORMAT_VERSION) -> dict:
    """Read and check a checkpoint file of format ``fmt``; raise a clear error for foreign, truncated or newer
    files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no imputer file at {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files (UnpicklingError, KeyError, ...)
        raise ValueError(
            f"{str(path)!r} is not a readable tsimpute imputer file (truncated, corrupt or foreign): {exc}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise ValueError(f"{str(path)!r} is not a tsimpute imputer file of format {fmt!r}"
                         + (f" (it holds a {found!r})" if isinstance(found, str) else ""))
    version = payload.get("format_version")
    if not isinstance(version, int) or version > format_version:
        raise ValueError(
            f"{str(path)!r} uses checkpoint format {version!r}, newer than this tsimpute ({__version__}) "
            f"reads (format {format_version}); upgrade tsimpute (it was written by {payload.get('tsimpute_version')})"
        )
    return payload


def load_imputer(cls, path, device: str | None = None):
    """Rebuild a fitted imputer of class ``cls`` from ``path``."""
    from .diffusion.schedules import NoiseSchedule
    from .imputer import _resolve_device
    from .models import CSDIConfig, CSDIDenoiser

    payload = read_checkpoint(path)
    params = dict(payload["params"])
    # checkpoints written before the parameterization existed hold noise-predicting networks
    config = payload["model_config"]
    params.setdefault("parameterization", config.get("parameterization", "epsilon"))
    # and before the per-entry residual scale and the time convolution
    params.setdefault("residual_scale", "gap" if config.get("sigma_table") is not None else "global")
    params.setdefault("time_kernel", config.get("time_kernel", 0))
    params.setdefault("noise_levels", "uniform")
    params.setdefault("first_guess", "fitted" if config.get("first_guess") is not None else "interpolation")
    if device is not None:
        params["device"] = device
    imp = cls(**params)
    imp.device_ = _resolve_device(imp.device)
    if payload["feature_names"] is not None:
        imp.feature_names_in_ = np.asarray(payload["feature_names"], dtype=object)
    imp.mean_ = payload["mean"].numpy()
    imp.n_features_in_ = len(imp.mean_)
    imp.window_ = int(payload.get("window", params["window"]))  # format 1 stored an integer window only
    imp.scale_ = payload["scale"].numpy()
    columns = getattr(imp, "feature_names_in_", np.arange(imp.n_features_in_))
    imp.empty_features_ = np.asarray(columns, dtype=object)[np.isnan(imp.mean_)]
    if payload.get("data_min") is not None:
        imp.data_min_, imp.data_max_ = payload["data_min"].numpy(), payload["data_max"].numpy()
    model = CSDIDenoiser(CSDIConfig(**payload["model_config"]))
    model.load_state_dict(payload["model_state"])
    imp.model_ = model.to(imp.device_).eval()
    imp._schedule = NoiseSchedule(imp.n_steps, imp.schedule)
    imp._sample_seed = payload["sample_seed"]
    imp._seeded = payload["seeded"]
    if payload["learned_steps"] is not None:
        imp.learned_steps_ = payload["learned_steps"].numpy()
    if payload["step_scores"] is not None:
        imp.step_scores_ = payload["step_scores"].numpy()
    if hasattr(imp, "_restore_extra"):
        imp._restore_extra(payload.get("extra", {}))
    imp.steps_ = imp.inference_steps().numpy()
    return imp
