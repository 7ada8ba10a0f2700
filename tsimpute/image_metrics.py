"""Metrics for generated and inpainted images.

- :class:`FeatureClassifier` (defined in :mod:`tsimpute.feature_classifier`): a small CNN trained once per dataset
  (8x8, 28x28 or 32x32 images, any channel count); its 128-d penultimate layer is the feature space of
  :func:`frechet_distance` and its predictions feed :func:`class_balance`.
- :func:`frechet_distance`: Fréchet distance between Gaussians fitted to two feature sets. Computed in the
  feature space of :class:`FeatureClassifier`, it is **not** the Inception FID, and its values are not
  comparable to published FIDs; :func:`inception_fid` computes that one when ``torch-fidelity`` or
  ``pytorch-fid`` and the Inception weights are installed locally.
- :func:`masked_mae` and :func:`psnr`: inpainting error on the hidden pixels only.

Images are arrays (or CPU tensors) of shape (N, H, W) or (N, C, H, W), either uint8 0..255 or floats in [0, 1].
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._image_inputs import _image_batch, _label_vector, _to_numpy
from .feature_classifier import FeatureClassifier

__all__ = [
    "ClassBalance",
    "FeatureClassifier",
    "class_balance",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_fid",
    "masked_mae",
    "psnr",
]


# ----------------------------------------------------------------------------- Fréchet distance
def _feature_matrix(feats: Any, name: str) -> np.ndarray:
    arr = _to_numpy(feats).astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate a covariance, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def feature_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof=1) of a feature set.

    Parameters
    ----------
    feats : array-like, shape (N, d)
        Features, N >= 2.

    Returns
    -------
    mu : ndarray of float64, shape (d,)
    cov : ndarray of float64, shape (d, d)
    """
    arr = _feature_matrix(feats, "feats")
    return arr.mean(axis=0), np.atleast_2d(np.cov(arr, rowvar=False))


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((mat + mat.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu_a: Any, cov_a: Any, mu_b: Any, cov_b: Any) -> float:
    """Fréchet (2-Wasserstein squared) distance between two Gaussians.

    ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``, with the matrix square roots
    taken by symmetric eigen-decompositions (tiny negative eigenvalues from rounding are set to zero), so
    singular covariances are handled and no complex values arise.

    Parameters
    ----------
    mu_a, mu_b : array-like, shape (d,)
        Means.
    cov_a, cov_b : array-like, shape (d, d)
        Covariances (symmetric positive semi-definite).

    Returns
    -------
    float
        The distance, >= 0.
    """
    mu_a, mu_b = (np.atleast_1d(_to_numpy(m).astype(np.float64)) for m in (mu_a, mu_b))
    cov_a, cov_b = (np.atleast_2d(_to_numpy(c).astype(np.float64)) for c in (cov_a, cov_b))
    d = mu_a.shape[0]
    for name, value, shape in (("mu_a", mu_a, (d,)), ("mu_b", mu_b, (d,)), ("cov_a", cov_a, (d, d)),
                               ("cov_b", cov_b, (d, d))):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ ((cov_b + cov_b.T) / 2.0) @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Applied to :meth:`FeatureClassifier.features`, this is a Fréchet distance **in the feature space of that
    small classifier**: it is not the Inception FID (see :func:`inception_fid`), and its values are not
    comparable to published FIDs, nor across classifiers (compare models with one saved classifier). Like FID
    it is biased upwards for small sample sizes: compare at equal N.

    Parameters
    ----------
    feats_a, feats_b : array-like, shape (N_a, d) and (N_b, d)
        Features, at least 2 rows each.

    Returns
    -------
    float
        ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`` (covariances with ddof=1).
    """
    a = _feature_matrix(feats_a, "feats_a")
    b = _feature_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_b has {b.shape[1]} features, feats_a has {a.shape[1]}")
    return frechet_distance_from_stats(
        a.mean(axis=0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(axis=0), np.atleast_2d(np.cov(b, rowvar=False))
    )


# ----------------------------------------------------------------------------- class balance
@dataclass(frozen=True, eq=False)
class ClassBalance:
    """Histogram of predicted classes with summaries.

    Attributes
    ----------
    counts : ndarray of int64, shape (n_classes,)
        Images per class.
    frequencies : ndarray of float64, shape (n_classes,)
        ``counts / counts.sum()``.
    entropy : float
        Shannon entropy of ``frequencies`` in nats (``log(n_classes)`` at most).
    normalized_entropy : float
        Entropy of ``frequencies`` divided by ``log(n_classes)``: 1 for a uniform histogram, 0 when a single
        class takes everything.
    max_min_ratio : float
        Largest count over smallest (``inf`` when a class is never predicted).
    n_missing : int
        Classes never predicted.
    """

    counts: np.ndarray
    frequencies: np.ndarray
    entropy: float
    normalized_entropy: float
    max_min_ratio: float
    n_missing: int


def class_balance(predicted_labels: Any, n_classes: int) -> ClassBalance:
    """Summarise how evenly generated images spread over the classes.

    Parameters
    ----------
    predicted_labels : array-like of int, shape (N,)
        Class indices, e.g. :meth:`FeatureClassifier.predict` of generated images.
    n_classes : int
        Number of classes (>= 2).

    Returns
    -------
    ClassBalance
        Counts, frequencies, entropy (raw and normalised), max/min ratio and the number of classes never
        predicted.
    """
    if not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    arr = _to_numpy(predicted_labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"predicted_labels must be a non-empty 1-D array, got shape {arr.shape}")
    labels = _label_vector(arr, len(arr), "predicted_labels")
    if int(labels.max()) >= n_classes:
        raise ValueError(f"predicted_labels must be below n_classes={n_classes}, got {int(labels.max())}")
    counts = np.bincount(labels, minlength=int(n_classes)).astype(np.int64)
    freq = counts / counts.sum()
    nz = freq[freq > 0]
    entropy = max(float(-(nz * np.log(nz)).sum()), 0.0)
    ratio = float(counts.max() / counts.min()) if counts.min() > 0 else math.inf
    return ClassBalance(counts, freq, entropy, entropy / math.log(int(n_classes)), ratio, int((counts == 0).sum()))


# ----------------------------------------------------------------------------- inpainting errors
def _masked_pair(pred: Any, truth: Any, hidden_mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = _to_numpy(pred).astype(np.float64)
    t = _to_numpy(truth).astype(np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {p.shape} but truth has shape {t.shape}")
    m = _to_numpy(hidden_mask)
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("hidden_mask must be boolean (or 0/1): True where a pixel was hidden")
        m = m.astype(bool)
    try:
        m = np.broadcast_to(m, t.shape)
    except ValueError:
        raise ValueError(f"hidden_mask has shape {m.shape}, which does not broadcast to {t.shape}") from None
    if not m.any():
        raise ValueError("hidden_mask hides no pixel")
    if not np.isfinite(p[m]).all():
        raise ValueError("pred contains NaN or infinite values at hidden pixels")
    if not np.isfinite(t[m]).all():
        raise ValueError("truth contains NaN or infinite values at hidden pixels")
    return p, t, m


def masked_mae(pred: Any, truth: Any, hidden_mask: Any) -> float:
    """Mean absolute error over the hidden pixels.

    Parameters
    ----------
    pred, truth : array-like, same shape
        Inpainted and true images, on the same scale.
    hidden_mask : array-like of bool
        True where a pixel was hidden (and inpainted); broadcastable to ``truth`` (e.g. (N, 1, H, W) for
        (N, C, H, W) images).

    Returns
    -------
    float
        ``mean(|pred - truth|)`` over hidden pixels (and channels).
    """
    p, t, m = _masked_pair(pred, truth, hidden_mask)
    return float(np.abs(p - t)[m].mean())


def psnr(pred: Any, truth: Any, hidden_mask: Any, data_range: float = 1.0, *, per_image: bool = False) -> float:
    """Peak signal-to-noise ratio over the hidden pixels, in dB.

    Parameters
    ----------
    pred, truth : array-like, same shape
        Inpainted and true images, on the same scale.
    hidden_mask : array-like of bool
        True where a pixel was hidden; broadcastable to ``truth``.
    data_range : float, default=1.0
        Peak-to-peak range of the pixel scale (255 for 0..255 images).
    per_image : bool, default=False
        False: one PSNR from the mean squared error of all hidden pixels. True: the mean of per-image PSNRs
        (first axis), over images with hidden pixels.

    Returns
    -------
    float
        ``10 log10(data_range^2 / MSE)``; ``inf`` when the hidden pixels are reproduced exactly.
    """
    if not isinstance(data_range, int | float | np.number) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    p, t, m = _masked_pair(pred, truth, hidden_mask)
    sq = (p - t) ** 2

    def _db(mse: float) -> float:
        return math.inf if mse == 0 else 10.0 * math.log10(float(data_range) ** 2 / mse)

    if not per_image:
        return _db(float(sq[m].mean()))
    values = [_db(float(sq[i][m[i]].mean())) for i in range(len(sq)) if m[i].any()]
    return float(np.mean(values))


# ----------------------------------------------------------------------------- Inception FID
_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
_PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def _hub_checkpoint(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _fid_images(images: Any, name: str) -> torch.Tensor:
    x = _image_batch(images, name)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    elif x.shape[1] != 3:
        raise ValueError(f"{name} must have 1 or 3 channels for the Inception network, got {x.shape[1]}")
    return torch.from_numpy(np.ascontiguousarray(x))


def inception_fid(
    real: Any,
    fake: Any,
    *,
    backend: str = "auto",
    weights_path: str | os.PathLike[str] | None = None,
    batch_size: int = 50,
    device: str = "cpu",
) -> float:
    """The standard Inception FID (2048-d pool features of the TF-ported InceptionV3), for published comparisons.

    Uses ``torch-fidelity`` or ``pytorch-fid`` when importable, and only with Inception weights already on disk:
    nothing is ever downloaded. Greyscale images are repeated to 3 channels and resized to 299x299 by the
    backend.

    Parameters
    ----------
    real, fake : array-like, shape (N, H, W) or (N, C, H, W)
        uint8 0..255 or floats in [0, 1]; C is 1 or 3.
    backend : {"auto", "torch_fidelity", "pytorch_fid"}, default="auto"
        Which package; "auto" takes the first that is installed and has its weights.
    weights_path : str or path-like, optional
        The weights file (torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` or pytorch-fid's
        ``pt_inception-2015-12-05-6726825d.pth``); by default looked for in torch's hub cache
        (``$TORCH_HOME/hub/checkpoints``). pytorch-fid only reads it from there.
    batch_size : int, default=50
        Images per forward pass.
    device : str, default="cpu"
        Torch device.

    Returns
    -------
    float
        The FID.

    Raises
    ------
    RuntimeError
        When no backend package is installed or its weights are not on disk (says which and where).
    """
    if backend not in ("auto", "torch_fidelity", "pytorch_fid"):
        raise ValueError(f"backend must be 'auto', 'torch_fidelity' or 'pytorch_fid', got {backend!r}")
    xr, xf = _fid_images(real, "real"), _fid_images(fake, "fake")
    problems = []
    for name in ("torch_fidelity", "pytorch_fid") if backend == "auto" else (backend,):
        try:
            __import__(name)
        except ImportError:
            problems.append(f"{name} is not installed")
            continue
        default = _FIDELITY_WEIGHTS if name == "torch_fidelity" else _PYTORCH_FID_WEIGHTS
        wpath = Path(weights_path) if weights_path is not None else _hub_checkpoint(default)
        if name == "pytorch_fid" and wpath != _hub_checkpoint(default):
            problems.append(f"pytorch_fid reads its weights only from {_hub_checkpoint(default)}")
            continue
        if not wpath.is_file():
            problems.append(f"{name} is installed but its Inception weights {wpath} are not on disk")
            continue
        extract = _fidelity_extractor(wpath, device) if name == "torch_fidelity" else _pytorch_fid_extractor(device)
        feats_r = _batched(extract, xr, batch_size, device)
        feats_f = _batched(extract, xf, batch_size, device)
        return frechet_distance(feats_r, feats_f)
    raise RuntimeError(
        "Inception FID unavailable (no download is attempted): " + "; ".join(problems) + ". Install "
        "torch-fidelity or pytorch-fid and put the Inception weights in place, or use frechet_distance on "
        "FeatureClassifier features (not comparable to published FIDs)."
    )


def _batched(extract: Any, x: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), int(batch_size)):
            out.append(extract(x[start : start + int(batch_size)].to(device)).double().cpu().numpy())
    return np.concatenate(out)


def _fidelity_extractor(wpath: Path, device: str) -> Any:  # pragma: no cover - needs torch-fidelity + weights
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(wpath))
    net = net.to(device).eval()

    def extract(x: torch.Tensor) -> torch.Tensor:
        return net((x * 255.0).round().clamp(0, 255).to(torch.uint8))[0]

    return extract


def _pytorch_fid_extractor(device: str) -> Any:  # pragma: no cover - needs pytorch-fid + weights
    from pytorch_fid.inception import InceptionV3

    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True)
    net = net.to(device).eval()

    def extract(x: torch.Tensor) -> torch.Tensor:
        return net(x)[0].flatten(1)

    return extract
