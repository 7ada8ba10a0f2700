"""Split-conformal recalibration of the spread (``Imputer(calibration="conformal")`` / ``Imputer.calibrate``)
against the sampler's own spread, on data the calibration was not fitted on.

``trained``: ``Imputer(calibration="conformal")`` with every other default, fitted on ``--dataset``: the
README's quick-start data (scored on its gaps against the complete series), one Beijing station (``--hide`` of
its observed cells hidden before the fit, scored on them), or PM2.5 (CSDI's protocol: fitted on the training
months, scored on CSDI's hidden targets of ``--n-test`` test windows). The calibration is fitted in ``fit`` on
observed values hidden from the validation windows. ``physionet``: CSDI's published network on the first
``--n-test`` fold-0 test stays of PhysioNet-10% (CSDI's hidden targets), calibrated on ``--n-calib`` fold-0
training stays, at each uniform step count and each ``--learned`` mask. Both sample the same seeds with and
without the calibration, so the rows differ by it alone. ``trained`` also takes ``--save`` / ``--load`` (one
fit, scored again without refitting; with ``--refit-calibration`` its calibration is fitted again as ``fit`` did, with
this version's code) and ``--calibrate-on-eval`` (a further row calibrated by
``Imputer.calibrate`` on the observed values of the frame being imputed, whose scored cells it never sees).

    python benchmarks/conformal.py trained --dataset quickstart --seed 0 \\
        --out benchmarks/results/conformal_quickstart/seed0.json
    python benchmarks/conformal.py physionet --n-test 64 --n-calib 64 --steps 10,5,3 \\
        --learned loss10=10,12,13,29,30,31,42,43,44,49 --out benchmarks/results/conformal_physionet.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.utils import check_random_state

from tsimpute import Imputer
from tsimpute.benchmark.baselines import make_baseline
from tsimpute.benchmark.report import run_script
from tsimpute.benchmark.saits import Saits
from tsimpute.metrics import CALIBRATION_LEVELS, evaluate


def _row(name: str, samples: np.ndarray, target: np.ndarray, mask: np.ndarray, seconds: float) -> dict:
    """Scores of ``samples``; a single sample (a deterministic method) has no band: coverage and width NaN."""
    row = {"method": name, **evaluate(samples, target, mask, median="midpoint", levels=CALIBRATION_LEVELS),
           "seconds": seconds}
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def _trained_data(args):
    """``(X_fit, X_eval, to_rows, truth, mask, units)`` of the ``trained`` experiment's ``--dataset``."""
    if args.dataset == "quickstart":
        from tsimpute.synthetic import correlated_sinusoids

        X, complete = correlated_sinusoids(n_rows=600, n_features=4, missing_rate=0.2, seed=args.seed)
        return X, X, lambda s: s, complete.to_numpy(), X.isna().to_numpy(), "data units"
    if args.dataset == "beijing":
        from tsimpute.datasets import load_beijing_multisite

        df = load_beijing_multisite(args.station)
        values = df.to_numpy()
        hidden = ~np.isnan(values) & (np.random.default_rng(args.seed).random(values.shape) < args.hide)
        X = df.mask(hidden)
        return X, X, lambda s: s, values, hidden, "raw units"
    from tsimpute.benchmark.profiles import get_profile
    from tsimpute.benchmark.tasks import build_task

    task = build_task("pm25", get_profile("quick").for_dataset("pm25").replace(n_test=args.n_test))
    return (task.train_frame, task.test_frame, lambda s: task.to_metric(task.windows(s)), task.target,
            task.eval_mask, task.units)


def _refit_calibration(imp: Imputer, X_fit, value_bins: int) -> None:
    """Fit ``imp``'s spread calibration again as its ``fit`` did (the same held-out windows, drawn from the same
    seed), with this version's calibration and ``value_bins`` value ranges per feature; ``imp`` was fitted with
    an integer ``random_state``."""
    if not isinstance(imp.random_state, int):
        raise SystemExit("--refit-calibration needs an imputer fitted with an integer random_state")
    fit_seed = int(check_random_state(imp.random_state).randint(0, 2**31 - 1, size=2)[0])  # as fit draws it
    frame, _ = imp._validated_frame(X_fit, reset=False)
    fit_calibration = imp._fit_calibration
    imp._fit_calibration = lambda data, n=None: fit_calibration(data, n, value_bins)
    try:
        imp._after_fit(imp._fit_data((frame, imp.window_, None), np.random.default_rng(fit_seed)))
    finally:
        del imp._fit_calibration


def trained(args) -> dict:
    """Every default of ``Imputer`` with ``calibration="conformal"``, fitted on ``--dataset``; the same samples
    scored with the sampler's spread and with the fitted calibration, on cells the fit never saw."""
    X_fit, X_eval, to_rows, truth, mask, units = _trained_data(args)
    t0 = time.perf_counter()
    if args.load is not None:  # an imputer written by --save: no fit
        imp, fit_s = Imputer.load(args.load), None
        if args.refit_calibration:
            t0 = time.perf_counter()
            _refit_calibration(imp, X_fit, args.value_bins)
            print(f"calibration fitted again in {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        imp = Imputer(**{"random_state": args.seed, "calibration": "conformal", "verbose": False, **args.params})
        imp.fit(X_fit)
        fit_s = time.perf_counter() - t0
        if args.save is not None:
            imp.save(args.save)
    fitted = imp.calibration_
    if fitted is None:
        raise SystemExit(f"{args.load or 'the fitted imputer'}: no spread calibration (calibration='conformal' "
                         "was not set)")
    calibrations = [("sampler spread", None), ("conformal", fitted)]
    on_eval = None
    if args.calibrate_on_eval:  # the observed values of the frame being imputed (never its scored cells)
        t0 = time.perf_counter()
        on_eval = imp.calibrate(X_eval, n_samples=args.n_samples).calibration_
        print(f"calibrated on the imputed frame in {time.perf_counter() - t0:.0f} s", flush=True)
        calibrations.append(("conformal, fitted on the imputed frame", on_eval))
    rows = []
    for name, cal in calibrations:
        imp.calibration_ = cal
        t0 = time.perf_counter()
        samples = to_rows(imp.sample(X_eval, n_samples=args.n_samples, antithetic=True))
        rows.append(_row(name, samples, truth, mask, time.perf_counter() - t0))
    imp.calibration_ = fitted
    return {"dataset": args.dataset, "params": args.params, "units": units, "fit_seconds": fit_s,
            "fit_steps": imp.history_.steps if hasattr(imp, "history_") else None,
            "n_scored": int(np.asarray(mask).sum()), "factors": fitted.factors.tolist(),
            "counts": fitted.counts.tolist(), "value_edges": fitted.value_edges.tolist(),
            "eval_factors": None if on_eval is None else on_eval.factors.tolist(),
            "rows": rows}


def physionet(args) -> dict:
    from tsimpute.benchmark.profiles import get_profile
    from tsimpute.benchmark.tasks import build_task

    profile = get_profile("converged").for_dataset("physionet").replace(n_train=args.n_calib, n_test=args.n_test)
    task = build_task("physionet", profile, statistics="csdi")
    k = task.target.shape[-1]
    rows = []
    chains = [(str(steps), "all" if steps == 50 else "uniform", steps, None) for steps in args.steps]
    chains += [(name, "learned", len(kept), kept) for name, kept in args.learned]
    for label, selection, steps, kept in chains:
        imp = Imputer.from_csdi(mean=np.zeros(k), scale=np.ones(k), random_state=args.seed, verbose=False,
                                n_samples=args.n_samples, step_selection="uniform" if kept else selection,
                                target_steps=steps)
        if kept is not None:  # a mask learned earlier (its kept steps), as learn_steps would leave it
            imp.set_params(step_selection="learned")._set_step_mask(np.asarray(kept, dtype=np.int64))
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
            rows.append({"chain": label, "steps": steps, "kept_steps": imp.inference_steps().tolist(),
                         "calibration_seconds": calib_s if name == "conformal" else 0.0, **row})
    if args.baselines and args.baseline_train != args.n_calib:  # the same test stays, more training stays
        wider = build_task("physionet", profile.replace(n_train=args.baseline_train), statistics="csdi")
        if not np.array_equal(wider.target, task.target, equal_nan=True):
            raise RuntimeError("the baselines' task has other test stays")
        task = wider
    for name in args.baselines:  # deterministic: one "sample", no band
        t0 = time.perf_counter()
        if name == "saits":  # PyPOTS' SAITS with the converged profile's (PyPOTS' PhysioNet) settings
            model = Saits.from_profile(profile, task.window, seed=args.seed).fit(task.train_frame)
        else:
            model = make_baseline(name, max_rows=20_000).fit(task.train_rows)
        point = model.predict(task.test_given)
        rows.append({"chain": None, "steps": None,
                     **_row(name, task.to_metric(point[None]), task.target, task.eval_mask,
                            time.perf_counter() - t0)})
    return {"task": task.info, "rows": rows}


def _learned(text: str) -> tuple[str, list[int]]:
    name, _, kept = text.partition("=")
    return name, [int(v) for v in kept.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=("trained", "physionet"))
    parser.add_argument("--dataset", choices=("quickstart", "pm25", "beijing"), default="quickstart",
                        help="trained: the data the default Imputer is fitted and scored on")
    parser.add_argument("--params", type=json.loads, default={},
                        help="trained: Imputer parameters as JSON (default: every default)")
    parser.add_argument("--station", default="Aotizhongxin", help="trained, beijing: the station")
    parser.add_argument("--hide", type=float, default=0.1, help="trained, beijing: share of observed cells hidden")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-samples", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument("--n-calib", type=int, default=64, help="training stays the calibration hides values of")
    parser.add_argument("--n-calib-samples", type=int, default=50, help="as many as the evaluation draws")
    parser.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",") if v], default=[50, 10, 5, 3])
    parser.add_argument("--baselines", type=lambda s: [v for v in s.split(",") if v], default=[],
                        help="physionet: deterministic baselines scored on the same stays, e.g. "
                             "interpolate,knn,mean,first-guess,saits")
    parser.add_argument("--baseline-train", type=int, default=64,
                        help="physionet: training stays the baselines are fitted on")
    parser.add_argument("--learned", action="append", default=[], type=_learned,
                        help="physionet: NAME=k1,k2,... a learned mask's kept steps (0-based), repeatable")
    parser.add_argument("--save", type=Path, default=None, help="trained: write the fitted Imputer there")
    parser.add_argument("--load", type=Path, default=None,
                        help="trained: score an Imputer written by --save instead of fitting one")
    parser.add_argument("--refit-calibration", action="store_true",
                        help="trained, with --load: fit the calibration again as fit did (its held-out windows and "
                             "seeds) with this version's tsimpute, and score that")
    parser.add_argument("--value-bins", type=int, default=1,
                        help="trained, --refit-calibration: value ranges per feature with factors of their own")
    parser.add_argument("--calibrate-on-eval", action="store_true",
                        help="trained: also calibrate on the observed values of the frame being imputed "
                             "(Imputer.calibrate(X_eval); its scored cells are hidden from it) and score that")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.refit_calibration and args.load is None:
        parser.error("--refit-calibration goes with --load")
    run_script("benchmarks/conformal.py", args,
               lambda a: {"experiment": a.experiment, **(trained(a) if a.experiment == "trained" else physionet(a))})


if __name__ == "__main__":
    main()
