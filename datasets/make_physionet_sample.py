"""Regenerate ``tsimpute/data/physionet2012_seta_sample.npz`` from ``set-a.tar.gz``.

The sample is the first ``--n`` stays (by RecordID) of PhysioNet 2012 set-a, binned exactly as
:func:`tsimpute.datasets.load_physionet` does (48 hours x 35 variables), stored sparsely
(packed observed mask + observed values as float64) in a deflated ``.npz`` with fixed zip
timestamps, so the output is byte-for-byte reproducible.

Usage::

    python datasets/make_physionet_sample.py [--data-dir DIR] [--n 1000] [--out PATH]

PhysioNet 2012 is licensed ODC-By 1.0; see ``datasets/physionet2012.md`` for the attribution.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

from tsimpute.datasets.physionet import (
    SAMPLE_PATH,
    SAMPLE_STAYS,
    _pack,
    load_physionet,
    save_npz_deterministic,
)

logger = logging.getLogger("make_physionet_sample")


def main(argv: list[str] | None = None) -> Path:
    """Parse arguments, build the sample and write it.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data root holding physionet2012/set-a.tar.gz")
    parser.add_argument("--n", type=int, default=SAMPLE_STAYS, help="number of stays (default %(default)s)")
    parser.add_argument("--out", type=Path, default=SAMPLE_PATH, help="output .npz")
    args = parser.parse_args(argv)
    data = load_physionet("set-a", source="full", data_dir=args.data_dir, cache=False)
    save_npz_deterministic(args.out, _pack(data.values[: args.n], data.record_ids[: args.n]), compress=True)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    logger.info(
        "wrote %s: %d stays from %s, %d bytes, sha256 %s",
        args.out,
        args.n,
        data.path,
        args.out.stat().st_size,
        digest,
    )
    return args.out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
