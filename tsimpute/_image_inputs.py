"""Checks shared by the image metrics and the feature classifier: image batches and class labels as numpy arrays.

Images are arrays (or CPU tensors) of shape (N, H, W) or (N, C, H, W), either uint8 0..255 or floats in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# Floats this far outside [0, 1] signal another scaling ([-1, 1] or 0..255), not rounding: refuse them.
_RANGE_SLACK = 0.05


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _image_batch(images: Any, name: str = "images") -> np.ndarray:
    """Images as float32 (N, C, H, W) in [0, 1]."""
    arr = _to_numpy(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be uint8 (0..255) or floating point in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        raise ValueError(
            f"{name} must be floats in [0, 1] (or uint8 0..255), got values in [{lo:.3g}, {hi:.3g}]; "
            "rescale first (e.g. (x + 1) / 2 for [-1, 1] images)"
        )
    return np.clip(arr, 0.0, 1.0)


def _label_vector(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    arr = _to_numpy(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices, got {int(arr.min())}")
    return arr
