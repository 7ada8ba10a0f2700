"""Run a benchmark: train once, sample the same model with different step selections, score every method.

For each seed: the classical baselines and SAITS (:mod:`tsimpute.benchmark.saits`, PyPOTS) are fitted and
scored; one diffusion :class:`~tsimpute.Imputer` is fitted and sampled with every step count and step
selection (``set_params`` only, no refit); the from-pretrained step mask is learned on a copy of it per step
count (``learned-finetune``: the same with the network fine-tuned along); ``learned-joint`` fits one more
model per step count it is run for. Every result is one row: see :data:`ROW_FIELDS`.

With ``model="csdi-physionet"`` nothing is trained: the diffusion model is the CSDI authors' published
PhysioNet network (:meth:`~tsimpute.Imputer.from_csdi`), and the task is normalised with CSDI's statistics.

Rows with several samples per entry also report the calibration of their predictive distribution (coverage of
the central 50/80/90/95% bands of the samples and the mean width of the 90% band, :func:`tsimpute.metrics.
calibration`); point estimates (the classical baselines, SAITS) have no band and get NaN there.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..metrics import CALIBRATION_LEVELS, evaluate
from .baselines import BASELINES, Baseline
from .profiles import BenchProfile, get_profile
from .tasks import BenchTask, build_task

__all__ = ["CALIBRATION_FIELDS", "DEFAULT_METHODS", "DIFFUSION_METHODS", "METHODS", "PEER_METHODS",
           "PRETRAINED_MODELS", "ROW_FIELDS", "BenchResult", "default_methods", "parse_steps", "run_benchmark"]

#: Diffusion methods, all sampled from the same trained model except ``learned-joint``.
DIFFUSION_METHODS: tuple[str, ...] = (
    "diffusion-all", "diffusion-uniform", "diffusion-quadratic", "ddim-uniform", "learned-pretrained",
    "learned-finetune", "learned-joint",
)
#: Published models run through PyPOTS (the ``peers`` extra): point estimates, row family ``peer``.
PEER_METHODS: tuple[str, ...] = ("saits",)
#: Every method, in table order.
METHODS: tuple[str, ...] = DIFFUSION_METHODS + BASELINES + PEER_METHODS
#: Methods run when none are named with a profile whose ``saits_default`` is off (``smoke``): every method but
#: ``learned-finetune`` and ``saits``. See :func:`default_methods`.
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m not in ("learned-finetune", *PEER_METHODS))
#: Published networks ``run_benchmark(model=...)`` evaluates instead of training one (dataset they belong to).
PRETRAINED_MODELS: dict[str, str] = {"csdi-physionet": "physionet"}

#: Calibration columns of a row (:func:`tsimpute.metrics.calibration` at 0.5, 0.8, 0.9, 0.95): coverage of each
#: central band and the mean width of the 90% band, in metric units; NaN for point estimates (one sample).
CALIBRATION_FIELDS: tuple[str, ...] = ("cov50", "cov80", "cov90", "cov95", "width90")

#: Columns of a result row, in order.
ROW_FIELDS: tuple[str, ...] = (
    "dataset", "method", "steps", "nfe", "n_samples", "mae", "rmse", "crps", "crps_ensemble",
    *CALIBRATION_FIELDS, "train_seconds", "learn_seconds", "impute_seconds", "seed", "profile", "family", "sampler",
    "step_selection", "chain", "kept_steps", "n_eval", "n_test", "n_train", "units", "source",
    "missing_ratio", "device",
)

# method -> (step_selection, sampler) on the shared model
_SELECTION = {
    "diffusion-all": ("all", "ddpm"),
    "diffusion-uniform": ("uniform", "ddpm"),
    "diffusion-quadratic": ("quadratic", "ddpm"),
    "ddim-uniform": ("uniform", "ddim"),
    "learned-pretrained": ("learned", "ddpm"),
    "learned-finetune": ("learned", "ddpm"),
    "learned-joint": ("learned", "ddpm"),
}
N_STEPS = 50


@dataclass
class BenchResult:
    """Rows (one per dataset, method, steps, seed), the settings that produced them and remarks."""

    rows: pd.DataFrame
    metadata: dict
    notes: list[str] = field(default_factory=list)
    learned_masks: list[dict] = field(default_factory=list)


def parse_steps(steps: str | Sequence[int] | None, n_steps: int = N_STEPS) -> tuple[int, ...]:
    """``"50,25,10,5"`` (or a sequence) to a tuple of distinct step counts in ``[1, n_steps]``, descending."""
    if steps is None:
        return ()
    if isinstance(steps, str):
        try:
            values = [int(s) for s in steps.replace(" ", "").split(",") if s]
        except ValueError:
            raise ValueError(f"steps must be a comma-separated list of integers, got {steps!r}") from None
    else:
        values = [int(s) for s in steps]
    if not values:
        raise ValueError("steps is empty")
    bad = [v for v in values if not 1 <= v <= n_steps]
    if bad:
        raise ValueError(f"step counts must lie in [1, {n_steps}], got {bad}")
    return tuple(sorted(set(values), reverse=True))


def default_methods(profile: str | BenchProfile) -> tuple[str, ...]:
    """Methods run when none are named: :data:`DEFAULT_METHODS`, and ``saits`` where the profile's
    ``saits_default`` says (quick, converged, paper)."""
    prof = get_profile(profile)
    return tuple(m for m in METHODS if m in DEFAULT_METHODS or (m == "saits" and prof.saits_default))


def _check_methods(methods: Sequence[str] | None, profile: BenchProfile) -> tuple[str, ...]:
    if methods is None:
        return default_methods(profile)
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    return tuple(m for m in METHODS if m in methods)


class _Runner:
    def __init__(self, task: BenchTask, profile: BenchProfile, *, steps, seed, device, verbose, log,
                 mask_options, model=None):
        self.task, self.profile, self.steps, self.seed = task, profile, steps, seed
        self.model = model
        self.device, self.verbose, self.log = device, verbose, log
        self.mask_options = mask_options
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.learned_masks: list[dict] = []

    # ------------------------------------------------------------------ rows
    def _row(self, method: str, steps: int, metrics: dict, **extra) -> None:
        t = self.task
        row = {
            "dataset": t.dataset, "method": method, "steps": int(steps), "nfe": 0,
            "n_samples": metrics["n_samples"], "mae": metrics["mae"], "rmse": metrics["rmse"],
            "crps": metrics["crps"], "crps_ensemble": metrics["crps_ensemble"],
            **{f: metrics[f] for f in CALIBRATION_FIELDS}, "train_seconds": 0.0,
            "learn_seconds": 0.0, "impute_seconds": 0.0, "seed": self.seed, "profile": self.profile.name,
            "family": "classical", "sampler": "", "step_selection": "", "chain": "", "kept_steps": "",
            "n_eval": metrics["n_eval"], "n_test": len(t.test_given), "n_train": t.info.get("n_train_series"),
            "units": t.units, "source": t.info.get("source", ""), "device": self.device,
            "missing_ratio": t.info.get("missing_ratio"),
        }
        row.update(extra)
        self.rows.append({k: row[k] for k in ROW_FIELDS})

    def _score(self, samples_model: np.ndarray) -> dict:
        t = self.task
        # a trained model is scored on the median that Imputer.transform returns (numpy's, over antithetic
        # pairs); a published CSDI network as CSDI scores it (independent samples, torch's lower median)
        median = "lower" if self.model is not None else "midpoint"
        # coverage / width at every level of the reliability plot; NaN for a point estimate (one sample)
        return evaluate(t.to_metric(samples_model), t.target, t.eval_mask, median=median, levels=CALIBRATION_LEVELS)

    # ------------------------------------------------------------------ classical
    def classical(self, name: str) -> None:
        p = self.profile
        self.log(f"[seed {self.seed}] {name}")
        base = Baseline(name, n_neighbors=p.knn_neighbors, max_iter=p.iterative_max_iter,
                        max_rows=p.baseline_max_rows, seed=self.seed)
        t0 = time.perf_counter()
        base.fit(self.task.train_rows)
        t1 = time.perf_counter()
        pred = base.predict(self.task.test_given)
        t2 = time.perf_counter()
        self._row(name, 0, self._score(pred[None]), train_seconds=t1 - t0, impute_seconds=t2 - t1)

    # ------------------------------------------------------------------ peers
    def saits(self) -> None:
        from .saits import Saits

        t = self.task
        self.log(f"[seed {self.seed}] saits")
        model = Saits.from_profile(self.profile, t.window, seed=self.seed, device=self.device,
                                   target_strategy=t.target_strategy)
        t0 = time.perf_counter()
        model.fit(t.train_frame)
        t1 = time.perf_counter()
        pred = model.predict(t.test_given)
        t2 = time.perf_counter()
        self.log(f"[seed {self.seed}] saits: {model.n_train_windows_} training and {model.n_valid_windows_} "
                 f"validation windows, best epoch {model.best_epoch_} of {self.profile.saits_epochs}")
        self._row("saits", 0, self._score(pred[None]), train_seconds=t1 - t0, impute_seconds=t2 - t1,
                  family="peer")

    # ------------------------------------------------------------------ diffusion
    def make_imputer(self, **params):
        from ..imputer import Imputer

        p, t = self.profile, self.task
        if self.model is not None:
            from ..pretrained import csdi_physionet_scaler

            # the task is already normalised with the network's own statistics (CSDI's): identity scaler
            mean, scale = csdi_physionet_scaler()
            same = t.norm_mean is not None and np.allclose(mean, t.norm_mean)
            if not (same and np.allclose(scale, t.norm_std)):
                raise ValueError("the benchmark task is not normalised with the published model's statistics")
            k = len(t.test_frame.columns)
            return Imputer.from_csdi(
                mean=np.zeros(k), scale=np.ones(k),
                n_samples=p.n_samples, batch_size=p.batch_size, lr=p.lr, target_strategy=t.target_strategy,
                inference_batch_size=p.inference_batch_size, device=self.device, random_state=self.seed,
                verbose=self.verbose, **self.mask_options, **params,
            )
        return Imputer(
            n_steps=N_STEPS, window=t.window, epochs=p.epochs, max_steps=None, max_time=p.max_time,
            batch_size=p.batch_size, lr=p.lr,
            channels=p.channels, n_layers=p.n_layers, n_heads=p.n_heads, target_strategy=t.target_strategy,
            n_samples=p.n_samples, validation_fraction=0.125, patience=p.patience,
            inference_batch_size=p.inference_batch_size, device=self.device, random_state=self.seed,
            verbose=self.verbose, **self.mask_options, **params,
        )

    def fit(self, imp, label: str) -> float:
        if self.model is not None:
            self.log(f"[seed {self.seed}] using the published {self.model} network (no training)")
            return 0.0
        self.log(f"[seed {self.seed}] training {label} ({self.profile.epochs} epochs, "
                 f"{self.task.info.get('n_train_series')} training series)")
        t0 = time.perf_counter()
        imp.fit(self.task.train_frame)
        return time.perf_counter() - t0

    def sample(self, imp, method: str, k: int, train_seconds: float, learn_seconds: float = 0.0) -> None:
        selection, sampler = _SELECTION[method]
        imp.set_params(sampler=sampler, eta=0.0)
        if selection != "learned":  # learned steps were set by fit / learn_steps
            imp.set_params(step_selection=selection, target_steps=min(k, N_STEPS))
        kept = imp.inference_steps().tolist()
        self.log(f"[seed {self.seed}] sampling {method} with {len(kept)} steps")
        t0 = time.perf_counter()
        samples = imp.sample(self.task.test_frame, self.profile.n_samples, antithetic=self.model is None)
        seconds = time.perf_counter() - t0
        self._row(
            # NFE per sample: one network call per kept step (SamplingInfo.nfe counts the calls of all batches)
            method, len(kept), self._score(self.task.windows(samples)), nfe=len(kept),
            train_seconds=train_seconds, learn_seconds=learn_seconds, impute_seconds=seconds,
            family="diffusion", sampler=sampler, step_selection=selection, chain=imp.chain,
            kept_steps=" ".join(str(s) for s in kept),
        )

    def record_mask(self, imp, method: str, k: int) -> None:
        self.learned_masks.append({
            "seed": self.seed, "method": method, "steps": k,
            "kept_steps": [int(s) for s in imp.learned_steps_],
            "scores": [round(float(s), 4) for s in imp.step_scores_],
            "binarity": {key: float(v) for key, v in getattr(imp, "mask_binarity_", {}).items()},
        })

    def diffusion(self, methods: Sequence[str]) -> None:
        shared = [m for m in methods if m != "learned-joint"]
        below = [k for k in self.steps if k < N_STEPS]
        if shared:
            imp = self.make_imputer()
            train_s = self.fit(imp, "the diffusion model")
            if "diffusion-all" in shared:
                self.sample(imp, "diffusion-all", N_STEPS, train_s)
            for k in self.steps:
                for method in ("diffusion-uniform", "diffusion-quadratic", "ddim-uniform"):
                    full_ddim = method == "ddim-uniform" and self.profile.ddim_full
                    if method in shared and (k < N_STEPS or full_ddim):
                        self.sample(imp, method, k, train_s)
                for method in ("learned-pretrained", "learned-finetune"):
                    if method not in shared or k >= N_STEPS:
                        continue
                    finetune = method == "learned-finetune"
                    learner = copy.deepcopy(imp)
                    self.log(f"[seed {self.seed}] learning a {k}-step mask on the trained model"
                             + (" (fine-tuning it along)" if finetune else ""))
                    precision = learner.precision
                    if self.device == "cpu":
                        # bf16 autocast keeps the network off the fused CPU kernels and runs its small
                        # attention products in bf16 on the ATen path: learning is several times faster in fp32
                        learner.set_params(precision="fp32")
                    t0 = time.perf_counter()
                    learner.learn_steps(self.task.train_frame, target_steps=k,
                                        epochs=self.profile.learn_epochs, finetune=finetune)
                    learn_s = time.perf_counter() - t0
                    learner.set_params(precision=precision)
                    self.record_mask(learner, method, k)
                    self.sample(learner, method, k, train_s, learn_s)
        if "learned-joint" in methods and self.model is not None:
            self.notes.append(f"learned-joint trains a model: not run on the published {self.model} network")
        elif "learned-joint" in methods:
            joint = self.profile.joint_steps
            ks = [k for k in below if joint is None or k in joint]
            if not ks and below:
                ks = [min(below)]
            if joint is not None and len(ks) < len(below):
                self.notes.append(
                    f"learned-joint costs one training run per step count; profile {self.profile.name!r} "
                    f"runs it for {ks} only"
                )
            for k in ks:
                imp = self.make_imputer(step_selection="learned", target_steps=k)
                train_s = self.fit(imp, f"a joint {k}-step model")
                self.record_mask(imp, "learned-joint", k)
                self.sample(imp, "learned-joint", k, train_s)


def _calibration_notes(methods: Sequence[str], n_samples: int) -> list[str]:
    """How to read the calibration columns of this run."""
    notes = []
    if any(m in BASELINES or m in PEER_METHODS for m in methods):
        notes.append("cov50 / cov90: share of held-out values inside the central 50% / 90% band of the samples; "
                     "width90: mean width of the 90% band; the classical methods and SAITS give one point estimate "
                     "and have no band (- in the table, NaN in the files)")
    if any(m in DIFFUSION_METHODS for m in methods) and 1 < n_samples < 20:
        bound = (n_samples - 1) / (n_samples + 1)
        notes.append(f"{n_samples} samples per value: every band lies within the samples' range, which a "
                     f"calibrated model's independent samples cover only {bound:.0%} of the time; coverage is biased "
                     "low (the PNG's dotted curve shows what a calibrated model with this many independent samples "
                     "reaches; a trained model's antithetic pairs are not independent)")
    return notes


def run_benchmark(
    dataset: str,
    *,
    profile: str | BenchProfile = "smoke",
    steps: str | Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] | None = None,
    missing_ratio: float = 0.1,
    data_dir: str | os.PathLike[str] | None = None,
    source: str = "auto",
    device: str = "cpu",
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
    mask_options: dict | None = None,
    model: str | None = None,
    **profile_changes,
) -> BenchResult:
    """Run the benchmark of one dataset.

    Parameters
    ----------
    dataset : {"physionet", "pm25", "synthetic"}
        Protocol (METHOD.md §7; ``synthetic`` uses :func:`tsimpute.synthetic.correlated_sinusoids`).
    profile : {"smoke", "quick", "paper"} or BenchProfile, default="smoke"
        Size of the run (see :mod:`tsimpute.benchmark.profiles`).
    steps : str or sequence of int, optional
        Step counts, e.g. ``"50,25,10,5"``; default the profile's.
    seeds : sequence of int, default=(0,)
        Model seeds (weights, training order, sampling noise). The protocol (split, targets, subsets)
        stays fixed, so the spread over seeds is the method's.
    methods : sequence of str, optional
        Subset of :data:`METHODS`; default :func:`default_methods` of the profile. ``saits`` needs PyPOTS (the
        ``peers`` extra): without it, that method is skipped with a note saying how to install it.
    missing_ratio : float, default=0.1
        PhysioNet / synthetic held-out share.
    data_dir : str or path-like, optional
        Data root searched first.
    source : {"auto", "full", "sample"}, default="auto"
        PhysioNet archive or embedded sample.
    device : str, default="cpu"
        Torch device of the diffusion model.
    verbose : bool, default=False
        Progress bars (training epochs, sampling batches).
    log : callable, optional
        Receives one-line progress messages.
    mask_options : dict, optional
        Step-mask settings passed to the Imputer (``chain``, ``mask_objective``, ``mask_weight``,
        ``n_masks``, ``mask_lr``).
    model : {"csdi-physionet"} or None, default=None
        Evaluate a published network (:data:`PRETRAINED_MODELS`) instead of training one: ``csdi-physionet``
        is the CSDI authors' PhysioNet model (:meth:`tsimpute.Imputer.from_csdi`), on the task normalised
        with CSDI's statistics; the profile's training settings are then unused, and ``learned-pretrained``
        learns its mask over the profile's ``n_train`` training stays (a fraction of an epoch).
    **profile_changes
        Profile settings to override (e.g. ``epochs=5``, ``n_samples=20``).

    Returns
    -------
    BenchResult
    """
    prof = get_profile(profile).for_dataset(dataset)
    if profile_changes:
        prof = prof.replace(**{k: v for k, v in profile_changes.items() if v is not None})
    methods = _check_methods(methods, prof)
    if model is not None and PRETRAINED_MODELS.get(model) != dataset:
        known = ", ".join(f"{m} ({d})" for m, d in PRETRAINED_MODELS.items())
        raise ValueError(f"model {model!r} is not a published network for {dataset!r}; known: {known}")
    step_counts = parse_steps(steps) if steps is not None else parse_steps(prof.steps)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one seed is needed")
    log = log or (lambda msg: None)
    mask_options = dict(mask_options or {})
    started = time.perf_counter()
    task = build_task(dataset, prof, data_dir=data_dir, missing_ratio=missing_ratio, source=source,
                      statistics="csdi" if model is not None else "train")
    notes = list(task.notes)
    if "saits" in methods:
        from .saits import pypots_missing

        missing = pypots_missing()  # imports PyPOTS now, so that its import is not timed as training
        if missing is not None:
            methods = tuple(m for m in methods if m != "saits")
            notes.append(f"saits skipped: {missing}")
    for note in notes:
        log(f"note: {note}")
    rows, masks = [], []
    for seed in seeds:
        run = _Runner(task, prof, steps=step_counts, seed=seed, device=device, verbose=verbose, log=log,
                      mask_options=mask_options, model=model)
        for name in methods:
            if name in BASELINES:
                run.classical(name)
            elif name == "saits":
                run.saits()
        diffusion = [m for m in methods if m in DIFFUSION_METHODS]
        if diffusion:
            run.diffusion(diffusion)
        rows.extend(run.rows)
        masks.extend(run.learned_masks)
        notes.extend(n for n in run.notes if n not in notes)
    notes.extend(_calibration_notes(methods, prof.n_samples))
    frame = pd.DataFrame(rows, columns=list(ROW_FIELDS))
    metadata = {
        "dataset": dataset,
        "profile": prof.as_dict(),
        "steps": list(step_counts),
        "seeds": seeds,
        "methods": list(methods),
        "device": device,
        "mask_options": mask_options,
        "model": model,
        "task": task.info,
        "units": task.units,
        "window": task.window,
        "target_strategy": task.target_strategy,
        "n_steps": N_STEPS,
        "wall_seconds": time.perf_counter() - started,
    }
    return BenchResult(frame, metadata, notes, masks)
