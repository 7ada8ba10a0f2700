"""Fuzz the public surface with the strategies of ``tests/test_properties.py`` and a large example budget.

Runs every property of the test file (wide frames, panels, 3-D arrays and dicts, wrong shapes and types, the
``tsimpute impute`` command on CSV files, batch jobs on Parquet parts) with ``--examples`` generated inputs in
all, shared out in the proportions of the CI budget, within ``--max-seconds`` of wall time (inputs not reached
in time are not counted). Unlike the tests it does not stop at the first failure: every failing input is
counted and its message kept (no shrinking), so one run shows everything it found. Writes a Markdown table
(generated inputs, imputed, refused with the expected message, failures and time per property) with the
command, commit and machine.

Usage: ``python benchmarks/fuzz_public_api.py [--examples 2000] [--max-seconds 600] [--seed 0]
[--out benchmarks/results/fuzz_public_api.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests import test_properties as props  # noqa: E402


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _properties(tmp: Path):
    """(name, strategy, check) for every property; ``check(case)`` returns "imputed" or "refused" or raises."""
    fitted2 = props.make_fitted2()
    job_imputer = props.make_job_imputer()
    return [
        ("frames", props.wide_cases(), props.check_imputation),
        ("panels", props.panel_cases(), props.check_imputation),
        ("arrays", props.array_cases(), props.check_imputation),
        ("shapes", props.shape_cases(), lambda case: props.check_shape(case, fitted2)),
        ("cli", props.csv_cases(), lambda case: props.check_cli(*case, tmp / "cli")),
        ("jobs", props.part_cases(), lambda case: props.check_job(*case, job_imputer, tmp / "jobs")),
    ]


def _fuzzer(strategy, check, outcomes: Counter, failures: Counter, deadline: float, budget: int, run_seed: int):
    """A hypothesis test of ``check`` over ``strategy`` that counts outcomes and failures instead of raising."""

    @seed(run_seed)
    @settings(max_examples=budget, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate],  # no shrinking, no replay of earlier runs
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def fuzz(case):
        if time.perf_counter() > deadline:
            outcomes["not run (time)"] += 1
            return
        try:
            outcomes[check(case)] += 1
        except Exception as exc:  # a failed invariant or an unexpected error: counted, kept, not raised
            outcomes["failed"] += 1
            failures[f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"] += 1

    return fuzz


def run(examples: int, max_seconds: float, run_seed: int) -> tuple[list[dict], float]:
    total_ci = sum(props.CI_EXAMPLES.values())
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "cli").mkdir()
        (tmp / "jobs").mkdir()
        properties = _properties(tmp)
        for i, (name, strategy, check) in enumerate(properties):
            budget = max(1, round(examples * props.CI_EXAMPLES[name] / total_ci))
            # the time left, shared among the properties still to run
            deadline = time.perf_counter() + (max_seconds - (time.perf_counter() - started)) / (len(properties) - i)
            outcomes: Counter = Counter()
            failures: Counter = Counter()
            t0 = time.perf_counter()

            fuzz = _fuzzer(strategy, check, outcomes, failures, deadline, budget, run_seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fuzz()
            run_count = sum(v for k, v in outcomes.items() if k != "not run (time)")
            rows.append({"property": name, "budget": budget, "generated": run_count,
                         "imputed": outcomes["imputed"], "refused": outcomes["refused"],
                         "failed": outcomes["failed"], "seconds": time.perf_counter() - t0,
                         "failures": dict(failures)})
            print(f"{name}: {run_count} inputs, {outcomes['failed']} failures, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    return rows, time.perf_counter() - started


def write_markdown(rows: list[dict], wall: float, args, path: Path) -> None:
    total = sum(r["generated"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    lines = [
        "# Fuzzing the public API: generated inputs and failures",
        "",
        f"Command: `python benchmarks/fuzz_public_api.py --examples {args.examples} --max-seconds "
        f"{args.max_seconds:g} --seed {args.seed} --out {args.out}`",
        f"Commit: {_commit()}. Machine: {_machine()}; torch threads 1 per fit.",
        "",
        "The strategies and checks are those of `tests/test_properties.py` (see its docstring for the contract); "
        "every input gets one tiny imputer fitted on it (3 optimizer steps, `n_samples=2`). *Refused*: a "
        "`ValueError`/`TypeError` whose message matched what the generator expected for that malformation. "
        "*Failed*: any broken invariant, unexpected error or vague message.",
        "",
        "| property | budget | generated | imputed | refused as expected | failed | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['property']} | {r['budget']} | {r['generated']} | {r['imputed']} | {r['refused']} | "
                     f"{r['failed']} | {r['seconds']:.0f} |")
    lines.append(f"| **all** | {sum(r['budget'] for r in rows)} | {total} | "
                 f"{sum(r['imputed'] for r in rows)} | {sum(r['refused'] for r in rows)} | {failed} | {wall:.0f} |")
    lines += ["", f"{total} inputs generated in {wall:.0f} s of wall time; {failed} failures."]
    found = [(r["property"], msg, n) for r in rows for msg, n in r["failures"].items()]
    if found:
        lines += ["", "Failures (first line of the message, and how many inputs gave it):", ""]
        lines += [f"- {prop}: `{msg}` ({n})" for prop, msg, n in found]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz_public_api.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, wall = run(args.examples, args.max_seconds, args.seed)
    write_markdown(rows, wall, args, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
