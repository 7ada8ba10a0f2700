"""CRPS and MAE against the number of diffusion steps, and reliability diagrams of the sampled methods
(matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["calibrated_coverage", "plot_results", "require_matplotlib"]

#: Nominal levels of the reliability diagrams (the ``cov50`` ... ``cov95`` row columns).
RELIABILITY_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)

PLOT_HINT = 'plotting needs matplotlib: pip install "tsimpute[plot]"'

_STYLE = {
    "diffusion-all": dict(marker="*", markersize=12, color="black"),
    "diffusion-uniform": dict(marker="o", color="tab:blue"),
    "diffusion-quadratic": dict(marker="s", color="tab:orange"),
    "ddim-uniform": dict(marker="^", color="tab:green"),
    "learned-pretrained": dict(marker="D", color="tab:red"),
    "learned-finetune": dict(marker="v", color="tab:brown"),
    "learned-joint": dict(marker="P", markersize=9, color="tab:purple"),
}


def require_matplotlib():
    """Import matplotlib with the non-interactive Agg backend, or raise ``ImportError`` naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(PLOT_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def calibrated_coverage(n_samples: int, levels=RELIABILITY_LEVELS, *, n_entries: int = 20000,
                        seed: int = 0) -> np.ndarray:
    """Expected coverage of the central bands of ``n_samples`` samples drawn from the target's own distribution.

    Monte Carlo with Gaussian targets and samples (the bands of :func:`tsimpute.metrics.coverage`); the
    reference a calibrated model with that many samples reaches, below ``levels`` for few samples.
    """
    from ..metrics import calibration

    rng = np.random.default_rng(seed)
    out = calibration(rng.standard_normal((n_samples, n_entries)), rng.standard_normal(n_entries),
                      np.ones(n_entries, dtype=bool), levels=list(levels))
    return np.array([v for k, v in out.items() if k.startswith("cov")])


def _reliability(axes, diffusion: pd.DataFrame) -> None:
    """One reliability diagram per step count: empirical against nominal coverage, a line per method."""
    levels = np.array(RELIABILITY_LEVELS)
    cols = [f"cov{round(100 * lv)}" for lv in RELIABILITY_LEVELS]
    n_samples = sorted({int(n) for n in diffusion["n_samples"] if n > 1})
    for ax, (k, part) in zip(axes, diffusion.groupby("steps", sort=False), strict=True):
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="nominal")
        for n in n_samples:
            ax.plot(levels, calibrated_coverage(n), color="0.5", linestyle=":", linewidth=1.5,
                    label=f"calibrated, {n} samples")
        for _, r in part.iterrows():
            style = {key: v for key, v in _STYLE.get(r["method"], {}).items() if key != "markersize"}
            ax.errorbar(levels, r[cols].to_numpy(float), yerr=r[[f"{c}_std" for c in cols]].to_numpy(float),
                        capsize=2, linewidth=1.2, markersize=5, label=r["method"], **style)
        ax.set_xlim(0.45, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks(levels)
        ax.set_title(f"reliability, {int(k)} steps", fontsize=9)
        ax.set_xlabel("nominal coverage of the central band", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    axes[0].set_ylabel("empirical coverage", fontsize=8)


def plot_results(rows: pd.DataFrame, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Plot CRPS and MAE against steps: a line per diffusion method (mean ± std over seeds, NFE as x), the
    full chain as a star, classical imputers and SAITS as horizontal dashed lines. Below them, when the sampled
    rows have calibration columns, one reliability diagram per step count: the empirical coverage of the central
    50/80/90/95% bands against the nominal level per method (point estimates have no band and are left out),
    with the diagonal and the dotted curve a calibrated model with as many samples reaches.
    Saves a PNG and returns its path.
    """
    from .report import summarize
    from .runner import PEER_METHODS

    plt = require_matplotlib()
    from matplotlib.ticker import FuncFormatter

    s = summarize(rows)
    classical = s[s["nfe"] == 0]
    diffusion = s[s["nfe"] > 0]
    cov_cols = [f"cov{round(100 * lv)}" for lv in RELIABILITY_LEVELS]
    sampled = diffusion[diffusion[cov_cols].notna().all(axis=1)] if set(cov_cols) <= set(s.columns) else None
    if sampled is not None and len(sampled):
        n_panels = sampled["steps"].nunique()
        fig = plt.figure(figsize=(12, 4.8 + 4.0))
        grid = fig.add_gridspec(2, 2 * n_panels, height_ratios=[4.8, 4.0])
        axes = [fig.add_subplot(grid[0, :n_panels]), fig.add_subplot(grid[0, n_panels:])]
        lower = [fig.add_subplot(grid[1, 2 * i: 2 * i + 2]) for i in range(n_panels)]
        _reliability(lower, sampled.sort_values("steps", ascending=False, kind="stable"))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    dashes = ["--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
    for ax, metric, label in zip(axes, ("crps", "mae"), ("CRPS (CSDI, normalised, no unit)", "MAE"), strict=True):
        for method, part in diffusion.groupby("method", sort=False):
            part = part.sort_values("steps")
            ax.errorbar(part["steps"], part[metric], yerr=part[f"{metric}_std"], label=method, capsize=3,
                        linewidth=1.5, **_STYLE.get(method, {}))
        for i, (_, r) in enumerate(classical.iterrows()):
            kind = "PyPOTS" if r["method"] in PEER_METHODS else "classical"
            ax.axhline(r[metric], linestyle=dashes[i % len(dashes)], linewidth=1.2, color="0.4",
                       label=f"{r['method']} ({kind})")
        ticks = sorted(set(diffusion["steps"].astype(int)))
        if ticks:
            ax.set_xscale("log")
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.minorticks_off()
        values = s[metric].to_numpy()
        if len(values) and np.isfinite(values).all() and values.min() > 0 and values.max() / values.min() > 10:
            ax.set_yscale("log")  # few-step failures can be orders of magnitude worse
            plain = FuncFormatter(lambda v, _pos: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("sampling steps (network calls per sample)")
        ax.set_ylabel(label if metric == "crps" else f"{label} [{rows['units'].iloc[0]}]")
        ax.grid(True, which="both", alpha=0.3)
    if len(s):
        axes[1].legend(fontsize=7.5, loc="best", ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
