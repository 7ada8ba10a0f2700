"""Images: a UNet on the same diffusion core and step mask as the time-series imputer; inpainting and generation.

``ImageImputer().fit(images)`` trains one conditional UNet (:mod:`tsimpute.models.unet`) that sees the observed
pixels and their mask; trained with an empty mask part of the time, the same network generates
(:meth:`ImageImputer.sample`). :meth:`ImageImputer.transform` fills NaN pixels. The schedules, chains,
samplers, training loop and step mask are those of the time-series imputer, unchanged.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from . import checkpoint
from ._version import __version__
from .diffusion.losses import masked_eps_mse
from .diffusion.samplers import SAMPLERS, antithetic_noise, get_sampler
from .diffusion.schedules import CHAIN_SEMANTICS, SCHEDULES, Chain, NoiseSchedule, add_noise
from .diffusion.step_mask import LOSS_WEIGHTS
from .image_masks import training_masks
from .imputer import Imputer, _resolve_device, _seeded_torch
from .models.unet import UNetConfig, UNetDenoiser, levels_for, require_diffusers
from .precision import PRECISIONS
from .step_learning import MASK_OBJECTIVES
from .step_selection import STEP_SELECTIONS, StepSelectionMixin
from .training import TrainConfig, WindowSet, autocast, train_denoiser

INPAINTING = ("conditional", "replace")
FORMAT = "tsimpute.ImageImputer"
FORMAT_VERSION = 1


def image_loss(model: UNetDenoiser, batch: WindowSet, cond: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor,
               generator: torch.Generator | None = None, weight: torch.Tensor | None = None,
               reduction: str = "mean") -> torch.Tensor:
    """Noise MSE on the pixels to denoise (observed, not given) of images ``batch.values`` (N, C, H, W)."""
    eps = torch.randn(batch.values.shape, generator=generator, device=batch.values.device)
    x_t = add_noise(batch.values, eps, alpha_bar)
    pred = model(x_t, t, batch.values * cond, cond[:, :1]) if model.config.conditional else model(x_t, t)
    return masked_eps_mse(pred, eps, batch.observed - cond, weight=weight, reduction=reduction)


@torch.no_grad()
def sample_images(model: UNetDenoiser, given: torch.Tensor, mask: torch.Tensor, chain: Chain, n_samples: int,
                  generator: torch.Generator | None, *, sampler: str = "ddpm", eta: float = 0.0,
                  replace: bool = False, precision: str = "fp32") -> torch.Tensor:
    """Samples ``(n_samples, N, C, H, W)`` in [-1, 1] of images whose pixels ``given`` are kept where ``mask``
    (N, 1, H, W) is 1 (an all-zero mask generates), with the reverse ``chain``.

    The network sees the given pixels (conditional inpainting), or with ``replace=True`` samples without them
    while they are put back, noised to each step's level, before every network call. Samples come in
    antithetic pairs when ``n_samples > 1``; the pixels in [-1, 1] (the sampler clips its clean-image
    predictions there).
    """
    device = given.device
    g = given.repeat(n_samples, 1, 1, 1)
    m = mask.to(given.dtype).repeat(n_samples, 1, 1, 1)
    conditional = not replace and bool(m.any())
    level = dict(zip(chain.timesteps.tolist(), chain.alphas_cumprod.tolist(), strict=True))

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        with autocast(device, precision):
            if conditional:
                return model(x, t, g, m).float()
            if m.any():  # the observed pixels at this step's noise level
                ab = level[t]
                z = torch.randn(x.shape, generator=generator, device=device)
                x = m * (math.sqrt(ab) * g + math.sqrt(1 - ab) * z) + (1 - m) * x
            return model(x, t).float()

    if n_samples > 1:
        x = antithetic_noise(g.shape, generator, device=device)
    else:
        x = torch.randn(g.shape, generator=generator, device=device)
    extra = {"eta": eta} if sampler == "ddim" else {}
    x = get_sampler(sampler)(eps_fn, x, chain, generator=generator, clip=(-1.0, 1.0), antithetic=n_samples > 1,
                             **extra)
    x = m * g + (1 - m) * x
    return x.view(n_samples, -1, *x.shape[1:])


def _reward_samples(model: UNetDenoiser, given: WindowSet, chain: Chain, n_samples: int,
                    generator: torch.Generator) -> torch.Tensor:
    """The step mask's ``imputation`` reward samples for images (see :class:`~tsimpute.step_learning.StepLearner`)."""
    return sample_images(model, given.values, given.observed[:, :1], chain, n_samples, generator)


class ImageImputer(StepSelectionMixin, BaseEstimator):
    """Diffusion inpainting and generation of images, with a learned step mask (METHOD.md §4).

    Parameters
    ----------
    n_steps : int, default=100
        Diffusion steps T of training.
    schedule : {"cosine", "linear", "quad"}, default="cosine"
        Noise schedule (cosine: Nichol & Dhariwal; linear: DDPM's 1e-4 .. 0.02 rescaled to ``n_steps``).
    step_selection : {"learned", "uniform", "quadratic", "all"}, default="learned"
        Steps kept at sampling. ``"learned"`` trains the step mask jointly with the network.
    target_steps : int, default=10
        Kept steps for ``uniform``, ``quadratic`` and ``learned``.
    sampler : {"ddpm", "ddim"}, default="ddpm"
    eta : float, default=0.0
        DDIM's noise (``sampler="ddim"``).
    chain : {"respaced", "masked"}, default="respaced"
        How a subset of steps is turned into a reverse chain (see :meth:`NoiseSchedule.chain`).
    inpainting : {"conditional", "replace"}, default="conditional"
        ``"conditional"``: the network sees the observed pixels. ``"replace"``: it samples without them and the
        observed pixels, noised to each step's level, are put back in before every network call.
    widths : tuple of int, default=(32, 64, 64)
        Channels of the UNet's resolution levels; levels the image size cannot halve into are dropped.
    attention : bool, default=True
        Self-attention at the lowest resolution.
    max_steps : int, default=2000
        Optimizer steps.
    batch_size, lr, ema_decay :
        Training batch, Adam's rate (warm-up then cosine decay) and the weight average's decay.
    mask_objective : {"imputation", "loss"}, default="imputation"
        Reward of a step mask: the CRPS of its few-step sampler inpainting held-out pixels of a few validation
        images (every 16th batch), or the paper's denoising loss under the mask (see
        ``benchmarks/results/images.md``: the loss reward drops the low-noise steps and generates poorly).
    n_masks, mask_lr, mask_weight :
        Step-mask learning: masks per batch (J), the scores' step size, the loss weight (``simple``/``elbo``).
    n_samples : int, default=1
        Samples per image in :meth:`transform` (the per-pixel median is returned).
    validation_fraction : float, default=0.05
        Images held out (up to 512) to choose the checkpoint by denoising loss.
    precision : {"fp32", "bf16", "auto"}, default="fp32"
    device : str, default="auto"
    inference_batch_size : int, default=256
        Image-samples per network call when sampling.
    random_state : int or None
        Seeds training and sampling: the same seed gives the same images on the same machine.
    verbose : bool, default=True
        Progress bars for training and sampling.

    Attributes
    ----------
    model_ : UNetDenoiser
    image_shape_ : tuple (C, H, W)
    data_min_, data_max_ : float
        The pixel range of the training images (0 and 255 for uint8), mapped to [-1, 1] for the network.
    learned_steps_, step_scores_ :
        The learned step mask (``step_selection="learned"`` or after :meth:`learn_steps`).
    history_ : TrainHistory
    """

    def __init__(self, n_steps: int = 100, schedule: str = "cosine", step_selection: str = "learned",
                 target_steps: int = 10, sampler: str = "ddpm", eta: float = 0.0, chain: str = "respaced",
                 inpainting: str = "conditional", widths: tuple[int, ...] = (32, 64, 64), attention: bool = True,
                 max_steps: int = 2000, batch_size: int = 64, lr: float = 2e-3, ema_decay: float | None = 0.999,
                 mask_objective: str = "imputation", n_masks: int = 2, mask_lr: float = 0.05,
                 mask_weight: str = "simple", n_samples: int = 1,
                 validation_fraction: float = 0.05, precision: str = "fp32", device: str = "auto",
                 inference_batch_size: int = 256, random_state=None, verbose: bool = True):
        self.n_steps = n_steps
        self.schedule = schedule
        self.step_selection = step_selection
        self.target_steps = target_steps
        self.sampler = sampler
        self.eta = eta
        self.chain = chain
        self.inpainting = inpainting
        self.widths = widths
        self.attention = attention
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.ema_decay = ema_decay
        self.mask_objective = mask_objective
        self.n_masks = n_masks
        self.mask_lr = mask_lr
        self.mask_weight = mask_weight
        self.n_samples = n_samples
        self.validation_fraction = validation_fraction
        self.precision = precision
        self.device = device
        self.inference_batch_size = inference_batch_size
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")

        for name in ("n_steps", "target_steps", "max_steps", "batch_size", "n_samples", "inference_batch_size"):
            positive_int(name)
        positive_int("n_masks", 2)
        choices = {"schedule": SCHEDULES, "step_selection": STEP_SELECTIONS, "sampler": tuple(SAMPLERS),
                   "chain": CHAIN_SEMANTICS, "inpainting": INPAINTING, "mask_weight": LOSS_WEIGHTS,
                   "mask_objective": MASK_OBJECTIVES,
                   "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.target_steps > self.n_steps:
            raise ValueError(f"target_steps ({self.target_steps}) cannot exceed n_steps ({self.n_steps})")
        if self.n_masks > self.batch_size:
            raise ValueError(f"n_masks ({self.n_masks}) cannot exceed batch_size ({self.batch_size})")
        for name in ("lr", "mask_lr"):
            if not (isinstance(getattr(self, name), numbers.Real) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not (isinstance(self.eta, numbers.Real) and 0 <= self.eta <= 1):
            raise ValueError(f"eta must lie in [0, 1], got {self.eta!r}")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 <= self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction!r}")
        if self.ema_decay is not None and not (isinstance(self.ema_decay, numbers.Real) and 0 < self.ema_decay < 1):
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay!r}")
        widths = self.widths
        if not (isinstance(widths, tuple | list) and widths
                and all(isinstance(w, numbers.Integral) and w > 0 and w % 8 == 0 for w in widths)):
            raise ValueError(f"widths must be a non-empty sequence of positive multiples of 8, got {widths!r}")
        _resolve_device(self.device)

    def _images(self, X, name: str = "X") -> tuple[np.ndarray, bool]:
        """``X`` as float64 (N, C, H, W) in its own units, and whether it came without a channel axis."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        arr = np.asarray(X)
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"{name} must hold numbers (uint8 or float pixels), got dtype {arr.dtype}")
        if arr.ndim not in (3, 4):
            raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {arr.shape}")
        squeeze = arr.ndim == 3
        arr = arr[:, None] if squeeze else arr
        if arr.shape[0] == 0:
            raise ValueError(f"{name} holds no images")
        if not squeeze and arr.shape[1] > 4 and arr.shape[-1] in (1, 3, 4):
            raise ValueError(f"{name} has shape {arr.shape}: channels must come first (N, C, H, W); "
                             "transpose channels-last images with x.transpose(0, 3, 1, 2)")
        if min(arr.shape[2:]) < 4:
            raise ValueError(f"{name}'s images of {arr.shape[2]}x{arr.shape[3]} are too small (sides >= 4)")
        values = arr.astype(np.float64)
        if np.isinf(values).any():
            raise ValueError(f"{name} holds infinite pixels; mark missing pixels with NaN")
        return values, squeeze

    def _check_fitted_shape(self, values: np.ndarray, name: str = "X") -> None:
        if tuple(values.shape[1:]) != tuple(self.image_shape_):
            raise ValueError(f"{name} has images of shape {tuple(values.shape[1:])}, but the imputer was fitted on "
                             f"{tuple(self.image_shape_)} (C, H, W)")

    def _to_model(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels in [-1, 1] with 0 where missing, and the observed mask (N, C, H, W) (a pixel is observed when
        every channel is)."""
        observed = np.isfinite(values).all(axis=1, keepdims=True)
        observed = np.repeat(observed, values.shape[1], axis=1)
        scaled = (np.nan_to_num(values) - self.data_min_) / (self.data_max_ - self.data_min_) * 2 - 1
        scaled = np.where(observed, scaled, 0.0)
        return (torch.as_tensor(scaled, dtype=torch.float32, device=self.device_),
                torch.as_tensor(observed, dtype=torch.float32, device=self.device_))

    def _from_model(self, x: torch.Tensor) -> np.ndarray:
        x = x.float().clamp(-1, 1).cpu().numpy().astype(np.float64)
        return (x + 1) / 2 * (self.data_max_ - self.data_min_) + self.data_min_

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None) -> ImageImputer:
        """Train the UNet (and, with ``step_selection="learned"``, the step mask) on images ``X``.

        ``X``: (N, H, W) or (N, C, H, W) pixels, uint8 or float; NaN pixels are missing (never given and never
        denoised). Returns ``self``.
        """
        self._check_params()
        require_diffusers()
        values, squeeze = self._images(X)
        if np.isnan(values).all():
            raise ValueError("X has no observed pixel")
        self.squeeze_channel_ = squeeze
        self.image_shape_ = tuple(int(s) for s in values.shape[1:])
        if np.asarray(X).dtype == np.uint8:
            self.data_min_, self.data_max_ = 0.0, 255.0
        else:
            self.data_min_, self.data_max_ = float(np.nanmin(values)), float(np.nanmax(values))
        if self.data_max_ <= self.data_min_:
            raise ValueError(f"X's pixels are all equal ({self.data_min_}): nothing to learn")
        fit_seed = Imputer._init_seeds(self)
        self.device_ = _resolve_device(self.device)
        rng = np.random.default_rng(fit_seed)
        order = rng.permutation(len(values))
        n_valid = min(512, int(round(self.validation_fraction * len(values)))) if len(values) >= 20 else 0
        data, observed = self._to_model(values)
        train = WindowSet(data[order[n_valid:]], observed[order[n_valid:]])
        valid = WindowSet(data[order[:n_valid]], observed[order[:n_valid]]) if n_valid else None
        c, h, w = self.image_shape_
        config = UNetConfig(height=h, width=w, channels=c, n_steps=self.n_steps,
                            widths=tuple(self.widths)[: levels_for(h, w, len(self.widths))], attention=self.attention,
                            conditional=True)
        self._schedule = self._noise_schedule()
        with _seeded_torch(fit_seed, self.device_):
            generator = torch.Generator(device=self.device_).manual_seed(fit_seed)
            self.model_ = UNetDenoiser(config).to(self.device_)
            n_batches = max(1, math.ceil(len(train) / self.batch_size))
            epochs = self.max_steps / n_batches
            train_cfg = TrainConfig(epochs=None, max_steps=self.max_steps, batch_size=self.batch_size, lr=self.lr,
                                    patience=None, precision=self.precision, verbose=self.verbose,
                                    lr_schedule="cosine", warmup=0.05, ema_decay=self.ema_decay,
                                    eval_every=max(1, self.max_steps // 10))
            hook = learner = None
            if self.step_selection == "learned":
                learner = self._step_learner(generator, valid if valid is not None else train, total_epochs=epochs,
                                             budget_epochs=0.7 * epochs, warmup_epochs=0.1 * epochs,
                                             loss_fn=image_loss, impute_fn=_reward_samples, reward_every=16,
                                             reward_samples=2)
                hook = learner.loss_hook
                train_cfg.select_from_epoch = max(0, min(math.ceil(epochs) - 1, math.ceil(0.7 * epochs)))
            self.history_ = train_denoiser(self.model_, self._schedule, train, valid, train_cfg, generator, hook,
                                           loss_fn=image_loss, targets_fn=self._training_targets)
            if learner is not None:
                self._store_mask(learner)
        self.steps_ = self.inference_steps().numpy()
        return self

    def _noise_schedule(self) -> NoiseSchedule:
        # linear: DDPM's 1e-4 .. 0.02 over 1000 steps, rescaled so that the chain ends as noisy with n_steps
        scale = 1000 / self.n_steps
        return NoiseSchedule(self.n_steps, self.schedule, beta_start=1e-4 * scale, beta_end=min(0.02 * scale, 0.999))

    @staticmethod
    def _training_targets(batch: WindowSet, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = batch.values.shape
        given = training_masks(n, h, w, generator, device=batch.values.device)
        return given.expand_as(batch.observed) * batch.observed

    def learn_steps(self, X, target_steps: int | None = None, epochs: int = 1) -> ImageImputer:
        """Learn a step mask on this fitted network, weights frozen ("from a pretrained model", METHOD.md §4):
        the mask loop over the images of ``X`` for ``epochs`` epochs, then exactly ``target_steps`` steps read
        out into ``learned_steps_``; sets ``step_selection="learned"`` (and ``target_steps``)."""
        check_is_fitted(self, "model_")
        k = self.target_steps if target_steps is None else target_steps
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.n_steps:
            raise ValueError(f"target_steps must be an integer in [1, {self.n_steps}], got {k!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        values, _ = self._images(X)
        self._check_fitted_shape(values)
        data = WindowSet(*self._to_model(values))
        generator = torch.Generator(device=self.device_).manual_seed(self._sample_seed + 1)
        learner = self._step_learner(generator, data, total_epochs=epochs, budget_epochs=0.7 * epochs,
                                     warmup_epochs=0.0, k=int(k), loss_fn=image_loss, impute_fn=_reward_samples,
                                     reward_every=1, reward_samples=2)
        learner.learn_on(self.model_, data, epochs=epochs, batch_size=self.batch_size, verbose=self.verbose,
                         target_strategy_fn=lambda batch: self._training_targets(batch, generator))
        self._store_mask(learner)
        self.target_steps, self.step_selection = int(k), "learned"
        self.steps_ = self.inference_steps().numpy()
        return self

    # ------------------------------------------------------------------ sampling
    def _draw(self, given: torch.Tensor, mask: torch.Tensor, n_samples: int, generator: torch.Generator,
              chain: Chain, desc: str) -> torch.Tensor:
        """``n_samples`` samples (S, N, C, H, W) of images with pixels ``given`` where ``mask`` (N, 1, H, W) is 1."""
        per_call = max(1, self.inference_batch_size // n_samples)
        n = given.shape[0]
        out = []
        with tqdm(total=n, desc=desc, unit="image", disable=not self.verbose, leave=False) as bar:
            for i in range(0, n, per_call):
                out.append(sample_images(self.model_.eval(), given[i:i + per_call], mask[i:i + per_call], chain,
                                         n_samples, generator, sampler=self.sampler, eta=self.eta,
                                         replace=self.inpainting == "replace", precision=self.precision))
                bar.update(min(per_call, n - i))
        return torch.cat(out, dim=1)

    def _generator(self, random_state: int | None = None) -> torch.Generator:
        if random_state is not None:
            seed = int(random_state)
        else:
            seed = self._sample_seed if self._seeded else int(np.random.SeedSequence().generate_state(1)[0])
        return torch.Generator(device=self.device_).manual_seed(seed)

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Fill the NaN pixels of ``X`` (same layout as at fit); observed pixels come back unchanged.

        Each image's gaps get the per-pixel median of ``n_samples`` samples (drawn in antithetic pairs); an
        image with every pixel missing is generated. Returns a float64 array of ``X``'s shape.
        """
        check_is_fitted(self, "model_")
        values, squeeze = self._images(X)
        self._check_fitted_shape(values)
        missing = np.isnan(values).any(axis=(1, 2, 3))
        out = values.copy()
        if missing.any():
            given, observed = self._to_model(values[missing])
            samples = self._draw(given, observed[:, :1], self.n_samples, self._generator(), self.inference_chain(),
                                 "inpaint")
            filled = np.median(self._from_model(samples), axis=0)
            out[missing] = np.where(np.isnan(values[missing]), filled, values[missing])
        return out[:, 0] if squeeze else out

    @torch.no_grad()
    def sample(self, n: int, random_state: int | None = None) -> np.ndarray:
        """Generate ``n`` images (float64, in the training images' pixel range and layout).

        ``random_state`` seeds this call's draws (default: the imputer's own sampling seed).
        """
        check_is_fitted(self, "model_")
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if random_state is not None and (isinstance(random_state, bool)
                                         or not isinstance(random_state, numbers.Integral)):
            raise TypeError(f"random_state must be an integer or None, got {random_state!r}")
        c, h, w = self.image_shape_
        empty = torch.zeros(int(n), c, h, w, device=self.device_)
        images = self._from_model(self._draw(empty, empty[:, :1], 1, self._generator(random_state),
                                             self.inference_chain(), "generate")[0])
        return images[:, 0] if self.squeeze_channel_ else images

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted imputer to one file (read back with ``torch.load(weights_only=True)``)."""
        check_is_fitted(self, "model_")
        learned = getattr(self, "learned_steps_", None)
        scores = getattr(self, "step_scores_", None)
        torch.save({
            "format": FORMAT, "format_version": FORMAT_VERSION, "tsimpute_version": __version__,
            "params": {**checkpoint._plain_params(self.get_params()), "widths": list(self.widths)},
            "model_config": self.model_.config.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "image_shape": list(self.image_shape_), "squeeze_channel": bool(self.squeeze_channel_),
            "data_range": [float(self.data_min_), float(self.data_max_)],
            "sample_seed": int(self._sample_seed), "seeded": bool(self._seeded),
            "learned_steps": None if learned is None else torch.as_tensor(np.asarray(learned)),
            "step_scores": None if scores is None else torch.as_tensor(np.asarray(scores)),
        }, path)

    @classmethod
    def load(cls, path, device: str | None = None) -> ImageImputer:
        """Read an imputer written by :meth:`save`."""
        payload = checkpoint.read_checkpoint(path, FORMAT, FORMAT_VERSION)
        params = dict(payload["params"])
        params["widths"] = tuple(params["widths"])
        if device is not None:
            params["device"] = device
        imp = cls(**params)
        imp.device_ = _resolve_device(imp.device)
        model = UNetDenoiser(UNetConfig(**payload["model_config"]))
        model.load_state_dict(payload["model_state"])
        imp.model_ = model.to(imp.device_).eval()
        imp.image_shape_ = tuple(payload["image_shape"])
        imp.squeeze_channel_ = payload["squeeze_channel"]
        imp.data_min_, imp.data_max_ = payload["data_range"]
        imp._sample_seed, imp._seeded = payload["sample_seed"], payload["seeded"]
        imp._schedule = imp._noise_schedule()
        if payload["learned_steps"] is not None:
            imp.learned_steps_ = payload["learned_steps"].numpy()
        if payload["step_scores"] is not None:
            imp.step_scores_ = payload["step_scores"].numpy()
        imp.steps_ = imp.inference_steps().numpy()
        return imp
