"""bf16 vs fp32 on real data: imputation accuracy of one trained model, and training-loss curves.

PhysioNet 2012 set-a (CSDI protocol: 10% of observed values held out, z-scores, split seed 1), a subset
of stays so the script runs in minutes. One :class:`tsimpute.Imputer` is fitted in fp32 and sampled in
fp32 and bf16 with the same seeds (common random numbers); the bf16 - fp32 differences of MAE and CRPS are
compared with the spread between seeds. A second imputer is fitted with ``precision="bf16"`` (autocast,
fp32 master weights) to compare the loss curves. Run::

    python benchmarks/precision.py --out benchmarks/results/precision.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import commit, machine  # noqa: E402

from tsimpute import Imputer  # noqa: E402
from tsimpute.datasets import load_physionet, physionet_task  # noqa: E402
from tsimpute.metrics import crps_quantile, mae  # noqa: E402
from tsimpute.models.layers import resolve_attention  # noqa: E402


def panel(values: np.ndarray, stays: np.ndarray, variables) -> pd.DataFrame:
    """Stays ``(n, 48, K)`` with NaN gaps as a panel frame indexed by (stay, hour)."""
    n, l, k = values.shape
    idx = pd.MultiIndex.from_product([stays, np.arange(l)], names=["stay", "hour"])
    return pd.DataFrame(values.reshape(n * l, k), index=idx, columns=list(variables))


def evaluate(imp: Imputer, frame: pd.DataFrame, truth: np.ndarray, eval_mask: np.ndarray, mean, std,
             precision: str, seed: int, n_samples: int, steps: str) -> dict:
    imp.set_params(precision=precision)
    imp._sample_seed = seed  # the sampling seed (set at fit from random_state); fixed here per repeat
    t0 = time.perf_counter()
    samples = imp.sample(frame, n_samples=n_samples)  # (n, rows, K) in original units
    sec = time.perf_counter() - t0
    z = (samples - mean) / std
    zt = (truth - mean) / std
    return {"precision": precision, "seed": seed, "steps": steps, "n_samples": n_samples, "seconds": sec,
            "mae": mae(z, zt, eval_mask), "crps": crps_quantile(z, zt, eval_mask)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stays", type=int, default=480, help="training stays (of CSDI's training split)")
    ap.add_argument("--test-stays", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=50, help="uniformly kept sampling steps (50 = full chain)")
    ap.add_argument("--fits", default="fp32,bf16",
                    help="training precisions, comma-separated: the first model is sampled in fp32 and bf16 with "
                         "every seed; the others are fitted for their loss curves and sampled once, in bf16")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_physionet("set-a")
    task = physionet_task(data, missing_ratio=0.1, seed=1)
    tr = task.train_index[: args.stays]
    te = task.test_index[: args.test_stays]
    train_frame = panel(task.values[tr], tr, task.variables)
    test_values = np.where(task.cond_mask[te], task.values[te], np.nan)
    test_frame = panel(test_values, te, task.variables)
    truth = np.nan_to_num(task.values[te]).reshape(-1, len(task.variables))
    eval_mask = task.eval_mask[te].reshape(-1, len(task.variables))
    sel = "all" if args.steps >= 50 else "uniform"

    common = dict(window=48, epochs=args.epochs, validation_fraction=0.1, patience=None, random_state=0,
                  verbose=False, step_selection=sel, target_steps=min(args.steps, 50))
    fits, evals = {}, []
    fit_precisions = [p.strip() for p in args.fits.split(",") if p.strip()]
    for i, train_prec in enumerate(fit_precisions):
        imp = Imputer(precision=train_prec, **common)
        t0 = time.perf_counter()
        imp.fit(train_frame)
        fits[train_prec] = {"seconds": time.perf_counter() - t0, "train_loss": imp.history_.train_loss,
                            "valid_loss": imp.history_.valid_loss, "best_epoch": imp.history_.best_epoch}
        seeds = args.seeds if i == 0 else args.seeds[:1]
        for seed in seeds:
            for prec in ("fp32", "bf16") if i == 0 else ("bf16",):
                r = evaluate(imp, test_frame, truth, eval_mask, task.mean, task.std, prec, seed, args.n_samples,
                             f"{args.steps} ({sel})")
                r["trained_in"] = train_prec
                evals.append(r)
                print(json.dumps(r), flush=True)

    ref = [e for e in evals if e["trained_in"] == fit_precisions[0]]
    summary = {}
    for metric in ("mae", "crps"):
        fp32 = np.array([e[metric] for e in ref if e["precision"] == "fp32"])
        bf16 = np.array([e[metric] for e in ref if e["precision"] == "bf16"])
        summary[metric] = {"fp32_mean": fp32.mean(), "bf16_mean": bf16.mean(),
                           "fp32_seed_sd": fp32.std(ddof=1) if len(fp32) > 1 else float("nan"),
                           "mean_paired_diff_bf16_minus_fp32": float((bf16 - fp32).mean()),
                           "max_abs_paired_diff": float(np.abs(bf16 - fp32).max())}
    curves = {p: fits[p]["valid_loss"] for p in fits}
    summary["valid_loss_last"] = {p: c[-1] if c else None for p, c in curves.items()}
    report = {"command": " ".join(["python", *sys.argv]), "commit": commit(), "machine": machine(),
              "data": f"PhysioNet 2012 {data.set_name} ({data.source}), 10% held out, {len(tr)} train / {len(te)} "
                      f"test stays, z-scores",
              "settings": vars(args) | {"out": str(args.out)}, "attention": resolve_attention("auto", "cpu"),
              "fits": fits, "evals": evals, "summary": summary,
              "wall_s": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(summary, indent=2, default=float))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")
        args.out.with_suffix(".md").write_text(markdown(report))


def markdown(r: dict) -> str:
    lines = ["# bf16 vs fp32 on PhysioNet (accuracy and loss curves)", "",
             f"- command: `{r['command']}`", f"- commit: {r['commit']}",
             f"- machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, torch {r['machine']['torch']}",
             f"- data: {r['data']}", f"- attention kernels (CPU): {r.get('attention')}", "",
             "| trained in | sampled in | seed | steps | samples | MAE | CRPS | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for e in r["evals"]:
        lines.append(f"| {e['trained_in']} | {e['precision']} | {e['seed']} | {e['steps']} | {e['n_samples']} | "
                     f"{e['mae']:.4f} | {e['crps']:.4f} | {e['seconds']:.1f} |")
    first = next(iter(r["fits"]))
    lines += ["", f"Summary (model trained in {first}, sampled in fp32 and bf16; paired = same seed):", ""]
    for m in ("mae", "crps"):
        s = r["summary"][m]
        lines.append(f"- {m.upper()}: fp32 {s['fp32_mean']:.4f} (seed sd {s['fp32_seed_sd']:.4f}), bf16 "
                     f"{s['bf16_mean']:.4f}; paired bf16 - fp32 {s['mean_paired_diff_bf16_minus_fp32']:+.4f} "
                     f"(max |diff| {s['max_abs_paired_diff']:.4f})")
    names = list(r["fits"])
    lines += ["", "Loss curves (per epoch):", "",
              "| epoch | " + " | ".join(f"train {p}" for p in names) + " | " + " | ".join(f"valid {p}" for p in names)
              + " |", "|---|" + "---|" * (2 * len(names))]

    def g(lst, i):
        return f"{lst[i]:.4f}" if i < len(lst) else ""

    for i in range(max(len(f["train_loss"]) for f in r["fits"].values())):
        cells = [g(r["fits"][p]["train_loss"], i) for p in names] + [g(r["fits"][p]["valid_loss"], i) for p in names]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    lines.append("\nFit time: " + ", ".join(f"{p} {r['fits'][p]['seconds']:.0f} s" for p in names) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
