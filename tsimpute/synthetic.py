"""Synthetic multivariate series for examples, tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd


def correlated_sinusoids(
    n_rows: int = 2000,
    n_features: int = 6,
    noise: float = 0.1,
    missing_rate: float = 0.2,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Correlated sinusoids plus noise with MCAR gaps.

    Every feature mixes three shared latent sinusoids (periods 24, 60 and 150 rows) with its own weights
    and phase, so features are correlated in time and with each other. Returns ``(with_gaps, complete)``,
    hourly-indexed DataFrames; ``with_gaps`` has ``missing_rate`` of its cells set to NaN at random.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)[:, None]
    periods = np.array([24.0, 60.0, 150.0])
    phases = rng.uniform(0, 2 * np.pi, size=(1, 3))
    latent = np.sin(2 * np.pi * t / periods + phases)  # (rows, 3)
    weights = rng.normal(size=(3, n_features))
    values = latent @ weights + rng.normal(scale=1.0, size=(1, n_features))
    values = values + noise * rng.normal(size=values.shape)
    index = pd.date_range("2024-01-01", periods=n_rows, freq="h", name="time")
    columns = [f"x{j}" for j in range(n_features)]
    complete = pd.DataFrame(values, index=index, columns=columns)
    gaps = rng.random(values.shape) < missing_rate
    return complete.mask(gaps), complete
