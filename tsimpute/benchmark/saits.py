"""SAITS (PyPOTS' :class:`pypots.imputation.SAITS`, the ``peers`` extra) as a benchmark method: the deterministic
state of the art beside the diffusion rows.

It trains on the windows the diffusion model trains on: the task's training series in model units, cut into
windows of the task's length every ``window // 4`` rows (the diffusion model's training windows, at offset 0).
One eighth of the data is held out for validation as the diffusion model holds it out (whole series in panels
of 10 or more, else the end of each series long enough), cut every ``window // 2`` rows; 10% of the observed
values of each validation window are hidden, and training stops after ``patience`` epochs without a lower
validation MSE on them (PyPOTS keeps the best epoch's weights). Data too small to hold anything out trains
for all epochs, choosing the epoch by training loss. It gives one point estimate per window, scored as the
classical imputers are. Where the task hides other windows' gaps in training (PM2.5), ``historical_gaps`` adds
a copy of each training window with such gaps, so that SAITS's inputs look like the test windows too.

PyPOTS is imported only when a model is built; :func:`pypots_missing` says, without raising, why it cannot be.
Nothing is written to the working directory (no checkpoints, no tensorboard files); PyPOTS keeps its
configuration file in the home folder, as it does on any import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import Series, extract_windows, split_series, split_validation, window_starts
from ..datasets import holdout_mask
from .profiles import BenchProfile

__all__ = ["PEERS_HINT", "Saits", "pypots_missing", "require_saits", "training_windows", "with_historical_gaps"]

PEERS_HINT = 'pip install "tsimpute[peers]"'


def require_saits() -> type:
    """Import PyPOTS' ``SAITS`` class, or raise an ImportError that says how to install it (and keeps the cause).

    PyPOTS prints a banner on its first import; it is kept off the output. Any error raised while importing
    it (an incompatible dependency, say) becomes that ImportError.
    """
    try:
        with contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")):
            from pypots.imputation import SAITS
    except Exception as err:
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == "pypots":
            raise ImportError(f"saits needs PyPOTS, which is not installed: {PEERS_HINT}") from err
        raise ImportError(f"saits needs PyPOTS, which failed to import ({err}): {PEERS_HINT}") from err
    return SAITS


def pypots_missing() -> str | None:
    """Why SAITS cannot run here (one line naming the extra), or None when PyPOTS imports."""
    try:
        require_saits()
    except ImportError as err:
        return str(err)
    return None


def _windows(series: list[Series], window: int, stride: int) -> np.ndarray:
    """``(N, L, K)`` windows every ``stride`` rows of each series; windows without an observed value dropped."""
    if not series:
        return np.empty((0, window, 0))
    x = np.concatenate([extract_windows(s.values, window_starts(len(s.values), window, stride), window)
                        for s in series]).transpose(0, 2, 1).astype(np.float64)
    return x[~np.isnan(x).all(axis=(1, 2))]


def training_windows(frame: pd.DataFrame, window: int, *, validation_fraction: float = 0.125,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation windows ``(N, L, K)`` (NaN = missing) of a frame's series.

    Series are split as the diffusion model splits them (:func:`tsimpute.data.split_validation`), then cut into
    windows every ``window // 4`` rows (training) and ``window // 2`` rows (validation); the validation array
    is empty when the data is too small to hold a series out.
    """
    series = split_series(frame)
    panel = isinstance(frame.index, pd.MultiIndex)
    train, valid = split_validation(series, validation_fraction, window, np.random.default_rng(seed), panel)
    return _windows(train, window, max(1, window // 4)), _windows(valid, window, max(1, window // 2))


def with_historical_gaps(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``windows (N, L, K)`` followed by a copy of each that is also missing where another window, drawn at
    random, is missing (copies left with no observed value are dropped)."""
    other = np.isnan(windows[rng.integers(len(windows), size=len(windows))])
    copies = np.where(other, np.nan, windows)
    return np.concatenate([windows, copies[~np.isnan(copies).all(axis=(1, 2))]])


@contextlib.contextmanager
def _quiet_and_seeded(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and torch's global RNGs (PyPOTS draws from them) and keep PyPOTS' log below
    errors; restore all of it after."""
    import torch
    from pypots.utils.logging import logger

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    # a filter, not a level: PyPOTS sets its logger's level when a model is built
    np_state, py_state = np.random.get_state(), random.getstate()
    logger.addFilter(errors_only)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            yield
    finally:
        logger.removeFilter(errors_only)
        np.random.set_state(np_state)
        random.setstate(py_state)


@dataclass
class Saits:
    """PyPOTS' SAITS, fitted on a frame's series and predicting windows ``(N, L, K)``.

    Parameters
    ----------
    window : int
        Window length L (SAITS' ``n_steps``).
    n_layers, d_model, n_heads, d_ffn : int
        Network size; ``d_k = d_v = d_model // n_heads``.
    dropout : float
        Dropout (also on the attention weights).
    epochs : int
        Most training epochs.
    patience : int or None
        Early stopping: epochs without a better validation score (None: every epoch).
    batch_size : int
        Windows per optimizer step.
    lr : float
        Adam's learning rate.
    seed : int
        Seeds the validation split, the hidden validation values and PyPOTS' training.
    device : str
        Torch device (``"auto"``: CUDA when available).
    validation_fraction : float
        Share of the series held out for early stopping.
    hidden_fraction : float
        Share of each validation window's observed values hidden for the validation score.
    historical_gaps : bool
        Also train on a copy of each training window that loses its values where another training window
        (drawn at random) has gaps, as the diffusion model's ``"hist"``/``"mix"`` targets do: PyPOTS hides
        values at random only, so without it SAITS never sees the long gaps of data such as PM2.5's test
        windows in its inputs. The benchmarks set it where the task's ``target_strategy`` draws such targets.
    """

    window: int
    n_layers: int = 2
    d_model: int = 256
    n_heads: int = 4
    d_ffn: int = 128
    dropout: float = 0.1
    epochs: int = 100
    patience: int | None = 10
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    validation_fraction: float = 0.125
    hidden_fraction: float = 0.1
    historical_gaps: bool = False

    @classmethod
    def from_profile(cls, profile: BenchProfile, window: int, *, seed: int = 0, device: str = "cpu",
                     target_strategy: str = "random") -> Saits:
        """The SAITS settings (``saits_*``) of a :class:`~tsimpute.benchmark.BenchProfile`, trained with other
        windows' gaps (``historical_gaps``) where the task's ``target_strategy`` draws them for the diffusion."""
        return cls(window=window, n_layers=profile.saits_n_layers, d_model=profile.saits_d_model,
                   n_heads=profile.saits_n_heads, d_ffn=profile.saits_d_ffn, dropout=profile.saits_dropout,
                   epochs=profile.saits_epochs, patience=profile.saits_patience, batch_size=profile.saits_batch_size,
                   lr=profile.saits_lr, seed=seed, device=device, historical_gaps=target_strategy in ("hist", "mix"))

    def network(self, n_features: int, patience: int | None = None):
        """PyPOTS' untrained SAITS model with these settings for windows of ``n_features`` features."""
        from ..estimator import resolve_device

        saits_class = require_saits()  # before any other PyPOTS import (it keeps the banner off the output)
        from pypots.optim import Adam

        d_k = self.d_model // self.n_heads
        return saits_class(
            n_steps=self.window, n_features=n_features, n_layers=self.n_layers, d_model=self.d_model,
            n_heads=self.n_heads, d_k=d_k, d_v=d_k, d_ffn=self.d_ffn, dropout=self.dropout,
            attn_dropout=self.dropout, batch_size=self.batch_size, epochs=self.epochs, patience=patience,
            optimizer=Adam(lr=self.lr), device=str(resolve_device(self.device)), saving_path=None,
            model_saving_strategy=None, verbose=False,
        )

    def fit(self, frame: pd.DataFrame) -> Saits:
        """Train on the series of ``frame`` (wide or panel, NaN = missing), in the units it will predict."""
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        train, valid = training_windows(frame, self.window, validation_fraction=self.validation_fraction,
                                        seed=self.seed)
        if len(train) == 0:
            raise ValueError("the training series hold no observed value")
        if self.historical_gaps:
            train = with_historical_gaps(train, np.random.default_rng(self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(frame.to_numpy(dtype=np.float64), axis=0)
        self.mean_ = np.where(np.isnan(mean), 0.0, mean)
        val_set = None
        if len(valid):
            hidden = holdout_mask(~np.isnan(valid), self.hidden_fraction, np.random.default_rng(self.seed))
            if hidden.any():
                val_set = {"X": np.where(hidden, np.nan, valid), "X_ori": valid}
        patience = None if val_set is None or self.patience is None else min(self.patience, self.epochs)
        with _quiet_and_seeded(self.seed):
            self.model_ = self.network(train.shape[-1], patience=patience)
            self.model_.fit({"X": train}, val_set=val_set)
        self.n_train_windows_, self.n_valid_windows_ = len(train), 0 if val_set is None else len(valid)
        self.best_epoch_ = int(getattr(self.model_, "best_epoch", self.epochs))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Fill the NaN entries of windows ``x (N, L, K)``; observed entries are returned unchanged."""
        x = np.asarray(x, dtype=np.float64)
        if not hasattr(self, "model_"):
            raise RuntimeError("call fit before predict")
        if x.ndim != 3 or x.shape[1:] != (self.window, len(self.mean_)):
            raise ValueError(f"windows must have shape (N, {self.window}, {len(self.mean_)}), got shape {x.shape}")
        with _quiet_and_seeded(self.seed):
            out = np.asarray(self.model_.predict({"X": x})["imputation"], dtype=np.float64)
        out = np.where(np.isfinite(out), out, self.mean_)
        return np.where(np.isnan(x), out, x)
