"""Input checks of the :class:`~tsimpute.imputer.Imputer`, through scikit-learn's validation helpers.

A pandas DataFrame (wide or panel, see :mod:`tsimpute.data`) keeps its index and columns: at fit its
column names become ``feature_names_in_`` and later frames are matched to them by name (a reordered frame
is accepted). Anything else is an array-like read by :func:`sklearn.utils.validation.validate_data`: lists,
numpy arrays and objects with ``__array__`` are converted to a 2-D float64 array (NaN allowed, infinity
refused); sparse matrices, complex numbers, 1-D input and empty input are refused with scikit-learn's
messages; the feature count is checked against ``n_features_in_`` and feature-name mismatches warn as in
scikit-learn.

A 3-D array ``(n_series, n_steps, n_features)`` (the layout of PyPOTS and of most research code) is read as a
panel: series ``i`` is ``X[i]``, its time steps are the rows, so it is windowed series by series exactly as a
DataFrame panel; features are positional, so a model fitted on 3-D arrays transforms 2-D arrays of the same
features and the other way round. PyPOTS' dict ``{"X": array}`` is read as its ``"X"`` (other keys, such as a
data set's labels ``"y"`` or ground truth ``"X_ori"``, are not used). Any other number of dimensions is refused
with a message naming the accepted shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_array, validate_data

from .data import check_frame

_ARRAYS = ("a pandas DataFrame (wide, or a panel with a (series id, time) MultiIndex), a 2-D array-like "
           "(n_rows, n_features) or a 3-D array-like (n_series, n_steps, n_features)")
ACCEPTED = _ARRAYS.replace(" or a 3-D", ", a 3-D") + " or a dict {'X': array}"


@dataclass(frozen=True)
class Layout:
    """How the input was laid out, to give results back in the same layout.

    ``kind``: ``"frame"`` (a DataFrame, kept in ``source``), ``"array"`` (2-D) or ``"array3d"`` (``shape`` is
    ``(n_series, n_steps, n_features)``; the frame's rows are the series one after the other).
    """

    kind: str
    shape: tuple[int, ...]
    source: pd.DataFrame | None = None

    def rows_to_input(self, values: np.ndarray) -> np.ndarray:
        """An array whose last two axes are ``(rows, K)`` reshaped to the input's layout (3-D: series, steps)."""
        if self.kind != "array3d":
            return values
        return values.reshape(values.shape[:-2] + self.shape)


def validated_frame(estimator, X, *, reset: bool) -> tuple[pd.DataFrame, Layout]:
    """Check ``X`` for ``estimator`` and return ``(frame, layout)``.

    With ``reset=True`` (fit) this sets ``n_features_in_`` and, for a DataFrame, ``feature_names_in_``
    (an array-like removes it). With ``reset=False`` the frame comes back with the fitted columns, in the
    fitted order. For anything but a DataFrame the frame wraps the validated float64 array, with integer
    column names ``0..K-1`` (a panel indexed ``(series, step)`` for a 3-D array).
    """
    X = _unwrapped(X)
    if isinstance(X, pd.DataFrame):
        check_frame(X)
        layout = Layout("frame", X.shape, X)
        if reset:
            estimator.feature_names_in_ = np.asarray(X.columns, dtype=object)
            estimator.n_features_in_ = X.shape[1]
            return X, layout
        if not hasattr(estimator, "feature_names_in_"):  # fitted on an array: columns match by position
            validate_data(estimator, X, reset=False, skip_check_array=True)
            return X, layout
        return _fitted_columns(estimator, X), layout
    ndim = _ndim(X)
    if ndim == 3:
        return _panel_of_3d(estimator, X, reset)
    if ndim is not None and ndim != 2:
        if ndim == 0:
            raise TypeError(f"X must be {ACCEPTED}; got {type(X).__name__} {X!r:.40}")
        shape = getattr(X, "shape", None) or np.shape(X)
        raise ValueError(f"X must be {ACCEPTED}; got a {ndim}-D input of shape {tuple(shape)}"
                         + ("; Reshape your data: one series as (n_rows, 1) or (1, n_rows, 1)" if ndim == 1 else ""))
    values = validate_data(
        estimator, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan", accept_sparse=False,
        ensure_min_samples=2 if reset else 1,
    )
    return pd.DataFrame(values), Layout("array", values.shape)


def _unwrapped(X):
    """PyPOTS' dict ``{"X": array, ...}`` as its ``"X"``; anything else as is."""
    if not isinstance(X, Mapping):
        return X
    if "X" not in X:
        raise ValueError(f"a dict input must hold the data under the key 'X' (PyPOTS' layout); got keys "
                         f"{list(X)[:10]}")
    inner = X["X"]
    if isinstance(inner, Mapping) or inner is None or isinstance(inner, str | bytes):
        raise TypeError(f"X['X'] must be {_ARRAYS}; got {type(inner).__name__}")
    return inner


def _ndim(X) -> int | None:
    """Dimensions of an array-like, or None when numpy cannot tell (ragged lists: scikit-learn's check says why)."""
    ndim = getattr(X, "ndim", None)
    if isinstance(ndim, int):
        return ndim
    if isinstance(X, str | bytes) or X is None or np.isscalar(X):
        return 0
    try:
        return int(np.ndim(X))
    except (ValueError, TypeError):
        return None


def _panel_of_3d(estimator, X, reset: bool) -> tuple[pd.DataFrame, Layout]:
    """A 3-D array-like as a panel frame: series ``i`` = ``X[i]``, indexed ``(series, step)``."""
    values = check_array(X, allow_nd=True, dtype=np.float64, ensure_all_finite="allow-nan", accept_sparse=False,
                         ensure_min_samples=1, ensure_min_features=1, input_name="X")
    n, steps, k = values.shape
    if n == 0 or steps == 0 or k == 0:
        raise ValueError(f"X is empty: a 3-D array (n_series, n_steps, n_features) of shape {values.shape}")
    if reset and steps < 2:
        raise ValueError(f"X has {steps} step per series (shape {values.shape} = (n_series, n_steps, "
                         "n_features)); at least 2 steps are needed to learn how the series evolve")
    rows = values.reshape(n * steps, k)
    # feature-count check and feature-name warnings (or, at fit, n_features_in_) as for a 2-D array
    validate_data(estimator, rows, reset=reset, skip_check_array=True)
    index = pd.MultiIndex.from_arrays([np.repeat(np.arange(n), steps), np.tile(np.arange(steps), n)],
                                      names=["series", "step"])
    return pd.DataFrame(rows, index=index), Layout("array3d", (n, steps, k))


def _fitted_columns(estimator, frame: pd.DataFrame) -> pd.DataFrame:
    fitted = list(estimator.feature_names_in_)
    cols = list(frame.columns)
    if cols == fitted:
        return frame
    missing = [c for c in fitted if c not in cols]
    extra = [c for c in cols if c not in fitted]
    if missing or extra:
        raise ValueError(f"columns differ from those seen in fit: missing {missing}, extra {extra}")
    return frame[fitted]
