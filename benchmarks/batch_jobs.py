"""Batch imputation jobs at growing sizes: rows/s and peak memory, and the speed-up of 2 processes.

A synthetic panel (``--features`` features, series of ``--series-rows`` rows, 20% of cells missing) is
written as Parquet parts of ``--rows-per-part`` rows; one imputer is fitted on a sample of it; then
``tsimpute impute PARTS OUT --model M`` runs as a separate process for each size (so that its peak
memory is its own), and once more under ``torchrun --nproc-per-node 2`` at the largest size. Peak memory
should stay flat as the rows grow (parts are imputed a few series at a time).

With ``--fit-steps S`` it also times training: ``S`` steps of 16 windows in one process against ``S``
steps of 8 windows on each of 2 processes under ``torchrun ... fit`` (DistributedDataParallel, gloo): the
same windows seen, so the ratio of wall times is the data-parallel speed-up.

Usage: ``python benchmarks/batch_jobs.py [--sizes 10000,100000] [--n-samples 50] [--steps 10]
[--fit-steps 200] [--device cuda --precision bf16] [--out FILE.json]``. On a GPU machine, e.g.
``python benchmarks/batch_jobs.py --sizes 100000,1000000 --n-samples 50 --device cuda --precision bf16``
(the 2-process run then puts one process on each of the first two GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def write_panel(folder: Path, rows: int, features: int, series_rows: int, rows_per_part: int, seed: int = 0) -> None:
    """Sinusoids with noise and 20% MCAR gaps, ``rows // series_rows`` series, in parts of whole series."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_series = max(1, rows // series_rows)
    per_part = max(1, rows_per_part // series_rows)
    t = np.arange(series_rows)
    for p0 in range(0, n_series, per_part):
        ids = np.arange(p0, min(p0 + per_part, n_series))
        phase = rng.uniform(0, 2 * np.pi, size=(len(ids), 1, features))
        v = np.sin(t[None, :, None] / 6.0 + phase) + 0.1 * rng.normal(size=(len(ids), series_rows, features))
        v[rng.random(v.shape) < 0.2] = np.nan
        frame = pd.DataFrame(v.reshape(-1, features), columns=[f"f{j}" for j in range(features)])
        frame.insert(0, "time", np.tile(t, len(ids)))
        frame.insert(0, "series", np.repeat(ids, series_rows))
        frame.to_parquet(folder / f"part-{p0 // per_part:05d}.parquet", index=False)


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - t0, res.stdout.strip()


def parse(summary: str) -> dict:
    """Numbers of a job summary line (rows, rows/s, peak memory)."""
    summary = summary.splitlines()[-1]
    rows = int(summary.split(" rows,")[0].split(": ")[-1])
    rate = float(summary.split(" rows/s")[0].split("(")[-1])
    peak = float(summary.split("peak memory ")[1].split(" MB")[0])
    return {"rows": rows, "rows_per_second": rate, "peak_memory_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--series-rows", type=int, default=1000)
    ap.add_argument("--rows-per-part", type=int, default=20000)
    ap.add_argument("--n-samples", type=int, default=50)
    ap.add_argument("--steps", type=int, default=None, help="kept steps at imputation (default: the model's)")
    ap.add_argument("--fit-max-steps", type=int, default=None, help="training length of the model (default 1000)")
    ap.add_argument("--fit-steps", type=int, default=0, help="also time S training steps on 1 and 2 processes")
    ap.add_argument("--ddp-size", type=int, default=None, help="size of the 2-process run (default: the largest)")
    ap.add_argument("--device", default=None, help="impute on this device (e.g. cuda; torchrun: one GPU per rank)")
    ap.add_argument("--precision", default=None, help="fp32, bf16 or auto (bf16 where the hardware has it)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tsimpute = [sys.executable, "-m", "tsimpute"]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_panel(tmp / "train", 20 * args.series_rows, args.features, args.series_rows, args.rows_per_part, 1)
        fit = ["fit", str(tmp / "train"), str(tmp / "m.pt"), "--id-col", "series", "--time-col", "time", "--seed",
               "0", "-q", "--n-samples", str(args.n_samples)]
        fit_s, _ = run(tsimpute + fit + (["--max-steps", str(args.fit_max_steps)] if args.fit_max_steps else []))
        common = ["--model", str(tmp / "m.pt"), "--id-col", "series", "--time-col", "time", "-q"]
        common += ["--steps", str(args.steps)] if args.steps else []
        common += ["--precision", args.precision] if args.precision else []
        single = ["--device", args.device] if args.device else []
        threads = str(max(1, (os.cpu_count() or 2) // 2))
        if args.fit_steps:
            timed = fit[:2] + [str(tmp / "m_timed.pt")] + fit[3:] + ["--max-steps", str(args.fit_steps)]
            one, _ = run(tsimpute + timed + ["--batch-size", "16"])
            two, _ = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "tsimpute", *timed, "--batch-size", "8", "--threads", threads])
            records.append({"training": True, "steps": args.fit_steps, "one_process_seconds": one,
                            "two_process_seconds": two, "speedup": one / two})
            print(records[-1], flush=True)
        for size in sizes:
            parts = tmp / f"in{size}"
            write_panel(parts, size, args.features, args.series_rows, args.rows_per_part)
            wall, line = run(tsimpute + ["impute", str(parts), str(tmp / f"out{size}"), *common, *single])
            records.append({"processes": 1, "size": size, "wall_seconds": wall, **parse(line)})
            print(records[-1], flush=True)
        size = args.ddp_size or sizes[-1]
        if size not in sizes:
            raise SystemExit(f"--ddp-size must be one of --sizes, got {size}")
        wall, out = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                         "-m", "tsimpute", "impute", str(tmp / f"in{size}"), str(tmp / "out2"), *common,
                         "--threads", threads])
        ranks = [parse(line) for line in out.splitlines() if "rows/s" in line]
        records.append({"processes": 2, "size": size, "wall_seconds": wall, "ranks": ranks})
        print(records[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {"command": "python benchmarks/batch_jobs.py " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                                     for k, v in vars(args).items() if v),
              "commit": commit, "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "fit_seconds": fit_s, "runs": records}
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
