"""The README's quick start, as printed: ``Imputer(random_state=0).fit_transform(X)`` with every default.

Measured (``benchmarks/results/quickstart_defaults.md``, 2-core CPU): MAE 0.0917 on the gaps against linear
interpolation's 0.1047 (ratio 0.88; 0.0926 and 0.0941 with seeds 1 and 2), column means 1.07, in about 36 s. The test
runs the README's code block itself (the documentation's copies must equal it, ``tests/test_docs.py``) and asserts
the diffusion imputer at least 5% below interpolation (and far below column means), so that a change that loses the
gain fails here, and what the block's other lines promise: the layout of bands and draws, the full chain on the same
network, and the saved file.
"""

import numpy as np
import torch

from tsimpute import Imputer

from ._docblocks import quick_start, run


def test_quick_start_with_every_default_beats_linear_interpolation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "__docs__"}
    run(quick_start(), ns)
    X, complete, gaps = ns["X"], ns["complete"], ns["gaps"]
    assert gaps.any() and np.array_equal(gaps, X.isna().to_numpy())

    def mae(frame):
        return np.abs(frame.to_numpy() - complete.to_numpy())[gaps].mean()

    diffusion = mae(ns["filled"])
    interpolation = mae(X.interpolate(limit_direction="both"))
    means = mae(X.fillna(X.mean()))
    assert diffusion < 0.95 * interpolation, (diffusion, interpolation)
    assert diffusion < means / 8, (diffusion, means)

    bands = ns["bands"]
    assert list(bands.columns) == [(q, c) for q in (0.05, 0.5, 0.95) for c in X.columns]
    lo, hi = bands[0.05].to_numpy(), bands[0.95].to_numpy()
    assert (lo[gaps] <= hi[gaps]).all() and (lo[gaps] < hi[gaps]).mean() > 0.9
    assert ns["draws"].shape == (20, *X.shape)
    full = ns["full"]
    assert ns["imp"].step_selection == "all" and not full.isna().any().any()
    assert mae(full) < interpolation  # the whole chain of the same network is about as accurate
    same = ns["same"]
    assert isinstance(same, Imputer) and (tmp_path / "imputer.pt").is_file()
    assert same.get_params() == ns["imp"].get_params()
    saved, fitted = same.model_.state_dict(), ns["imp"].model_.state_dict()
    assert saved.keys() == fitted.keys() and all(torch.equal(saved[k], fitted[k]) for k in saved)
