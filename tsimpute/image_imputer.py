"""Images: a UNet on the same diffusion core and step mask as the time-series imputer; inpainting and generation.

``ImageImputer().fit(images)`` trains one conditional UNet (:mod:`tsimpute.models.unet`) that sees the observed
pixels and their mask; trained with an empty mask part of the time, the same network generates
(:meth:`ImageImputer.sample`). :meth:`ImageImputer.transform` fills NaN pixels. The schedules, chains,
samplers, training loop and step mask are those of the time-series imputer, unchanged.
"""

from __future__ import annotations

import numbers
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .data import WindowSet
from .denoisers import ImageDenoiser
from .diffusion.schedules import Chain, NoiseSchedule
from .estimator import DiffusionEstimator, FitData
from .image_masks import training_masks
from .models.unet import UNetConfig, UNetDenoiser, levels_for, require_diffusers
from .training import FitCallback, TrainConfig

INPAINTING = ("conditional", "replace")


class ImageImputer(DiffusionEstimator):
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
    denoiser_ : ImageDenoiser
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

    _parameter_constraints: dict = {
        **DiffusionEstimator._parameter_constraints,
        "target_steps": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_masks": [Interval(Integral, 2, None, closed="left")],
        "inpainting": [StrOptions(set(INPAINTING))],
    }
    _checkpoint_format = "tsimpute.ImageImputer"
    _checkpoint_version = 3  # 3: a distilled sampler; 2: network, denoiser adapter and data state apart

    # ------------------------------------------------------------------ checks
    def _always_learns_masks(self) -> bool:
        return True  # learn_steps may use n_masks whatever step_selection is

    def _check_param_relations(self) -> None:
        if self.target_steps > self.n_steps:
            raise ValueError(f"target_steps ({self.target_steps}) cannot exceed n_steps ({self.n_steps})")
        super()._check_param_relations()
        widths = self.widths
        if not (isinstance(widths, tuple | list) and widths
                and all(isinstance(w, numbers.Integral) and w > 0 and w % 8 == 0 for w in widths)):
            raise ValueError(f"widths must be a non-empty sequence of positive multiples of 8, got {widths!r}")

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

    # ------------------------------------------------------------------ fitted state
    def _set_data_state(self, state: dict) -> None:
        self.image_shape_ = tuple(int(v) for v in state["image_shape"])
        self.squeeze_channel_ = bool(state["squeeze_channel"])
        self.data_min_, self.data_max_ = (float(v) for v in state["data_range"])

    def _data_state(self) -> dict:
        return {"image_shape": list(self.image_shape_), "squeeze_channel": bool(self.squeeze_channel_),
                "data_range": [float(self.data_min_), float(self.data_max_)]}

    def _network(self, config: dict) -> UNetDenoiser:
        return UNetDenoiser(UNetConfig(**config))

    def _denoiser_from_settings(self, net, settings: dict) -> ImageDenoiser:
        return ImageDenoiser(net)

    @classmethod
    def _params_from_checkpoint(cls, params: dict) -> dict:
        return {**params, "widths": tuple(params["widths"])}

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, callback: FitCallback | None = None) -> ImageImputer:
        """Train the UNet (and, with ``step_selection="learned"``, the step mask) on images ``X``.

        ``X``: (N, H, W) or (N, C, H, W) pixels, uint8 or float; NaN pixels are missing (never given and never
        denoised). ``callback(history, kept_weights)`` is called after every checkpoint evaluation. Returns
        ``self``.
        """
        return super().fit(X, y, callback=callback)

    def _fit_input(self, X) -> tuple[np.ndarray, bool, tuple[float, float]]:
        require_diffusers()
        values, squeeze = self._images(X)
        if np.isnan(values).all():
            raise ValueError("X has no observed pixel")
        if np.asarray(X).dtype == np.uint8:
            data_range = (0.0, 255.0)
        else:
            data_range = (float(np.nanmin(values)), float(np.nanmax(values)))
        if data_range[1] <= data_range[0]:
            raise ValueError(f"X's pixels are all equal ({data_range[0]}): nothing to learn")
        return values, squeeze, data_range

    def _fit_data(self, inputs, rng: np.random.Generator) -> FitData:
        values, squeeze, data_range = inputs
        state = {"image_shape": values.shape[1:], "squeeze_channel": squeeze, "data_range": data_range}
        self._set_data_state(state)  # the pixel range maps images into the network's units
        order = rng.permutation(len(values))
        n_valid = min(512, int(round(self.validation_fraction * len(values)))) if len(values) >= 20 else 0
        data, observed = self._to_model(values)
        train = WindowSet(data[order[n_valid:]], observed[order[n_valid:]])
        valid = WindowSet(data[order[:n_valid]], observed[order[:n_valid]]) if n_valid else None
        return FitData(train, valid, state, rng)

    def _build_denoiser(self, train, fit_seed: int, valid=None) -> ImageDenoiser:
        c, h, w = self.image_shape_
        config = UNetConfig(height=h, width=w, channels=c, n_steps=self.n_steps,
                            widths=tuple(self.widths)[: levels_for(h, w, len(self.widths))], attention=self.attention,
                            conditional=True)
        return ImageDenoiser(UNetDenoiser(config).to(self.device_))

    def _train_config(self, n_windows: int) -> TrainConfig:
        return TrainConfig(epochs=None, max_steps=self.max_steps, batch_size=self.batch_size, lr=self.lr,
                           patience=None, precision=self.precision, verbose=self.verbose, lr_schedule="cosine",
                           warmup=0.05, ema_decay=self.ema_decay, eval_every=max(1, self.max_steps // 10))

    def _targets_fn(self):
        return self._training_targets

    def _mask_settings(self, during_fit: bool) -> dict:
        # the imputation reward samples a few validation images: every 16th batch in fit, every batch after
        return {"reward_every": 16 if during_fit else 1, "reward_samples": 2}

    def _noise_schedule(self) -> NoiseSchedule:
        # linear: DDPM's 1e-4 .. 0.02 over 1000 steps, rescaled so that the chain ends as noisy with n_steps
        scale = 1000 / self.n_steps
        return NoiseSchedule(self.n_steps, self.schedule, beta_start=1e-4 * scale, beta_end=min(0.02 * scale, 0.999))

    @staticmethod
    def _training_targets(batch: WindowSet, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = batch.values.shape
        given = training_masks(n, h, w, generator, device=batch.values.device)
        return given.expand_as(batch.observed) * batch.observed

    def _step_learning_data(self, X) -> WindowSet:
        values, _ = self._images(X)
        self._check_fitted_shape(values)
        return WindowSet(*self._to_model(values))

    def _learning_targets(self, data, generator: torch.Generator):
        return lambda batch: self._training_targets(batch, generator)

    def _check_distillable(self) -> None:
        if self.inpainting == "replace":
            raise ValueError("inpainting='replace' samples stochastically (the given pixels are noised anew at "
                             "every step) and cannot be distilled: use inpainting='conditional'")

    # ------------------------------------------------------------------ sampling
    def _draw(self, given: torch.Tensor, mask: torch.Tensor, n_samples: int, generator: torch.Generator,
              chain: Chain, desc: str) -> torch.Tensor:
        """``n_samples`` samples (S, N, C, H, W) of images with pixels ``given`` where ``mask`` (N, 1, H, W) is 1."""
        per_call = max(1, self.inference_batch_size // n_samples)
        n = given.shape[0]
        self.model_.eval()
        denoiser = ImageDenoiser(self.model_, replace=self.inpainting == "replace")
        out = []
        with tqdm(total=n, desc=desc, unit="image", disable=not self.verbose, leave=False) as bar:
            for i in range(0, n, per_call):
                out.append(denoiser.sample(given[i:i + per_call], mask[i:i + per_call], chain, n_samples, generator,
                                           sampler=self.sampler, eta=self.eta, precision=self.precision))
                bar.update(min(per_call, n - i))
        return torch.cat(out, dim=1)

    def _generator(self, random_state: int | None = None) -> torch.Generator:
        return self._sampling_generator(None if random_state is None else int(random_state))

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
