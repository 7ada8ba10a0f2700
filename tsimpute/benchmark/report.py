"""Benchmark output: summaries over seeds, the terminal table, JSON / CSV / PNG files, run provenance."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from .runner import CALIBRATION_FIELDS, METHODS, BenchResult

__all__ = ["add_run_arguments", "format_table", "git_revision", "machine_info", "result_stem", "run_record",
           "run_script", "summarize", "write_results"]

_METRICS = ("mae", "rmse", "crps", "crps_ensemble")
# calibration columns the terminal table shows (all of CALIBRATION_FIELDS are in the summary and the files)
_TABLE_CALIBRATION = ("cov50", "cov90", "width90")


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof=0) over seeds per (dataset, method, steps).

    Columns: the keys, ``n_seeds``, ``nfe``, ``n_samples``, ``<metric>`` and ``<metric>_std`` for MAE, RMSE,
    CRPS, ensemble CRPS and the calibration columns (:data:`~tsimpute.benchmark.runner.CALIBRATION_FIELDS`:
    coverage of the 50/80/90/95% bands, width of the 90% band; NaN for point estimates), mean
    ``train_seconds``, ``learn_seconds`` and ``impute_seconds``.
    Methods come in :data:`~tsimpute.benchmark.runner.METHODS` order, steps descending.
    """
    keys = ["dataset", "method", "steps"]
    # rows written before the calibration columns existed are summarised without them
    metrics = _METRICS + tuple(c for c in CALIBRATION_FIELDS if c in rows.columns)
    g = rows.groupby(keys, sort=False)
    out = g.agg(
        n_seeds=("seed", "nunique"), nfe=("nfe", "mean"), n_samples=("n_samples", "first"),
        **{m: (m, "mean") for m in metrics},
        **{f"{m}_std": (m, lambda s: float(np.std(s))) for m in metrics},
        train_seconds=("train_seconds", "mean"), learn_seconds=("learn_seconds", "mean"),
        impute_seconds=("impute_seconds", "mean"),
    ).reset_index()
    order = {m: i for i, m in enumerate(METHODS)}
    out["_o"] = out["method"].map(order).fillna(len(order))
    out = out.sort_values(["dataset", "_o", "steps"], ascending=[True, True, False]).drop(columns="_o")
    return out.reset_index(drop=True)


def format_table(rows: pd.DataFrame) -> str:
    """A plain-text table of the summary (``mean ± std`` when several seeds).

    Beside the errors: ``cov50`` and ``cov90`` (share of held-out values inside the central 50% and 90% bands
    of the samples) and ``width90`` (mean width of the 90% band); ``-`` for point estimates, which have no band.
    """
    s = summarize(rows)
    several = bool((s["n_seeds"] > 1).any())

    def cell(r, m: str, digits: int = 4) -> str:
        if not np.isfinite(r[m]):
            return "-"
        return f"{r[m]:.{digits}f} ± {r[m + '_std']:.{digits}f}" if several else f"{r[m]:.{digits}f}"

    table = pd.DataFrame({
        "dataset": s["dataset"],
        "method": s["method"],
        "steps": s["steps"].astype(int),
        "nfe": s["nfe"].round().astype(int),
        "n_samples": s["n_samples"].astype(int),
        **{m: [cell(r, m) for _, r in s.iterrows()] for m in _METRICS},
        **{m: [cell(r, m, 3 if m.startswith("cov") else 4) for _, r in s.iterrows()]
           for m in _TABLE_CALIBRATION if m in s},
        "train_s": s["train_seconds"].map(lambda v: f"{v:.1f}"),
        "learn_s": s["learn_seconds"].map(lambda v: f"{v:.1f}"),
        "impute_s": s["impute_seconds"].map(lambda v: f"{v:.1f}"),
    })
    table["steps"] = [("-" if st == 0 else str(st)) for st in table["steps"]]
    return table.to_string(index=False)


def git_revision(path: str | os.PathLike[str] | None = None) -> str:
    """The commit of the checkout holding ``path`` (default this package), noting uncommitted changes."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    if git("rev-parse", "--is-inside-work-tree") != "true":
        return "unknown (not a git checkout)"
    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=normal"))
    if head is None:
        return "uncommitted working tree (the repository has no commit yet)"
    return f"uncommitted working tree on top of {head}" if dirty else head


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu") -> dict:
    """CPU model, cores, torch / numpy / scikit-learn versions, platform and the GPU name if used."""
    import sklearn
    import torch

    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "tsimpute": __version__,
    }
    if device != "cpu" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run_record(script: str, argv: list[str], started: float, device: str = "cpu", commit: str | None = None) -> dict:
    """What reproduces a benchmark script's run: its command line (shell-quoted), commit (default: the
    checkout's now; pass the one taken when the run began), wall seconds since ``started`` (a
    :func:`time.perf_counter` value) and machine."""
    return {"command": shlex.join(["python", script, *argv]), "commit": commit or git_revision(),
            "wall_seconds": time.perf_counter() - started, "machine": machine_info(device)}


def add_run_arguments(parser) -> None:
    """The options every benchmark script shares: ``--seed``, ``--data-dir``, ``--threads``, ``--verbose``,
    ``--out`` (the JSON result file)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="data root searched first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--verbose", action="store_true", help="progress bars")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")


def run_script(script: str, args, run, device: str = "cpu") -> dict:
    """Run a benchmark script's ``run(args)`` with ``args.threads`` torch threads (when set); add the arguments
    and :func:`run_record` to its result dict and write it as JSON to ``args.out`` (when set)."""
    import sys

    import torch

    from ..inference import tune_cpu_allocator

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    started, commit = time.perf_counter(), git_revision()  # the code the run starts with
    result = run(args)
    result.update({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
                   **run_record(script, sys.argv[1:], started, device, commit)})
    out = getattr(args, "out", None)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_plain(result), indent=1, allow_nan=False))
    return result


def result_stem(result: BenchResult) -> str:
    """File stem ``bench_<dataset>_<profile>``; PhysioNet adds the held-out percentage (``physionet10``)."""
    meta = result.metadata
    name = meta["dataset"]
    ratio = meta.get("task", {}).get("missing_ratio")
    if name == "physionet" and ratio is not None:
        name = f"physionet{round(100 * ratio)}"
    return f"bench_{name}_{meta['profile']['name']}"


def _plain(value):
    """JSON-ready copy: numpy scalars to Python, NaN / inf to None, paths to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_results(
    result: BenchResult,
    out_dir: str | os.PathLike[str],
    *,
    command: str | None = None,
    plot: bool = True,
) -> dict[str, Path | str]:
    """Write ``<stem>.json`` (metadata, rows, summary, notes), ``<stem>.csv`` (rows) and ``<stem>.png``.

    Returns the paths written; when matplotlib is missing the ``"png"`` entry holds the message instead
    of a path (the other files are still written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(result)
    meta = dict(result.metadata)
    meta.update({
        "tsimpute_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "commit": git_revision(),
        "machine": machine_info(meta.get("device", "cpu")),
    })
    rows = result.rows
    payload = {
        "metadata": meta,
        "notes": result.notes,
        "rows": rows.to_dict(orient="records"),
        "summary": summarize(rows).to_dict(orient="records"),
        "learned_masks": result.learned_masks,
    }
    paths: dict[str, Path | str] = {}
    paths["json"] = out / f"{stem}.json"
    paths["json"].write_text(json.dumps(_plain(payload), indent=1, allow_nan=False) + "\n")
    paths["csv"] = out / f"{stem}.csv"
    rows.to_csv(paths["csv"], index=False)
    if plot:
        from .plotting import plot_results

        try:
            paths["png"] = plot_results(rows, out / f"{stem}.png", title=_title(meta))
        except ImportError as exc:
            paths["png"] = str(exc)
    return paths


def _title(meta: dict) -> str:
    task = meta.get("task", {})
    name = meta["dataset"]
    if name == "physionet":
        name = f"PhysioNet 2012, {round(100 * task.get('missing_ratio', 0))}% held out ({task.get('source')})"
    elif name == "pm25":
        name = "PM2.5 (36 stations)"
    prof = meta["profile"]
    return (f"{name}: profile {prof['name']}, {task.get('n_test')} test windows, "
            f"{prof['n_samples']} samples")
