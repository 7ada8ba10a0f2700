"""Benchmark profiles: how big a run is (model, epochs, data subsets, samples, step counts).

``smoke`` checks the pipeline end to end in well under two minutes on 2 CPU cores (CI); ``quick`` gives
meaningful but budget-limited figures in under 20 minutes on 2 CPU cores (data subsets, a smaller network,
few samples); ``converged`` sizes a CPU run of a published network (``--model``: no training; 32 test
stays, 10 samples, steps 50/10/5/3/2); ``paper`` is CSDI's protocol (CSDI's architecture, 200 epochs,
100 samples, the whole test fold), meant for a GPU. Every setting is written into the result files.

SAITS (PyPOTS, the ``peers`` extra) runs by default in the quick, converged and paper profiles: a smaller
network for at most 50 epochs in ``quick``, PyPOTS' PhysioNet settings for up to 100 epochs in the others, with
early stopping. ``smoke`` runs it only when asked for (``--methods ...,saits``), as a tiny network trained for
2 epochs: importing PyPOTS alone takes seconds.

"Training series" are PhysioNet stays, PM2.5 chunks of six days (whole months when ``n_train`` is None,
as in the quick and paper profiles) and synthetic chunks of four windows; "test windows" are PhysioNet test
stays, CSDI's PM2.5 test windows (an evenly spread subset) and synthetic test windows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["PROFILES", "BenchProfile", "get_profile"]


@dataclass(frozen=True)
class BenchProfile:
    """Settings of one benchmark size.

    Parameters
    ----------
    name : str
        Profile name.
    epochs, batch_size, lr, patience : Imputer training settings
        ``patience=None`` disables early stopping.
    channels, n_layers, n_heads : int
        Denoiser size (CSDI: 64, 4, 8).
    n_samples : int
        Samples per window for the diffusion methods.
    steps : tuple of int
        Default step counts (``--steps``).
    n_train : int or None
        Training series (None: all of the protocol's training data).
    n_test : int or None
        Test windows (None: the whole test split).
    learn_epochs : int
        Epochs of the from-pretrained step-mask loop.
    ddim_full : bool
        Also sample DDIM with all T steps (costs T network calls per sample; other selections are only run
        below T, where they differ from the full chain).
    joint_steps : tuple of int or None
        Step counts that get a jointly trained model (one training run each); None: every count below T.
    knn_neighbors, iterative_max_iter, baseline_max_rows : classical settings
        ``baseline_max_rows`` caps the training rows given to KNN / iterative (None: all).
    saits_default : bool
        Run ``saits`` when no methods are named (it is always run on request).
    saits_epochs, saits_patience, saits_n_layers, saits_d_model, saits_n_heads : SAITS settings
        With ``saits_d_ffn``, ``saits_dropout``, ``saits_batch_size`` and ``saits_lr``: the settings of
        :class:`~tsimpute.benchmark.saits.Saits` (PyPOTS' SAITS, ``d_k = d_v = d_model // n_heads``); the
        defaults are PyPOTS' / TSI-Bench's PhysioNet settings (2 layers, d_model 256, 4 heads, d_ffn 128,
        dropout 0.1), trained for up to 100 epochs with early stopping after 10 epochs without progress.
    inference_batch_size : int
        Window-samples per network call.
    max_time : float or None
        Wall-clock budget of each diffusion training run in seconds (``Imputer(max_time=...)``; training ends
        at the first of ``epochs`` and ``max_time``); None: ``epochs`` alone.
    overrides : dict
        Per-dataset replacements, e.g. ``{"pm25": {"n_train": None}}``.
    """

    name: str
    epochs: int
    channels: int
    n_layers: int
    n_heads: int
    n_samples: int
    steps: tuple[int, ...]
    n_train: int | None
    n_test: int | None
    batch_size: int = 16
    lr: float = 1e-3
    patience: int | None = None
    learn_epochs: int = 1
    ddim_full: bool = True
    joint_steps: tuple[int, ...] | None = (10,)
    knn_neighbors: int = 5
    iterative_max_iter: int = 10
    baseline_max_rows: int | None = 20000
    inference_batch_size: int = 512
    max_time: float | None = None
    saits_default: bool = True
    saits_epochs: int = 100
    saits_patience: int | None = 10
    saits_n_layers: int = 2
    saits_d_model: int = 256
    saits_n_heads: int = 4
    saits_d_ffn: int = 128
    saits_dropout: float = 0.1
    saits_batch_size: int = 32
    saits_lr: float = 1e-3
    overrides: dict[str, dict] = field(default_factory=dict)

    def for_dataset(self, dataset: str) -> BenchProfile:
        """This profile with the overrides of ``dataset`` applied (and no overrides left)."""
        return dataclasses.replace(self, **self.overrides.get(dataset, {}), overrides={})

    def replace(self, **changes) -> BenchProfile:
        """A copy with some settings changed (unknown names raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """Plain dict of the settings (JSON-ready)."""
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps)
        d["joint_steps"] = None if self.joint_steps is None else list(self.joint_steps)
        return d


PROFILES: dict[str, BenchProfile] = {
    "smoke": BenchProfile(
        name="smoke", epochs=2, channels=16, n_layers=1, n_heads=4, n_samples=3, steps=(50, 10),
        n_train=48, n_test=8, learn_epochs=1, joint_steps=(10,), iterative_max_iter=3, baseline_max_rows=2000,
        ddim_full=True,
        # importing PyPOTS alone takes seconds: saits only on request, as a tiny network trained for 2 epochs
        saits_default=False, saits_epochs=2, saits_patience=None, saits_n_layers=1, saits_d_model=32,
        saits_n_heads=2, saits_d_ffn=32,
    ),
    "quick": BenchProfile(
        name="quick", epochs=20, channels=32, n_layers=1, n_heads=4, n_samples=10, steps=(50, 25, 10, 5),
        n_train=320, n_test=20, learn_epochs=1, joint_steps=(10,), iterative_max_iter=10,
        baseline_max_rows=5000, ddim_full=False, overrides={"pm25": {"n_train": None}},
        saits_epochs=50, saits_patience=5, saits_d_model=64, saits_d_ffn=64,
    ),
    # for a published network (run_benchmark(model=...)): nothing is trained, so the budget goes to sampling;
    # the step mask is learned over n_train training stays (a fraction of one epoch); SAITS, with PyPOTS'
    # PhysioNet settings (the defaults), trains on the same stays: minutes on a CPU (206 s with one thread on 2 cores)
    "converged": BenchProfile(
        name="converged", epochs=1, channels=64, n_layers=4, n_heads=8, n_samples=10, steps=(50, 10, 5, 3, 2),
        n_train=320, n_test=32, learn_epochs=1, joint_steps=(), iterative_max_iter=10, baseline_max_rows=20000,
        ddim_full=False, inference_batch_size=16,
    ),
    "paper": BenchProfile(
        name="paper", epochs=200, channels=64, n_layers=4, n_heads=8, n_samples=100, steps=(50, 25, 10, 5),
        n_train=None, n_test=None, learn_epochs=1, joint_steps=None, iterative_max_iter=10,
        baseline_max_rows=None, patience=None,
    ),
}


def get_profile(name: str | BenchProfile) -> BenchProfile:
    """Look up a profile by name (a :class:`BenchProfile` passes through)."""
    if isinstance(name, BenchProfile):
        return name
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {name!r}")
    return PROFILES[name]
