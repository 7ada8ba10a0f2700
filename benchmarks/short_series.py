"""Short-series benchmark: accuracy of ``window="auto"`` when every series has only L rows.

The same correlated sinusoids (periods 24, 60 and 150 rows, 20% MCAR gaps) are cut into a panel of
series of L rows each, so every length sees the same values and gaps and only the context per series
changes. For each L an imputer with the default ``window="auto"`` (which picks ``min(48, L)``) is fitted on
the panel and imputes its gaps (the usual transductive setting); the MAE on the gaps is compared with
linear interpolation within each series and with the per-feature mean. Writes a JSON file and a Markdown
table.

Usage::

    python benchmarks/short_series.py --lengths 6,10,16,24,48 --out benchmarks/results/short_series
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsimpute import Imputer
from tsimpute.synthetic import correlated_sinusoids


def as_panel(frame: pd.DataFrame, length: int) -> pd.DataFrame:
    """Cut a wide frame into a panel of consecutive series of ``length`` rows (a shorter last one dropped)."""
    n = len(frame) // length * length
    ids = np.repeat(np.arange(n // length), length)
    steps = np.tile(np.arange(length), n // length)
    return frame.iloc[:n].set_axis(pd.MultiIndex.from_arrays([ids, steps], names=["series", "step"]))


def interpolate(panel: pd.DataFrame) -> pd.DataFrame:
    """Linear interpolation within each series; ends and empty series fall back to the feature mean."""
    filled = panel.groupby(level=0, group_keys=False).apply(
        lambda s: s.interpolate(limit_direction="both")
    )
    return filled.fillna(panel.mean())


def run(args) -> list[dict]:
    X_all, full_all = correlated_sinusoids(args.rows, args.features, seed=args.seed)
    rows = []
    for length in args.lengths:
        X, full = as_panel(X_all, length), as_panel(full_all, length)
        gaps = X.isna().to_numpy()
        imp = Imputer(epochs=args.epochs, batch_size=32, channels=32, n_layers=2, n_heads=4, n_samples=9,
                      lr=3e-3, validation_fraction=0, random_state=args.seed, verbose=False)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            out = imp.fit_transform(X)
        seconds = time.perf_counter() - t0

        def mae(filled: pd.DataFrame) -> float:
            return float(np.abs(filled.to_numpy() - full.to_numpy())[gaps].mean())

        rows.append({
            "series_rows": length, "n_series": len(X) // length, "window": int(imp.window_),
            "warned": any("window='auto'" in str(w.message) for w in record),
            "mae_model": mae(out), "mae_interpolate": mae(interpolate(X)), "mae_mean": mae(X.fillna(X.mean())),
            "seconds": round(seconds, 1),
        })
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="6,10,16,24,48")
    parser.add_argument("--rows", type=int, default=2400)
    parser.add_argument("--features", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/short_series")
    args = parser.parse_args()
    args.lengths = [int(v) for v in args.lengths.split(",")]
    t0 = time.perf_counter()
    rows = run(args)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"command": "python benchmarks/short_series.py " + " ".join(
                f"--{k} {','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
            "commit": commit, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
            f"{torch.__version__}", "wall_seconds": round(time.perf_counter() - t0)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Short-series benchmark", "", "```", meta["command"], "```", "",
        f"commit {commit}; {meta['machine']}; wall {meta['wall_seconds']} s", "",
        "| rows per series | series | window | warned | MAE model | MAE interpolation | MAE mean | model / interp |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['series_rows']} | {r['n_series']} | {r['window']} | {'yes' if r['warned'] else 'no'} | "
            f"{r['mae_model']:.4f} | {r['mae_interpolate']:.4f} | {r['mae_mean']:.4f} | "
            f"{r['mae_model'] / r['mae_interpolate']:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
