"""Why the diffusion around a learned first guess stops learning: a probe of its training.

One fit of ``Imputer(first_guess="learned", target_strategy="random", max_time=60 * --minutes)`` on PhysioNet-10%
fold 0 (every training stay; the guess trains for ``--guess-seconds``, the diffusion for the rest), recording
at every checkpoint evaluation (a twentieth of the diffusion's time): the held-out score, the epoch's training
loss, the median and largest gradient norm of the last steps, and the share of positive inputs to the two
ReLUs of the denoiser (after its input projection and before its output projection) over the last 50
training batches. Two interventions, one at a time: ``--clip`` (gradient-norm clipping of the diffusion's
optimizer steps), ``--activation silu`` (SiLU in place of those two ReLUs) and ``--loss huber`` (the squared
error of each entry's noise replaced by Huber's loss beyond ``--delta``). After the fit the kept network
imputes the first ``--n-test`` fold-0 test stays (10 samples, 10 uniform steps), as in the learning curve.

    python benchmarks/training_collapse.py --minutes 25 --guess-seconds 300 --threads 1 --out probe.json
    python benchmarks/training_collapse.py --minutes 25 --guess-seconds 300 --clip 0.5 --threads 1 --out clip.json
    python benchmarks/training_collapse.py --tails-only --threads 1 --out tails.json   # the targets' distances

The probe patches the library from outside (a forward hook, an optimizer hook, the activation), for
diagnosis only: none of it is an option of the ``Imputer``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tsimpute import Imputer, denoisers
from tsimpute.benchmark.report import add_run_arguments, run_script
from tsimpute.learned_guess import GuessTrainConfig
from tsimpute.metrics import evaluate
from tsimpute.models import csdi


def _learning_curve():
    spec = importlib.util.spec_from_file_location("learning_curve", Path(__file__).with_name("learning_curve.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _SiLU:
    """``torch.nn.functional`` with ``relu`` replaced by ``silu`` (the denoiser's two ReLUs)."""

    relu = staticmethod(torch.nn.functional.silu)

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)


def huber_eps_loss(eps_pred: torch.Tensor, eps: torch.Tensor, target_mask: torch.Tensor, weight=None,
                   reduction: str = "mean", delta: float = 3.0) -> torch.Tensor:
    """``masked_eps_mse`` with each squared error ``e**2`` beyond ``delta`` replaced by ``2 delta |e| - delta**2``
    (Huber's loss, scaled to equal the squared error below ``delta``): an entry far from its target pulls
    with a bounded gradient."""
    if weight is not None or reduction != "mean":
        raise ValueError("the probe's Huber loss replaces the plain training loss only")
    e = ((eps_pred.float() - eps.float()) * target_mask).abs()
    per_entry = torch.where(e <= delta, e.pow(2), 2 * delta * e - delta**2)
    return per_entry.sum() / target_mask.sum().clamp(min=1)


def residual_tails(task, seed: int) -> dict:
    """How far the training targets lie from the fitted first guess, in units of the residual scale: the
    distance the residual parameterization asks the network to predict (20% of each training stay's observed
    values hidden at random, the classical fitted guess)."""
    from tsimpute.data import window_set
    from tsimpute.diffusion.targets import conditional_mask

    imp = Imputer(window=task.window, max_steps=1, target_strategy="random", random_state=seed,
                  verbose=False).fit(task.train_frame)
    param = imp.denoiser_.parameterization
    data = window_set(imp._scaled_series(task.train_frame), imp.window_, imp.window_, device="cpu")
    cond = conditional_mask(data.observed, "random", generator=torch.Generator().manual_seed(seed), ratio=0.2)
    scale = param.scale(cond)
    scale = param.sigma_data if scale is None else scale
    distance = ((data.values - param.base(data.values, cond)) / scale)[(data.observed - cond) > 0].abs().numpy()
    values = data.values[data.observed > 0].abs().numpy()
    return {"targets": int(distance.size),
            **{f"distance_q{q}": float(np.quantile(distance, q)) for q in (0.5, 0.99, 0.999)},
            "distance_max": float(distance.max()), "share_beyond_10": float((distance > 10).mean()),
            "largest_abs_value_in_z_units": float(values.max())}


def run(args) -> dict:
    task = _learning_curve()._task(argparse.Namespace(dataset="physionet", n_test=args.n_test,
                                                      data_dir=args.data_dir))
    if args.tails_only:
        tails = residual_tails(task, args.seed)
        print(tails, flush=True)
        return {"residual_tails": tails}
    if args.activation == "silu":
        csdi.F = _SiLU()
    positive = {"input": [], "output": []}
    init = csdi.CSDIDenoiser.__init__

    def probed_init(self, *a, **k):
        init(self, *a, **k)
        for name, layer in (("input", self.input_projection), ("output", self.output_projection1)):
            layer.register_forward_hook(lambda mod, inp, out, name=name: positive[name].append(
                float((out > 0).float().mean())) if mod.training else None)

    csdi.CSDIDenoiser.__init__ = probed_init
    norms: list[float] = []

    def clip(opt, *_):
        if type(opt) is torch.optim.Adam:  # the diffusion's optimizer (the guess trains with AdamW)
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, args.clip or float("inf"))))

    register_optimizer_step_pre_hook(clip)
    if args.loss == "huber":
        denoisers.masked_eps_mse = partial(huber_eps_loss, delta=args.delta)
    Imputer._guess_config = lambda self: GuessTrainConfig(max_steps=None, max_time=args.guess_seconds,
                                                          verbose=False)
    log = []

    def record(history, kept) -> None:
        row = {"step": history.eval_steps[-1], "minutes": history.eval_seconds[-1] / 60,
               "score": history.valid_loss[-1] if history.valid_loss else None, "best_step": history.best_step,
               "train_loss": history.train_loss[-1] if history.train_loss else None,
               "positive_input": float(np.mean(positive["input"][-50:])) if positive["input"] else None,
               "positive_output": float(np.mean(positive["output"][-50:])) if positive["output"] else None,
               "grad_norm_median": float(np.median(norms[-50:])) if norms else None,
               "grad_norm_max": float(np.max(norms[-200:])) if norms else None}
        log.append(row)
        print(row, flush=True)

    imp = Imputer(window=task.window, max_time=60.0 * args.minutes, max_steps=None, epochs=None, patience=None,
                  n_samples=10, random_state=args.seed, verbose=args.verbose, first_guess="learned",
                  target_strategy="random")
    t0 = time.perf_counter()
    imp.fit(task.train_frame, callback=record)
    fit_s = time.perf_counter() - t0
    samples = imp.sample(task.test_frame, n_samples=10, antithetic=True)
    test = evaluate(task.to_metric(task.windows(samples)), task.target, task.eval_mask, median="midpoint",
                    levels=(0.5, 0.9))
    print(test, flush=True)
    return {"fit_seconds": fit_s, "guess_steps": imp.guess_history_.steps,
            "guess_error": imp.guess_history_.valid_error[-1], "evaluations": log, "test": test,
            "grad_norms_every_10th_step": norms[::10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="max_time of the fit, in minutes")
    parser.add_argument("--guess-seconds", type=float, default=300.0, help="training time of the learned guess")
    parser.add_argument("--clip", type=float, default=0.0, help="gradient-norm clipping (0: none)")
    parser.add_argument("--activation", choices=("relu", "silu"), default="relu")
    parser.add_argument("--loss", choices=("mse", "huber"), default="mse",
                        help="the diffusion's training loss on the noise: squared error, or Huber's beyond --delta")
    parser.add_argument("--delta", type=float, default=3.0)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--tails-only", action="store_true",
                        help="no probe: how far the training targets lie from the fitted first guess")
    add_run_arguments(parser)
    run_script("benchmarks/training_collapse.py", parser.parse_args(), run)


if __name__ == "__main__":
    main()
