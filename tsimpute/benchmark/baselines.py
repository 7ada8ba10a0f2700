"""Classical imputers for the benchmark, on the same ``(N, L, K)`` window arrays as the diffusion model.

Every baseline is fitted on training rows ``(R, K)`` (time steps of the training series, NaN = missing)
and fills windows ``x (N, L, K)`` whose NaN entries are the gaps (evaluation targets included). The
result has no NaN: whatever a method cannot fill (a feature never seen in a window) falls back to the
training mean of that feature.

- ``mean``: the per-feature training mean.
- ``ffill``: last observation carried forward along time within each window; leading gaps get the mean.
- ``interpolate``: linear interpolation along time within each window (``numpy.interp``: constant beyond
  the first/last observation); a feature unobserved in the window gets the mean.
- ``knn``: scikit-learn :class:`~sklearn.impute.KNNImputer` over time steps (each row of K features is a
  sample; ``nan_euclidean`` distance to training rows).
- ``iterative``: scikit-learn :class:`~sklearn.impute.IterativeImputer` (BayesianRidge, round-robin) over
  time steps.
- ``first-guess``: linear interpolation corrected by the median regression of
  :mod:`tsimpute.diffusion.first_guess` (a local quadratic fit in time, related columns across the same
  gap), fitted on windows of the standardised training rows: the first guess that the default diffusion
  imputer corrects, on its own.

They give point estimates. The benchmark scores a point estimate as a one-sample ensemble: every
quantile then equals the point, so CSDI's normalised CRPS reduces to ``sum|pred - y| / sum|y|`` (a
normalised MAE) and the ensemble CRPS to the MAE.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["BASELINES", "Baseline", "make_baseline", "training_rows"]


def _check_windows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"windows must have shape (N, L, K), got shape {x.shape}")
    return x


def training_rows(
    rows: np.ndarray, max_rows: int | None = None, seed: int = 0
) -> np.ndarray:
    """Rows ``(R, K)`` with at least one observed value, randomly subsampled to ``max_rows`` (None: all)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"training rows must have shape (R, K), got shape {rows.shape}")
    rows = rows[~np.isnan(rows).all(axis=1)]
    if len(rows) == 0:
        raise ValueError("the training rows hold no observed value")
    if max_rows is not None and len(rows) > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        rows = rows[idx]
    return rows


@dataclass
class Baseline:
    """A classical imputer: :meth:`fit` on training rows, :meth:`predict` on windows.

    Parameters
    ----------
    name : {"mean", "ffill", "interpolate", "knn", "iterative", "first-guess"}
        Method.
    n_neighbors : int, default=5
        Neighbours of ``knn``.
    max_iter : int, default=10
        Rounds of ``iterative``.
    max_rows : int or None, default=None
        Training rows kept for ``knn`` and ``iterative`` (a random subset; None keeps all).
    window : int, default=48
        Rows per training window of ``first-guess``.
    seed : int, default=0
        Seeds the row subset and ``iterative``.
    """

    name: str
    n_neighbors: int = 5
    max_iter: int = 10
    max_rows: int | None = None
    window: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.name!r}")

    def fit(self, rows: np.ndarray) -> Baseline:
        """Learn per-feature means (and the sklearn model of ``knn`` / ``iterative``) from ``(R, K)`` rows."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2:
            raise ValueError(f"training rows must have shape (R, K), got shape {rows.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(rows, axis=0)
        self.mean_ = np.where(np.isnan(mean), 0.0, mean)
        self.model_ = None
        if self.name == "first-guess":
            self.model_ = _fit_first_guess(rows, self.mean_, self.window, self.seed)
        if self.name in ("knn", "iterative"):
            fit_rows = training_rows(rows, self.max_rows, self.seed)
            if self.name == "knn":
                from sklearn.impute import KNNImputer

                self.model_ = KNNImputer(n_neighbors=self.n_neighbors, keep_empty_features=True)
            else:
                from sklearn.experimental import enable_iterative_imputer  # noqa: F401
                from sklearn.impute import IterativeImputer

                # clipped to the training range: BayesianRidge extrapolates wildly on sparse rows
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, hi = np.nanmin(fit_rows, axis=0), np.nanmax(fit_rows, axis=0)
                # no bound for unobserved or constant features (scikit-learn requires min < max)
                spread = hi > lo
                self.model_ = IterativeImputer(
                    max_iter=self.max_iter, random_state=self.seed, keep_empty_features=True,
                    min_value=np.where(spread, lo, -np.inf),
                    max_value=np.where(spread, hi, np.inf),
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning of IterativeImputer
                self.model_.fit(fit_rows)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Fill the NaN entries of windows ``x (N, L, K)``; observed entries are returned unchanged."""
        x = _check_windows(x)
        if not hasattr(self, "mean_"):
            raise RuntimeError("call fit before predict")
        if x.shape[-1] != len(self.mean_):
            raise ValueError(f"windows have {x.shape[-1]} features, the baseline knows {len(self.mean_)}")
        if self.name == "mean":
            out = x
        elif self.name == "ffill":
            out = forward_fill(x)
        elif self.name == "interpolate":
            out = interpolate(x)
        elif self.name == "first-guess":
            out = _apply_first_guess(self.model_, x, self.mean_)
        else:
            n, l, k = x.shape
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = self.model_.transform(x.reshape(n * l, k)).reshape(n, l, k)
        out = np.where(np.isnan(out), self.mean_, out)
        return np.where(np.isnan(x), out, x)


BASELINES: tuple[str, ...] = ("mean", "ffill", "interpolate", "knn", "iterative", "first-guess")


def make_baseline(name: str, **kwargs) -> Baseline:
    """Build a :class:`Baseline` by name (keyword arguments as in its constructor)."""
    return Baseline(name, **kwargs)


def forward_fill(x: np.ndarray) -> np.ndarray:
    """Carry the last observation forward along axis 1 (time) of ``(N, L, K)``; leading gaps stay NaN."""
    x = _check_windows(x)
    l = x.shape[1]
    idx = np.where(~np.isnan(x), np.arange(l)[None, :, None], -1)
    idx = np.maximum.accumulate(idx, axis=1)
    out = np.take_along_axis(x, np.maximum(idx, 0), axis=1)
    return np.where(idx < 0, np.nan, out)


def interpolate(x: np.ndarray) -> np.ndarray:
    """Linear interpolation along axis 1 (time) of ``(N, L, K)``, constant beyond the ends; NaN if unseen."""
    x = _check_windows(x)
    out = x.copy()
    t = np.arange(x.shape[1], dtype=np.float64)
    n_idx, k_idx = np.nonzero(np.isnan(x).any(axis=1) & ~np.isnan(x).all(axis=1))
    for i, k in zip(n_idx, k_idx, strict=True):
        col = x[i, :, k]
        seen = ~np.isnan(col)
        out[i, :, k] = np.interp(t, t[seen], col[seen])
    return out


def _fit_first_guess(rows: np.ndarray, mean: np.ndarray, window: int, seed: int):
    """The first guess fitted on windows (every ``window // 4`` rows) of the standardised rows ``(R, K)``."""
    import torch

    from ..diffusion.first_guess import fit_first_guess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(rows, axis=0)
    std = np.where(np.isnan(std) | (std == 0), 1.0, std)
    z = (rows - mean) / std
    length = min(window, len(z))
    starts = range(0, len(z) - length + 1, max(1, length // 4))
    win = np.stack([z[s : s + length].T for s in starts])  # (N, K, L)
    observed = torch.as_tensor(~np.isnan(win), dtype=torch.float32)
    values = torch.as_tensor(np.nan_to_num(win), dtype=torch.float32)
    guess = fit_first_guess(values, observed, generator=torch.Generator().manual_seed(seed))
    return guess, std


def _apply_first_guess(model, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    import torch

    guess, std = model
    z = ((x - mean) / std).transpose(0, 2, 1)  # (N, K, L)
    given = torch.as_tensor(~np.isnan(z), dtype=torch.float32)
    with torch.no_grad():
        out = guess(torch.as_tensor(np.nan_to_num(z), dtype=torch.float32), given).numpy().astype(np.float64)
    # a column with nothing given in the window: NaN, filled with the training mean by predict
    out = np.where(given.sum(-1, keepdim=True).numpy() > 0, out, np.nan)
    return out.transpose(0, 2, 1) * std + mean
