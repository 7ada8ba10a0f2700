"""CRPS and MAE against the number of diffusion steps (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_results", "require_matplotlib"]

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


def plot_results(rows: pd.DataFrame, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Plot CRPS and MAE against steps: a line per diffusion method (mean ± std over seeds, NFE as x), the
    full chain as a star, classical imputers as horizontal dashed lines. Saves a PNG and returns its path.
    """
    from .report import summarize

    plt = require_matplotlib()
    from matplotlib.ticker import FuncFormatter

    s = summarize(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    classical = s[s["nfe"] == 0]
    diffusion = s[s["nfe"] > 0]
    dashes = ["--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
    for ax, metric, label in zip(axes, ("crps", "mae"), ("CRPS (CSDI, normalised, no unit)", "MAE"), strict=True):
        for method, part in diffusion.groupby("method", sort=False):
            part = part.sort_values("steps")
            ax.errorbar(part["steps"], part[metric], yerr=part[f"{metric}_std"], label=method, capsize=3,
                        linewidth=1.5, **_STYLE.get(method, {}))
        for i, (_, r) in enumerate(classical.iterrows()):
            ax.axhline(r[metric], linestyle=dashes[i % len(dashes)], linewidth=1.2, color="0.4",
                       label=f"{r['method']} (classical)")
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
