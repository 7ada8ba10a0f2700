"""Ablation on the README's quick-start data: what the network predicts, how targets are drawn, model size.

Every variant is ``Imputer(random_state=0, **variant)`` on ``correlated_sinusoids(600, 4, missing_rate=0.2,
seed=0)``; each fit is sampled with the whole 50-step chain and with 10 uniform steps (50 samples, median),
and scored on the gaps against the complete data beside linear interpolation. The held-out score curve
(``history_``) of each fit is kept in the JSON.

Usage: ``python benchmarks/parameterization.py [--out benchmarks/results/parameterization.json]
[--only NAME ...]``.
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
from tsimpute.synthetic import correlated_sinusoids

EPS_RANDOM = dict(parameterization="epsilon", target_strategy="random")
VARIANTS: dict[str, dict] = {
    "untrained epsilon (1 step)": dict(EPS_RANDOM, max_steps=1),
    "untrained residual (1 step)": dict(max_steps=1),
    "epsilon, random targets": EPS_RANDOM,
    "residual, random targets": dict(target_strategy="random"),
    "residual, hist targets": dict(target_strategy="hist"),
    "every default (residual, mix targets)": {},
    "residual, mix, 2000 steps": dict(max_steps=2000),
    "residual, mix, CSDI size (64, 4, 8)": dict(channels=64, n_layers=4, n_heads=8),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    X, complete = correlated_sinusoids(n_rows=600, n_features=4, missing_rate=0.2, seed=0)
    gaps = X.isna().to_numpy()

    def mae(frame) -> float:
        return float(np.abs(np.asarray(frame) - complete.to_numpy())[gaps].mean())

    rows = [{"variant": "linear interpolation", "mae_full_chain": mae(X.interpolate(limit_direction="both"))}]
    print(rows[0], flush=True)
    for name, params in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        imp = Imputer(random_state=0, verbose=False, **params).fit(X)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = mae(imp.set_params(step_selection="all").transform(X))
        full_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ten = mae(imp.set_params(step_selection="uniform", target_steps=10).transform(X))
        ten_s = time.perf_counter() - t0
        h = imp.history_
        row = {"variant": name, "params": params, "mae_full_chain": full, "mae_10_steps": ten, "fit_s": fit_s,
               "transform_full_s": full_s, "transform_10_s": ten_s, "steps": h.steps, "best_step": h.best_step,
               "sigma_data": imp.denoiser_.parameterization.sigma_data,
               "curve": {"step": h.eval_steps, "seconds": h.eval_seconds, "holdout_mae": h.valid_loss}}
        rows.append(row)
        print({k: v for k, v in row.items() if k != "curve"}, flush=True)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        Path(args.out).write_text(json.dumps({
            "command": "python benchmarks/parameterization.py" + (f" --only {' '.join(map(repr, args.only))}"
                                                                   if args.only else ""),
            "commit": commit, "machine": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
