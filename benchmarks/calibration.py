"""Calibration of the samplers at few steps: coverage of the sample bands against the DDPM variance, DDIM's eta,
the chain (respaced / masked) and antithetic sampling, on CSDI's published PhysioNet network.

Fold 0's first ``--n-test`` test stays of PhysioNet 2012 set-a, 10% of the observed values held out (CSDI's
targets, seed 1, CSDI's normalisation: the same task as ``benchmarks/csdi_pretrained.py``), z-score units. For
every setting, ``--n-samples`` independent samples (``Imputer.sample``) give MAE (median), CSDI's quantile
CRPS, the coverage of the central 50% and 90% bands (share of hidden values inside them) and the mean widths
of those bands. Settings with ``antithetic`` draw their samples in antithetic pairs, as ``Imputer.transform``
and ``Imputer.predict_quantiles`` do (their coverage is read with that in mind: pairs are not independent).

The DDPM ``variance`` is the estimator's ``Imputer(variance=...)`` (the results were first measured with it
passed to :func:`tsimpute.inference.impute_windows` directly, the same arithmetic).

Usage::

    python benchmarks/calibration.py --n-test 16 --n-samples 20 --threads 1
    python benchmarks/calibration.py --report   # rewrite the markdown from the JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results"
STEM = "calibration_samplers"


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def settings_grid(steps: list[int], variances: list[float], etas: list[float], masked_variances: list[float],
                  antithetic_variances: list[float], full_variances: list[float]) -> list[dict]:
    """The settings measured at each step count (50 steps: the full chain, where respaced = masked, with the
    DDPM variances ``full_variances`` only)."""
    grid = []
    for k in steps:
        if k == 50:
            grid += [dict(steps=k, chain="respaced", sampler="ddpm", variance=v, eta=0.0, antithetic=False)
                     for v in full_variances]
            continue
        for chain in ("respaced", "masked"):
            vs = variances if chain == "respaced" else masked_variances
            grid += [dict(steps=k, chain=chain, sampler="ddpm", variance=v, eta=0.0, antithetic=False) for v in vs]
        # DDIM eta=1 is the DDPM update with variance 0 (tests/test_samplers.py): not repeated
        grid += [dict(steps=k, chain="respaced", sampler="ddim", variance=0.0, eta=e, antithetic=False)
                 for e in etas if e != 1.0]
        grid += [dict(steps=k, chain="respaced", sampler="ddpm", variance=v, eta=0.0, antithetic=True)
                 for v in antithetic_variances]
    return grid


def label(s: dict) -> str:
    name = f"DDIM eta={s['eta']:g}" if s["sampler"] == "ddim" else f"DDPM v={s['variance']:g}"
    return f"{name}, {s['chain']}" + (", antithetic" if s["antithetic"] else "")


def score(samples: np.ndarray, task) -> dict:
    from tsimpute.metrics import band_width, coverage, crps_quantile, mae

    s = task.to_metric(task.windows(samples))
    t, m = task.target, task.eval_mask
    return {
        "mae": mae(s, t, m), "crps": crps_quantile(s, t, m),
        "cover50": coverage(s, t, m, 0.5), "cover90": coverage(s, t, m, 0.9),
        "width50": band_width(s, m, 0.5), "width90": band_width(s, m, 0.9),
    }


def run(args) -> dict:
    from tsimpute import Imputer
    from tsimpute.benchmark import build_task, get_profile
    from tsimpute.benchmark.report import git_revision, machine_info
    from tsimpute.inference import tune_cpu_allocator
    from tsimpute.precision import resolve_precision
    from tsimpute.pretrained import csdi_physionet_scaler

    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    np.seterr(all="ignore")
    steps = [int(k) for k in args.steps.split(",")]
    floats = lambda text: [float(x) for x in text.split(",") if x != ""]  # noqa: E731
    grid = settings_grid(steps, floats(args.variances), floats(args.etas), floats(args.masked_variances),
                         floats(args.antithetic_variances), floats(args.full_variances))
    task = build_task("physionet", get_profile("converged").replace(n_test=args.n_test, n_train=16),
                      data_dir=args.data_dir, source="full", statistics="csdi")
    mean, _ = csdi_physionet_scaler()
    k = len(task.test_frame.columns)
    imp = Imputer.from_csdi(mean=np.zeros(k), scale=np.ones(k), n_samples=args.n_samples,
                            target_strategy=task.target_strategy, inference_batch_size=16, device="cpu", verbose=False,
                            random_state=args.seed)
    out = {
        "command": "python " + " ".join(sys.argv),
        "commit": git_revision(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info("cpu"),
        "precision": f"{imp.precision} (resolved: {resolve_precision(imp.precision, 'cpu')})",
        "task": task.info,
        "n_samples": args.n_samples,
        "seed": args.seed,
        "rows": [],
    }
    t_all = time.perf_counter()
    for s in grid:
        imp.set_params(sampler=s["sampler"], eta=s["eta"], chain=s["chain"], variance=s["variance"],
                       step_selection="all" if s["steps"] == 50 else "uniform", target_steps=min(s["steps"], 50))
        kept = imp.inference_steps().tolist()
        t0 = time.perf_counter()
        samples = imp.sample(task.test_frame, args.n_samples, antithetic=s["antithetic"])
        wall = time.perf_counter() - t0
        row = {**s, "setting": label(s), "kept_steps": kept, "wall_s": round(wall, 2),
               "terminal_alpha_bar": imp.inference_chain().terminal_alpha_cumprod, **score(samples, task)}
        out["rows"].append(row)
        _log(f"{s['steps']:>2} steps {row['setting']:<36} MAE {row['mae']:.4f} CRPS {row['crps']:.4f} "
             f"50% {row['cover50']:.3f} 90% {row['cover90']:.3f} w90 {row['width90']:.3f} ({wall:.0f} s)")
        out["wall_s"] = round(time.perf_counter() - t_all, 1)
        write(out, args.out)
    return out


def _markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# Calibration of the samplers at few steps (CSDI's published PhysioNet network)", "",
        f"Command: `{res['command']}`  ",
        f"Commit: {res['commit']}  ",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores shared with other jobs, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s), sampling precision `{res['precision']}`; total wall time "
        f"{res.get('wall_s', 0):.0f} s. Created {res['created']}.", "",
        f"Task: fold 0's first {res['task']['n_test']} test stays of PhysioNet 2012 set-a, 10% of the observed "
        f"values held out ({res['task']['n_eval']} hidden values; CSDI's targets, split seed 1, CSDI's "
        f"normalisation), z-score units; {res['n_samples']} samples per setting, sampling seed {res['seed']} "
        "(every setting starts from the same generator state). Uniform kept steps. MAE of the (lower) sample "
        "median, CRPS = CSDI's quantile CRPS; `50%`/`90%` = share of hidden values inside the central band of "
        "the samples (linear-interpolation quantiles; with n samples a calibrated ensemble covers slightly "
        "less than nominal); `w50`/`w90` = mean band widths. `v` = DDPM variance, log-linear from beta-tilde "
        "(0) to beta (1). DDIM eta=1 is DDPM v=0 exactly (not repeated). Antithetic rows are what "
        "`transform`/`predict_quantiles` sample (pairs, not independent).", "",
        "| steps | setting | MAE | CRPS | CRPS / v=0 | 50% | 90% | w50 | w90 | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {r["steps"]: r["crps"] for r in res["rows"]
            if r["sampler"] == "ddpm" and r["variance"] == 0 and r["chain"] == "respaced" and not r["antithetic"]}
    for r in res["rows"]:
        ratio = f"{r['crps'] / base[r['steps']]:.3f}" if r["steps"] in base else ""
        lines.append(f"| {r['steps']} | {r['setting']} | {r['mae']:.4f} | {r['crps']:.4f} | {ratio} | "
                     f"{100 * r['cover50']:.1f}% | {100 * r['cover90']:.1f}% | {r['width50']:.3f} | "
                     f"{r['width90']:.3f} | {r['wall_s']:.0f} |")
    n = res["n_samples"]
    aim = {lv: lv * (n - 1) / (n + 1) for lv in (0.5, 0.9)}
    lines += [
        "", "## Best calibrated setting per step count", "",
        "Among independent-sample settings whose CRPS is at most 2% above DDPM v=0 (respaced) at the same step "
        f"count. A calibrated ensemble of n={n} samples covers, in expectation, level x (n-1)/(n+1) with these "
        f"bands: {100 * aim[0.5]:.1f}% (50% band) and {100 * aim[0.9]:.1f}% (90% band); 'nominal' picks the "
        "setting closest to 50% / 90%, 'n-sample' the one closest to these expected values.", "",
        "| steps | 90% band, nominal | 90% band, n-sample | 50% band, nominal | 50% band, n-sample |",
        "|---|---|---|---|---|",
    ]

    def pick(rows, key, target):
        r = min(rows, key=lambda r: abs(r[key] - target))
        return f"{r['setting']} ({100 * r[key]:.1f}%, CRPS {r['crps']:.4f})"

    for k in sorted(base, reverse=True):
        ok = [r for r in res["rows"] if r["steps"] == k and not r["antithetic"] and r["crps"] <= 1.02 * base[k]]
        if ok:
            lines.append(f"| {k} | {pick(ok, 'cover90', 0.9)} | {pick(ok, 'cover90', aim[0.9])} | "
                         f"{pick(ok, 'cover50', 0.5)} | {pick(ok, 'cover50', aim[0.5])} |")
    return "\n".join(lines) + "\n"


def write(res: dict, stem: str) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (OUT / f"{stem}.md").write_text(_markdown(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-test", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=50)
    ap.add_argument("--steps", default="50,10,5,3")
    ap.add_argument("--variances", default="0,0.5,1", help="DDPM variances on the respaced chain")
    ap.add_argument("--masked-variances", default="0,1", help="DDPM variances on the masked chain")
    ap.add_argument("--etas", default="0,0.5,1")
    ap.add_argument("--antithetic-variances", default="0", help="DDPM variances also sampled in antithetic pairs")
    ap.add_argument("--full-variances", default="0,1", help="DDPM variances at 50 steps (the full chain)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=STEM, help="file stem under benchmarks/results")
    ap.add_argument("--report", action="store_true", help="rewrite the markdown from the JSON")
    args = ap.parse_args()
    if args.report:
        write(json.loads((OUT / f"{args.out}.json").read_text()), args.out)
        return
    run(args)


if __name__ == "__main__":
    main()
