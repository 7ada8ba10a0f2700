"""The estimator core shared by :class:`~tsimpute.Imputer` and :class:`~tsimpute.image_imputer.ImageImputer`.

:class:`DiffusionEstimator` owns what does not depend on the data's shape: the parameters and their
constraints (scikit-learn's ``_parameter_constraints``), the device and the seeds, the fit skeleton (data,
denoiser adapter, training, joint step-mask learning, checkpoint choice), :meth:`~DiffusionEstimator.learn_steps`,
the fitted state (set in one place, :meth:`~DiffusionEstimator._set_fitted_state`, by ``fit``, ``load`` and
``Imputer.from_csdi``) and one-file checkpoints. A subclass brings its input and output (frames and windows,
or images), its network and its adapter (:mod:`tsimpute.denoisers`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, make_constraint
from sklearn.utils.validation import check_is_fitted

from . import checkpoint
from .data import WindowSet
from .diffusion.samplers import SAMPLERS
from .diffusion.schedules import CHAIN_SEMANTICS, SCHEDULES, NoiseSchedule
from .diffusion.step_mask import LOSS_WEIGHTS
from .distilling import DistillationConfig, DistilledSampler, distil
from .precision import PRECISIONS
from .step_learning import MASK_OBJECTIVES
from .step_selection import STEP_SELECTIONS, StepSelectionMixin
from .training import FitCallback, TrainConfig, train_denoiser

__all__ = ["DiffusionEstimator", "fresh_seed", "resolve_device", "seeded_torch"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return dev


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device):
    """Seed torch's global RNG (weight init, dropout) inside, and restore the caller's RNG state after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def fresh_seed() -> int:
    """A seed from the operating system's entropy (for estimators without a ``random_state``)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


@dataclass
class FitData:
    """What a subclass hands to the fit skeleton: the training and validation windows (or images), the
    data-dependent fitted state, and the fit's numpy generator (already used for the split)."""

    train: WindowSet
    valid: WindowSet | None
    state: dict
    rng: np.random.Generator


class DiffusionEstimator(StepSelectionMixin, BaseEstimator):
    """Base of the diffusion imputers: parameters, seeds, device, fit skeleton, step masks, fitted state, files.

    Subclasses define ``_checkpoint_format`` / ``_checkpoint_version`` and implement ``_fit_input``, ``_fit_data``,
    ``_build_denoiser``, ``_set_data_state``, ``_data_state``, ``_network``, ``_denoiser_from_settings`` and
    ``_step_learning_data``; they may override ``_noise_schedule``, ``_train_config``, ``_checkpoint_score``,
    ``_targets_fn``, ``_learning_targets`` and ``_mask_settings``.
    """

    _parameter_constraints: dict = {
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "schedule": [StrOptions(set(SCHEDULES))],
        "step_selection": [StrOptions(set(STEP_SELECTIONS))],
        "sampler": [StrOptions(set(SAMPLERS))],
        "eta": [Interval(Real, 0, 1, closed="both")],
        "chain": [StrOptions(set(CHAIN_SEMANTICS))],
        "mask_objective": [StrOptions(set(MASK_OBJECTIVES))],
        "mask_weight": [StrOptions(set(LOSS_WEIGHTS))],
        "mask_lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "ema_decay": [Interval(Real, 0, 1, closed="neither"), None],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
    }
    #: messages for parameters whose constraints read better in words
    _parameter_descriptions: dict = {}
    _checkpoint_format: str = ""
    _checkpoint_version: int = 0

    # ------------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        """Check every parameter against ``_parameter_constraints``, then their relations; ValueError naming it."""
        params = self.get_params(deep=False)
        for name, constraints in self._parameter_constraints.items():
            value = params[name]
            made = [make_constraint(c) for c in constraints]
            ok = any(c.is_satisfied_by(value) for c in made)
            if isinstance(value, bool | np.bool_) and not any(c == "boolean" for c in constraints):
                ok = False  # True is an Integral, never a count or a rate here
            if not ok:
                described = self._parameter_descriptions.get(name) or " or ".join(str(c) for c in made)
                raise ValueError(f"{name} must be {described}, got {value!r}")
        self._check_param_relations()
        resolve_device(self.device)

    def _check_param_relations(self) -> None:
        """Checks that involve several parameters (subclasses extend)."""
        if self.n_masks > self.batch_size and (self.step_selection == "learned" or self._always_learns_masks()):
            raise ValueError(f"n_masks ({self.n_masks}) cannot exceed batch_size ({self.batch_size})")

    def _always_learns_masks(self) -> bool:
        return False

    @staticmethod
    def _check_int(name: str, value, minimum: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # PyTorch does not promise bit-identical CUDA results without deterministic algorithms, which tsimpute
        # leaves off, so a seeded fit may differ between runs there; on CPU the same seed gives the same output
        with contextlib.suppress(ValueError):  # an invalid device is reported by fit
            tags.non_deterministic = resolve_device(self.device).type == "cuda"
        return tags

    # ------------------------------------------------------------------ seeds
    def _init_seeds(self) -> int:
        """Draw the fit and sampling seeds from ``random_state``; returns the fit seed."""
        rs = check_random_state(self.random_state)
        fit_seed, self._sample_seed = (int(v) for v in rs.randint(0, 2**31 - 1, size=2))
        self._seeded = self.random_state is not None
        return fit_seed

    def _sampling_seed(self) -> int:
        """The seed of a sampling call: the fitted one when ``random_state`` was set, else a fresh one."""
        return self._sample_seed if self._seeded else fresh_seed()

    def _sampling_generator(self, seed: int | None = None) -> torch.Generator:
        return torch.Generator(device=self.device_).manual_seed(self._sampling_seed() if seed is None else seed)

    # ------------------------------------------------------------------ fit skeleton
    def fit(self, X, y=None, *, callback: FitCallback | None = None):
        """Train the denoiser (and, with ``step_selection="learned"``, the step mask) on ``X``; returns ``self``.

        ``callback(history, kept_weights)``, if given, is called after every checkpoint evaluation with the
        :class:`~tsimpute.training.TrainHistory` so far and the state dict of the network's kept weights (None
        before any is kept; copy it to keep it), e.g. to record a learning curve.
        """
        self._check_params()
        warm = self._warm_fit()
        self.distillation_ = None  # a refit distilled estimator samples its new network over step_selection
        inputs = self._fit_input(X)
        fit_seed = self._init_seeds()
        self.device_ = resolve_device(self.device)
        data = self._fit_data(inputs, np.random.default_rng(fit_seed))
        self._set_data_state(data.state)
        self._schedule = self._noise_schedule()
        with seeded_torch(fit_seed, self.device_):
            generator = torch.Generator(device=self.device_).manual_seed(fit_seed)
            train = data.train
            denoiser = self.denoiser_ if warm else self._build_denoiser(train, fit_seed, data.valid)
            train_cfg = self._train_config(len(train))
            hook = learner = None
            if self.step_selection == "learned":
                epochs = self._planned_epochs(len(train))
                reward = data.valid if data.valid is not None else train
                learner = self._step_learner(generator, reward, total_epochs=epochs, budget_epochs=0.7 * epochs,
                                             warmup_epochs=0.1 * epochs, **self._mask_settings(during_fit=True))
                hook = learner.loss_hook
                train_cfg.select_from_epoch = max(0, min(math.ceil(epochs) - 1, math.ceil(0.7 * epochs)))
            scorer = self._checkpoint_score(data.valid if data.valid is not None else train, fit_seed)
            self.history_ = train_denoiser(denoiser, self._schedule, train, data.valid, train_cfg, generator, hook,
                                           score_fn=scorer, targets_fn=self._targets_fn(), callback=callback)
        mask = self._mask_state(learner) if learner is not None else {}
        self._set_fitted_state(data.state, denoiser, self._sample_seed, self._seeded, **mask)
        if learner is not None:
            self.mask_binarity_ = learner.mask.binarity(learner.config.target_steps)
            self.mask_log_ = learner.log
        self._after_fit(data)
        return self

    def _warm_fit(self) -> bool:
        """Whether ``fit`` goes on from the fitted network (``warm_start`` set and a network fitted)."""
        if not getattr(self, "warm_start", False) or getattr(self, "model_", None) is None:
            return False
        if getattr(self, "distillation_", None) is not None:
            raise ValueError("warm_start: this estimator samples with a distilled network; go on training the "
                             "estimator it was distilled from")
        return True

    def _after_fit(self, data: FitData) -> None:
        """Work on the fitted model at the end of ``fit`` (e.g. calibrating its spread); default: none."""

    def _fit_input(self, X):
        """``X`` checked, before anything is drawn from ``random_state`` (subclasses implement)."""
        raise NotImplementedError

    def _noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.n_steps, self.schedule)

    def _planned_epochs(self, n_windows: int) -> float:
        """Training length in (fractional) epochs, as far as it is known before training."""
        n_batches = max(1, int(np.ceil(n_windows / self.batch_size)))
        planned = getattr(self, "epochs", None)
        epochs = float(planned) if planned is not None else np.inf
        max_steps = self._step_limit()
        if max_steps is not None:
            epochs = min(epochs, max_steps / n_batches)
        return epochs if np.isfinite(epochs) else 100.0

    def _step_limit(self) -> int | None:
        """The optimizer-step limit of training (None: none)."""
        return self.max_steps

    def _train_config(self, n_windows: int) -> TrainConfig:
        raise NotImplementedError

    def _checkpoint_score(self, data: WindowSet, seed: int):
        """``score_fn(denoiser)`` choosing the kept weights, or None (the validation denoising loss)."""
        return None

    def _targets_fn(self):
        """How a training batch's given entries are drawn, or None (the ``target_strategy`` of the recipe)."""
        return None

    def _mask_settings(self, during_fit: bool) -> dict:
        """Extra :class:`~tsimpute.step_learning.StepLearningConfig` settings of the step mask's loop."""
        return {}

    # ------------------------------------------------------------------ fitted state
    def _set_fitted_state(self, data_state: dict, denoiser, sample_seed: int, seeded: bool, *,
                          learned_steps=None, step_scores=None) -> None:
        """Set every fitted attribute: the data's (``_set_data_state``), the denoiser and its network, the
        noise schedule, the sampling seed, the learned step mask and the steps that sampling uses."""
        self.device_ = resolve_device(self.device)
        self._set_data_state(data_state)
        denoiser.net.to(self.device_).eval()
        self.denoiser_ = denoiser
        self.model_ = denoiser.net
        self._schedule = self._noise_schedule()
        self._sample_seed, self._seeded = int(sample_seed), bool(seeded)
        self.distillation_ = None
        self._set_step_mask(learned_steps, step_scores)

    def _set_step_mask(self, learned_steps=None, step_scores=None) -> None:
        """The learned step mask (when there is one) and the steps that sampling uses with the settings now."""
        if learned_steps is not None:
            self.learned_steps_ = np.asarray(learned_steps)
        if step_scores is not None:
            self.step_scores_ = np.asarray(step_scores)
        self.steps_ = self.inference_steps().numpy()

    def _mask_state(self, learner) -> dict:
        return {"learned_steps": learner.kept_steps().numpy(),
                "step_scores": learner.mask.scores.detach().cpu().numpy().copy()}

    # ------------------------------------------------------------------ step masks on a fitted model
    def learn_steps(self, X, target_steps: int | None = None, epochs: int = 1, finetune: bool = False,
                    lr: float | None = None):
        """Learn a step mask on this fitted model ("from a pretrained model", METHOD.md §4).

        Runs the mask loop over ``X`` for ``epochs`` epochs with a fast budget schedule (no warm-up, the
        budget reaches ``target_steps`` after 70% of the epochs), then reads out exactly ``target_steps``
        steps into ``learned_steps_`` and sets ``step_selection="learned"`` (and ``target_steps``).
        With ``finetune=False`` (default) the network weights are frozen; with ``finetune=True`` they are
        trained jointly with the mask at learning rate ``lr`` (default ``self.lr / 10``).
        Uses ``mask_objective``, ``mask_weight``, ``chain``, ``n_masks`` and ``mask_lr``.
        """
        check_is_fitted(self, "model_")
        if getattr(self, "distillation_", None) is not None:
            raise ValueError("this estimator samples with a distilled network and its own chain: learn steps on "
                             "the estimator it was distilled from")
        k = self.target_steps if target_steps is None else target_steps
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.n_steps:
            raise ValueError(f"target_steps must be an integer in [1, {self.n_steps}], got {k!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        data = self._step_learning_data(X)
        seed = self._sampling_seed()
        generator = torch.Generator(device=self.device_).manual_seed(seed + 1)
        learner = self._step_learner(generator, data, total_epochs=epochs, budget_epochs=0.7 * epochs,
                                     warmup_epochs=0.0, k=int(k), **self._mask_settings(during_fit=False))
        optimizer = None
        if finetune:
            optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr / 10 if lr is None else lr)
        targets = self._learning_targets(data, generator)
        with seeded_torch(seed + 2, self.device_):
            learner.learn_on(self.denoiser_, data, epochs=int(epochs), batch_size=self.batch_size,
                             target_strategy_fn=targets, optimizer=optimizer, verbose=self.verbose)
        self.set_params(step_selection="learned", target_steps=int(k))
        self._set_step_mask(**self._mask_state(learner))
        self.mask_binarity_ = learner.mask.binarity(learner.config.target_steps)
        self.mask_log_ = learner.log
        return self

    # ------------------------------------------------------------------ distillation
    def distill(self, X, calls: int = 2, *, max_steps_per_round: int | None = 500, max_time: float | None = None,
                lr: float | None = None, start_level: float | str | None = "auto", verbose: bool | None = None):
        """A new fitted estimator that samples with ``calls`` network calls: progressive distillation of this one.

        The teacher is this estimator's network sampled by deterministic DDIM over its current chain
        (:meth:`inference_chain`: the steps of ``step_selection``, or of an earlier distillation). Each round
        halves the chain (rounded up; the last round ends at exactly ``calls`` steps) and trains a copy of the
        previous round's network (first, of this one) so that one DDIM step of it lands where two of its
        teacher land (Salimans & Ho 2022; :mod:`tsimpute.diffusion.distillation`), on windows of ``X`` whose
        given entries are drawn as in training and whose other entries are forward-noised at the student's
        steps.

        Parameters
        ----------
        X :
            Training data, as for ``fit`` (the data the teacher was trained on).
        calls : int, default=2
            Network calls per sample of the distilled sampler: at least 1 and fewer than the teacher's steps.
        max_steps_per_round : int or None, default=500
            Optimizer steps (of ``batch_size`` windows) per round.
        max_time : float or None, default=None
            Wall-clock budget in seconds for all rounds (shared equally among the rounds left). Each round
            ends at the first of the two limits; at least one must be set.
        lr : float or None, default=None
            Adam's peak rate in every round (linear warm-up over its first 5%, then linear decay to zero);
            None: a thirtieth of the training rate ``lr`` for a noise-predicting network, a third for the
            ``residual`` parameterization (a noise-predicting student's clean prediction at the noisiest step
            amplifies its noise by ``sqrt((1 - alpha_bar) / alpha_bar)``: on CSDI's PhysioNet network, one
            Adam step at 3e-4 without warm-up made the loss 30 times larger, while 1e-4 lowered it).
        start_level : float, "auto" or None, default="auto"
            The ``alpha_bar`` at which the student reads its first step, from the pure noise where sampling
            starts, when the chain's own is lower (:func:`~tsimpute.diffusion.distillation.raise_start_level`).
            ``"auto"`` (:func:`~tsimpute.diffusion.distillation.auto_start_level`): 0.01 when the first step
            is long (the next step's level at least 0.1), which turns the 173-fold amplification of a noise
            error at CSDI's last step into a 10-fold one; on CSDI's PhysioNet network the two-call student of a
            40-minute round went from 12% to 3% above the 50-step chain's CRPS, while the four-call student
            (next level 0.03) lost from the raise (0.5% -> 3.9%: it keeps the chain's level;
            ``benchmarks/results/distillation.md``). A one-call student, whose step goes straight to the clean
            end, reads it at 0.1 (a 3-fold amplification; 12.0% at 0.01, 10.7% at 0.1). None: the chain's own
            level.
        verbose : bool or None, default=None
            A progress bar per round; None: the estimator's ``verbose``.

        Returns
        -------
        estimator
            A new fitted estimator of the same class (this one is unchanged) whose network is the last student,
            with ``sampler="ddim"`` and ``eta=0``; ``distillation_`` holds its chain and the rounds' record.
            Its ``transform``, ``sample`` and ``predict_quantiles`` make ``calls`` network calls per sample,
            and it is saved and loaded like any other. A distilled sampler is deterministic given its initial
            noise: its samples keep a spread, which may not be calibrated; a spread calibration of the
            teacher is not carried over (``calibrate`` the distilled estimator on held-out data).
        """
        check_is_fitted(self, "model_")
        self._check_distillable()
        teacher_chain = self.inference_chain()
        n = len(teacher_chain)
        if isinstance(calls, bool) or not isinstance(calls, numbers.Integral) or not 1 <= calls < n:
            raise ValueError(f"calls must be an integer >= 1 and below the teacher's {n} steps (its chain: "
                             f"{teacher_chain.timesteps.tolist()}), got {calls!r}")
        if max_steps_per_round is not None:
            self._check_int("max_steps_per_round", max_steps_per_round)
        if max_time is not None and (isinstance(max_time, bool) or not isinstance(max_time, numbers.Real)
                                     or not max_time > 0):
            raise ValueError(f"max_time must be a positive number of seconds or None, got {max_time!r}")
        if max_steps_per_round is None and max_time is None:
            raise ValueError("set max_steps_per_round or max_time (the length of every round)")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0):
            raise ValueError(f"lr must be a positive number or None, got {lr!r}")
        config = DistillationConfig(  # checks start_level before the data are read
            calls=int(calls), max_steps_per_round=None if max_steps_per_round is None else int(max_steps_per_round),
            max_time=None if max_time is None else float(max_time),
            lr=float(self._distillation_lr() if lr is None else lr),
            batch_size=self.batch_size, start_level=start_level,
            verbose=bool(self.verbose if verbose is None else verbose))
        data = self._step_learning_data(X)
        seed = self._sampling_seed()
        generator = torch.Generator(device=self.device_).manual_seed(seed + 4)
        targets = self._learning_targets(data, generator)
        with seeded_torch(seed + 5, self.device_):
            student, chain, rounds = distil(self.denoiser_, teacher_chain, data, targets, config, generator)
        fitted = self.denoiser_, self.model_
        self.denoiser_ = self.model_ = None  # not copied: the student replaces them
        try:
            new = copy.deepcopy(self)
        finally:
            self.denoiser_, self.model_ = fitted
        if getattr(new, "calibration_", None) is not None:
            new.calibration_ = None  # fitted for the teacher's samples
        new._set_distilled(student, DistilledSampler.of(chain, teacher_chain, rounds))
        return new

    def _distillation_lr(self) -> float:
        """Adam's default peak rate in distillation (a noise-predicting network: a thirtieth of ``lr``)."""
        return self.lr / 30

    def _check_distillable(self) -> None:
        """Raise a ValueError when this estimator's sampling cannot be distilled (default: it can)."""

    def _set_distilled(self, denoiser, distilled: DistilledSampler) -> None:
        """Sample with ``denoiser``'s network over the distilled chain by deterministic DDIM."""
        denoiser.net.to(self.device_).eval()
        self.denoiser_ = denoiser
        self.model_ = denoiser.net
        self.distillation_ = distilled
        params = {"sampler": "ddim", "eta": 0.0}
        if "variance" in self.get_params():
            params["variance"] = 0.0
        self.set_params(**params)
        self.steps_ = self.inference_steps().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted estimator to one file (read back with ``torch.load(weights_only=True)``: only tensors,
        numbers, strings, lists and dicts, never arbitrary pickled objects; see :mod:`tsimpute.checkpoint`)."""
        check_is_fitted(self, "model_")
        learned = getattr(self, "learned_steps_", None)
        scores = getattr(self, "step_scores_", None)
        distilled = getattr(self, "distillation_", None)
        checkpoint.write_checkpoint(path, {
            "format": self._checkpoint_format,
            "format_version": self._checkpoint_version,
            "params": checkpoint.plain_params(self.get_params()),
            "network": self._network_config(),
            "network_state": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "denoiser": self._denoiser_settings(),
            "data": self._data_state(),
            "sample_seed": int(self._sample_seed),
            "seeded": bool(self._seeded),
            "learned_steps": None if learned is None else torch.as_tensor(np.asarray(learned)),
            "step_scores": None if scores is None else torch.as_tensor(np.asarray(scores)),
            "distilled": None if distilled is None else distilled.to_dict(),
        })

    @classmethod
    def load(cls, path, device: str | None = None):
        """Load an estimator written by :meth:`save` (older formats are migrated on reading)."""
        payload = checkpoint.read_checkpoint(path, cls._checkpoint_format, cls._checkpoint_version)
        params = dict(payload["params"])
        if device is not None:
            params["device"] = device
        est = cls(**cls._params_from_checkpoint(params))
        net = est._network(payload["network"])
        net.load_state_dict(payload["network_state"])
        denoiser = est._denoiser_from_settings(net, payload["denoiser"])
        mask = {k: None if payload[k] is None else payload[k].numpy() for k in ("learned_steps", "step_scores")}
        est._set_fitted_state(payload["data"], denoiser, payload["sample_seed"], payload["seeded"], **mask)
        if payload.get("distilled") is not None:
            est._set_distilled(denoiser, DistilledSampler.from_dict(payload["distilled"]))
        return est

    @classmethod
    def _params_from_checkpoint(cls, params: dict) -> dict:
        return params

    def _network_config(self) -> dict:
        return self.model_.config.to_dict()

    def _denoiser_settings(self) -> dict:
        return {}
