"""How much there is to gain over linear interpolation, measured with simple classical estimators.

Two questions, answered on the data of the accuracy targets, on the same hidden cells as the benchmarks:

1. The README's quick start (``correlated_sinusoids(600, 4, 20% missing)``): a local quadratic fit of each
   gap on the observed values of its own column within ``h`` rows (LOESS, tricube weights), for a few ``h``.
2. One UCI Beijing station (10% of the observed cells hidden, seed 0, as ``user_table.py``):
   - the same local quadratic fit per column (is there more temporal structure than a straight line?);
   - interpolation plus a linear map of the other columns' local deviations at the same hour (value minus
     the mean of its two neighbours), fitted on the first half of the rows and scored on the hidden cells of
     the second half (how much do the columns say about each other?).

Usage: ``python benchmarks/headroom.py [--data-dir DIR] [--out benchmarks/results/headroom.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from tsimpute.datasets import load_beijing_multisite
from tsimpute.synthetic import correlated_sinusoids


def local_quadratic(series: np.ndarray, targets: np.ndarray, h: int, fallback: np.ndarray) -> np.ndarray:
    """LOESS (degree 2, tricube weights) of each target entry from the observed entries within ``h`` rows.

    Entries with fewer than 4 observed neighbours, or none on one side, take ``fallback``.
    """
    out = fallback.copy()
    t = np.arange(len(series))
    observed = ~np.isnan(series)
    for i in targets:
        lo, hi = max(0, i - h), i + h + 1
        sel = observed[lo:hi]
        d = t[lo:hi][sel] - i
        if len(d) < 4 or d.min() >= 0 or d.max() <= 0:
            continue
        w = np.sqrt((1 - (np.abs(d) / (h + 1)) ** 3) ** 3)
        coef = np.linalg.lstsq(np.vander(d, 3) * w[:, None], series[lo:hi][sel] * w, rcond=None)[0]
        out[i] = coef[-1]
    return out


def quick_start(widths: list[int]) -> dict:
    X, complete = correlated_sinusoids(n_rows=600, n_features=4, missing_rate=0.2, seed=0)
    gaps = X.isna().to_numpy()
    values, truth = X.to_numpy(), complete.to_numpy()
    interp = X.interpolate(limit_direction="both").to_numpy()
    rows = {"linear interpolation": float(np.abs(interp - truth)[gaps].mean()),
            "noise floor (E|noise| of the generator)": 0.1 * float(np.sqrt(2 / np.pi))}
    for h in widths:
        filled = np.column_stack([local_quadratic(values[:, j], np.where(gaps[:, j])[0], h, interp[:, j])
                                  for j in range(values.shape[1])])
        rows[f"local quadratic, h={h}"] = float(np.abs(filled - truth)[gaps].mean())
    return rows


def beijing(data_dir, widths: list[int]) -> dict:
    df = load_beijing_multisite("Aotizhongxin", data_dir=data_dir)
    values = df.to_numpy()
    hidden = ~np.isnan(values) & (np.random.default_rng(0).random(values.shape) < 0.1)
    X = np.where(hidden, np.nan, values)
    mean, std = np.nanmean(X, 0), np.nanstd(values, 0)
    z, truth = (X - mean) / std, (values - mean) / std
    interp = pd.DataFrame(z).interpolate(limit_direction="both").to_numpy()
    cols = [str(c) for c in df.columns]
    out: dict = {"columns": cols, "linear interpolation": {}, "local quadratic": {}, "cross-feature": {}}
    for j, c in enumerate(cols):
        cells = np.where(hidden[:, j])[0]
        out["linear interpolation"][c] = float(np.abs(interp[cells, j] - truth[cells, j]).mean())
        out["local quadratic"][c] = {
            f"h={h}": float(np.abs(local_quadratic(z[:, j], cells, h, interp[:, j])[cells] - truth[cells, j]).mean())
            for h in widths}
    # cross-feature: interpolation + a ridge map of the other columns' local deviations at the same hour
    observed = ~np.isnan(z)
    ok = observed & np.roll(observed, 1, 0) & np.roll(observed, -1, 0)
    ok[0] = ok[-1] = False
    zz = np.nan_to_num(z)
    deviation = np.where(ok, zz - (np.roll(zz, 1, 0) + np.roll(zz, -1, 0)) / 2, 0.0)
    half = len(z) // 2
    test = hidden.copy()
    test[:half] = False
    pred = interp.copy()
    for j in range(len(cols)):
        feats = np.concatenate([np.delete(deviation, j, 1), np.delete(ok, j, 1).astype(float)], 1)
        fit_rows = ok[:, j].copy()
        fit_rows[half:] = False  # an observed hour with observed neighbours stands for an isolated gap
        a, y = feats[fit_rows], deviation[fit_rows, j]
        beta = np.linalg.solve(a.T @ a + 1e-3 * np.eye(a.shape[1]), a.T @ y)
        pred[test[:, j], j] = interp[test[:, j], j] + feats[test[:, j]] @ beta
    for j, c in enumerate(cols):
        cells = test[:, j]
        out["cross-feature"][c] = {
            "interpolation": float(np.abs(interp[cells, j] - truth[cells, j]).mean()),
            "interpolation + cross-feature": float(np.abs(pred[cells, j] - truth[cells, j]).mean())}
    out["cross-feature"]["all columns"] = {
        "interpolation": float(np.abs(interp - truth)[test].mean()),
        "interpolation + cross-feature": float(np.abs(pred - truth)[test].mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    record = {"quick_start_mae": quick_start([3, 5, 8, 12]),
              "beijing_mae_standardised": beijing(args.data_dir, [2, 3, 5, 8])}
    print(json.dumps(record, indent=1))
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        record = {"command": "python benchmarks/headroom.py" + (f" --out {args.out}" if args.out else ""),
                  "commit": commit, "machine": platform.processor() or platform.machine(), **record}
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
