"""The pandas / scikit-learn surface: :class:`Imputer` fits a conditional diffusion model and fills gaps."""

from __future__ import annotations

import contextlib
import numbers
import warnings
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import checkpoint
from .diffusion.conditioning import CONDITIONINGS
from .diffusion.first_guess import FIRST_GUESSES, fit_first_guess
from .diffusion.losses import NOISE_LEVELS
from .diffusion.parameterization import PARAMETERIZATIONS, interpolation_error_scale, interpolation_error_table
from .diffusion.samplers import SAMPLERS
from .diffusion.schedules import (
    CHAIN_SEMANTICS,
    SCHEDULES,
    NoiseSchedule,
    uniform_steps,
)
from .diffusion.step_mask import LOSS_WEIGHTS
from .diffusion.targets import TARGET_STRATEGIES, conditional_mask
from .frames import (
    Scaler,
    Series,
    extract_windows,
    resolve_window,
    split_series,
    stitch_owner,
    window_starts,
)
from .holdout import HoldoutScore
from .inference import SamplingInfo, impute_windows
from .models import CSDIConfig, CSDIDenoiser
from .precision import PRECISIONS
from .step_learning import MASK_OBJECTIVES
from .step_selection import STEP_SELECTIONS, StepSelectionMixin
from .training import TrainConfig, WindowSet, train_denoiser
from .validation import validated_frame


def _fit_scaler(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and spread of the observed values; NaN for columns with no observed value (warned)."""
    values = frame.to_numpy(dtype=np.float64)
    empty = np.isnan(values).all(axis=0)
    if empty.all():
        raise ValueError("every column of X is entirely missing; there is nothing to learn from")
    mean = np.full(values.shape[1], np.nan)
    std = np.full(values.shape[1], np.nan)
    scaler = Scaler.fit(values[:, ~empty])
    mean[~empty], std[~empty] = scaler.mean, scaler.std
    if empty.any():
        names = [c for c, e in zip(frame.columns, empty, strict=True) if e]
        warnings.warn(
            f"columns {names} are entirely missing in X: they cannot be learned and are left out of the model; "
            "their gaps stay NaN in the output (values observed in them later are returned unchanged)",
            UserWarning,
            stacklevel=3,
        )
    return mean, std


def _resolve_device(device: str | torch.device) -> torch.device:
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
def _seeded_torch(seed: int, device: torch.device):
    """Seed torch's global RNG (weight init, dropout) inside, and restore the caller's RNG state after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class Imputer(StepSelectionMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Fill gaps in multivariate time series with a CSDI-style conditional diffusion model.

    The model is trained on the observed entries of ``X`` (some observed entries are hidden and learned
    as targets, CSDI's self-supervision), then samples the missing entries conditioned on the observed
    ones. ``transform`` returns the median of ``n_samples`` samples; ``sample`` and ``predict_quantiles``
    expose the whole predictive distribution. Observed cells always come back unchanged.

    ``X`` is a pandas DataFrame (wide, or a panel with a ``(series id, time)`` MultiIndex; the result is a
    DataFrame with the same index and columns) or any 2-D array-like of numbers (lists, numpy arrays; the
    result is a numpy array). NaN marks a gap; sparse and complex input is refused.

    Parameters
    ----------
    n_steps : int, default=50
        Diffusion steps T of the training chain.
    schedule : {"quad", "linear", "cosine"}, default="quad"
        Noise schedule (``quad`` is CSDI's).
    window : int or "auto", default="auto"
        Window length L in rows. Training cuts every series into windows of this length (every
        ``window // 4`` rows, at a random offset each epoch). At imputation, series are cut into windows
        every ``window // 2`` rows and each row is taken from the window whose centre is nearest to it;
        series shorter than the window are padded with unobserved rows. ``"auto"``: 48 rows, or the
        length of the longest series in ``fit`` when it is shorter (every series then fits in one window,
        so no row loses context); it warns when that is under 16 rows, where the model sees little of how
        the series evolve and accuracy may suffer. An integer window longer than every series is an error.
        The window used is ``window_``.
    epochs : int or None, default=None
        Maximum passes over the training windows; ``None``: the length is set by ``max_steps`` and
        ``max_time`` alone. Training ends at the first limit reached (or by early stopping).
    max_steps : int or None, default=1000
        Maximum optimizer steps. Counting steps rather than epochs gives a small table as much training as a
        large one (a diffusion model needs hundreds to thousands of steps, whatever the number of windows).
        With the residual parameterization 1000 steps of the default network reached interpolation's
        accuracy on the quick-start data in about 30 s on 2 CPU cores (``benchmarks/results/parameterization.md``).
    max_time : float or None, default=None
        Wall-clock budget of training in seconds (the learning-rate schedule then follows the larger of
        the step and time fractions used). Results then depend on the machine's speed: leave it ``None``
        for reproducible fits.
    batch_size : int, default=16
        Training windows per step.
    lr : float, default=3e-3
        Adam learning rate, after a linear warm-up over the first 5% of training, with cosine decay to zero.
    ema_decay : float or None, default=0.995
        Decay of the exponential moving average of the weights that is evaluated and kept for sampling;
        ``None`` keeps the raw weights.
    conditioning : {"observed", "interpolated"}, default="interpolated"
        What the network sees of the given values: ``observed`` is CSDI's ``M * x`` (0 where a value is
        not given; the layout of published CSDI weights), ``interpolated`` their linear interpolation along
        time (PriSTI), a first guess the network learns to correct.
    parameterization : {"epsilon", "residual"}, default="residual"
        What the network predicts. ``epsilon`` is CSDI's noise prediction. ``residual`` runs the diffusion on
        the difference from a first guess of the missing values (``first_guess``), preconditioned for its
        typical size (learned in ``fit`` as ``model_.config.sigma_data``): an untrained network already
        returns the first guess as its median, and training learns only what the guess misses (see
        :mod:`tsimpute.diffusion.parameterization` and ``benchmarks/results/parameterization.md``). The
        network before training is one of the checkpoints that the held-out score chooses from.
    residual_scale : {"gap", "global"}, default="gap"
        The size of the first guess's error that the ``residual`` parameterization assumes: ``global``, one
        number; ``gap``, one per column and per distance from the given values, measured in ``fit``
        (``model_.config.sigma_table``): a single missing hour of a smooth column is many times more precise
        than a long gap in a noisy one.
    first_guess : {"fitted", "interpolation"}, default="fitted"
        The first guess that the ``residual`` parameterization corrects: ``interpolation``, the linear
        interpolation of each column; ``fitted``, that interpolation corrected by a median regression fitted
        in ``fit`` on observed values hidden at random, from a local quadratic fit of the column in time and
        from how its most related columns moved across the same gap
        (:mod:`tsimpute.diffusion.first_guess`; ``model_.config.first_guess``). Columns where the correction
        does not lower the error on held-out windows keep the interpolation.
    channels, n_layers, n_heads : int, default=32, 2, 4
        Width, residual blocks and attention heads of the denoiser. CSDI's own sizes are 64, 4, 8: no more
        accurate on the quick-start data, about 3x slower per training step on a CPU
        (``benchmarks/results/parameterization.md``); the benchmark profiles use them for PhysioNet.
    time_kernel : int, default=5
        Width of a convolution along time added to every residual block (odd; 0: none, as in CSDI). Gives the
        network the local filters that attention over time learns slowly (``benchmarks/results/gap_scale.md``).
    target_strategy : {"random", "hist", "mix"}, default="mix"
        How observed entries are hidden during training (CSDI): ``random`` hides a uniform fraction of each
        window, ``hist`` another window's missing pattern, ``mix`` either at random (more accurate than
        ``random`` in ``benchmarks/results/parameterization.md``).
    noise_levels : {"uniform", "low"}, default="uniform"
        How training draws its diffusion steps: ``uniform`` as CSDI, or ``low``, half of them in the lowest
        quarter of the steps, where the residual of the ``residual`` parameterization is learned (better on
        the Beijing table, worse on PhysioNet and the quick-start data: ``benchmarks/results/gap_scale.md``).
    n_samples : int, default=50
        Samples drawn per gap; ``transform`` returns their median (over antithetic pairs of samples).
    sampler : {"ddpm", "ddim"}, default="ddpm"
        Reverse update. DDIM uses ``eta``.
    eta : float, default=0.0
        DDIM noise (0 = deterministic, 1 = DDPM).
    step_selection : {"all", "uniform", "quadratic", "learned"}, default="uniform"
        Which diffusion steps sampling visits. ``uniform``/``quadratic`` keep ``target_steps`` steps. With the
        residual parameterization 10 uniform steps were as accurate as the whole 50-step chain, 5x faster
        (``benchmarks/results/parameterization.md``); ``learned`` learns which steps to keep during fit.
    target_steps : int, default=10
        Steps kept by ``uniform``, ``quadratic`` and ``learned`` selection (``uniform`` and ``quadratic`` keep
        every step when ``n_steps`` is not larger; ``learned`` requires ``target_steps <= n_steps``).
    chain : {"respaced", "masked"}, default="masked"
        How a subset of steps is turned into a reverse chain (see :mod:`tsimpute.diffusion.schedules`);
        with ``learned`` selection, also the chain the mask is trained under. With every step kept both are
        the full chain. ``masked`` is the default because learned masks under it were the most accurate at
        5 and 10 steps in ``benchmarks/results/step_mask_synthetic.md``, where respaced masks were worse.
    mask_objective : {"loss", "imputation"}, default="loss"
        Reward of a step mask while learning it: the denoising loss (EDDPM) or the CRPS of the k-step
        sampler on held-out observed entries of validation windows (see :mod:`tsimpute.step_learning`).
        ``imputation`` was more accurate in the step-mask benchmark but costs k network calls per reward;
        ``loss`` stays the default because it adds nothing to the training cost.
    mask_weight : {"simple", "elbo"}, default="simple"
        Loss weight ``C_t`` under the mask.
    n_masks : int, default=2
        Masks J drawn per update (leave-one-out baseline; J >= 2).
    mask_lr : float, default=0.3
        Step size of the mask scores (decays linearly to a tenth).
    validation_fraction : float, default=0.1
        Share held out for early stopping: whole series for panels of 10 or more series, else the end of
        each series long enough to give both parts a full window. 0 disables validation.
    patience : int or None, default=5
        Evaluations without improvement before stopping; the best weights are kept. The weights are
        evaluated 20 times over training (every ``max_steps // 20`` steps; every epoch when ``max_steps``
        is ``None``) by the MAE of a 5-step DDIM imputation of hidden observed cells of the validation
        windows (of training windows without validation; :class:`tsimpute.holdout.HoldoutScore`).
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Precision of the network's arithmetic, for training (bf16 autocast, fp32 master weights) and
        sampling (a bf16 copy of the network). ``"auto"``: bf16 where the hardware computes it natively
        (CPUs with AVX512-BF16 or AMX, bf16-capable GPUs), else fp32. On such a CPU bf16 samples about 2x
        faster than fp32 with MAE and CRPS within seed noise (``benchmarks/results/precision.md``).
    inference_batch_size : int or None, default=None
        Window-samples per network call when sampling (bounds memory). ``None``: 16 on CPU (fastest in
        ``benchmarks/results/throughput.md``), 512 on GPUs.
    device : str, default="auto"
        ``"auto"`` picks CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, training and sampling: the same seed gives the same imputation on the same machine.
    sample_clip : float or None, default=1.0
        Sampling clips each step's prediction of the clean values to the range of the training data per
        feature, widened by this many standard deviations on both sides, so that a poorly trained
        low-noise step cannot push samples far off the data. ``None`` disables clipping. Non-finite or
        exploding samples are never returned: sampling raises an error that names the settings.
    verbose : bool, default=True
        Progress bars for training steps and sampling batches.

    Attributes
    ----------
    model_ : CSDIDenoiser
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of object
        Column names seen in ``fit``; defined only when ``X`` was a DataFrame.
    window_ : int
        Window length in rows (``window``, or what ``"auto"`` chose).
    mean_, scale_ : ndarray (n_features,)
        Per-feature standardisation learned from the training data (NaN for columns entirely missing in fit).
    empty_features_ : ndarray of column names
        Columns with no observed value in fit (a warning names them). Like scikit-learn's imputers, the model
        cannot learn them; unlike them, they are kept in the output (same columns as the input), with their
        gaps left as NaN.
    data_min_, data_max_ : ndarray (n_features,)
        Per-feature range of the training data in model (standardised) units; sampling clips to it
        (``sample_clip``). NaN for columns entirely missing in fit.
    history_ : TrainHistory
    steps_ : ndarray
        Steps used by sampling with the settings at fit time (the learned steps for ``learned``).

    Examples
    --------
    >>> imp = Imputer(random_state=0, verbose=False)  # doctest: +SKIP
    >>> filled = imp.fit_transform(df)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        n_steps: int = 50,
        schedule: str = "quad",
        window: int | str = "auto",
        epochs: int | None = None,
        max_steps: int | None = 1000,
        max_time: float | None = None,
        batch_size: int = 16,
        lr: float = 3e-3,
        ema_decay: float | None = 0.995,
        conditioning: str = "interpolated",
        parameterization: str = "residual",
        residual_scale: str = "gap",
        first_guess: str = "fitted",
        channels: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        time_kernel: int = 5,
        target_strategy: str = "mix",
        noise_levels: str = "uniform",
        n_samples: int = 50,
        sampler: str = "ddpm",
        eta: float = 0.0,
        step_selection: str = "uniform",
        target_steps: int = 10,
        chain: str = "masked",
        mask_objective: str = "loss",
        mask_weight: str = "simple",
        n_masks: int = 2,
        mask_lr: float = 0.3,
        validation_fraction: float = 0.1,
        patience: int | None = 5,
        precision: str = "auto",
        inference_batch_size: int | None = None,
        device: str = "auto",
        random_state=None,
        sample_clip: float | None = 1.0,
        verbose: bool = True,
    ):
        self.n_steps = n_steps
        self.schedule = schedule
        self.window = window
        self.epochs = epochs
        self.max_steps = max_steps
        self.max_time = max_time
        self.batch_size = batch_size
        self.lr = lr
        self.ema_decay = ema_decay
        self.conditioning = conditioning
        self.parameterization = parameterization
        self.residual_scale = residual_scale
        self.first_guess = first_guess
        self.channels = channels
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.time_kernel = time_kernel
        self.target_strategy = target_strategy
        self.noise_levels = noise_levels
        self.n_samples = n_samples
        self.sampler = sampler
        self.eta = eta
        self.step_selection = step_selection
        self.target_steps = target_steps
        self.chain = chain
        self.mask_objective = mask_objective
        self.mask_weight = mask_weight
        self.n_masks = n_masks
        self.mask_lr = mask_lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.precision = precision
        self.inference_batch_size = inference_batch_size
        self.device = device
        self.random_state = random_state
        self.sample_clip = sample_clip
        self.verbose = verbose

    # ------------------------------------------------------------------ parameter checks
    def _check_params(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")

        for name in ("n_steps", "batch_size", "channels", "n_layers", "n_heads", "n_samples"):
            positive_int(name)
        for name in ("epochs", "max_steps"):
            if getattr(self, name) is not None:
                positive_int(name)
        if self.max_time is not None and not (isinstance(self.max_time, numbers.Real) and self.max_time > 0):
            raise ValueError(f"max_time must be a positive number of seconds or None, got {self.max_time!r}")
        if self.epochs is None and self.max_steps is None and self.max_time is None:
            raise ValueError("set at least one of epochs, max_steps and max_time (the training length)")
        if self.ema_decay is not None and not (isinstance(self.ema_decay, numbers.Real) and 0 < self.ema_decay < 1):
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay!r}")
        if self.sample_clip is not None and not (isinstance(self.sample_clip, numbers.Real)
                                                 and self.sample_clip >= 0):
            raise ValueError(f"sample_clip must be a number >= 0 or None, got {self.sample_clip!r}")
        if self.inference_batch_size is not None:
            positive_int("inference_batch_size")
        w = self.window
        if not ((isinstance(w, str) and w == "auto")
                or (isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 2)):
            raise ValueError(f"window must be 'auto' or an integer >= 2, got {w!r}")
        choices = {
            "schedule": SCHEDULES,
            "target_strategy": TARGET_STRATEGIES,
            "sampler": tuple(SAMPLERS),
            "step_selection": STEP_SELECTIONS,
            "chain": CHAIN_SEMANTICS,
            "precision": PRECISIONS,
            "conditioning": CONDITIONINGS,
            "parameterization": PARAMETERIZATIONS,
            "residual_scale": ("global", "gap"),
            "first_guess": FIRST_GUESSES,
            "noise_levels": NOISE_LEVELS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.eta, numbers.Real) and 0 <= self.eta <= 1):
            raise ValueError(f"eta must lie in [0, 1], got {self.eta!r}")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 <= self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction!r}")
        if self.patience is not None:
            positive_int("patience")
        if self.step_selection != "all":
            positive_int("target_steps")
            if self.step_selection == "learned" and self.target_steps > self.n_steps:
                raise ValueError(f"target_steps ({self.target_steps}) cannot exceed n_steps ({self.n_steps})")
        if self.step_selection == "learned":
            positive_int("n_masks", 2)
            if self.n_masks > self.batch_size:
                raise ValueError(f"n_masks ({self.n_masks}) cannot exceed batch_size ({self.batch_size})")
        for name, allowed in (("mask_objective", MASK_OBJECTIVES), ("mask_weight", LOSS_WEIGHTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (isinstance(self.mask_lr, numbers.Real) and self.mask_lr > 0):
            raise ValueError(f"mask_lr must be a positive number, got {self.mask_lr!r}")
        positive_int("time_kernel", minimum=0)
        if self.time_kernel % 2 == 0 and self.time_kernel:
            raise ValueError(f"time_kernel must be 0 or odd (a centred convolution), got {self.time_kernel!r}")
        if self.channels % self.n_heads:
            raise ValueError(f"channels ({self.channels}) must be divisible by n_heads ({self.n_heads})")
        _resolve_device(self.device)

    # ------------------------------------------------------------------ scikit-learn tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks the gaps to fill
        # PyTorch does not promise bit-identical CUDA results without deterministic algorithms, which tsimpute
        # leaves off, so a seeded fit may differ between runs there; on CPU the same seed gives the same output
        with contextlib.suppress(ValueError):  # an invalid device is reported by fit
            tags.non_deterministic = _resolve_device(self.device).type == "cuda"
        return tags

    # ------------------------------------------------------------------ frames
    def _validated_frame(self, X, reset: bool) -> tuple[pd.DataFrame, bool]:
        if not reset:
            check_is_fitted(self, "model_")
        return validated_frame(self, X, reset=reset)

    def _modelled(self) -> np.ndarray:
        """Column positions the network models: every fitted column but those entirely missing at fit."""
        return np.flatnonzero(~np.isnan(self.mean_))

    def _scaled_series(self, frame: pd.DataFrame) -> list[Series]:
        """The series of ``frame``, standardised, restricted to the modelled columns."""
        cols = self._modelled()
        scaler = Scaler(self.mean_[cols], self.scale_[cols])
        return [Series(s.rows, scaler.transform(s.values[:, cols])) for s in split_series(frame)]

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None) -> Imputer:
        """Fit the diffusion model on the observed entries of ``X`` (DataFrame, wide or panel, or 2-D array-like)."""
        self._check_params()
        frame, _ = self._validated_frame(X, reset=True)
        self.window_ = resolve_window(self.window, max(len(s.values) for s in split_series(frame)))
        fit_seed = self._init_seeds()
        self.device_ = _resolve_device(self.device)
        self.mean_, self.scale_ = _fit_scaler(frame)
        self.empty_features_ = np.asarray(frame.columns, dtype=object)[np.isnan(self.mean_)]
        scaled = self._scaled_series(frame)
        stacked = np.concatenate([s.values for s in scaled])
        self.data_min_ = np.full(self.n_features_in_, np.nan)
        self.data_max_ = np.full(self.n_features_in_, np.nan)
        cols = self._modelled()
        self.data_min_[cols], self.data_max_[cols] = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)

        gen_np = np.random.default_rng(fit_seed)
        train_series, valid_series = self._split_validation(scaled, gen_np, isinstance(frame.index, pd.MultiIndex))
        valid = self._window_set(valid_series, stride=max(1, self.window_ // 2)) if valid_series else None

        with _seeded_torch(fit_seed, self.device_):
            generator = torch.Generator(device=self.device_).manual_seed(fit_seed)
            train = _EpochWindows(self, train_series, gen_np)
            sigma_data, sigma_table, guess = 1.0, None, None
            if self.parameterization == "residual":
                fit_gen = torch.Generator(device=self.device_).manual_seed(fit_seed + 1)
                if self.first_guess == "fitted":
                    guess = fit_first_guess(train.values, train.observed, generator=fit_gen)
                # the first guess's error where training hides values, and where imputation does (the
                # data's own gaps: a few more hidden at random), so that every gap distance is well measured
                cond = conditional_mask(train.observed, self.target_strategy, patterns=train.observed,
                                        generator=fit_gen)
                sigma_data = interpolation_error_scale(train.values, train.observed, cond, guess=guess)
                if self.residual_scale == "gap":
                    few = train.observed * (torch.rand(train.observed.shape, generator=fit_gen,
                                                       device=self.device_) >= 0.1)
                    sigma_table = interpolation_error_table(
                        torch.cat([train.values, train.values]), torch.cat([train.observed, train.observed]),
                        torch.cat([cond, few]), guess=guess)
            config = CSDIConfig(
                n_features=len(self._modelled()), n_steps=self.n_steps, channels=self.channels,
                n_layers=self.n_layers, n_heads=self.n_heads, ff_dim=self.channels, conditioning=self.conditioning,
                parameterization=self.parameterization, sigma_data=sigma_data, sigma_table=sigma_table,
                time_kernel=self.time_kernel, first_guess=None if guess is None else guess.to_dict(),
            )
            model = CSDIDenoiser(config)
            self.model_ = model.to(self.device_)
            self._schedule = NoiseSchedule(self.n_steps, self.schedule)
            train_cfg = self._train_config(len(train))
            hook = None
            if self.step_selection == "learned":
                epochs = self._planned_epochs(len(train))
                learner = self._step_learner(
                    generator, valid if valid is not None else train, total_epochs=epochs,
                    budget_epochs=0.7 * epochs, warmup_epochs=0.1 * epochs,
                )
                hook = learner.loss_hook
                train_cfg.select_from_epoch = max(0, min(int(np.ceil(epochs)) - 1, int(np.ceil(0.7 * epochs))))
            scorer = self._holdout_score(valid if valid is not None else train, fit_seed)
            self.history_ = train_denoiser(self.model_, self._schedule, train, valid, train_cfg, generator, hook,
                                           score_fn=scorer)
            if hook is not None:
                self._store_mask(learner)
        self.steps_ = self.inference_steps().numpy()
        return self

    def _init_seeds(self) -> int:
        """Draw the fit and sampling seeds from ``random_state``; returns the fit seed."""
        rs = check_random_state(self.random_state)
        fit_seed, self._sample_seed = (int(v) for v in rs.randint(0, 2**31 - 1, size=2))
        self._seeded = self.random_state is not None
        return fit_seed

    @classmethod
    def from_csdi(cls, path=None, *, config=None, feature_names=None, mean=None, scale=None,
                  allow_schedule_mismatch: bool = False, **params) -> Imputer:
        """A fitted imputer around a network trained by CSDI's own code (exact weights, no training).

        Parameters
        ----------
        path : str, path-like or None, default=None
            CSDI's ``model.pth`` (or a folder holding it). None: the CSDI authors' PhysioNet 2012 network
            shipped with tsimpute (MIT, see ``tsimpute/data/csdi_physionet/``; sha256-checked), whose
            features are CSDI's 35 PhysioNet variables (:data:`tsimpute.datasets.PHYSIONET_VARIABLES`, in
            CSDI's order) and whose scaler is CSDI's (mean/std of all observed set-a values).
        config : dict, str, path-like or None
            CSDI configuration (``config.json`` or ``base.yaml`` style). None: a ``config.json`` or
            ``base.yaml`` beside the weights, else CSDI's defaults.
        feature_names : sequence, optional
            Column names, in the order the network was trained on (required unless K is PhysioNet's 35).
        mean, scale : array-like (K,), optional
            The per-feature normalisation the network was trained with (default: CSDI's PhysioNet scaler).
        allow_schedule_mismatch : bool, default=False
            ``n_steps`` / ``schedule`` in ``params`` that differ from the configuration raise a ValueError
            unless this is True (the network then samples under a schedule it was not trained for).
        **params
            Other :class:`Imputer` parameters (``n_samples``, ``step_selection``, ``precision``,
            ``random_state``...). Architecture parameters must match the weights: a mismatch raises a
            ValueError naming the first tensor that does not fit. ``chain`` defaults to ``"respaced"``
            here: the network was trained on the whole chain, whose noise levels step subsets then keep;
            ``step_selection`` defaults to ``"all"`` (CSDI's sampling), ``parameterization`` is CSDI's
            ``"epsilon"`` and ``time_kernel`` 0 (CSDI's network).

        Returns
        -------
        Imputer
            Fitted: ``transform``, ``sample``, ``learn_steps`` and ``save`` work; ``history_`` is absent.

        Examples
        --------
        >>> imp = Imputer.from_csdi(n_samples=20, random_state=0)  # doctest: +SKIP
        >>> filled = imp.transform(stays)  # 48-hour stays, columns = CSDI's 35 variables  # doctest: +SKIP
        """
        from .pretrained import imputer_from_csdi

        return imputer_from_csdi(cls, path, config=config, feature_names=feature_names, mean=mean, scale=scale,
                                 allow_schedule_mismatch=allow_schedule_mismatch, **params)

    def _planned_epochs(self, n_windows: int) -> float:
        """Training length in (fractional) epochs, as far as it is known before training."""
        n_batches = max(1, int(np.ceil(n_windows / self.batch_size)))
        epochs = float(self.epochs) if self.epochs is not None else np.inf
        if self.max_steps is not None:
            epochs = min(epochs, self.max_steps / n_batches)
        return epochs if np.isfinite(epochs) else 100.0

    def _train_config(self, n_windows: int) -> TrainConfig:
        """The optimisation recipe (see ``benchmarks/results/training_recipe.md`` for how it was chosen)."""
        eval_every = max(1, self.max_steps // 20) if self.max_steps is not None else None
        return TrainConfig(
            epochs=self.epochs, max_steps=self.max_steps, max_time=self.max_time, eval_every=eval_every,
            batch_size=self.batch_size, lr=self.lr, target_strategy=self.target_strategy, patience=self.patience,
            precision=self.precision, verbose=self.verbose, lr_schedule="cosine", warmup=0.05,
            ema_decay=self.ema_decay, noise_levels=self.noise_levels,
        )

    def _holdout_score(self, data: WindowSet, seed: int) -> HoldoutScore | None:
        """The checkpoint score: held-out imputation MAE (None would fall back to the denoising loss)."""
        # the sampler and chain that imputation will use (learned steps are not known yet: the uniform ones)
        if self.step_selection == "learned":
            steps = uniform_steps(self.n_steps, min(self.target_steps, self.n_steps))
        else:
            steps = self.inference_steps()
        return HoldoutScore(data, self._schedule, seed=seed, precision=self.precision, clip=self._clip_range(),
                            chain=self._schedule.chain(steps, self.chain), sampler=self.sampler, eta=self.eta)

    def learn_steps(self, X, target_steps: int | None = None, epochs: int = 1, finetune: bool = False,
                    lr: float | None = None) -> Imputer:
        """Learn a step mask on this fitted model ("from a pretrained model", METHOD.md §4).

        Runs the mask loop over the windows of ``X`` for ``epochs`` epochs with a fast budget schedule
        (no warm-up, the budget reaches ``target_steps`` after 70% of the epochs), then reads out exactly
        ``target_steps`` steps into ``learned_steps_`` and sets ``step_selection="learned"``.
        With ``finetune=False`` (default) the network weights are frozen; with ``finetune=True`` they are
        trained jointly with the mask at learning rate ``lr`` (default ``self.lr / 10``).
        Uses ``mask_objective``, ``mask_weight``, ``chain``, ``n_masks`` and ``mask_lr``.
        """
        check_is_fitted(self, "model_")
        k = self.target_steps if target_steps is None else target_steps
        if not isinstance(k, numbers.Integral) or not 1 <= k <= self.n_steps:
            raise ValueError(f"target_steps must be an integer in [1, {self.n_steps}], got {k!r}")
        if not isinstance(epochs, numbers.Integral) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        frame, _ = self._validated_frame(X, reset=False)
        series = self._scaled_series(frame)
        data = self._window_set(series, stride=max(1, self.window_ // 4))
        seed = self._sample_seed if self._seeded else int(np.random.SeedSequence().generate_state(1)[0])
        generator = torch.Generator(device=self.device_).manual_seed(seed + 1)
        learner = self._step_learner(generator, data, total_epochs=epochs, budget_epochs=0.7 * epochs,
                                     warmup_epochs=0.0, k=int(k))
        optimizer = None
        if finetune:
            optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr / 10 if lr is None else lr)
        patterns = data.observed if self.target_strategy in ("hist", "mix") else None

        def targets(batch: WindowSet) -> torch.Tensor:
            return conditional_mask(batch.observed, self.target_strategy, patterns=patterns, generator=generator)

        with _seeded_torch(seed + 2, self.device_):
            learner.learn_on(self.model_, data, epochs=int(epochs), batch_size=self.batch_size,
                             target_strategy_fn=targets, optimizer=optimizer, verbose=self.verbose)
        self._store_mask(learner)
        self.set_params(step_selection="learned", target_steps=int(k))
        self.steps_ = self.inference_steps().numpy()
        return self

    def _split_validation(self, series: list[Series], rng: np.random.Generator, panel: bool):
        frac = self.validation_fraction
        if frac == 0:
            return series, []
        if panel and len(series) >= 10:
            n_valid = max(1, int(round(frac * len(series))))
            order = rng.permutation(len(series))
            valid_idx = set(order[:n_valid].tolist())
            return ([s for i, s in enumerate(series) if i not in valid_idx],
                    [s for i, s in enumerate(series) if i in valid_idx])
        train, valid = [], []
        for s in series:
            n = len(s.values)
            n_valid = int(np.ceil(frac * n))
            if n - n_valid >= self.window_ and n_valid >= self.window_:
                train.append(Series(s.rows[: n - n_valid], s.values[: n - n_valid]))
                valid.append(Series(s.rows[n - n_valid :], s.values[n - n_valid :]))
            else:
                train.append(s)
        return train, valid

    def _window_set(self, series: list[Series], stride: int, offset: int = 0) -> WindowSet:
        windows = np.concatenate(
            [extract_windows(s.values, window_starts(len(s.values), self.window_, stride, offset), self.window_)
             for s in series]
        )
        observed = ~np.isnan(windows)
        values = np.where(observed, windows, 0.0).astype(np.float32)
        return WindowSet(torch.from_numpy(values).to(self.device_),
                         torch.from_numpy(observed.astype(np.float32)).to(self.device_))

    # ------------------------------------------------------------------ sampling
    def _clip_range(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Bounds ``(K, 1)`` of the predicted clean values in model units (``sample_clip``), or None."""
        if self.sample_clip is None or not hasattr(self, "data_min_"):
            return None
        cols = self._modelled()
        lo = torch.as_tensor(self.data_min_[cols] - self.sample_clip, dtype=torch.float32).view(-1, 1)
        hi = torch.as_tensor(self.data_max_[cols] + self.sample_clip, dtype=torch.float32).view(-1, 1)
        return lo, hi

    def _sample_limit(self) -> float | None:
        """Samples beyond this magnitude (model units) are exploding: ten times the data's extent, plus 10.
        None (only non-finite values are refused) when the training data's range is unknown (published weights)."""
        if not hasattr(self, "data_min_"):
            return None
        extent = float(np.nanmax(np.abs(np.concatenate([self.data_min_, self.data_max_]))))
        return 10.0 * extent + 10.0

    def _sample_scaled(self, frame: pd.DataFrame, n_samples: int,
                       antithetic: bool = False) -> tuple[np.ndarray, np.ndarray, SamplingInfo]:
        """Samples ``(n, rows, K)`` in original units (observed cells not yet restored), the observed mask and
        what sampling cost; ``antithetic``: in antithetic pairs (for summaries of the samples). Writes no
        attribute (``transform`` leaves the estimator unchanged)."""
        check_is_fitted(self, "model_")
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        for name, allowed in (("sampler", tuple(SAMPLERS)), ("chain", CHAIN_SEMANTICS), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        series = self._scaled_series(frame)
        stride = max(1, self.window_ // 2)
        starts = [window_starts(len(s.values), self.window_, stride) for s in series]
        data = self._window_set(series, stride)
        seed = self._sample_seed if self._seeded else int(np.random.SeedSequence().generate_state(1)[0])
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        chain = self.inference_chain()
        result = impute_windows(
            self.model_, data, chain, n_samples=n_samples, sampler=self.sampler, eta=self.eta,
            generator=generator, batch_size=self.inference_batch_size, precision=self.precision,
            verbose=self.verbose, clip=self._clip_range(), limit=self._sample_limit(), antithetic=antithetic,
        )
        info = SamplingInfo(nfe=result.nfe, steps=len(chain), windows=len(data.values))
        samples = result.samples.numpy().transpose(0, 1, 3, 2)  # (n, N, L, K)
        cols = self._modelled()
        modelled = np.empty((n_samples, len(frame), len(cols)), dtype=np.float64)
        first = 0
        for s, st in zip(series, starts, strict=True):
            owner, offset = stitch_owner(len(s.values), st, self.window_)
            modelled[:, s.rows, :] = samples[:, first + owner, offset, :]
            first += len(st)
        # columns entirely missing at fit are not modelled: their gaps stay NaN
        out = np.full((n_samples, len(frame), self.n_features_in_), np.nan)
        out[..., cols] = modelled * self.scale_[cols] + self.mean_[cols]
        return out, ~np.isnan(frame.to_numpy(dtype=np.float64)), info

    def sample(self, X, n_samples: int | None = None, return_info: bool = False, antithetic: bool = False):
        """Draw imputations: an array ``(n_samples, n_rows, n_columns)``; observed cells equal ``X`` in every sample.

        The draws are independent (as multiple imputation needs); ``antithetic=True`` draws them in
        antithetic pairs instead, as :meth:`transform` and :meth:`predict_quantiles` do.

        With ``return_info=True`` returns ``(samples, info)``, where ``info`` is a
        :class:`~tsimpute.inference.SamplingInfo` (network calls made, steps of the reverse chain, windows).
        """
        frame, _ = self._validated_frame(X, reset=False)
        samples, observed, info = self._sample_scaled(frame, self.n_samples if n_samples is None else n_samples,
                                                      antithetic)
        values = frame.to_numpy(dtype=np.float64)
        samples = np.where(observed[None], values[None], samples)
        return (samples, info) if return_info else samples

    def transform(self, X):
        """Fill the gaps of ``X`` with the median of ``n_samples`` samples; observed cells are returned unchanged.

        The samples are drawn in antithetic pairs (each pair's noises are opposite: each sample keeps its
        distribution, and the median varies less than over independent draws). Returns a DataFrame with the
        index and columns of ``X`` (a numpy array if ``X`` was one).
        """
        frame, was_numpy = self._validated_frame(X, reset=False)
        samples, observed, _ = self._sample_scaled(frame, self.n_samples, antithetic=True)
        median = np.median(samples, axis=0)
        return self._fill(X, frame, median, observed, was_numpy)

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95), n_samples: int | None = None) -> pd.DataFrame:
        """Per-cell quantiles of the samples (drawn in antithetic pairs, as in :meth:`transform`): columns are a
        ``(quantile, column)`` MultiIndex."""
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1)):
            raise ValueError(f"quantiles must be a non-empty sequence of numbers in [0, 1], got {quantiles!r}")
        frame, _ = self._validated_frame(X, reset=False)
        samples, observed, _ = self._sample_scaled(frame, self.n_samples if n_samples is None else n_samples,
                                                   antithetic=True)
        values = frame.to_numpy(dtype=np.float64)
        qs = np.quantile(samples, q, axis=0)
        qs = np.where(observed[None], values[None], qs)
        cols = pd.MultiIndex.from_product([q.tolist(), list(frame.columns)], names=["quantile", "column"])
        return pd.DataFrame(np.concatenate(list(qs), axis=1), index=frame.index, columns=cols)

    @staticmethod
    def _fill(X, frame: pd.DataFrame, filled: np.ndarray, observed: np.ndarray, was_numpy: bool):
        if was_numpy:  # frame wraps the validated float64 array
            return np.where(observed, frame.to_numpy(dtype=np.float64), filled)
        out = X.copy()
        for j, col in enumerate(frame.columns):
            gaps = ~observed[:, j]
            if gaps.any():
                column = out[col].to_numpy(copy=True)
                column[gaps] = filled[gaps, j]
                out[col] = column
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Save configuration, scaler, weights and library version to one file (see :mod:`tsimpute.checkpoint`)."""
        check_is_fitted(self, "model_")
        checkpoint.save_imputer(self, path, asdict(self.model_.config))

    @classmethod
    def load(cls, path, device: str | None = None) -> Imputer:
        """Load an imputer written by :meth:`save` (``torch.load(weights_only=True)``, never arbitrary pickle)."""
        return checkpoint.load_imputer(cls, path, device)


class _EpochWindows(WindowSet):
    """Training windows, re-cut at a random offset for every epoch (cheap augmentation)."""

    def __init__(self, imputer: Imputer, series: list[Series], rng: np.random.Generator):
        self._imputer, self._series, self._rng = imputer, series, rng
        self._stride = max(1, imputer.window_ // 4)
        ws = imputer._window_set(series, self._stride)
        super().__init__(ws.values, ws.observed)

    def batches(self, batch_size, generator=None, shard=(0, 1)):
        offset = int(self._rng.integers(self._stride))
        ws = self._imputer._window_set(self._series, self._stride, offset)
        self.values, self.observed = ws.values, ws.observed
        return super().batches(batch_size, generator, shard)
