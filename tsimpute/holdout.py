"""A cheap held-out imputation score for choosing checkpoints, on observed cells hidden from the model.

Some observed entries of held-out windows are hidden once (fixed seed); at each evaluation the network
imputes them from the rest with the sampler and reverse chain that imputation uses (by default a
deterministic 5-step DDIM chain), and the score is, in model units, either

- ``"mae"``: the mean absolute error of the median of an antithetic pair of samples (whose mean estimates the
  median that ``transform`` returns): the accuracy of the point imputation alone; or
- ``"crps"``: the fair ensemble CRPS (:func:`~tsimpute.step_learning.ensemble_crps`) of independent samples, a
  proper score of the whole predictive distribution: a network whose samples are too narrow (or too wide)
  around an accurate median scores worse.

Unlike the denoising loss, it measures what the user gets, and it is comparable across evaluations (same
cells, same noise).
"""

from __future__ import annotations

import torch

from .data import WindowSet, hide_observed
from .denoisers import SeriesDenoiser
from .diffusion.schedules import Chain, NoiseSchedule, uniform_steps
from .inference import impute_windows
from .step_learning import ensemble_crps

HOLDOUT_METRICS = ("mae", "crps")


class HoldoutScore:
    """``score(denoiser) -> float``: held-out MAE or CRPS of ``n_steps``-step imputation (lower is better).

    Parameters
    ----------
    data : WindowSet
        Windows to score on (validation windows, or training windows when there are none).
    schedule : NoiseSchedule
        The training schedule; the sampler visits ``n_steps`` uniformly spaced steps of it (respaced chain)
        unless ``chain`` is given.
    hide : float, default=0.2
        Share of each window's observed entries hidden and imputed.
    max_windows : int, default=128
        At most this many windows, evenly spaced over ``data``, are scored.
    n_steps : int, default=5
    n_samples : int, default=2
        Samples per window: drawn in antithetic pairs for ``"mae"`` (their median is scored), independently
        for ``"crps"``.
    seed : int, default=0
    precision : str, default="fp32"
    clip : tuple, optional
        Bounds of the predicted clean values, as in sampling (:func:`tsimpute.inference.impute_windows`).
    chain : Chain, optional
        The reverse chain to sample (replaces ``n_steps``): the one imputation will use.
    sampler : {"ddim", "ddpm"}, default="ddim"
    eta : float, default=0.0
        DDIM's noise level.
    metric : {"mae", "crps"}, default="mae"
        What is scored (see the module docstring).
    """

    def __init__(self, data: WindowSet, schedule: NoiseSchedule, *, hide: float = 0.2, max_windows: int = 128,
                 n_steps: int = 5, n_samples: int = 2, seed: int = 0, precision: str = "fp32", clip=None,
                 chain: Chain | None = None, sampler: str = "ddim", eta: float = 0.0, metric: str = "mae"):
        if len(data) == 0:
            raise ValueError("the held-out score needs at least one window")
        if metric not in HOLDOUT_METRICS:
            raise ValueError(f"metric must be one of {HOLDOUT_METRICS}, got {metric!r}")
        if metric == "crps" and n_samples < 2:
            raise ValueError(f"the held-out CRPS needs n_samples >= 2, got {n_samples}")
        gen = torch.Generator(device=data.values.device).manual_seed(seed)
        self.given, self.values, self.hidden = hide_observed(data, hide, max_windows, gen)
        if chain is None:
            chain = schedule.chain(uniform_steps(schedule.n_steps, min(n_steps, schedule.n_steps)), "respaced")
        self.chain, self.sampler, self.eta = chain, sampler, eta
        self.n_samples, self.seed, self.precision, self.clip = n_samples, seed, precision, clip
        self.metric = metric

    @torch.no_grad()
    def __call__(self, denoiser: SeriesDenoiser) -> float:
        if self.hidden.sum() == 0:
            return float("nan")
        gen = torch.Generator(device=self.values.device).manual_seed(self.seed + 1)
        res = impute_windows(denoiser, self.given, self.chain, n_samples=self.n_samples, sampler=self.sampler,
                             eta=self.eta, generator=gen, precision=self.precision, clip=self.clip,
                             antithetic=self.metric == "mae")
        if self.metric == "crps":
            return ensemble_crps(res.samples.to(self.values.device), self.values, self.hidden)
        point = res.samples.quantile(0.5, dim=0).to(self.values.device)
        err = (point - self.values).abs() * self.hidden
        return float(err.sum() / self.hidden.sum())
