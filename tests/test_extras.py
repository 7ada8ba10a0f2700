"""The optional dependencies install together: every one that is installed imports, and import errors keep their cause.

``pip install -e ".[dev,peers]"`` must leave an environment where diffusers and PyPOTS both import
(pyproject.toml constrains huggingface-hub and transformers for that). This module imports each optional
dependency that is installed, so an environment where pip left one unimportable fails here, with the error.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from tsimpute.models import unet

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# distribution name -> (module, attribute) to import where they differ; the attributes are those tsimpute uses, or
# load eagerly what lazy top-level packages (diffusers, transformers) would otherwise only import on first use
MODULES = {
    "diffusers": ("diffusers", "UNet2DModel"),
    "transformers": ("transformers", "PreTrainedModel"),
    "pypots": ("pypots.imputation", "CSDI"),
    "dask": ("dask.dataframe", None),
    "mkdocs-material": ("material", None),
}


def _optional_distributions() -> list[str]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for reqs in extras.values() for req in reqs}
    return sorted(names)


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_extras_name_the_libraries_they_need():
    names = _optional_distributions()
    assert {"diffusers", "pypots", "transformers", "huggingface-hub"} <= set(names)


@pytest.mark.parametrize("dist", _optional_distributions())
def test_every_installed_optional_dependency_imports(dist, tmp_path, monkeypatch):
    if not _installed(dist):
        pytest.skip(f"{dist} is not installed")
    monkeypatch.setenv("HOME", str(tmp_path))  # PyPOTS writes a configuration file in the home folder on import
    module, attribute = MODULES.get(dist, (dist.replace("-", "_"), None))
    imported = importlib.import_module(module)  # an ImportError here is a broken combination of installed versions
    if attribute is not None:
        getattr(imported, attribute)


def test_image_backend_imports():
    if not _installed("diffusers"):
        pytest.skip("the image extra is not installed")
    assert unet.require_diffusers().__name__ == "UNet2DModel"


def _failing_import(monkeypatch, name: str, message: str) -> None:
    """Make ``import name`` (and its submodules) raise ImportError(message), installed or not."""
    real_import = builtins.__import__

    def fake_import(mod, *args, **kwargs):
        if mod == name or mod.startswith(name + "."):
            raise ImportError(message)
        return real_import(mod, *args, **kwargs)

    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_require_diffusers_keeps_the_original_error(monkeypatch):
    cause = "cannot import name 'cached_download' from 'huggingface_hub'"
    _failing_import(monkeypatch, "diffusers", cause)
    with pytest.raises(ImportError) as err:
        unet.require_diffusers()
    msg = str(err.value)
    assert "needs diffusers" in msg and cause in msg and "tsimpute[image]" in msg
    assert isinstance(err.value.__cause__, ImportError) and str(err.value.__cause__) == cause
