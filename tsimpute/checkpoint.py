"""One-file checkpoints of the fitted estimators, and the migration of files written by older releases.

A file is written with ``torch.save`` and read with ``torch.load(weights_only=True)``: it holds only tensors,
numbers, strings, lists and dicts, never arbitrary pickled objects. Its layout (format version 4 for
:class:`~tsimpute.Imputer`, 3 for :class:`~tsimpute.image_imputer.ImageImputer`)::

    format, format_version, tsimpute_version
    params          the estimator's parameters (get_params)
    network         the network's configuration (its dataclass as a dict)
    network_state   its weights
    denoiser        the denoiser adapter's settings (conditioning, parameterization, first guess, ...)
    data            the data-dependent fitted state (scaler, window, feature names / image shape, range)
    sample_seed, seeded, learned_steps, step_scores
    distilled       None, or a distilled sampler's chain (timesteps, alphas_cumprod), its sampler ("ddim",
                    eta 0), the teacher's steps and the record of its rounds (Imputer 4, ImageImputer 3)

Older files are read through :data:`MIGRATIONS`, one version at a time.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ._version import __version__

__all__ = ["MIGRATIONS", "plain_names", "plain_params", "read_checkpoint", "write_checkpoint"]

# settings of the time-series denoiser that format 2 kept in the network's configuration
_DENOISER_KEYS = ("conditioning", "parameterization", "sigma_data", "sigma_table", "first_guess")


def plain_names(names) -> list:
    """Column names as plain ``str``/``int`` values; a ValueError for names that cannot be stored."""
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


def plain_params(params: dict) -> dict:
    """Estimator parameters as plain values (a ``RandomState`` instance is not stored: the fitted seeds are)."""
    out = {}
    for k, v in params.items():
        if k == "random_state" and not (v is None or isinstance(v, numbers.Integral)):
            v = None
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def write_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (with the library version added) to ``path``."""
    torch.save({**payload, "tsimpute_version": __version__}, Path(path))


def _imputer_v1_to_v2(payload: dict) -> dict:
    # format 1 stored an integer window only (in the parameters)
    return {**payload, "format_version": 2, "window": int(payload.get("window", payload["params"]["window"]))}


def _imputer_v2_to_v3(payload: dict) -> dict:
    params = dict(payload["params"])
    config = dict(payload["model_config"])
    # files written before these parameters existed hold noise-predicting networks without a time convolution
    params.setdefault("parameterization", config.get("parameterization", "epsilon"))
    params.setdefault("residual_scale", "gap" if config.get("sigma_table") is not None else "global")
    params.setdefault("time_kernel", config.get("time_kernel", 0))
    params.setdefault("noise_levels", "uniform")
    params.setdefault("first_guess", "fitted" if config.get("first_guess") is not None else "interpolation")
    denoiser = {k: config.pop(k) for k in _DENOISER_KEYS if k in config}
    data = {"feature_names": payload["feature_names"], "window": int(payload["window"]),
            "mean": payload["mean"], "scale": payload["scale"],
            "data_min": payload.get("data_min"), "data_max": payload.get("data_max")}
    return {"format": payload["format"], "format_version": 3, "params": params, "network": config,
            "network_state": payload["model_state"], "denoiser": denoiser, "data": data,
            "sample_seed": payload["sample_seed"], "seeded": payload["seeded"],
            "learned_steps": payload.get("learned_steps"), "step_scores": payload.get("step_scores")}


def _image_v1_to_v2(payload: dict) -> dict:
    data = {"image_shape": payload["image_shape"], "squeeze_channel": payload["squeeze_channel"],
            "data_range": payload["data_range"]}
    return {"format": payload["format"], "format_version": 2, "params": payload["params"],
            "network": payload["model_config"], "network_state": payload["model_state"], "denoiser": {},
            "data": data, "sample_seed": payload["sample_seed"], "seeded": payload["seeded"],
            "learned_steps": payload.get("learned_steps"), "step_scores": payload.get("step_scores")}


def _no_distilled_sampler(payload: dict) -> dict:
    # files written before distillation hold the fitted network itself, sampled over its step selection
    return {**payload, "format_version": payload["format_version"] + 1, "distilled": None}


#: ``(format, version) -> function`` turning a payload of that version into the next version's.
MIGRATIONS: dict[tuple[str, int], Callable[[dict], dict]] = {
    ("tsimpute.Imputer", 1): _imputer_v1_to_v2,
    ("tsimpute.Imputer", 2): _imputer_v2_to_v3,
    ("tsimpute.Imputer", 3): _no_distilled_sampler,
    ("tsimpute.ImageImputer", 1): _image_v1_to_v2,
    ("tsimpute.ImageImputer", 2): _no_distilled_sampler,
}


def read_checkpoint(path, fmt: str, format_version: int) -> dict:
    """Read a checkpoint file of format ``fmt``, migrated to ``format_version``; a clear error for foreign,
    truncated or newer files."""
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
    try:
        while payload["format_version"] < format_version:
            payload = MIGRATIONS[(fmt, payload["format_version"])](payload)
    except KeyError as exc:
        raise ValueError(f"{str(path)!r} (format {fmt!r} version {version}) lacks {exc} and cannot be read") from None
    return payload
