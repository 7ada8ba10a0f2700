"""From pandas frames to windows and back: frame checks, per-feature scaling, validation split, windowing
(re-cut at a random offset every epoch for training) and stitching the windows' samples back into rows.

Two frame layouts are accepted:

wide
    one series; rows ordered in time (a DatetimeIndex or any unique, increasing index), numeric
    columns are features and NaN marks a gap.
panel
    several series; a 2-level MultiIndex ``(series id, time)``. Each series is windowed on its own;
    its rows need not be contiguous, but its time level must be unique and increasing.

Other 2-D array-likes are validated by :mod:`tsimpute.validation` and read as a wide frame with integer
column names ``0..K-1``.

Window length: ``"auto"`` (:func:`resolve_window`) is :data:`DEFAULT_WINDOW` rows, or the longest series
when every series is shorter.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .diffusion.targets import conditional_mask, random_conditional_mask


@dataclass(frozen=True)
class Series:
    """One series of a frame: row positions in the frame and its ``(rows, K)`` float64 values (NaN = gap)."""

    rows: np.ndarray
    values: np.ndarray


def check_frame(X: pd.DataFrame, name: str = "X") -> None:
    """Validate columns, values and index of a frame; raise ``ValueError``/``TypeError`` naming the problem."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if X.columns.duplicated().any():
        dup = list(X.columns[X.columns.duplicated()].unique())
        raise ValueError(f"{name} has duplicated column names: {dup}")
    bad = [c for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c]))]
    if bad:
        raise TypeError(f"{name} has non-numeric columns {bad}; drop or encode them before imputation")
    complex_cols = [c for c in X.columns if pd.api.types.is_complex_dtype(X[c])]
    if complex_cols:
        raise ValueError(f"Complex data not supported: {name} has complex columns {complex_cols}")
    values = X.to_numpy(dtype=np.float64)
    inf_cols = [c for c, has in zip(X.columns, np.isinf(values).any(axis=0), strict=True) if has]
    if inf_cols:
        raise ValueError(f"{name} has infinite values in columns {inf_cols}; replace them with NaN or finite values")
    check_index(X.index, name)


def check_index(index: pd.Index, name: str = "X") -> None:
    """Wide: unique and increasing. Panel: 2 levels, time unique and increasing within each series."""
    if isinstance(index, pd.MultiIndex):
        if index.nlevels != 2:
            raise ValueError(
                f"{name} has a MultiIndex with {index.nlevels} levels; expected 2 levels (series id, time)"
            )
        if index.duplicated().any():
            raise ValueError(f"{name} has duplicated (series id, time) index entries")
        times = pd.Series(index.get_level_values(1), index=index.get_level_values(0))
        increasing = times.groupby(level=0, sort=False).apply(lambda s: s.is_monotonic_increasing)
        if not increasing.all():
            ids = list(increasing.index[~increasing.to_numpy()][:5])
            raise ValueError(f"{name}: the time level is not increasing within series {ids}; sort the frame first")
        return
    if index.has_duplicates:
        raise ValueError(f"{name} has a duplicated time index; each row must be one time step")
    if not index.is_monotonic_increasing:
        raise ValueError(f"{name} has an unsorted time index; sort it (X.sort_index()) first")


def split_series(X: pd.DataFrame) -> list[Series]:
    """Cut a checked frame into its series (one for a wide frame)."""
    values = X.to_numpy(dtype=np.float64)
    if not isinstance(X.index, pd.MultiIndex):
        return [Series(np.arange(len(X)), values)]
    groups = pd.Series(np.arange(len(X))).groupby(X.index.get_level_values(0).to_numpy(), sort=False)
    return [Series(rows, values[rows]) for rows in (g.to_numpy() for _, g in groups)]


_FLOAT_MAX = float(np.finfo(np.float64).max)
_MODEL_MAX = float(np.finfo(np.float32).max) / 1e3
"""Largest magnitude of a standardised value: windows are float32 (with room for the network's arithmetic)."""


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation learned from training data (NaN ignored).

    Any finite float64 column is scaled correctly, whatever its magnitude (1e-300 or 1e300): the statistics are
    computed on the column divided by a power of two near its largest magnitude (an exact division), so that
    neither the sum nor the squares overflow or underflow. A column without spread (constant) is scaled by 1,
    or by its magnitude when that is below 1, so that imputed values stay at the column's own scale.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN statistics
            peak = np.nanmax(np.abs(values), axis=0)
            # 2**(e - 1) with peak = m * 2**e, 0.5 <= m < 1: columns in [-2, 2), and 2**1023 at most (finite)
            unit = np.ldexp(1.0, np.frexp(np.where(peak > 0, peak, 1.0))[1] - 1)
            unit = np.where(np.isfinite(unit) & (unit > 0), unit, 1.0)
            mean = np.nanmean(values / unit, axis=0) * unit
            std = np.nanstd(values / unit, axis=0) * unit
        constant = np.minimum(1.0, np.abs(mean))
        std = np.where(std > 0, std, np.where(constant > 0, constant, 1.0))
        return cls(mean.astype(np.float64), std.astype(np.float64))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardised values; halves first, so that the difference of two huge values of opposite signs stays
        finite (exact for normal numbers; the model works in float32 anyway)."""
        with np.errstate(over="ignore"):
            return (values * 0.5 - self.mean * 0.5) / self.std * 2.0

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Values in original units, clipped to the finite float64 range."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = values * self.std + self.mean
        return np.clip(out, -_FLOAT_MAX, _FLOAT_MAX, out=out, where=~np.isnan(out))


DEFAULT_WINDOW = 48
"""Rows per window of ``window="auto"`` when the data has series that long."""
SHORT_CONTEXT = 16
"""``window="auto"`` warns below this many rows per window: the model then sees little of any series at once."""


def resolve_window(window: int | str, longest: int, name: str = "X") -> int:
    """The window length used for data whose longest series has ``longest`` rows.

    ``"auto"`` gives :data:`DEFAULT_WINDOW` rows, or ``longest`` when every series is shorter: each series then
    fits in one window, as it would (padded with unobserved rows) in a longer one, so no row loses context.
    It warns when that window is shorter than :data:`SHORT_CONTEXT` rows. An integer window is returned as is,
    and must not exceed ``longest``.
    """
    if longest < 2:
        raise ValueError(
            f"{name} has at most 1 sample (row) per series, n_samples=1, while a minimum of 2 is required"
        )
    if isinstance(window, str):  # "auto" (the estimator checks the value)
        resolved = min(DEFAULT_WINDOW, longest)
        if resolved < SHORT_CONTEXT:
            warnings.warn(
                f"{name} has at most {longest} rows per series, so window='auto' is {resolved} rows: with fewer "
                f"than {SHORT_CONTEXT} rows the model learns little of how the series evolve in time and "
                "imputations may be less accurate",
                UserWarning,
                stacklevel=3,
            )
        return resolved
    if longest < window:
        raise ValueError(
            f"{name} has at most {longest} rows per series but window={window}; "
            f"pass a window of at most {longest} rows, or window='auto'"
        )
    return int(window)


def window_starts(n_rows: int, window: int, stride: int, offset: int = 0) -> np.ndarray:
    """Start rows of windows every ``stride`` rows from ``offset``, plus one window ending at the last row.

    A series shorter than the window gets one window starting at 0 (padded by :func:`extract_windows`).
    """
    if n_rows <= window:
        return np.zeros(1, dtype=np.int64)
    last = n_rows - window
    starts = np.arange(min(offset, last), last + 1, stride, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def extract_windows(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Windows ``(N, K, L)`` of a ``(rows, K)`` array; rows past the end are NaN (padding, unobserved)."""
    n_rows, k = values.shape
    out = np.full((len(starts), k, window), np.nan, dtype=np.float32)
    for i, s in enumerate(starts):
        chunk = values[s : s + window]
        out[i, :, : len(chunk)] = chunk.T
    return out


def stitch_owner(n_rows: int, starts: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the window that imputes it and the row's offset in that window.

    Stitching rule: a row is taken from the window whose centre is nearest to it (ties go to the earlier
    window), so with windows every ``window // 2`` rows each row comes from a window where it lies in
    the central half, except near the ends of the series. Returns ``(window_index, offset)``.
    """
    rows = np.arange(n_rows)
    centres = starts + (window - 1) / 2.0
    right = np.clip(np.searchsorted(centres, rows), 0, len(starts) - 1)
    left = np.clip(right - 1, 0, len(starts) - 1)
    # the nearest centre always belongs to a window that contains the row (windows cover every row)
    owner = np.where(np.abs(rows - centres[left]) <= np.abs(rows - centres[right]), left, right)
    return owner, rows - starts[owner]


# ---------------------------------------------------------------------------------------------- windows


@dataclass
class WindowSet:
    """Windows in model units: ``values (N, K, L)`` (0 where unobserved) and ``observed (N, K, L)`` in {0, 1}.

    The image backend uses the same container for images ``(N, C, H, W)``.
    """

    values: torch.Tensor
    observed: torch.Tensor

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to(self, device: torch.device | str) -> WindowSet:
        return WindowSet(self.values.to(device), self.observed.to(device))

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[WindowSet]:
        """Minibatches; shuffled when a generator is given.

        ``shard=(rank, world_size)``: this rank's share of the (shared) order, every ``world_size``-th window
        from ``rank`` on, the order first padded by repeating it so that every rank gets as many windows
        (and batches) as the others (as :class:`torch.utils.data.DistributedSampler` does).
        """
        n = len(self)
        if generator is None:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=generator, device=generator.device)
        rank, size = shard
        if size > 1 and n:
            total = -(-n // size) * size
            order = order.repeat(-(-total // n))[:total][rank::size]
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size].to(self.values.device)
            yield WindowSet(self.values[idx], self.observed[idx])


def fit_scaler(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and spread of the observed values; NaN for columns with no observed value (warned)."""
    values = frame.to_numpy(dtype=np.float64)
    empty = np.isnan(values).all(axis=0)
    if empty.all():
        raise ValueError("every column of X is entirely missing; there is nothing to learn from")
    mean = np.full(values.shape[1], np.nan)
    std = np.full(values.shape[1], np.nan)
    scaler = Scaler.fit(values[:, ~empty])
    mean[~empty], std[~empty] = scaler.mean, scaler.std
    if empty.any():
        names = [c for c, e in zip(frame.columns, empty, strict=True) if e]
        warnings.warn(
            f"columns {names} are entirely missing in X: they cannot be learned and are left out of the model; "
            "their gaps stay NaN in the output (values observed in them later are returned unchanged)",
            UserWarning,
            stacklevel=4,
        )
    return mean, std


def modelled_columns(mean: np.ndarray) -> np.ndarray:
    """Column positions a model covers: every fitted column but those entirely missing at fit (NaN mean)."""
    return np.flatnonzero(~np.isnan(mean))


def scaled_series(frame: pd.DataFrame, mean: np.ndarray, scale: np.ndarray) -> list[Series]:
    """The series of ``frame``, standardised with ``mean``/``scale``, restricted to the modelled columns.

    A value too far from the data seen in fit for the model's float32 arithmetic (beyond about 1e35 of the
    column's spreads) raises a ValueError naming the column."""
    cols = modelled_columns(mean)
    scaler = Scaler(mean[cols], scale[cols])
    series = [Series(s.rows, scaler.transform(s.values[:, cols])) for s in split_series(frame)]
    with np.errstate(invalid="ignore"):
        far = np.zeros(len(cols), dtype=bool)
        for s in series:
            far |= (np.abs(s.values) > _MODEL_MAX).any(axis=0)
    if far.any():
        names = [frame.columns[c] for c in cols[far]]
        raise ValueError(f"columns {names} of X hold values more than 1e35 standard deviations away from the values "
                         "seen in fit (e.g. a value of 1e300 in a column that was of order 1): fix the unit or the "
                         "outlier, or fit on data of this scale")
    return series


def unscaled(values: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Values in model units back in original units (``values * scale + mean``), clipped to the finite float64
    range (a column of magnitude near 1e308 imputed beyond its data must not come back infinite)."""
    return Scaler(mean, scale).inverse(values)


def split_validation(series: list[Series], fraction: float, window: int, rng: np.random.Generator,
                     panel: bool) -> tuple[list[Series], list[Series]]:
    """Training and validation series: whole series for panels of 10 or more series, else the last
    ``fraction`` of each series long enough to give both parts a full ``window``."""
    if fraction == 0:
        return series, []
    if panel and len(series) >= 10:
        n_valid = max(1, int(round(fraction * len(series))))
        order = rng.permutation(len(series))
        valid_idx = set(order[:n_valid].tolist())
        return ([s for i, s in enumerate(series) if i not in valid_idx],
                [s for i, s in enumerate(series) if i in valid_idx])
    train, valid = [], []
    for s in series:
        n = len(s.values)
        n_valid = int(np.ceil(fraction * n))
        if n - n_valid >= window and n_valid >= window:
            train.append(Series(s.rows[: n - n_valid], s.values[: n - n_valid]))
            valid.append(Series(s.rows[n - n_valid :], s.values[n - n_valid :]))
        else:
            train.append(s)
    return train, valid


def window_set(series: list[Series], window: int, stride: int, offset: int = 0,
               device: torch.device | str = "cpu") -> WindowSet:
    """Every series cut into windows of ``window`` rows every ``stride`` rows (from ``offset``), as tensors."""
    windows = np.concatenate(
        [extract_windows(s.values, window_starts(len(s.values), window, stride, offset), window) for s in series]
    )
    observed = ~np.isnan(windows)
    values = np.where(observed, windows, 0.0).astype(np.float32)
    return WindowSet(torch.from_numpy(values).to(device), torch.from_numpy(observed.astype(np.float32)).to(device))


class EpochWindows(WindowSet):
    """Training windows every ``window // 4`` rows, re-cut at a random offset for every epoch (cheap
    augmentation); ``rng`` draws the offsets."""

    def __init__(self, series: list[Series], window: int, rng: np.random.Generator,
                 device: torch.device | str = "cpu"):
        self._series, self._window, self._rng, self._device = series, window, rng, device
        self._stride = max(1, window // 4)
        ws = window_set(series, window, self._stride, device=device)
        super().__init__(ws.values, ws.observed)

    @property
    def series(self) -> list[Series]:
        """The training series the windows are cut from."""
        return self._series

    def batches(self, batch_size, generator=None, shard=(0, 1)):
        offset = int(self._rng.integers(self._stride))
        ws = window_set(self._series, self._window, self._stride, offset, self._device)
        self.values, self.observed = ws.values, ws.observed
        return super().batches(batch_size, generator, shard)


@dataclass(frozen=True)
class ImputationWindows:
    """The windows that imputation samples (every ``window // 2`` rows) and how to stitch them back into rows."""

    data: WindowSet
    series: list[Series]
    starts: list[np.ndarray]
    window: int

    @classmethod
    def cut(cls, series: list[Series], window: int, device: torch.device | str = "cpu") -> ImputationWindows:
        stride = max(1, window // 2)
        starts = [window_starts(len(s.values), window, stride) for s in series]
        return cls(window_set(series, window, stride, device=device), series, starts, window)

    def stitch(self, samples: np.ndarray, n_rows: int) -> np.ndarray:
        """Samples ``(n, N, L, K)`` of the windows as ``(n, n_rows, K)`` rows of the frame (nearest centre)."""
        out = np.empty((samples.shape[0], n_rows, samples.shape[-1]), dtype=np.float64)
        first = 0
        for s, st in zip(self.series, self.starts, strict=True):
            owner, offset = stitch_owner(len(s.values), st, self.window)
            out[:, s.rows, :] = samples[:, first + owner, offset, :]
            first += len(st)
        return out


def hide_observed(data: WindowSet, share: float, max_windows: int, generator: torch.Generator,
                  strategy: str = "random") -> tuple[WindowSet, torch.Tensor, torch.Tensor]:
    """Hide ``share`` of the observed entries of at most ``max_windows`` windows of ``data`` (evenly spaced),
    drawn with ``generator``; tiny windows where none is drawn fall back to CSDI's random strategy.

    ``strategy="hist"`` hides instead, in each window, the entries that another window of ``data`` (drawn at
    random) did not observe, so that the hidden entries form the data's own gaps, long ones included; ``"mix"``
    does so in half of the windows (drawn at random) and hides ``share`` of the entries of the others, as the
    training target strategies of the same names draw them.

    Returns the windows as the model sees them (``values * given``, ``given``), their values, and the hidden mask.
    """
    idx = torch.linspace(0, len(data) - 1, min(max_windows, len(data))).round().long().unique()
    values, observed = data.values[idx], data.observed[idx]
    if strategy == "random":
        hidden = (torch.rand(observed.shape, generator=generator, device=values.device) < share) * observed
    else:
        hidden = observed - conditional_mask(observed, strategy, patterns=data.observed, generator=generator,
                                             ratio=share)
    if hidden.sum() == 0:  # tiny windows: hide with CSDI's random strategy instead
        hidden = observed - random_conditional_mask(observed, generator)
    given = observed - hidden
    return WindowSet(values * given, given), values, hidden
