"""A plain user table: one station of the UCI Beijing multi-site data, 10% of its observed cells hidden.

``Imputer(random_state=0).fit_transform(df)`` with every other default (or with ``--params`` overrides),
timed, scored on the hidden cells beside linear interpolation, KNN and scikit-learn's IterativeImputer.

Usage: ``python benchmarks/user_table.py [--station Aotizhongxin] [--params '{"max_steps": 1000}']
[--data-dir DIR] [--out benchmarks/results/user_table.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from tsimpute import Imputer
from tsimpute.benchmark.baselines import make_baseline
from tsimpute.datasets import load_beijing_multisite


def _scores(filled: np.ndarray, truth: np.ndarray, hidden: np.ndarray, std: np.ndarray, columns) -> dict:
    err = np.abs(filled - truth)
    per_column = {str(c): float(err[hidden[:, j], j].mean()) for j, c in enumerate(columns)}
    return {"mae": float(err[hidden].mean()), "mae_standardised": float((err / std)[hidden].mean()),
            "mae_per_column": per_column}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--station", default="Aotizhongxin")
    ap.add_argument("--params", default="{}", help="Imputer parameters as JSON (default: every default)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--hide", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params = json.loads(args.params)

    df = load_beijing_multisite(args.station, data_dir=args.data_dir)
    values = df.to_numpy()
    rng = np.random.default_rng(args.seed)
    hidden = ~np.isnan(values) & (rng.random(values.shape) < args.hide)
    X = df.mask(hidden)
    std = np.nanstd(values, axis=0)
    rows = {}

    t0 = time.perf_counter()
    imp = Imputer(random_state=0, **params)
    filled = imp.fit_transform(X).to_numpy()
    rows["tsimpute"] = {**_scores(filled, values, hidden, std, df.columns), "seconds": time.perf_counter() - t0,
                        "fit_steps": imp.history_.steps, "window": imp.window_}
    print("tsimpute", rows["tsimpute"], flush=True)
    t0 = time.perf_counter()
    interp = X.interpolate(limit_direction="both").to_numpy()
    rows["linear interpolation"] = {**_scores(interp, values, hidden, std, df.columns),
                                    "seconds": time.perf_counter() - t0}
    for name in ("first-guess", "knn", "iterative"):
        t0 = time.perf_counter()
        rows_x = X.to_numpy()
        out = make_baseline(name, max_rows=10_000).fit(rows_x).predict(rows_x[None])[0]
        rows[name] = {**_scores(out, values, hidden, std, df.columns), "seconds": time.perf_counter() - t0}
    for name, row in rows.items():
        print(f"{name:22s} MAE {row['mae']:.3f}  standardised {row['mae_standardised']:.4f}  {row['seconds']:.0f} s")
    print("MAE per column:", *(f"{c}: {rows['tsimpute']['mae_per_column'][str(c)]:.3f} vs interpolation "
                               f"{rows['linear interpolation']['mae_per_column'][str(c)]:.3f}" for c in df.columns),
          sep="\n  ")
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        record = {"command": "python benchmarks/user_table.py " + " ".join(
                      f"--{k.replace('_', '-')} {v!r}" for k, v in vars(args).items() if v is not None),
                  "commit": commit, "machine": platform.processor() or platform.machine(),
                  "torch_threads": torch.get_num_threads(), "station": args.station, "shape": list(df.shape),
                  "hidden_cells": int(hidden.sum()), "params": params, "results": rows}
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
