"""sha256 of files: the one helper behind dataset checks, batch-job fingerprints and packaged weights."""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the sha256 of a file's bytes.

    Parameters
    ----------
    path : str or path-like
        The file to hash.

    Returns
    -------
    str
        Lower-case hex digest (64 characters).

    Raises
    ------
    TypeError
        If ``path`` is not a str or path-like.
    FileNotFoundError, IsADirectoryError
        If ``path`` is not a readable file.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
