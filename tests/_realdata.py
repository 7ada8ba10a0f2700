"""Where the tests find the real benchmark files, and what happens when they are not there.

Tests that need a real dataset call :func:`data_root`. When no data root holds the dataset's files the test is
skipped with a reason naming the dataset and where to put it, or fails when ``TSIMPUTE_REQUIRE_DATA=1``
(CI sets it, so that the real-data paths are always exercised there). The roots are read once, when the test
session starts, before any test isolates itself from them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsimpute.datasets import DATASETS
from tsimpute.datasets._locate import ENV_VAR, search_roots

REQUIRE_DATA = os.environ.get("TSIMPUTE_REQUIRE_DATA", "").strip() not in ("", "0")
_ROOTS: list[tuple[Path, str]] = search_roots()


def _has_all_files(root: Path, name: str) -> bool:
    return all(any((root / v.relpath).is_file() for v in f.variants) for f in DATASETS[name].files)


def data_root(name: str) -> Path:
    """The first data root holding every file of dataset ``name``; skip (or fail, see above) if there is none."""
    for root, _why in _ROOTS:
        if _has_all_files(root, name):
            return root
    info = DATASETS[name]
    files = ", ".join(f.variants[0].relpath for f in info.files)
    places = "; ".join(f"{p} ({why})" for p, why in _ROOTS)
    reason = (
        f"needs the real {info.title} files ({files}) under a data root: set {ENV_VAR}, or run "
        f"`tsimpute datasets --download {name}`; searched {places}"
    )
    if REQUIRE_DATA:
        pytest.fail(f"TSIMPUTE_REQUIRE_DATA is set but the test {reason}", pytrace=False)
    pytest.skip(reason)
