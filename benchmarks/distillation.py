"""Progressive distillation of CSDI's published PhysioNet network into few-call samplers (``Imputer.distill``).

The teacher is CSDI's network (``Imputer.from_csdi``) sampled by deterministic DDIM over ``--teacher-steps``
uniform steps. It is distilled round by round (e.g. 8 -> 4 -> 2 -> 1 calls) on ``--n-train`` fold-0 training
stays of PhysioNet 2012 set-a, within ``--max-time`` seconds in all (shared equally among the rounds), and every
student is scored on the first ``--n-test`` fold-0 test stays (10% of the observed values held out, CSDI's
targets and normalisation): MAE, CRPS, coverage and width of the 50% and 90% central bands, beside uniform
DDPM and DDIM on the undistilled network at the same numbers of calls, DDIM on the undistilled network over
each student's own steps (``ddim-student-steps``), the teacher, and the 50-step chain; with ``--n-calib``, the
teacher and every student again with their spread calibrated (``Imputer.calibrate``) on that many further
training stays that no student was distilled on. Every row samples the
same seed (DDIM's rows start from the same noise). ``--lr`` was not tuned: in a 12-step check of one round
on CSDI's network, Adam at 3e-5 and 1e-4 (with warm-up) lowered the loss and 3e-4 without warm-up raised it
thirtyfold.

    python benchmarks/distillation.py --n-test 64 --n-train 320 --teacher-steps 8 --calls 4,2,1 \\
        --max-time 3600 --n-samples 20 --out benchmarks/results/distillation_physionet.json

A smoke run (sizes too small to mean anything): ``--n-test 4 --n-train 8 --max-time 60 --n-samples 4``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tsimpute import Imputer
from tsimpute.benchmark.profiles import get_profile
from tsimpute.benchmark.report import add_run_arguments, run_script
from tsimpute.benchmark.tasks import build_task
from tsimpute.metrics import evaluate


def _score(name: str, imp: Imputer, task, n_samples: int, **extra) -> dict:
    """Sample the test stays with ``imp`` and score them; the row also holds the calls per sample and seconds."""
    t0 = time.perf_counter()
    raw, info = imp.sample(task.test_frame, n_samples=n_samples, antithetic=True, return_info=True)
    seconds = time.perf_counter() - t0
    scores = evaluate(task.to_metric(task.windows(raw)), task.target, task.eval_mask, median="midpoint",
                      levels=(0.5, 0.9))
    row = {"method": name, "calls": info.steps, "steps": imp.inference_steps().tolist(), "sampler": imp.sampler,
           **scores, "sample_seconds": seconds, **extra}
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "rounds"}, flush=True)
    return row


def _loss_curve(losses: list[float], seconds: float, bins: int = 20) -> list[dict]:
    """A round's training loss over its time: the median loss of each of ``bins`` equal runs of steps, at the
    time of the run's last step (steps take about the same time)."""
    n = len(losses)
    if n == 0:
        return []
    edges = np.linspace(0, n, min(bins, n) + 1).round().astype(int)
    return [{"seconds": seconds * int(b) / n, "steps": int(b), "median_loss": float(np.median(losses[a:b]))}
            for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def run(args) -> dict:
    saved = None  # a student saved by an earlier run (--save-dir) continues the distillation
    if args.start_from is not None:  # read first: a wrong file or --calls fails before the data are built
        saved = Imputer.load(args.start_from).set_params(random_state=args.seed, verbose=args.verbose,
                                                         n_samples=args.n_samples)
        if any(c >= len(saved.inference_steps()) for c in args.calls):
            raise SystemExit(f"--calls must all be below the {len(saved.inference_steps())} calls of "
                             f"{args.start_from}")
    profile = get_profile("converged").for_dataset("physionet").replace(n_train=args.n_train + args.n_calib,
                                                                         n_test=args.n_test)
    task = build_task("physionet", profile, data_dir=args.data_dir, statistics="csdi")
    k = task.target.shape[-1]
    stays = task.train_frame.index.get_level_values(0).unique()
    train = task.train_frame.loc[stays[:args.n_train]]
    held_out = task.train_frame.loc[stays[args.n_train:]]  # training stays the students never saw

    def calibrated(name: str, imp: Imputer) -> list[dict]:
        """``imp``'s row with its spread calibrated on the ``--n-calib`` held-out stays (none: no row); ``imp``
        is left uncalibrated, as the next rows and rounds use it."""
        if not args.n_calib:
            return []
        t0 = time.perf_counter()
        imp.calibrate(held_out, n_samples=args.n_samples)
        seconds = time.perf_counter() - t0
        try:
            return [_score(f"{name}, conformal", imp, task, args.n_samples, calibration_seconds=seconds)]
        finally:
            imp.calibration_ = None

    def csdi(**params) -> Imputer:  # the task's frames are already in CSDI's units
        return Imputer.from_csdi(mean=np.zeros(k), scale=np.ones(k), random_state=args.seed, verbose=args.verbose,
                                 n_samples=args.n_samples, **params)

    rows = []
    teacher = saved or csdi(step_selection="uniform", target_steps=args.teacher_steps, sampler="ddim")
    if not args.skip_baselines:
        rows.append(_score("ddpm-50", csdi(step_selection="all"), task, args.n_samples))
        for calls in sorted({len(teacher.inference_steps()), *args.calls}, reverse=True):
            for sampler in ("ddpm", "ddim"):
                rows.append(_score(f"{sampler}-uniform", csdi(step_selection="uniform", target_steps=calls,
                                                              sampler=sampler), task, args.n_samples))
        rows += calibrated("teacher (saved student)" if saved else "teacher (ddim-uniform)", teacher)
    student, spent = teacher, 0.0
    rounds = len(set(args.calls))
    for i, calls in enumerate(sorted(set(args.calls), reverse=True)):
        budget = None if args.max_time is None else (args.max_time - spent) / (rounds - i)
        t0 = time.perf_counter()
        student = student.distill(train, calls=calls, max_time=budget,
                                  max_steps_per_round=args.max_steps_per_round, lr=args.lr,
                                  start_level=None if args.start_level == "none" else args.start_level)
        seconds = time.perf_counter() - t0
        spent += seconds
        record = [r.to_dict() for r in student.distillation_.rounds]
        last = student.distillation_.rounds[-1]  # this call's round (earlier rounds come back without losses)
        record[-1]["loss_curve"] = _loss_curve(last.losses, last.seconds)
        rows.append(_score("distilled", student, task, args.n_samples, distill_seconds=seconds,
                           distill_seconds_total=spent, rounds=record))
        rows += calibrated("distilled", student)
        if args.save_dir is not None:
            args.save_dir.mkdir(parents=True, exist_ok=True)
            student.save(args.save_dir / f"student_{calls}calls.pt")
        # the undistilled network over the student's own steps (respaced: the same noise levels)
        same = csdi(step_selection="uniform", sampler="ddim")
        same.set_params(step_selection="learned")._set_step_mask(student.inference_steps().numpy())
        rows.append(_score("ddim-student-steps", same, task, args.n_samples))
    return {"task": task.info, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=64, help="fold-0 test stays scored")
    parser.add_argument("--n-train", type=int, default=320, help="fold-0 training stays distilled on")
    parser.add_argument("--n-calib", type=int, default=0,
                        help="further fold-0 training stays (not distilled on) that calibrate the spread of the "
                             "teacher and of every student (Imputer.calibrate): extra rows")
    parser.add_argument("--teacher-steps", type=int, default=8, help="uniform DDIM steps of the teacher")
    parser.add_argument("--calls", type=lambda s: [int(v) for v in s.split(",") if v], default=[4, 2, 1],
                        help="the students' calls, each distilled from the previous (descending)")
    parser.add_argument("--max-time", type=float, default=3600.0, help="seconds of distillation in all")
    parser.add_argument("--max-steps-per-round", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam's peak rate; default: the imputer's (a thirtieth of lr for CSDI's network)")
    parser.add_argument("--start-level", type=lambda v: v if v in ("auto", "none") else float(v), default="auto",
                        help="alpha_bar at which each student reads its step from pure noise: a number, 'auto' "
                             "(Imputer.distill's default) or 'none' (the chain's own level, as before)")
    parser.add_argument("--n-samples", type=int, default=20)
    parser.add_argument("--skip-baselines", action="store_true",
                        help="score only the students: no 50-step, uniform or calibrated-teacher rows (they do not "
                             "depend on the distillation; an earlier run with the same seed and stays has them)")
    parser.add_argument("--start-from", type=Path, default=None,
                        help="distil a student saved by an earlier run (--save-dir) instead of the published "
                             "network's DDIM chain; --teacher-steps is then not used")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="write every student there (Imputer.save), as student_<calls>calls.pt")
    add_run_arguments(parser)
    args = parser.parse_args()
    if args.max_time is None and args.max_steps_per_round is None:
        parser.error("set --max-time or --max-steps-per-round")
    if args.start_from is None and any(c >= args.teacher_steps for c in args.calls):
        parser.error("--calls must all be below --teacher-steps")
    run_script("benchmarks/distillation.py", args, run)


if __name__ == "__main__":
    main()
