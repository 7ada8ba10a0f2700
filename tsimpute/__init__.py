"""tsimpute: few-step conditional diffusion imputation for multivariate time series."""

from ._version import __version__

__all__ = ["ImageImputer", "Imputer", "__version__"]


def __getattr__(name: str):
    # Lazy import: `import tsimpute` stays light (no torch) until the Imputer is used.
    if name == "Imputer":
        from .imputer import Imputer

        return Imputer
    if name == "ImageImputer":
        from .image_imputer import ImageImputer

        return ImageImputer
    raise AttributeError(f"module 'tsimpute' has no attribute {name!r}")
