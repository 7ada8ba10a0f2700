"""The pandas / scikit-learn surface: :class:`Imputer` fits a conditional diffusion model and fills gaps."""

from __future__ import annotations

import numbers
import warnings
from dataclasses import asdict, replace
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .calibration import SpreadCalibration, fit_spread_calibration
from .checkpoint import plain_names
from .data import (
    EpochWindows,
    ImputationWindows,
    WindowSet,
    fit_scaler,
    modelled_columns,
    resolve_window,
    scaled_series,
    split_series,
    split_validation,
    unscaled,
    window_set,
)
from .denoisers import SeriesDenoiser
from .diffusion.conditioning import CONDITIONINGS
from .diffusion.first_guess import FIRST_GUESSES, fit_first_guess
from .diffusion.losses import LOSS_WEIGHTINGS, NOISE_LEVELS
from .diffusion.parameterization import PARAMETERIZATIONS, interpolation_error_scale, interpolation_error_table
from .diffusion.samplers import SAMPLERS
from .diffusion.schedules import CHAIN_SEMANTICS, uniform_steps
from .diffusion.targets import TARGET_STRATEGIES, conditional_mask
from .estimator import DiffusionEstimator, FitData
from .holdout import HOLDOUT_METRICS, HoldoutScore, hide_observed
from .inference import SamplingInfo, impute_windows
from .learned_guess import GuessTrainConfig, fit_learned_guess
from .models import CSDIConfig, CSDIDenoiser
from .precision import PRECISIONS
from .training import FitCallback, TrainConfig
from .validation import Layout, validated_frame

#: Windows whose hidden values the spread calibration scores (fewer held-out windows are hidden several times).
_CALIBRATION_WINDOWS = 256
#: Below this many observed values in the validation windows, ``fit`` calibrates on training windows too.
_MIN_HELD_OUT = 200


class Imputer(OneToOneFeatureMixin, TransformerMixin, DiffusionEstimator):
    """Fill gaps in multivariate time series with a CSDI-style conditional diffusion model.

    The model is trained on the observed entries of ``X`` (some observed entries are hidden and learned
    as targets, CSDI's self-supervision), then samples the missing entries conditioned on the observed
    ones. ``transform`` returns the median of ``n_samples`` samples; ``sample`` and ``predict_quantiles``
    expose the whole predictive distribution. Observed cells always come back unchanged.

    ``X`` is one of:

    - a pandas DataFrame, wide or a panel with a ``(series id, time)`` MultiIndex; the result is a DataFrame
      with the same index and columns;
    - a 2-D array-like of numbers ``(n_rows, n_features)`` (lists, numpy arrays): one series; the result is
      a float64 numpy array of the same shape;
    - a 3-D array-like ``(n_series, n_steps, n_features)``, the layout of PyPOTS and most research code: a
      panel whose series ``i`` is ``X[i]`` (windowed series by series, as a DataFrame panel); ``transform``
      returns a float64 array of the same shape, ``sample`` one of shape ``(n_samples, n_series, n_steps,
      n_features)`` and ``predict_quantiles`` one of shape ``(n_quantiles, n_series, n_steps, n_features)``;
    - PyPOTS' dict ``{"X": array}``: read as its ``"X"``, and the result is what that array gives (other keys,
      such as ``"y"`` or ``"X_ori"``, are not used).

    Features are positional for array-likes: a model fitted on 3-D arrays transforms 2-D arrays of the same
    features and the other way round. NaN marks a gap; infinite values, sparse and complex input, and arrays
    of other dimensions are refused with a ValueError or TypeError naming the column, argument or shape.
    Observed cells come back bit for bit and the input is never modified.

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
    max_steps : int, None or "auto", default="auto"
        Maximum optimizer steps; ``"auto"``: 1000 when neither ``epochs`` nor ``max_time`` is set, else no
        step limit (so that ``max_time=3600`` alone trains for the hour; with ``step_selection="learned"``,
        whose mask schedule is planned in steps, ``max_time`` alone keeps the 1000). Counting steps rather than
        epochs gives a small table as much training as a large one (a diffusion model needs hundreds to
        thousands of steps, whatever the number of windows).
        With the residual parameterization 1000 steps of the default network reached interpolation's
        accuracy on the quick-start data in about 30 s on 2 CPU cores (``benchmarks/results/parameterization.md``).
    max_time : float or None, default=None
        Wall-clock budget of training in seconds (the learning-rate schedule then follows the larger of
        the step and time fractions used; checkpoint evaluations count). Results then depend on the
        machine's speed: leave it ``None`` for reproducible fits.
    batch_size : int, default=16
        Training windows per step.
    lr : float, default=3e-3
        Adam learning rate, after a linear warm-up over the first 5% of training, with cosine decay to zero.
    ema_decay : float or None, default=0.995
        Decay of the exponential moving average of the weights that is evaluated and kept for sampling;
        ``None`` keeps the raw weights.
    conditioning : {"observed", "interpolated", "guess"}, default="interpolated"
        What the network sees of the given values: ``observed`` is CSDI's ``M * x`` (0 where a value is
        not given; the layout of published CSDI weights), ``interpolated`` their linear interpolation along
        time (PriSTI), a first guess the network learns to correct; ``guess``, the ``residual``
        parameterization's own first guess (``first_guess``).
    parameterization : {"epsilon", "residual"}, default="residual"
        What the network predicts. ``epsilon`` is CSDI's noise prediction. ``residual`` runs the diffusion on
        the difference from a first guess of the missing values (``first_guess``), preconditioned for its
        typical size (learned in ``fit``: ``denoiser_.parameterization.sigma_data``): an untrained network already
        returns the first guess as its median, and training learns only what the guess misses (see
        :mod:`tsimpute.diffusion.parameterization` and ``benchmarks/results/parameterization.md``). The
        network before training is one of the checkpoints that the held-out score chooses from.
    residual_scale : {"gap", "global"}, default="gap"
        The size of the first guess's error that the ``residual`` parameterization assumes: ``global``, one
        number; ``gap``, one per column and per distance from the given values, measured in ``fit``
        (``denoiser_.parameterization.sigma_table``): a single missing hour of a smooth column is many times
        more precise than a long gap in a noisy one.
    first_guess : {"fitted", "interpolation", "learned"}, default="fitted"
        The first guess that the ``residual`` parameterization corrects: ``interpolation``, the linear
        interpolation of each column; ``fitted``, that interpolation corrected by a median regression fitted
        in ``fit`` on observed values hidden at random, from a local quadratic fit of the column in time and
        from how its most related columns moved across the same gap
        (:mod:`tsimpute.diffusion.first_guess`; ``denoiser_.parameterization.first_guess``). Columns where the
        correction does not lower the error on held-out windows keep the interpolation. ``learned``: the fitted
        guess corrected by an attention network over time steps trained in ``fit`` to fill observed values
        hidden from the training windows (SAITS's masked imputation task, :mod:`tsimpute.learned_guess`;
        history in ``guess_history_``), before the diffusion, for ``epochs`` passes (100 when None) and half of
        ``max_time``, or at most 3000 steps of 32 windows without ``max_time``, with early stopping on the
        validation windows. On PhysioNet it was the largest gain of any recipe change
        (``benchmarks/results/learned_guess.md``).
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
    loss_weighting : {"noise", "output"}, default="noise"
        What the training loss measures: the error in the predicted noise (CSDI, METHOD.md §3), or the error
        in the network's own output under the ``residual`` parameterization, which weighs every noise level
        alike (Karras et al. 2022); the noise MSE gives the high levels, where the median is decided, next to
        no weight. On PhysioNet ``"output"`` stalled the held-out score and gave a 5% worse CRPS
        (``benchmarks/results/recipe_ablation.md``). The same loss for ``epsilon``.
    n_samples : int, default=50
        Samples drawn per gap; ``transform`` returns their median (over antithetic pairs of samples).
    sampler : {"ddpm", "ddim"}, default="ddpm"
        Reverse update. DDIM uses ``eta``.
    eta : float, default=0.0
        DDIM noise (0 = deterministic, 1 = DDPM).
    variance : float, default=0.0
        DDPM only: the variance of each update between kept steps, log-linear from the posterior variance
        beta-tilde (0) to beta (1) of the chain's step (Nichol & Dhariwal 2021). Beta-tilde assumes the clean
        values are known; with few, widely spaced steps it leaves the network's own uncertainty out and the
        samples come out too narrow. On CSDI's published PhysioNet network (respaced chain) 0.5 brought the 50%
        and 90% bands at 10 and 5 steps from 31% / 68% and 24% / 53% coverage to 49% / 85% and 46% / 80%
        (20 samples), with CRPS 0.5% and 2% lower (``benchmarks/results/calibration_samplers.md``); the full
        chain is best at 0. Not yet measured on a network trained by ``fit``, so the default stays 0.
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
        Evaluations without improvement before stopping; the best weights are kept. The weights (and the
        network before training) are evaluated 20 times over training (every ``max_steps // 20`` steps;
        every ``max_time / 20`` seconds without a step limit; every epoch with ``epochs`` alone) by
        imputing hidden observed cells of the validation windows (of training windows without validation)
        with the sampler and steps that imputation uses (:class:`tsimpute.holdout.HoldoutScore`), scored
        by ``checkpoint_metric``. No early stop happens in the first half of the planned steps or time.
    checkpoint_metric : {"crps", "mae"}, default="crps"
        The held-out score that chooses the kept weights and stops training: ``crps``, the fair ensemble
        CRPS of two independent samples, a proper score of the whole predictive distribution, so that
        weights whose samples are accurate but too narrow (or too wide) lose; ``mae``, the error of the
        median of an antithetic pair of samples (the point imputation alone; the default of earlier releases). Both
        cost two samples per held-out window.
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
    calibration : {"conformal"} or None, default=None
        ``"conformal"``: after training, learn how much the samples' spread must be scaled (per feature, gap
        length and level) for their central bands (20% to 95%) to hold their share of observed values hidden
        from the model in the validation windows, hidden as ``target_strategy`` draws training targets (each
        window several times, with other draws, until 256 are scored; training windows are added when the
        validation windows hold fewer than 200 observed values; split conformal, :meth:`calibrate`,
        :mod:`tsimpute.calibration`). The median
        (``transform``) is unchanged; ``sample`` and ``predict_quantiles`` return the rescaled spread. None: the
        sampler's own spread.
    warm_start : bool, default=False
        When the estimator is already fitted (by ``fit``, :meth:`load` or :meth:`from_csdi`), ``fit`` goes on
        training its network from the fitted weights, keeping the fitted columns, window, scaler and first guess
        (the architecture and ``parameterization`` parameters are those of the fitted network); ``X`` must have
        the fitted columns. False: every ``fit`` starts from a new network.
    verbose : bool, default=True
        Progress bars for training steps and sampling batches.

    Attributes
    ----------
    model_ : CSDIDenoiser
        The network.
    denoiser_ : SeriesDenoiser
        The network with what its inputs and output mean (conditioning, parameterization, first guess and
        residual scales learned in ``fit``); training and sampling both go through it.
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
    data_min_, data_max_ : ndarray (n_features,) or None
        Per-feature range of the training data in model (standardised) units; sampling clips to it
        (``sample_clip``). NaN for columns entirely missing in fit; None for published weights
        (:meth:`from_csdi`), whose training data is not known.
    calibration_ : SpreadCalibration or None
        The spread's scale factors (``calibration="conformal"`` or :meth:`calibrate`), with the sampling
        settings they were fitted for; None when the samples keep the sampler's own spread.
    history_ : TrainHistory
    guess_history_ : GuessHistory or None
        Training of the learned first guess (``first_guess="learned"``): held-out errors, steps, seconds.
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
        max_steps: int | str | None = "auto",
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
        loss_weighting: str = "noise",
        n_samples: int = 50,
        sampler: str = "ddpm",
        eta: float = 0.0,
        variance: float = 0.0,
        step_selection: str = "uniform",
        target_steps: int = 10,
        chain: str = "masked",
        mask_objective: str = "loss",
        mask_weight: str = "simple",
        n_masks: int = 2,
        mask_lr: float = 0.3,
        validation_fraction: float = 0.1,
        patience: int | None = 5,
        checkpoint_metric: str = "crps",
        precision: str = "auto",
        inference_batch_size: int | None = None,
        device: str = "auto",
        random_state=None,
        sample_clip: float | None = 1.0,
        calibration: str | None = None,
        warm_start: bool = False,
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
        self.loss_weighting = loss_weighting
        self.n_samples = n_samples
        self.sampler = sampler
        self.eta = eta
        self.variance = variance
        self.step_selection = step_selection
        self.target_steps = target_steps
        self.chain = chain
        self.mask_objective = mask_objective
        self.mask_weight = mask_weight
        self.n_masks = n_masks
        self.mask_lr = mask_lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.checkpoint_metric = checkpoint_metric
        self.precision = precision
        self.inference_batch_size = inference_batch_size
        self.device = device
        self.random_state = random_state
        self.sample_clip = sample_clip
        self.calibration = calibration
        self.warm_start = warm_start
        self.verbose = verbose

    _parameter_constraints: dict = {
        **DiffusionEstimator._parameter_constraints,
        "window": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "conditioning": [StrOptions(set(CONDITIONINGS))],
        "parameterization": [StrOptions(set(PARAMETERIZATIONS))],
        "residual_scale": [StrOptions({"global", "gap"})],
        "first_guess": [StrOptions(set(FIRST_GUESSES))],
        "channels": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "time_kernel": [Interval(Integral, 0, None, closed="left")],
        "target_strategy": [StrOptions(set(TARGET_STRATEGIES))],
        "noise_levels": [StrOptions(set(NOISE_LEVELS))],
        "loss_weighting": [StrOptions(set(LOSS_WEIGHTINGS))],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "checkpoint_metric": [StrOptions(set(HOLDOUT_METRICS))],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "sample_clip": [Interval(Real, 0, None, closed="left"), None],
        "calibration": [StrOptions({"conformal"}), None],
        "warm_start": ["boolean"],
        "variance": [Interval(Real, 0, 1, closed="both")],
    }
    _parameter_descriptions: dict = {
        "window": "'auto' or an integer >= 2",
        "max_time": "a positive number of seconds or None",
    }
    _checkpoint_format = "tsimpute.Imputer"
    _checkpoint_version = 4  # 4: a distilled sampler; 3: network, denoiser adapter and data state apart

    # ------------------------------------------------------------------ parameter checks
    def _check_param_relations(self) -> None:
        if self.step_selection == "learned":
            self._check_int("n_masks", self.n_masks, 2)
        super()._check_param_relations()
        if self.epochs is None and self.max_steps is None and self.max_time is None:
            raise ValueError("set at least one of epochs, max_steps and max_time (the training length)")
        if self.step_selection != "all":
            self._check_int("target_steps", self.target_steps)
            if self.step_selection == "learned" and self.target_steps > self.n_steps:
                raise ValueError(f"target_steps ({self.target_steps}) cannot exceed n_steps ({self.n_steps})")
        if self.conditioning == "guess" and self.parameterization != "residual":
            raise ValueError("conditioning='guess' shows the network the first guess of the 'residual' "
                             f"parameterization; got parameterization={self.parameterization!r}")
        if self.time_kernel % 2 == 0 and self.time_kernel:
            raise ValueError(f"time_kernel must be 0 or odd (a centred convolution), got {self.time_kernel!r}")
        if self.channels % self.n_heads:
            raise ValueError(f"channels ({self.channels}) must be divisible by n_heads ({self.n_heads})")
        if self.sampler == "ddim" and self.variance != 0:
            raise ValueError(f"variance applies to the 'ddpm' sampler only, got variance={self.variance!r} with "
                             "sampler='ddim' (DDIM's noise is set by eta)")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks the gaps to fill
        return tags

    # ------------------------------------------------------------------ frames
    def _validated_frame(self, X, reset: bool) -> tuple[pd.DataFrame, Layout]:
        if not reset:
            check_is_fitted(self, "model_")
        return validated_frame(self, X, reset=reset)

    def _modelled(self) -> np.ndarray:
        """Column positions the network models: every fitted column but those entirely missing at fit."""
        return modelled_columns(self.mean_)

    def _scaled_series(self, frame: pd.DataFrame):
        """The series of ``frame``, standardised, restricted to the modelled columns."""
        return scaled_series(frame, self.mean_, self.scale_)

    # ------------------------------------------------------------------ fitted state
    def _set_data_state(self, state: dict) -> None:
        """Window, scaler, training-data range and (when given) feature names."""
        def array(x):
            return None if x is None else np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x, np.float64)

        if state.get("feature_names") is not None:
            self.feature_names_in_ = np.asarray(state["feature_names"], dtype=object)
        self.window_ = int(state["window"])
        self.mean_, self.scale_ = array(state["mean"]), array(state["scale"])
        self.n_features_in_ = len(self.mean_)
        columns = getattr(self, "feature_names_in_", np.arange(self.n_features_in_))
        self.empty_features_ = np.asarray(columns, dtype=object)[np.isnan(self.mean_)]
        self.data_min_, self.data_max_ = array(state.get("data_min")), array(state.get("data_max"))
        if not hasattr(self, "guess_history_"):  # loaded, or published weights: no guess was trained here
            self.guess_history_ = None
        calibration = state.get("calibration")
        self.calibration_ = None if calibration is None else SpreadCalibration.from_dict(calibration)

    def _data_state(self) -> dict:
        def tensor(x):
            return None if x is None else torch.from_numpy(np.asarray(x, dtype=np.float64))

        return {"feature_names": plain_names(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None,
                "window": int(self.window_), "mean": tensor(self.mean_), "scale": tensor(self.scale_),
                "data_min": tensor(self.data_min_), "data_max": tensor(self.data_max_),
                "calibration": None if self.calibration_ is None else self.calibration_.to_dict()}

    def _network(self, config: dict) -> CSDIDenoiser:
        return CSDIDenoiser(CSDIConfig(**config))

    def _network_config(self) -> dict:
        return asdict(self.model_.config)

    def _denoiser_settings(self) -> dict:
        return self.denoiser_.settings()

    def _denoiser_from_settings(self, net, settings: dict) -> SeriesDenoiser:
        return SeriesDenoiser.from_settings(net, settings)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, callback: FitCallback | None = None) -> Imputer:
        """Fit the diffusion model on the observed entries of ``X`` (DataFrame, wide or panel; 2-D or 3-D
        array-like; or a dict ``{"X": array}``).

        ``callback(history, kept_weights)``, if given, is called after every checkpoint evaluation (the
        :class:`~tsimpute.training.TrainHistory` so far and the state dict of the kept weights), e.g. to
        record a learning curve (``benchmarks/learning_curve.py``). Returns ``self``.
        """
        return super().fit(X, y, callback=callback)

    def _fit_input(self, X) -> tuple[pd.DataFrame, int, dict | None]:
        if self._warm_fit():  # the fitted columns, window and scaler
            previous = self._data_state()
            frame, _ = self._validated_frame(X, reset=False)
            return frame, previous["window"], previous
        frame, _ = self._validated_frame(X, reset=True)
        return frame, resolve_window(self.window, max(len(s.values) for s in split_series(frame))), None

    def _fit_data(self, inputs: tuple[pd.DataFrame, int, dict | None], rng: np.random.Generator) -> FitData:
        frame, window, previous = inputs
        if previous is None:
            mean, scale = fit_scaler(frame)
        else:
            mean, scale = previous["mean"].numpy(), previous["scale"].numpy()
        scaled = scaled_series(frame, mean, scale)
        stacked = np.concatenate([s.values for s in scaled])
        data_min, data_max = np.full(len(mean), np.nan), np.full(len(mean), np.nan)
        cols = modelled_columns(mean)
        with warnings.catch_warnings():  # a warm start's data may miss a modelled column entirely
            warnings.simplefilter("ignore", RuntimeWarning)
            data_min[cols], data_max[cols] = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
        if previous is not None:  # the fitted range, widened by the new data (none fitted: no bounds)
            data_min, data_max = (None if previous[key] is None else merge(previous[key].numpy(), new)
                                  for key, new, merge in (("data_min", data_min, np.fmin),
                                                          ("data_max", data_max, np.fmax)))
        train_series, valid_series = split_validation(scaled, self.validation_fraction, window, rng,
                                                      isinstance(frame.index, pd.MultiIndex))
        valid = window_set(valid_series, window, max(1, window // 2), device=self.device_) if valid_series else None
        train = EpochWindows(train_series, window, rng, self.device_)
        state = {"window": window, "mean": mean, "scale": scale, "data_min": data_min, "data_max": data_max}
        if previous is not None:
            state["feature_names"] = previous["feature_names"]
        return FitData(train, valid, state, rng)

    def _after_fit(self, data: FitData) -> None:
        if self.calibration == "conformal":
            windows = data.valid
            if windows is None or float(windows.observed.sum()) < _MIN_HELD_OUT:  # add training windows
                train = window_set(data.train.series, self.window_, max(1, self.window_ // 2), device=self.device_)
                windows = train if windows is None else WindowSet(torch.cat([windows.values, train.values]),
                                                                  torch.cat([windows.observed, train.observed]))
            elif len(windows) < _CALIBRATION_WINDOWS:  # few held-out windows: each hidden anew several times
                copies = -(-_CALIBRATION_WINDOWS // len(windows))
                windows = WindowSet(windows.values.repeat(copies, 1, 1), windows.observed.repeat(copies, 1, 1))
            self._fit_calibration(windows)

    def _build_denoiser(self, train, fit_seed: int, valid: WindowSet | None = None) -> SeriesDenoiser:
        """The network and its adapter; with the residual parameterization, the first guess and the scale of its
        error are fitted on the training windows (a learned guess's error is measured on the validation windows
        when they hold enough observed values: on its own training windows it would look too small)."""
        sigma_data, sigma_table, guess = 1.0, None, None
        self.guess_history_ = None
        if self.parameterization == "residual":
            fit_gen = torch.Generator(device=self.device_).manual_seed(fit_seed + 1)
            if self.first_guess in ("fitted", "learned"):
                guess = fit_first_guess(train.values, train.observed, generator=fit_gen)
            scored = train
            if self.first_guess == "learned":
                guess, self.guess_history_ = fit_learned_guess(train, valid, guess, self._guess_config(),
                                                               fit_gen)
                if valid is not None and float(valid.observed.sum()) >= 2500:
                    scored = valid
            # the first guess's error where training hides values, and where imputation does (the
            # data's own gaps: a few more hidden at random), so that every gap distance is well measured
            cond = conditional_mask(scored.observed, self.target_strategy, patterns=train.observed,
                                    generator=fit_gen)
            sigma_data = interpolation_error_scale(scored.values, scored.observed, cond, guess=guess)
            if self.residual_scale == "gap":
                few = scored.observed * (torch.rand(scored.observed.shape, generator=fit_gen,
                                                    device=self.device_) >= 0.1)
                sigma_table = interpolation_error_table(
                    torch.cat([scored.values, scored.values]), torch.cat([scored.observed, scored.observed]),
                    torch.cat([cond, few]), guess=guess)
        config = CSDIConfig(
            n_features=len(self._modelled()), n_steps=self.n_steps, channels=self.channels,
            n_layers=self.n_layers, n_heads=self.n_heads, ff_dim=self.channels, time_kernel=self.time_kernel,
        )
        net = CSDIDenoiser(config).to(self.device_)
        return SeriesDenoiser.from_settings(net, {
            "conditioning": self.conditioning, "parameterization": self.parameterization, "sigma_data": sigma_data,
            "sigma_table": sigma_table, "first_guess": None if guess is None else guess.to_dict()})

    def _guess_config(self) -> GuessTrainConfig:
        """Training of the learned first guess: at most ``epochs`` passes (100 when None) and half of ``max_time``,
        which its time counts towards; without ``max_time``, at most 3000 steps. With a time budget the steps
        follow the time (its learning-rate decay spans its half), so a longer budget buys a better guess: on
        PhysioNet the 3000-step cap ended the guess at 7 minutes with its held-out error still falling."""
        timed = self.max_time is not None
        return GuessTrainConfig(max_epochs=100 if self.epochs is None else self.epochs,
                                max_steps=None if timed else GuessTrainConfig.max_steps,
                                max_time=self.max_time / 2 if timed else None, verbose=self.verbose)

    def _step_limit(self) -> int | None:
        """``max_steps`` resolved: ``"auto"`` is None when ``epochs`` or ``max_time`` is set, else 1000 (also
        with ``step_selection="learned"`` and ``max_time`` alone: the mask's schedule is planned in steps)."""
        if isinstance(self.max_steps, str):
            if self.epochs is not None:
                return None
            return None if self.max_time is not None and self.step_selection != "learned" else 1000
        return self.max_steps

    def _train_config(self, n_windows: int) -> TrainConfig:
        """The optimisation recipe (see ``benchmarks/results/training_recipe.md`` for how it was chosen)."""
        max_steps = self._step_limit()
        max_time = self.max_time
        history = getattr(self, "guess_history_", None)
        if max_time is not None and history is not None and not self._warm_fit():  # the guess's share is spent
            max_time = max(max_time - history.seconds, 1e-3)
        eval_every = max(1, max_steps // 20) if max_steps is not None else None
        eval_seconds = max_time / 20 if max_steps is None and self.epochs is None and max_time else None
        return TrainConfig(
            epochs=self.epochs, max_steps=max_steps, max_time=max_time, eval_every=eval_every,
            eval_every_seconds=eval_seconds,
            batch_size=self.batch_size, lr=self.lr, target_strategy=self.target_strategy, patience=self.patience,
            precision=self.precision, verbose=self.verbose, lr_schedule="cosine", warmup=0.05,
            ema_decay=self.ema_decay, noise_levels=self.noise_levels,
            loss_weighting=self.loss_weighting,
        )

    def _checkpoint_score(self, data, seed: int) -> HoldoutScore:
        """The checkpoint score: held-out imputation MAE or CRPS (``checkpoint_metric``)."""
        # the sampler and chain that imputation will use (learned steps are not known yet: the uniform ones)
        if self.step_selection == "learned":
            steps = uniform_steps(self.n_steps, min(self.target_steps, self.n_steps))
        else:
            steps = self.inference_steps()
        return HoldoutScore(data, self._schedule, seed=seed, precision=self.precision, clip=self._clip_range(),
                            chain=self._schedule.chain(steps, self.chain), sampler=self.sampler, eta=self.eta,
                            metric=self.checkpoint_metric)

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

    # ------------------------------------------------------------------ step masks
    def _step_learning_data(self, X):
        frame, _ = self._validated_frame(X, reset=False)
        return window_set(self._scaled_series(frame), self.window_, max(1, self.window_ // 4), device=self.device_)

    def _learning_targets(self, data, generator: torch.Generator):
        patterns = data.observed if self.target_strategy in ("hist", "mix") else None

        def targets(batch) -> torch.Tensor:
            return conditional_mask(batch.observed, self.target_strategy, patterns=patterns, generator=generator)

        return targets

    # ------------------------------------------------------------------ sampling
    def _clip_range(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Bounds ``(K, 1)`` of the predicted clean values in model units (``sample_clip``), or None."""
        if self.sample_clip is None or self.data_min_ is None:
            return None
        cols = self._modelled()
        lo = torch.as_tensor(self.data_min_[cols] - self.sample_clip, dtype=torch.float32).view(-1, 1)
        hi = torch.as_tensor(self.data_max_[cols] + self.sample_clip, dtype=torch.float32).view(-1, 1)
        return lo, hi

    def _sample_limit(self) -> float | None:
        """Samples beyond this magnitude (model units) are exploding: ten times the data's extent, plus 10.
        None (only non-finite values are refused) when the training data's range is unknown (published weights)."""
        if self.data_min_ is None:
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
        windows = ImputationWindows.cut(self._scaled_series(frame), self.window_, self.device_)
        data = windows.data
        generator = self._sampling_generator()
        chain = self.inference_chain()
        result = impute_windows(
            self.denoiser_, data, chain, n_samples=n_samples, sampler=self.sampler, eta=self.eta,
            variance=self.variance,
            generator=generator, batch_size=self.inference_batch_size, precision=self.precision,
            verbose=self.verbose, clip=self._clip_range(), limit=self._sample_limit(), antithetic=antithetic,
        )
        info = SamplingInfo(nfe=result.nfe, steps=len(chain), windows=len(data.values))
        if self.calibration_ is not None:
            if self.calibration_.sampling == self._sampling_settings():
                result.samples = self.calibration_.apply(result.samples, data.observed.cpu())
            else:
                warnings.warn(
                    f"the spread calibration was fitted for sampling with {self.calibration_.sampling}, not "
                    f"{self._sampling_settings()}: the samples keep the sampler's own spread; call calibrate(X) "
                    "again with these settings", UserWarning, stacklevel=3)
        modelled = windows.stitch(result.samples.numpy().transpose(0, 1, 3, 2), len(frame))  # (n, rows, K)
        cols = self._modelled()
        # columns entirely missing at fit are not modelled: their gaps stay NaN
        out = np.full((n_samples, len(frame), self.n_features_in_), np.nan)
        out[..., cols] = unscaled(modelled, self.mean_[cols], self.scale_[cols])
        return out, ~np.isnan(frame.to_numpy(dtype=np.float64)), info

    def _distillation_lr(self) -> float:
        # the residual parameterization's clean prediction stays bounded at every noise level: a larger rate
        return self.lr / 3 if self.denoiser_.parameterization.kind == "residual" else self.lr / 30

    # ------------------------------------------------------------------ calibration of the spread
    def _sampling_settings(self) -> dict:
        """What the samples' spread depends on besides the network: the steps, chain and update (and, for a
        distilled sampler, that it is one, distilled from which steps)."""
        ddim = self.sampler == "ddim"
        settings = {"steps": [int(t) for t in self.inference_steps()], "chain": self.chain, "sampler": self.sampler,
                    "eta": float(self.eta) if ddim else None, "variance": None if ddim else float(self.variance)}
        if getattr(self, "distillation_", None) is not None:
            settings["distilled_from"] = list(self.distillation_.teacher_steps)
        return settings

    def calibrate(self, X, n_samples: int | None = None, value_bins: int = 1) -> Imputer:
        """Learn how much the samples' spread must be scaled for central bands to hold their nominal share.

        Some observed values of ``X`` (at most 256 windows) are hidden from the model as ``target_strategy``
        draws training targets (``"random"``: 20% of each window's; ``"hist"``: where another window of ``X``
        has gaps, so that long gaps get factors of their own; ``"mix"``: either, half of the windows each) and
        imputed with the current sampling settings and ``n_samples`` samples (default ``n_samples``); the
        split-conformal factors per feature, gap length and central level (20% to 95%) that make each band cover
        its level of them are stored in ``calibration_`` (:mod:`tsimpute.calibration`) and applied by
        :meth:`sample` and :meth:`predict_quantiles` (:meth:`transform`'s median is kept) as long as the
        sampling settings stay the same. Use data the model was not trained on (held-out series, or a later
        period); on training data the factors come out too small. Calibrate with as many samples as the bands
        will be read from: the central band of fewer samples is narrower, so its factors are larger.
        ``value_bins > 1`` also gives each feature's ranges of values (equal shares of its held-out values, by
        the samples' median) factors of their own, for data whose errors grow with the value (skewed, positive
        data): on PM2.5 three ranges moved the 50% band 0.9-2.7 points closer to 50%, on the quick start's
        sinusoids they lowered the 90% band by 2 points (``benchmarks/results/conformal.md``). Returns ``self``.
        """
        check_is_fitted(self, "model_")
        if isinstance(value_bins, bool) or not isinstance(value_bins, numbers.Integral) or value_bins < 1:
            raise ValueError(f"value_bins must be a positive integer, got {value_bins!r}")
        frame, _ = self._validated_frame(X, reset=False)
        data = window_set(self._scaled_series(frame), self.window_, max(1, self.window_ // 2), device=self.device_)
        self._fit_calibration(data, n_samples, int(value_bins))
        return self

    def _fit_calibration(self, data: WindowSet, n_samples: int | None = None, value_bins: int = 1) -> None:
        n = self.n_samples if n_samples is None else n_samples
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
            raise ValueError(f"n_samples must be an integer >= 2 to calibrate the spread, got {n!r}")
        gen = torch.Generator(device=self.device_).manual_seed(self._sampling_seed() + 3)
        given, values, hidden = hide_observed(data, 0.2, _CALIBRATION_WINDOWS, gen, strategy=self.target_strategy)
        result = impute_windows(
            self.denoiser_, given, self.inference_chain(), n_samples=int(n),
            sampler=self.sampler, eta=self.eta, variance=self.variance, generator=gen,
            batch_size=self.inference_batch_size,
            precision=self.precision, verbose=self.verbose, clip=self._clip_range(), limit=self._sample_limit(),
            antithetic=True)
        fitted = fit_spread_calibration(result.samples, values.cpu(), hidden.cpu(), given.observed.cpu(),
                                        value_bins=value_bins)
        self.calibration_ = replace(fitted, sampling=self._sampling_settings())

    def sample(self, X, n_samples: int | None = None, return_info: bool = False, antithetic: bool = False):
        """Draw imputations: an array ``(n_samples, n_rows, n_columns)``; observed cells equal ``X`` in every sample.

        For a 3-D array ``(n_series, n_steps, n_features)`` (or a dict ``{"X": array}`` holding one) the array is
        ``(n_samples, n_series, n_steps, n_features)``.

        The draws are independent (as multiple imputation needs); ``antithetic=True`` draws them in
        antithetic pairs instead, as :meth:`transform` and :meth:`predict_quantiles` do.

        With a fitted spread calibration (``calibration="conformal"`` or :meth:`calibrate`, for the current
        sampling settings) each draw is moved away from (or towards) the cell's median by its level's factor,
        keeping its rank, so that the central bands of the draws hold their nominal share of held-out values
        (see :meth:`predict_quantiles`); the median is unchanged.

        With ``return_info=True`` returns ``(samples, info)``, where ``info`` is a
        :class:`~tsimpute.inference.SamplingInfo` (network calls made, steps of the reverse chain, windows).
        """
        frame, layout = self._validated_frame(X, reset=False)
        samples, observed, info = self._sample_scaled(frame, self.n_samples if n_samples is None else n_samples,
                                                      antithetic)
        values = frame.to_numpy(dtype=np.float64)
        samples = layout.rows_to_input(np.where(observed[None], values[None], samples))
        return (samples, info) if return_info else samples

    def transform(self, X):
        """Fill the gaps of ``X`` with the median of ``n_samples`` samples; observed cells are returned unchanged.

        The samples are drawn in antithetic pairs (each pair's noises are opposite: each sample keeps its
        distribution, and the median varies less than over independent draws). Returns a DataFrame with the
        index and columns of ``X``; a float64 numpy array of the same shape for an array-like (2-D, or 3-D
        ``(n_series, n_steps, n_features)``), also when it comes in a dict ``{"X": array}``.
        """
        frame, layout = self._validated_frame(X, reset=False)
        samples, observed, _ = self._sample_scaled(frame, self.n_samples, antithetic=True)
        median = np.median(samples, axis=0)
        return self._fill(layout, frame, median, observed)

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95), n_samples: int | None = None):
        """Per-cell quantiles of the samples (drawn in antithetic pairs, as in :meth:`transform`).

        Returns a DataFrame with the rows of ``X`` whose columns are a ``(quantile, column)`` MultiIndex (for a
        DataFrame or a 2-D array-like), or, for a 3-D array ``(n_series, n_steps, n_features)`` (or a dict
        ``{"X": array}`` holding one), a float64 array ``(n_quantiles, n_series, n_steps, n_features)``.
        Observed cells equal ``X`` at every quantile.

        What the bands mean: the quantiles of the samples' distribution of each missing cell given the observed
        ones. How often a central band (e.g. 0.05 to 0.95) holds the truth depends on the training and on the
        steps sampled: without calibration few-step chains are overconfident (the 90% band of CSDI's published
        network held 60-73% of hidden PhysioNet values at 5-10 steps). With ``calibration="conformal"`` or after
        :meth:`calibrate` the spread is rescaled, per column, gap length and level, so that central bands of
        20% to 95% hold their nominal share of observed values hidden from the model (split conformal,
        :mod:`tsimpute.calibration`; ``benchmarks/results/conformal.md``). That share is over cells, not for
        each cell, and holds for gaps that resemble values missing at random."""
        try:
            q = np.asarray(quantiles, dtype=np.float64)
        except (TypeError, ValueError):
            q = np.empty(0)
        if q.ndim != 1 or q.size == 0 or not np.all((q >= 0) & (q <= 1)):
            raise ValueError(f"quantiles must be a non-empty sequence of numbers in [0, 1], got {quantiles!r}")
        frame, layout = self._validated_frame(X, reset=False)
        samples, observed, _ = self._sample_scaled(frame, self.n_samples if n_samples is None else n_samples,
                                                   antithetic=True)
        values = frame.to_numpy(dtype=np.float64)
        qs = np.quantile(samples, q, axis=0)
        qs = np.where(observed[None], values[None], qs)
        if layout.kind == "array3d":
            return layout.rows_to_input(qs)
        cols = pd.MultiIndex.from_product([q.tolist(), list(frame.columns)], names=["quantile", "column"])
        return pd.DataFrame(np.concatenate(list(qs), axis=1), index=frame.index, columns=cols)

    @staticmethod
    def _fill(layout: Layout, frame: pd.DataFrame, filled: np.ndarray, observed: np.ndarray):
        if layout.kind != "frame":  # frame wraps the validated float64 array
            return layout.rows_to_input(np.where(observed, frame.to_numpy(dtype=np.float64), filled))
        out = layout.source.copy()
        for j, col in enumerate(frame.columns):
            gaps = ~observed[:, j]
            if gaps.any():
                column = out[col].to_numpy(copy=True)
                column[gaps] = filled[gaps, j]
                out[col] = column
        return out
