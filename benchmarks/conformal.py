"""Split-conformal recalibration of the spread (``Imputer(calibration="conformal")`` / ``Imputer.calibrate``)
against the sampler's own spread, on data the calibration was not fitted on.

``quickstart``: the README's quick-start data with every default; the calibration is fitted in ``fit`` on
observed values hidden from the validation windows (the last 10% of the rows), and evaluated on the gaps of
``X`` against the complete series. ``physionet``: CSDI's published network on the first ``--n-test`` fold-0
test stays of PhysioNet-10% (CSDI's hidden targets), calibrated on ``--n-calib`` fold-0 training stays at each
step count. Both sample the same seeds with and without the calibration, so the rows differ by it alone.

    python benchmarks/conformal.py quickstart --out benchmarks/results/conformal_quickstart.json
    python benchmarks/conformal.py physionet --n-test 64 --n-calib 64 --steps 50,10,5,3 \\
        --out benchmarks/results/conformal_physionet.json
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
from tsimpute.inference import tune_cpu_allocator
from tsimpute.metrics import calibration, crps_quantile, mae


def _row(name: str, samples: np.ndarray, target: np.ndarray, mask: np.ndarray, seconds: float) -> dict:
    cal = calibration(samples, target, mask)
    row = {"method": name, "mae": mae(samples, target, mask, median="midpoint"),
           "crps": crps_quantile(samples, target, mask), **{k: float(v) for k, v in cal.items()},
           "seconds": seconds}
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def quickstart(args) -> dict:
    from tsimpute.synthetic import correlated_sinusoids

    X, complete = correlated_sinusoids(n_rows=600, n_features=4, missing_rate=0.2, seed=args.seed)
    t0 = time.perf_counter()
    imp = Imputer(random_state=args.seed, calibration="conformal", verbose=False).fit(X)
    fit_s = time.perf_counter() - t0
    gaps = X.isna().to_numpy()
    truth = complete.to_numpy()
    rows = []
    fitted = imp.calibration_
    for name, cal in (("sampler spread", None), ("conformal", fitted)):
        imp.calibration_ = cal
        t0 = time.perf_counter()
        samples = imp.sample(X, n_samples=args.n_samples, antithetic=True)
        rows.append(_row(name, samples, truth, gaps, time.perf_counter() - t0))
    imp.calibration_ = fitted
    return {"fit_seconds": fit_s, "factors": fitted.factors.tolist(), "counts": fitted.counts.tolist(),
            "rows": rows}


def physionet(args) -> dict:
    from tsimpute.benchmark.profiles import get_profile
    from tsimpute.benchmark.tasks import build_task

    profile = get_profile("converged").for_dataset("physionet").replace(n_train=args.n_calib, n_test=args.n_test)
    task = build_task("physionet", profile, statistics="csdi")
    k = task.target.shape[-1]
    rows = []
    for steps in args.steps:
        imp = Imputer.from_csdi(mean=np.zeros(k), scale=np.ones(k), random_state=args.seed, verbose=False,
                                n_samples=args.n_samples, step_selection="all" if steps == 50 else "uniform",
                                target_steps=steps)
        t0 = time.perf_counter()
        imp.calibrate(task.train_frame, n_samples=args.n_calib_samples)
        calib_s = time.perf_counter() - t0
        fitted = imp.calibration_
        imp.calibration_ = None
        t0 = time.perf_counter()
        raw = task.windows(imp.sample(task.test_frame, n_samples=args.n_samples, antithetic=True))  # (n, N, L, K)
        sample_s = time.perf_counter() - t0
        # each stay is one window of the imputer's: the calibration applies to the same samples window by window,
        # exactly as sample() applies it (given entries: the task's given values)
        given = torch.from_numpy(~np.isnan(task.test_given)).float().permute(0, 2, 1)
        fixed = fitted.apply(torch.from_numpy(raw).permute(0, 1, 3, 2), given).permute(0, 1, 3, 2).numpy()
        for name, samples in (("sampler spread", raw), ("conformal", fixed)):
            row = _row(name, task.to_metric(samples), task.target, task.eval_mask, sample_s)
            rows.append({"steps": steps, "calibration_seconds": calib_s if name == "conformal" else 0.0, **row})
    return {"task": task.info, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=("quickstart", "physionet"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-samples", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument("--n-calib", type=int, default=64, help="training stays the calibration hides values of")
    parser.add_argument("--n-calib-samples", type=int, default=50, help="as many as the evaluation draws")
    parser.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[50, 10, 5, 3])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    t0 = time.perf_counter()
    result = quickstart(args) if args.experiment == "quickstart" else physionet(args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True).stdout.strip())
    result.update({
        "experiment": args.experiment, "args": {k: v for k, v in vars(args).items() if k != "out"},
        "command": "python benchmarks/conformal.py " + " ".join(__import__("sys").argv[1:]),
        "commit": commit + (" (uncommitted changes)" if dirty else ""), "wall_seconds": time.perf_counter() - t0,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
    })
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
