"""Learning curve of the default ``Imputer``: held-out accuracy of the kept network against wall-clock minutes.

One fit of ``Imputer(max_time=60 * --minutes, max_steps=None, patience=None)`` with every other default (or
the values given by ``--set NAME=VALUE``, for an ablation of the training recipe), on
every training series of the benchmark task (``physionet``: PhysioNet 2012 set-a fold 0, 10% of the observed
values hidden, CSDI's normalisation; ``pm25``: CSDI's PM2.5 protocol). ``Imputer.fit(..., callback=...)``
records the weights the checkpoint score keeps at each of ``--marks`` (minutes since the start of training,
checkpoint evaluations included); after training each recorded network imputes the test windows with the
imputer's sampling defaults (10 uniform steps) and is scored: MAE, CRPS, and coverage and width of the 50% and
90% central bands. Beside the curve, on the same test windows: the fitted first guess alone, linear
interpolation, CSDI's published network (PhysioNet only, the same sampling settings) and, with ``--baselines``
naming it, SAITS.

    python benchmarks/learning_curve.py physionet --minutes 60 --n-test 200 --threads 1 \\
        --out benchmarks/results/learning_curve_physionet.json
    python benchmarks/learning_curve.py pm25 --minutes 30 --threads 1 --out benchmarks/results/learning_curve_pm25.json

The JSON holds every row, the checkpoint scores of the whole fit, the command, commit and machine; a PNG of the
curve is written beside it when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tsimpute import Imputer
from tsimpute.benchmark.baselines import make_baseline
from tsimpute.benchmark.profiles import get_profile
from tsimpute.benchmark.report import add_run_arguments, run_script
from tsimpute.benchmark.tasks import build_task
from tsimpute.metrics import evaluate


def _task(args):
    if args.dataset == "physionet":
        profile = get_profile("converged").for_dataset("physionet").replace(n_train=None, n_test=args.n_test)
        return build_task("physionet", profile, data_dir=args.data_dir, statistics="csdi")
    profile = get_profile("quick").for_dataset("pm25").replace(n_test=args.n_test)
    return build_task("pm25", profile, data_dir=args.data_dir)


def _score(name: str, samples: np.ndarray, task, **extra) -> dict:
    """Scores of samples ``(n, N, L, K)`` in the task's metric units; one sample: no band."""
    scores = evaluate(task.to_metric(samples), task.target, task.eval_mask, median="midpoint", levels=(0.5, 0.9))
    row = {"method": name, **scores, **extra}
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


class _Recorder:
    """A fit callback that keeps a copy of the kept weights when training passes each wall-clock mark."""

    def __init__(self, marks_s: list[float]):
        self.marks = sorted(marks_s)
        self.snapshots: list[dict] = []
        self.scores: list[tuple[int, float, float]] = []

    def __call__(self, history, kept) -> None:
        if history.valid_loss:
            self.scores.append((history.eval_steps[-1], history.eval_seconds[-1], history.valid_loss[-1]))
        while self.marks and history.seconds >= self.marks[0] and kept is not None:
            self.snapshots.append({"mark_s": self.marks.pop(0), "seconds": history.seconds, "step": history.steps,
                                   "best_step": history.best_step, "state": copy.deepcopy(kept)})


def run(args) -> dict:
    task = _task(args)
    rows = []
    for name in args.baselines:
        t0 = time.perf_counter()
        if name == "saits":
            from tsimpute.benchmark.saits import Saits

            model = Saits.from_profile(get_profile("converged"), task.window, seed=args.seed,
                                       target_strategy=task.target_strategy).fit(task.train_frame)
        else:
            model = make_baseline(name, max_rows=20_000).fit(task.train_rows)
        point = model.predict(task.test_given)
        rows.append(_score(name, point[None], task, seconds=time.perf_counter() - t0))
    if args.load or args.no_fit:
        return {"task": task.info, "rows": rows + [_score_loaded(path, task, args) for path in args.load or []]}
    params = {"window": task.window, "max_time": 60.0 * args.minutes, "max_steps": None, "epochs": None,
              "patience": None, "n_samples": args.n_samples, "random_state": args.seed, "verbose": args.verbose,
              **dict(args.set)}
    if args.warm_start:  # CSDI's published network, trained on with this recipe
        params = {**{k: v for k, v in params.items() if k != "window"}, "step_selection": "uniform",
                  "warm_start": True}
        imp = _published(task, **params)
    else:
        imp = Imputer(**params)
    recorder = _Recorder([60.0 * m for m in args.marks if m <= args.minutes])
    t0 = time.perf_counter()
    imp.fit(task.train_frame, callback=recorder)
    fit_s = time.perf_counter() - t0
    final = copy.deepcopy(imp.model_.state_dict())
    snapshots = recorder.snapshots + [{"mark_s": None, "seconds": imp.history_.seconds, "step": imp.history_.steps,
                                       "best_step": imp.history_.best_step, "state": final}]
    # the spread calibration (calibration="conformal") is fitted for the final network: earlier networks are
    # scored with their own spread, the final one with and without it
    calibration = getattr(imp, "calibration_", None)
    for snap in snapshots:
        imp.model_.load_state_dict(snap.pop("state"))
        label = "kept at the end" if snap["mark_s"] is None else f"kept at {snap['mark_s'] / 60:g} min"
        for calibrated in ((True, False) if calibration is not None and snap["mark_s"] is None else (False,)):
            imp.calibration_ = calibration if calibrated else None
            t0 = time.perf_counter()
            samples = imp.sample(task.test_frame, n_samples=args.n_samples, antithetic=True)
            name = f"diffusion, {label}" + (", uncalibrated" if calibration is not None and not calibrated else "")
            rows.append(_score(name, task.windows(samples), task, minutes=snap["seconds"] / 60,
                               sample_seconds=time.perf_counter() - t0, **snap))
    imp.model_.load_state_dict(final)
    imp.calibration_ = calibration
    if getattr(imp, "guess_history_", None) is not None:  # the learned guess alone: where the median starts
        rows.append(_score("learned first guess alone", _guess_windows(imp, task)[None], task,
                           minutes=imp.guess_history_.seconds / 60, step=imp.guess_history_.steps,
                           best_step=imp.guess_history_.best_step))
    if args.save is not None:
        imp.save(args.save)
    if args.dataset == "physionet" and not args.no_published:
        ref = _published(task, random_state=args.seed, verbose=args.verbose, n_samples=args.n_samples,
                         step_selection=imp.step_selection, target_steps=imp.target_steps, sampler=imp.sampler)
        t0 = time.perf_counter()
        samples = ref.sample(task.test_frame, n_samples=args.n_samples, antithetic=True)
        rows.append(_score("CSDI's published network", task.windows(samples), task,
                           sample_seconds=time.perf_counter() - t0))
    params.pop("verbose")
    guess = None if getattr(imp, "guess_history_", None) is None else dataclasses.asdict(imp.guess_history_)
    return {"task": task.info, "params": params, "fit_seconds": fit_s, "fit_steps": imp.history_.steps,
            "guess_history": guess,
            "checkpoint_metric": imp.checkpoint_metric, "checkpoint_scores": recorder.scores,
            "steps": imp.inference_steps().tolist(), "rows": rows}


def _guess_windows(imp: Imputer, task) -> np.ndarray:
    """The fitted imputer's first guess of the test windows ``(N, L, K)``, in the task's model units."""
    cols = imp._modelled()
    mean, scale, frame = imp.mean_[cols], imp.scale_[cols], task.test_given[..., cols]
    given = ~np.isnan(frame)
    values = np.where(given, (frame - mean) / scale, 0.0)
    as_tensor = partial(torch.as_tensor, dtype=torch.float32, device=imp.device_)
    guess = imp.denoiser_.parameterization.base(as_tensor(values).transpose(1, 2), as_tensor(given).transpose(1, 2))
    out = np.full(task.test_given.shape, np.nan)
    out[..., cols] = guess.transpose(1, 2).cpu().numpy().astype(np.float64) * scale + mean
    return out


def _published(task, **params) -> Imputer:
    """CSDI's published PhysioNet network on the task's data (already in CSDI's z-units)."""
    k = task.target.shape[-1]
    return Imputer.from_csdi(mean=np.zeros(k), scale=np.ones(k), **params)


def _score_loaded(path: Path, task, args) -> dict:
    """Scores of an imputer written by ``--save``, sampled with ``--n-samples`` (and the sampling settings of
    ``--set``)."""
    imp = Imputer.load(path)
    imp.set_params(verbose=args.verbose, **dict(args.set))
    t0 = time.perf_counter()
    samples = imp.sample(task.test_frame, n_samples=args.n_samples, antithetic=True)
    return _score(f"loaded {path.name}", task.windows(samples), task, sample_seconds=time.perf_counter() - t0)


def _plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG", file=sys.stderr)
        return
    curve = [r for r in result["rows"] if "minutes" in r]
    flat = [r for r in result["rows"] if "minutes" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("mae", "crps"), strict=True):
        ax.plot([r["minutes"] for r in curve], [r[key] for r in curve], "o-", label="tsimpute, kept network")
        for r in flat:
            ax.axhline(r[key], ls="--", lw=1, color=f"C{1 + flat.index(r)}", label=r["method"])
        ax.set_xlabel("training minutes (wall clock)")
        ax.set_ylabel(key.upper())
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result['args']['dataset']}: learning curve of the default Imputer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _pct(value) -> str:
    """A share as a percentage cell ("-" when missing or not finite)."""
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _comparison(results: list[dict]) -> str:
    """One row per run (its ``--set`` parameters): optimizer steps, the kept step, and the final network's scores,
    under the deterministic rows of the first run."""
    lines = ["| recipe (`--set`) | minutes | optimizer steps (kept) | MAE | CRPS | 50% band holds | 90% band holds |",
             "|---|---|---|---|---|---|---|"]
    for r in results[0]["rows"]:
        if "minutes" not in r:
            lines.append(f"| {r['method']} | - | - | {r['mae']:.4f} | {r['crps']:.4f} | - | - |")
    for result in results:
        final = [r for r in result["rows"] if "minutes" in r][-1]
        recipe = ", ".join(f"{k}={v}" for k, v in result["args"].get("set", [])) or "defaults"
        if result["args"].get("warm_start"):
            recipe = f"warm start from CSDI's published network, {recipe}"
        lines.append(f"| {recipe} | {result['fit_seconds'] / 60:.1f} | {final['step']} ({final['best_step']}) | "
                     f"{final['mae']:.4f} | {final['crps']:.4f} | {_pct(final.get('cov50'))} | "
                     f"{_pct(final.get('cov90'))} |")
    commits = sorted({r["commit"][:7] for r in results})
    commands = [f"- `{r['command']}`" for r in results]
    return "\n".join([*lines, "", f"Commits: {', '.join(commits)}. Commands:", *commands]) + "\n"


def _param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` as an Imputer parameter; the value is read as JSON (numbers, null) or kept as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _markdown(result: dict) -> str:
    """The rows of a result as a Markdown table (minutes, optimizer steps, MAE, CRPS, band coverage)."""

    m = result["machine"]
    lines = [f"Command: `{result['command']}`; commit {result['commit']}; machine {m.get('cpu')}, "
             f"{m.get('cpu_count', m.get('cores'))} cores, {m.get('torch_threads')} torch thread(s); "
             f"fit {result['fit_seconds']:.0f} s, {result['fit_steps']} optimizer steps.", "",
             "| model | training minutes | optimizer step (kept) | MAE | CRPS | 50% band holds | 90% band holds |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        minutes = f"{r['minutes']:.1f}" if "minutes" in r else "-"
        step = f"{r['step']} ({r['best_step']})" if "step" in r else "-"
        lines.append(f"| {r['method']} | {minutes} | {step} | {r['mae']:.4f} | {r['crps']:.4f} | "
                     f"{_pct(r.get('cov50'))} | {_pct(r.get('cov90'))} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", choices=("physionet", "pm25"))
    parser.add_argument("--report", type=Path, default=None,
                        help="only write the PNG and Markdown table of an earlier run's JSON")
    parser.add_argument("--compare", type=Path, nargs="+", default=None, metavar="JSON",
                        help="only print a Markdown table comparing the final networks of earlier runs")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (max_time) in minutes")
    parser.add_argument("--marks", type=lambda s: [float(v) for v in s.split(",") if v],
                        default=[0, 5, 10, 20, 30, 45, 60], help="minutes at which the kept network is recorded")
    parser.add_argument("--n-test", type=int, default=200, help="test windows scored")
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--baselines", type=lambda s: [v for v in s.split(",") if v],
                        default=["first-guess", "interpolate"], help="deterministic rows (add saits for SAITS)")
    parser.add_argument("--no-published", action="store_true", help="skip CSDI's published network (PhysioNet)")
    parser.add_argument("--load", type=Path, nargs="+", default=None, metavar="FILE",
                        help="no training: score imputers written by --save (with --n-samples and --set) "
                             "beside the baselines")
    parser.add_argument("--no-fit", action="store_true", help="score the baselines only (no Imputer is fitted)")
    parser.add_argument("--save", type=Path, default=None, help="write the fitted Imputer there (Imputer.save)")
    parser.add_argument("--warm-start", action="store_true",
                        help="start from CSDI's published PhysioNet network (Imputer.from_csdi, warm_start=True)")
    parser.add_argument("--set", type=_param, action="append", default=[], metavar="NAME=VALUE",
                        help="an Imputer parameter in place of its default (repeatable), e.g. --set lr=1e-3")
    add_run_arguments(parser)
    args = parser.parse_args()
    if args.compare is not None:
        print(_comparison([json.loads(p.read_text()) for p in args.compare]), end="")
        return
    if args.report is not None:
        result = json.loads(args.report.read_text())
        _plot(result, args.report.with_suffix(".png"))
        args.report.with_suffix(".md").write_text(_markdown(result))
        return
    if args.dataset is None:
        parser.error("name a dataset (physionet or pm25), or --report FILE.json")
    if args.warm_start and args.dataset != "physionet":
        parser.error("--warm-start: published weights exist for physionet only")
    result = run_script("benchmarks/learning_curve.py", args, run)
    if args.out and not (args.load or args.no_fit):
        _plot(result, args.out.with_suffix(".png"))
        args.out.with_suffix(".md").write_text(_markdown(result))


if __name__ == "__main__":
    main()
