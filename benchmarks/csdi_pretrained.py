"""CSDI's published PhysioNet network: its 50-step accuracy, and step subsets (learned mask vs fixed) on it.

Runs :func:`tsimpute.benchmark.run_benchmark` with ``model="csdi-physionet"`` (no training) on fold 0's
test stays of PhysioNet 2012 set-a (10% of the observed values held out, CSDI's protocol and statistics),
then writes a Markdown report comparing the 50-step chain with CSDI's published figures and every step
subset with the 50-step chain.

Parts (run them as separate processes, then ``--report``):

``main``
    all 50 steps; uniform, quadratic, DDIM-uniform and the learned mask (weights frozen, ``loss``
    objective) at each step count; the classical baselines.
``extras``
    the learned mask with the ``imputation`` objective (weights frozen, ``learned-imputation``) at
    ``--steps``, and with weights fine-tuned along (``learned-finetune``, ``loss`` objective) at
    ``--finetune-steps`` over ``--n-train-finetune`` training stays.

Usage::

    python benchmarks/csdi_pretrained.py main --n-test 32 --n-samples 10 --seeds 0,1,2 --n-train 320
    python benchmarks/csdi_pretrained.py extras --steps 10,5,3,2 --finetune-steps 3,2 --n-train-finetune 64 \\
        --n-test 32 --n-samples 10 --seeds 0,1,2 --n-train 320
    python benchmarks/csdi_pretrained.py report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tsimpute.benchmark import run_benchmark, summarize, write_results

OUT = Path(__file__).resolve().parent / "results"
STEM = "csdi_pretrained"
CSDI_PUBLISHED = {"mae": 0.217, "crps": 0.238}  # CSDI Table 2 / 4, PhysioNet 10%: 5-fold mean, 100 samples


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def run_part(part: str, args) -> None:
    """Run one part seed by seed, writing each seed's results as soon as it is done."""
    common = dict(profile="converged", model="csdi-physionet", data_dir=args.data_dir, source="full", log=_log,
                  n_test=args.n_test, n_samples=args.n_samples)
    diffusion = ["diffusion-all", "diffusion-uniform", "diffusion-quadratic", "ddim-uniform", "learned-pretrained"]
    if part == "main":
        runs = [("", dict(steps=args.steps, n_train=args.n_train, methods=diffusion,
                          mask_options={"chain": args.chain, "mask_objective": "loss"}))]
    else:
        runs = [("imputation", dict(steps=args.steps, n_train=args.n_train, methods=["learned-pretrained"],
                                    mask_options={"chain": args.chain, "mask_objective": "imputation"})),
                ("finetune", dict(steps=args.finetune_steps or None, n_train=args.n_train_finetune,
                                  methods=["learned-finetune"],
                                  mask_options={"chain": args.chain, "mask_objective": "loss"}))]
        runs = [r for r in runs if r[1]["steps"]]
    for i, seed in enumerate(int(s) for s in args.seeds.split(",")):
        for label, kwargs in runs:
            if part == "main" and i == 0:  # the classical baselines do not depend on the seed: once
                kwargs = {**kwargs, "methods": diffusion + args.baselines.split(",")}
            res = run_benchmark("physionet", seeds=[seed], **kwargs, **common)
            if label == "imputation":
                res.rows["method"] = "learned-imputation"
                for m in res.learned_masks:
                    m["method"] = "learned-imputation"
            res.metadata["part"] = f"{part}:{label}" if label else part
            res.metadata["script_command"] = "python " + " ".join(sys.argv)
            out = OUT / f"{STEM}_{part}{'_' + label if label else ''}_seed{seed}"
            paths = write_results(res, out, command=res.metadata["script_command"], plot=False)
            _log(f"wrote {paths}")


def _load_rows() -> tuple[pd.DataFrame, list[dict]]:
    frames, metas = [], []
    for path in sorted(OUT.glob(f"{STEM}_*/bench_physionet10_converged.json")):
        payload = json.loads(path.read_text())
        frames.append(pd.DataFrame(payload["rows"]))
        metas.append({"file": str(path.relative_to(OUT)), **{k: payload["metadata"].get(k) for k in (
            "script_command", "commit", "created", "wall_seconds", "mask_options", "seeds", "machine")},
            "n_test": payload["metadata"]["task"]["n_test"], "n_train": payload["metadata"]["task"]["n_train_series"],
            "n_samples": payload["metadata"]["profile"]["n_samples"]})
    if not frames:
        raise SystemExit(f"no results under {OUT}/{STEM}_*")
    return pd.concat(frames, ignore_index=True), metas


def _subset_difficulty(n_test: int) -> list[tuple[int, dict]]:
    """Linear interpolation's MAE / CRPS on the first ``n_test`` test stays and on the whole test fold."""
    from tsimpute.benchmark import Baseline, build_task, get_profile
    from tsimpute.metrics import evaluate

    out = []
    for n in (n_test, None):
        task = build_task("physionet", get_profile("converged").replace(n_test=n, n_train=16), source="full",
                          statistics="csdi")
        base = Baseline("interpolate")
        base.fit(task.train_rows)
        out.append((len(task.test_given), evaluate(base.predict(task.test_given)[None], task.target, task.eval_mask)))
    return out


def report() -> None:
    rows, metas = _load_rows()
    s = summarize(rows)
    full = s[(s["method"] == "diffusion-all")].iloc[0]
    lines = [
        "# CSDI's published PhysioNet network in tsimpute: 50-step accuracy and step subsets", "",
        "The CSDI authors' trained PhysioNet 2012 network (shipped with tsimpute, `Imputer.from_csdi()`), "
        "evaluated on fold 0's test stays of set-a (the stays it was not trained on), 10% of the observed "
        "values held out (CSDI's targets, seed 1), CSDI's normalisation. MAE and CRPS (CSDI's quantile CRPS) "
        "in z-score units as CSDI reports them. No GPU: a shared, loaded 2-core CPU (see Machine below; torch "
        "CPU), so the sizes are small and wall times are noisy (other jobs ran on the same cores).", "",
        "## Runs", "",
    ]
    for m in metas:
        lines.append(f"- `{m['file']}`: `{m['script_command']}`; commit {m['commit']}; {m['n_test']} test stays, "
                     f"{m['n_samples']} samples, seeds {m['seeds']}, mask learned over {m['n_train']} training "
                     f"stays; mask options {m['mask_options']}; {m['wall_seconds']:.0f} s; {m['created']}")
    machine = metas[0].get("machine") or {}
    lines += ["", f"Machine: {json.dumps(machine)}", ""]

    lines += ["## 50 steps against CSDI's published figures", "",
              "| | MAE | CRPS |", "|---|---|---|",
              f"| tsimpute, CSDI's weights, 50 steps (mean ± sd over {int(full['n_seeds'])} seeds) | "
              f"{full['mae']:.4f} ± {full['mae_std']:.4f} | {full['crps']:.4f} ± {full['crps_std']:.4f} |",
              f"| CSDI paper (5-fold mean, 100 samples, all 800 test stays per fold) | {CSDI_PUBLISHED['mae']} | "
              f"{CSDI_PUBLISHED['crps']} |",
              f"| difference | {full['mae'] - CSDI_PUBLISHED['mae']:+.4f} | "
              f"{full['crps'] - CSDI_PUBLISHED['crps']:+.4f} |",
              ""]

    lines += ["How hard is the subset? Linear interpolation (deterministic) on the evaluated test stays and on "
              "all of fold 0's test stays:", "", "| test stays | interpolation MAE | interpolation CRPS |",
              "|---|---|---|"]
    for n, m in _subset_difficulty(int(metas[0]["n_test"])):
        lines.append(f"| {n} | {m['mae']:.4f} | {m['crps']:.4f} |")
    lines.append("")

    lines += ["## Step subsets on the same weights", "",
              "CRPS ratio = CRPS / CRPS of the 50-step chain of the same seed, mean over seeds. "
              "`learn_s` is the mask-learning wall time (per mask), `impute_s` the sampling wall time of all "
              "test stays x samples.", "",
              "| method | steps | NFE | seeds | MAE | CRPS | CRPS / 50-step | learn_s | impute_s |",
              "|---|---|---|---|---|---|---|---|---|"]
    base = rows[rows["method"] == "diffusion-all"].set_index("seed")["crps"]
    ratio = rows.assign(ratio=rows["crps"] / rows["seed"].map(base)).groupby(["method", "steps"])["ratio"]
    r_mean, r_std = ratio.mean(), ratio.std(ddof=0)
    for _, r in s.iterrows():
        key = (r["method"], r["steps"])
        rr = f"{r_mean[key]:.3f} ± {r_std[key]:.3f}" if r["nfe"] > 0 else ""
        nfe = int(r["steps"])  # network calls per sample: one per kept step
        lines.append(
            f"| {r['method']} | {int(r['steps']) or '-'} | {nfe} | {int(r['n_seeds'])} | {r['mae']:.4f} ± "
            f"{r['mae_std']:.4f} | {r['crps']:.4f} ± {r['crps_std']:.4f} | {rr} | {r['learn_seconds']:.0f} | "
            f"{r['impute_seconds']:.0f} |")

    lines += ["", "## Goals", ""]
    fixed = ("diffusion-uniform", "diffusion-quadratic", "ddim-uniform")
    learned = [m for m in ("learned-pretrained", "learned-finetune", "learned-imputation") if m in set(s["method"])]
    for k, tol in ((10, 0.02), (5, 0.02), (3, 0.05)):
        for m in learned:
            if (m, k) in r_mean:
                ok = r_mean[(m, k)] <= 1 + tol
                lines.append(f"- {m}, {k} steps within {tol:.0%} of the 50-step CRPS: "
                             f"{'met' if ok else 'missed'} (ratio {r_mean[(m, k)]:.3f})")
    for k in (3, 2):
        best = [(r_mean[(f, k)], f) for f in fixed if (f, k) in r_mean]
        if not best:
            continue
        b, bname = min(best)
        bsd = r_std[(bname, k)]
        for m in learned:
            if (m, k) in r_mean:
                gap = b - r_mean[(m, k)]
                beyond = gap > r_std[(m, k)] + bsd
                lines.append(f"- {m}, {k} steps better than every fixed subset beyond seed noise: "
                             f"{'met' if beyond else 'missed'} (ratio {r_mean[(m, k)]:.3f} vs best fixed "
                             f"{bname} {b:.3f}, sds {r_std[(m, k)]:.3f} / {bsd:.3f})")
    masks = []
    for path in sorted(OUT.glob(f"{STEM}_*/bench_physionet10_converged.json")):
        masks += json.loads(path.read_text()).get("learned_masks", [])
    if masks:
        lines += ["", "## Learned masks (kept steps, 0-based)", ""]
        for m in masks:
            lines.append(f"- {m['method']} k={m['steps']} seed {m['seed']}: {m['kept_steps']}")
    (OUT / f"{STEM}.md").write_text("\n".join(lines) + "\n")
    s.to_csv(OUT / f"{STEM}_summary.csv", index=False)
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("main", "extras", "report"))
    ap.add_argument("--steps", default="50,10,5,3,2")
    ap.add_argument("--n-test", type=int, default=32)
    ap.add_argument("--n-samples", type=int, default=10)
    ap.add_argument("--n-train", type=int, default=320)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--chain", default="respaced")
    ap.add_argument("--finetune-steps", default="3,2", help="empty: no fine-tuned masks")
    ap.add_argument("--baselines", default="interpolate,mean,knn,iterative")
    ap.add_argument("--n-train-finetune", type=int, default=64)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    if args.part == "report":
        report()
    else:
        np.seterr(all="ignore")
        run_part(args.part, args)


if __name__ == "__main__":
    main()
