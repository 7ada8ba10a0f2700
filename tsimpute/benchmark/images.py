"""The image benchmark behind ``tsimpute bench digits|mnist|fashion-mnist``: one trained UNet, then generation
quality and inpainting error against the number of sampling steps, for each way of choosing the steps.

Generation: a Fréchet distance between generated and held-out test images, in the feature space of a small
classifier trained once per dataset on the training images (:class:`~tsimpute.image_metrics.FeatureClassifier`).
It is **not Inception FID** and not comparable to published FIDs; it ranks samplers of one model. Beside it:
the class balance of the generated images (normalised entropy of the classifier's labels) and the classifier's
own test accuracy. Inpainting: MAE and PSNR on hidden pixels (pixels in [0, 1]) of test images with 50% of the
pixels hidden at random, and with the centre square hidden.

Selections at each step count k: ``learned`` (the step mask: trained jointly with the network at the largest
k, learned on the trained network with weights frozen at the others) sampled with DDPM, and ``learned-ddim``
(the same steps, DDIM updates), ``uniform`` and ``quadratic`` (DDPM on the respaced chain) and ``ddim`` (DDIM,
eta = 0, uniform steps); ``full`` is the whole chain of T steps (DDPM).
Generation is repeated over sampling seeds (mean and standard deviation).

Inpainting fills each image with one sample (``ImageImputer``'s default ``n_samples=1``): there is no predictive
band, so the image rows have no coverage or band-width columns (the time-series benchmark has them).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from .report import git_revision, machine_info

IMAGE_DATASETS = ("digits", "mnist", "fashion-mnist")
SELECTIONS = ("learned", "learned-ddim", "uniform", "quadratic", "ddim")


@dataclass(frozen=True)
class ImageProfile:
    """Size of an image benchmark run (network, training, images evaluated, step counts, seeds)."""

    name: str
    n_steps: int
    widths: tuple[int, ...]
    attention: bool
    max_steps: int
    batch_size: int
    n_train: int | None
    n_generate: int
    n_inpaint: int
    steps: tuple[int, ...]
    seeds: int
    classifier_epochs: int
    learn_images: int
    lr: float = 2e-3


IMAGE_PROFILES = {
    "smoke": ImageProfile("smoke", n_steps=50, widths=(16, 32), attention=False, max_steps=120, batch_size=32,
                          n_train=1000, n_generate=100, n_inpaint=40, steps=(10, 5), seeds=1, classifier_epochs=3,
                          learn_images=256),
    "quick": ImageProfile("quick", n_steps=50, widths=(32, 64, 64), attention=True, max_steps=2000, batch_size=48,
                          n_train=None, n_generate=500, n_inpaint=200, steps=(10, 5), seeds=3, classifier_epochs=2,
                          learn_images=3000),
    "paper": ImageProfile("paper", n_steps=1000, widths=(64, 128, 128), attention=True, max_steps=40000,
                          batch_size=128, n_train=None, n_generate=10000, n_inpaint=2000, steps=(100, 50, 20, 10, 5),
                          seeds=3, classifier_epochs=5, learn_images=20000),
}


@dataclass
class ImageBenchResult:
    """Rows ``(task, method, steps, seed, metric...)``, the settings, and the sample grids (arrays)."""

    rows: pd.DataFrame
    metadata: dict
    grids: dict[str, np.ndarray]
    learned_masks: dict[str, list[int]]


def _load(dataset: str, data_dir, n_train: int | None, seed: int):
    from ..datasets.images import load_digits, load_fashion_mnist, load_mnist

    if dataset == "digits":
        train, test = load_digits("train"), load_digits("test")
    else:
        loader = load_mnist if dataset == "mnist" else load_fashion_mnist
        train, test = loader("train", data_dir=data_dir), loader("test", data_dir=data_dir)
    x_train, y_train = train.images, train.labels
    if n_train is not None and n_train < len(x_train):
        idx = np.random.default_rng(seed).choice(len(x_train), n_train, replace=False)
        x_train, y_train = x_train[idx], y_train[idx]
    return x_train, y_train, test.images, test.labels


def _unit(images: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(images, dtype=np.float64) / 255.0, 0.0, 1.0)


def run_image_benchmark(dataset: str, *, profile: str = "smoke", steps: tuple[int, ...] | None = None,
                        seed: int = 0, data_dir=None, device: str = "cpu", verbose: bool = True,
                        log: Callable[[str], None] = lambda msg: None, **overrides) -> ImageBenchResult:
    """Train one :class:`~tsimpute.image_imputer.ImageImputer` and evaluate every selection (module docstring).

    ``overrides`` replace profile fields (``max_steps=...``, ``n_generate=...``).
    """
    from ..image_imputer import ImageImputer
    from ..image_masks import hidden_pattern
    from ..image_metrics import FeatureClassifier, class_balance, frechet_distance, masked_mae, psnr

    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"dataset must be one of {IMAGE_DATASETS}, got {dataset!r}")
    if profile not in IMAGE_PROFILES:
        raise ValueError(f"profile must be one of {tuple(IMAGE_PROFILES)}, got {profile!r}")
    prof = dataclasses.replace(IMAGE_PROFILES[profile], **overrides)
    counts = tuple(sorted(steps or prof.steps, reverse=True))
    if any(k < 1 or k >= prof.n_steps for k in counts):
        raise ValueError(f"step counts must lie in [1, {prof.n_steps - 1}] (T = {prof.n_steps}), got {counts}")
    started = time.perf_counter()
    x_train, y_train, x_test, y_test = _load(dataset, data_dir, prof.n_train, seed)
    log(f"{dataset}: {len(x_train)} training and {len(x_test)} test images of {x_train.shape[1:]}")

    t0 = time.perf_counter()
    classifier = FeatureClassifier(n_classes=int(max(y_train.max(), y_test.max())) + 1)
    classifier.fit(x_train, y_train, epochs=prof.classifier_epochs, random_state=seed)
    classifier_accuracy = classifier.accuracy(x_test, y_test)
    classifier_seconds = time.perf_counter() - t0
    log(f"feature classifier: test accuracy {classifier_accuracy:.4f} ({classifier_seconds:.0f} s)")
    rng = np.random.default_rng(seed + 1)
    reference = x_test[rng.choice(len(x_test), min(len(x_test), max(prof.n_generate, 2)), replace=False)]
    ref_features = classifier.features(reference)

    t0 = time.perf_counter()
    imp = ImageImputer(n_steps=prof.n_steps, step_selection="learned", target_steps=counts[0], widths=prof.widths,
                       attention=prof.attention, max_steps=prof.max_steps, batch_size=prof.batch_size, lr=prof.lr,
                       device=device, random_state=seed, verbose=verbose).fit(x_train)
    fit_seconds = time.perf_counter() - t0
    log(f"UNet trained: {imp.history_.steps} steps in {fit_seconds:.0f} s; learned {counts[0]} steps "
        f"{imp.learned_steps_.tolist()}")
    masks = {f"{counts[0]} (joint)": imp.learned_steps_.tolist()}
    learned = {counts[0]: imp.learned_steps_}
    learn_set = x_train[rng.choice(len(x_train), min(len(x_train), prof.learn_images), replace=False)]
    learn_seconds = {}
    for k in counts[1:]:
        t0 = time.perf_counter()
        imp.learn_steps(learn_set, target_steps=k)
        learn_seconds[k] = time.perf_counter() - t0
        learned[k] = imp.learned_steps_.copy()
        masks[f"{k} (from the trained network)"] = learned[k].tolist()
        log(f"learned {k} steps on the trained network: {learned[k].tolist()} ({learn_seconds[k]:.0f} s)")

    def configure(method: str, k: int) -> None:
        selection = {"full": "all", "ddim": "uniform", "learned-ddim": "learned"}.get(method, method)
        imp.set_params(sampler="ddim" if "ddim" in method else "ddpm", eta=0.0, step_selection=selection,
                       target_steps=k)
        if selection == "learned":
            imp.learned_steps_ = learned[k]

    runs = [("full", prof.n_steps)] + [(m, k) for k in counts for m in SELECTIONS]
    rows, grids = [], {}
    inpaint_idx = rng.choice(len(x_test), min(len(x_test), prof.n_inpaint), replace=False)
    truth = _unit(x_test[inpaint_idx])
    patterns = {p: hidden_pattern(p, len(truth), *truth.shape[-2:],
                                  generator=_torch_generator(seed + 2)).numpy()[:, 0] for p in ("random", "centre")}
    def inpaint(method: str, k: int, suffix: str = "") -> list[dict]:
        out = []
        for pattern, given in patterns.items():
            shown = np.broadcast_to(given[:, None] if truth.ndim == 4 else given, truth.shape).astype(bool)
            t0 = time.perf_counter()
            filled = _unit(imp.transform(np.where(shown, truth, np.nan) * 255.0))
            out.append({"task": f"inpainting-{pattern}", "method": method + suffix, "steps": k, "seed": 0,
                        "nfe_per_image": k, "mae": masked_mae(filled, truth, ~shown),
                        "psnr": psnr(filled, truth, ~shown), "seconds": time.perf_counter() - t0,
                        "images": len(truth)})
            log(f"inpainting ({pattern}) {method}{suffix} {k} steps: MAE {out[-1]['mae']:.4f}")
        return out

    for method, k in runs:
        configure(method, k)
        for s in range(prof.seeds):
            t0 = time.perf_counter()
            generated = imp.sample(prof.n_generate, random_state=1000 * seed + s)
            seconds = time.perf_counter() - t0
            feats = classifier.features(_unit(generated))
            balance = class_balance(classifier.predict(_unit(generated)), classifier.n_classes)
            rows.append({"task": "generation", "method": method, "steps": k, "seed": s, "nfe_per_image": k,
                         "frechet_distance": frechet_distance(feats, ref_features),
                         "class_entropy": balance.normalized_entropy, "seconds": seconds, "images": prof.n_generate})
            if s == 0:
                grids[f"{method}-{k}"] = _unit(generated[:64])
            log(f"generation {method} {k} steps, seed {s}: Fréchet distance {rows[-1]['frechet_distance']:.3f}")
        if "ddim" in method and k != counts[0]:
            continue  # inpainting: every selection at the largest count, learned and uniform below it
        rows += inpaint(method, k)
    # the unconditional network with the observed pixels put back (replace), full chain and learned k
    for method, k in (("full", prof.n_steps), ("learned", counts[0])):
        configure(method, k)
        imp.set_params(inpainting="replace")
        rows += inpaint(method, k, " (replace)")
        imp.set_params(inpainting="conditional")
    metadata = {
        "dataset": dataset, "profile": dataclasses.asdict(prof), "steps": list(counts), "seed": seed,
        "device": device, "n_train": len(x_train), "classifier_test_accuracy": classifier_accuracy,
        "classifier_seconds": classifier_seconds, "fit_seconds": fit_seconds, "learn_seconds": learn_seconds,
        "train_steps": imp.history_.steps, "wall_seconds": time.perf_counter() - started,
        "metric_note": "Fréchet distance in the feature space of a small classifier trained on this dataset: "
                       "not Inception FID, not comparable to published FIDs; inpainting draws one sample per "
                       "image, so it has no band to report coverage for",
    }
    return ImageBenchResult(pd.DataFrame(rows), metadata, grids, masks)


def _torch_generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def summarize_images(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each (task, method, steps)."""
    metrics = [c for c in ("frechet_distance", "class_entropy", "mae", "psnr") if c in rows]
    grouped = rows.groupby(["task", "method", "steps"], sort=False)[metrics]
    out = grouped.mean().join(grouped.std(ddof=0).add_suffix("_std")).reset_index()
    return out.dropna(axis=1, how="all")


def format_image_table(rows: pd.DataFrame) -> str:
    """A readable summary: one line per (task, method, steps), mean ± std over seeds where there are several."""
    summary = summarize_images(rows)
    lines = []
    for task, part in summary.groupby("task", sort=False):
        metrics = ["frechet_distance", "class_entropy"] if task == "generation" else ["mae", "psnr"]
        table = pd.DataFrame({"method": part["method"], "steps": part["steps"]})
        for m in metrics:
            std = part.get(f"{m}_std")
            table[m] = [f"{v:.4f}" + (f" ± {e:.4f}" if e is not None and e > 0 else "")
                        for v, e in zip(part[m], std if std is not None else [None] * len(part), strict=True)]
        lines += [f"{task}:", table.to_string(index=False), ""]
    return "\n".join(lines).rstrip()


def write_image_results(result: ImageBenchResult, out_dir, *, command: str | None = None,
                        plot: bool = True) -> dict[str, Path | str]:
    """Write ``images-<dataset>-<profile>.json`` / ``.csv``, a PNG of the metrics against steps and one PNG grid
    of generated samples per selection and step count."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"images-{result.metadata['dataset']}-{result.metadata['profile']['name']}"
    meta = {**result.metadata, "tsimpute_version": __version__, "command": command, "commit": git_revision(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(result.metadata.get("device", "cpu"))}
    summary = summarize_images(result.rows)
    payload = {"metadata": meta, "rows": result.rows.to_dict(orient="records"),
               "summary": summary.to_dict(orient="records"), "learned_masks": result.learned_masks}
    paths: dict[str, Path | str] = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv"}
    paths["json"].write_text(json.dumps(payload, indent=1, default=_plain) + "\n")
    result.rows.to_csv(paths["csv"], index=False)
    if plot:
        try:
            paths.update(_plots(result, summary, out, stem))
        except ImportError as err:
            paths["png"] = f"plots skipped: {err}"
    return paths


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def _plots(result: ImageBenchResult, summary: pd.DataFrame, out: Path, stem: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    tasks = [("generation", "frechet_distance", "Fréchet distance (classifier features, not Inception FID)")]
    tasks += [(t, "mae", f"{t}: MAE on hidden pixels") for t in sorted(set(summary["task"]) - {"generation"})]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(dict.fromkeys(summary["method"]))}
    for ax, (task, metric, title) in zip(axes[0], tasks, strict=True):
        part = summary[summary["task"] == task]
        for method, grp in part.groupby("method", sort=False):
            grp = grp.sort_values("steps")
            style = {"color": colors[method], "label": method}
            if method.startswith("full"):  # the whole chain: a reference level
                ax.axhline(float(grp[metric].iloc[0]), ls="--", lw=1, **{**style, "label": f"{method} (T steps)"})
            else:
                ax.errorbar(grp["steps"], grp[metric], yerr=grp.get(f"{metric}_std"), marker="o", capsize=3,
                            **style)
        ax.set_xlabel("sampling steps")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result.metadata['dataset']} ({result.metadata['profile']['name']} profile)")
    fig.tight_layout()
    paths["png"] = out / f"{stem}.png"
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    for name, images in result.grids.items():
        path = out / f"{stem}-samples-{name}.png"
        plt.imsave(path, _grid(images), cmap="gray", vmin=0, vmax=1)
        paths[f"grid {name}"] = path
    return paths


def _grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """Tile images (N, H, W) or (N, C, H, W) in [0, 1] into one picture (rows of ``columns``), 1-pixel gaps."""
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1) if images.shape[1] == 3 else images[:, 0]
    n, h, w = images.shape[:3]
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, *images.shape[3:]))
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        canvas[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = img
    return canvas
