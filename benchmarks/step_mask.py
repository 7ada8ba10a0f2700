"""Step-mask benchmark: learned step masks against uniform / quadratic / DDIM subsets on the same weights.

For each seed, one model is trained on all T=50 steps. It is then sampled with every step selection at
each step count K; the from-pretrained learned masks are learned on that same model (weights frozen) with
every combination of chain semantics, loss weight and mask objective listed in ``VARIANTS``. A jointly
trained model (network and mask learned together) is added at the step counts given by ``--joint``.
Writes CSV / JSON rows and a Markdown summary (mean and spread over seeds).

Usage::

    python benchmarks/step_mask.py --dataset synthetic --seeds 0,1,2 --out benchmarks/results/step_mask_synthetic
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsimpute import Imputer
from tsimpute.benchmark.profiles import get_profile
from tsimpute.benchmark.tasks import build_task
from tsimpute.metrics import crps_quantile, mae

# (chain, mask_weight, mask_objective) of the from-pretrained masks
VARIANTS = [
    ("respaced", "simple", "loss"),
    ("respaced", "elbo", "loss"),
    ("masked", "simple", "loss"),
    ("respaced", "simple", "imputation"),
    ("masked", "simple", "imputation"),
]


def evaluate(imp: Imputer, task, n_samples: int) -> dict:
    t0 = time.perf_counter()
    samples, info = imp.sample(task.test_frame, n_samples=n_samples, return_info=True)
    seconds = time.perf_counter() - t0
    windows = task.to_metric(task.windows(samples))
    return {
        "nfe": info.nfe,
        "mae": mae(windows, task.target, task.eval_mask),
        "crps": crps_quantile(windows, task.target, task.eval_mask),
        "impute_seconds": seconds,
    }


def run_seed(task, args, seed: int) -> list[dict]:
    base_params = dict(
        window=task.window, epochs=args.epochs, batch_size=args.batch_size, channels=args.channels,
        n_layers=args.n_layers, n_heads=args.n_heads, target_strategy=task.target_strategy,
        n_samples=args.n_samples, random_state=seed, verbose=False, n_masks=4,
    )
    rows = []

    def add(method, k, imp, extra=None, train_seconds=0.0):
        row = {"dataset": task.dataset, "method": method, "steps": k, "seed": seed, "n_samples": args.n_samples,
               "train_seconds": train_seconds, **evaluate(imp, task, args.n_samples), **(extra or {})}
        rows.append(row)
        print(f"seed {seed} {method:<40} K={k:<3} nfe={row['nfe']:<6} mae={row['mae']:.4f} "
              f"crps={row['crps']:.4f} {row['impute_seconds']:.1f}s", flush=True)

    t0 = time.perf_counter()
    base = Imputer(**base_params).fit(task.train_frame)
    base_seconds = time.perf_counter() - t0
    add("all", 50, base, train_seconds=base_seconds)
    for k in args.steps:
        for name, params in [
            ("uniform", dict(step_selection="uniform", sampler="ddpm")),
            ("quadratic", dict(step_selection="quadratic", sampler="ddpm")),
            ("ddim-uniform", dict(step_selection="uniform", sampler="ddim", eta=0.0)),
        ]:
            add(name, k, copy.deepcopy(base).set_params(target_steps=k, **params))
        for chain, weight, objective in VARIANTS:
            imp = copy.deepcopy(base).set_params(chain=chain, mask_weight=weight, mask_objective=objective)
            t1 = time.perf_counter()
            imp.learn_steps(task.train_frame, target_steps=k, epochs=args.learn_epochs)
            extra = {"learned_steps": imp.learned_steps_.tolist(), **imp.mask_binarity_}
            add(f"learned-pretrained/{chain}/{weight}/{objective}", k, imp, extra, time.perf_counter() - t1)
        if k in args.joint:
            t1 = time.perf_counter()
            joint = Imputer(**base_params, step_selection="learned", target_steps=k).fit(task.train_frame)
            extra = {"learned_steps": joint.learned_steps_.tolist(), **joint.mask_binarity_}
            add("learned-joint/respaced/simple/loss", k, joint, extra, time.perf_counter() - t1)
    return rows


def summarise(rows: pd.DataFrame) -> str:
    g = rows.groupby(["method", "steps"], sort=False)
    table = g.agg(mae=("mae", "mean"), mae_sd=("mae", "std"), crps=("crps", "mean"), crps_sd=("crps", "std"),
                  nfe=("nfe", "mean"), seconds=("impute_seconds", "mean")).reset_index()
    lines = ["| method | K | MAE | CRPS | NFE | impute s |", "|---|---|---|---|---|---|"]
    for r in table.sort_values(["steps", "crps"], ascending=[False, True]).itertuples():
        lines.append(f"| {r.method} | {r.steps} | {r.mae:.4f} ± {r.mae_sd:.4f} | {r.crps:.4f} ± {r.crps_sd:.4f} "
                     f"| {r.nfe:.0f} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "physionet", "pm25"])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", default="25,10,5")
    p.add_argument("--joint", default="10", help="step counts that also get a jointly trained model")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-samples", type=int, default=10)
    p.add_argument("--learn-epochs", type=int, default=1)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results/step_mask")
    args = p.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",")]
    args.joint = [int(s) for s in args.joint.split(",") if s]
    profile = get_profile("quick")
    overrides = {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test)) if v is not None}
    if overrides:
        import dataclasses

        profile = dataclasses.replace(profile, **overrides)
    task = build_task(args.dataset, profile)
    t0 = time.perf_counter()
    rows = [r for s in args.seeds.split(",") for r in run_seed(task, args, int(s))]
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {
        "command": "python benchmarks/step_mask.py " + " ".join(argv or __import__("sys").argv[1:]),
        "commit": commit, "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}", "task": task.info, "wall_seconds": time.perf_counter() - t0,
        "args": {k: v for k, v in vars(args).items()},
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    md = f"# Step-mask benchmark: {args.dataset}\n\n```\n{meta['command']}\n```\n\n" \
         f"commit {commit}; {meta['machine']}; wall {meta['wall_seconds']:.0f} s\n\n{summarise(frame)}\n"
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
