"""Input checks of the :class:`~tsimpute.imputer.Imputer`, through scikit-learn's validation helpers.

A pandas DataFrame (wide or panel, see :mod:`tsimpute.data`) keeps its index and columns: at fit its
column names become ``feature_names_in_`` and later frames are matched to them by name (a reordered frame
is accepted). Anything else is an array-like read by :func:`sklearn.utils.validation.validate_data`: lists,
numpy arrays and objects with ``__array__`` are converted to a 2-D float64 array (NaN allowed, infinity
refused); sparse matrices, complex numbers, 1-D input and empty input are refused with scikit-learn's
messages; the feature count is checked against ``n_features_in_`` and feature-name mismatches warn as in
scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import validate_data

from .data import check_frame


def validated_frame(estimator, X, *, reset: bool) -> tuple[pd.DataFrame, bool]:
    """Check ``X`` for ``estimator`` and return ``(frame, was_array)``.

    With ``reset=True`` (fit) this sets ``n_features_in_`` and, for a DataFrame, ``feature_names_in_``
    (an array-like removes it). With ``reset=False`` the frame comes back with the fitted columns, in the
    fitted order. ``was_array`` is True when ``X`` was not a DataFrame: the frame then wraps the validated
    float64 array, with integer column names ``0..K-1``.
    """
    if isinstance(X, pd.DataFrame):
        check_frame(X)
        if reset:
            estimator.feature_names_in_ = np.asarray(X.columns, dtype=object)
            estimator.n_features_in_ = X.shape[1]
            return X, False
        if not hasattr(estimator, "feature_names_in_"):  # fitted on an array: columns match by position
            validate_data(estimator, X, reset=False, skip_check_array=True)
            return X, False
        return _fitted_columns(estimator, X), False
    values = validate_data(
        estimator, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan", accept_sparse=False,
        ensure_min_samples=2 if reset else 1,
    )
    return pd.DataFrame(values), True


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
