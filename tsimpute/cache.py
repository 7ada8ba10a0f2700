"""The user cache folder of tsimpute: downloaded datasets, parsed datasets and compiled CPU kernels.

One folder for everything tsimpute caches: ``$TSIMPUTE_CACHE_DIR`` when set, else the platform's user cache folder
for ``tsimpute`` (:func:`platformdirs.user_cache_path`: ``$XDG_CACHE_HOME/tsimpute``, by default
``~/.cache/tsimpute``, on Linux; ``~/Library/Caches/tsimpute`` on macOS; ``%LOCALAPPDATA%\\tsimpute\\Cache`` on
Windows). Datasets are downloaded below it (``physionet2012/``, ``ett/``, ...), parsed PhysioNet archives go to
``parsed/`` and compiled kernels to ``kernels/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["CACHE_ENV_VAR", "cache_dir"]

#: Environment variable that moves the whole cache folder.
CACHE_ENV_VAR = "TSIMPUTE_CACHE_DIR"


def cache_dir() -> Path:
    """Return tsimpute's user cache folder (not created).

    Returns
    -------
    pathlib.Path
        ``$TSIMPUTE_CACHE_DIR`` when set (``~`` expanded), else the platform's user cache folder for tsimpute.
    """
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return platformdirs.user_cache_path("tsimpute", appauthor=False)
