import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsimpute import Imputer
from tsimpute.cache import CACHE_ENV_VAR
from tsimpute.datasets import _locate
from tsimpute.synthetic import correlated_sinusoids

# The real benchmark files beside the checkout (``<repo>/../shared/data``, as CI lays them out) are the data root of
# the test session unless $TSIMPUTE_DATA_DIR says otherwise. Set here, before tests/_realdata.py reads the roots.
_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get(_locate.ENV_VAR, "").strip() and _SHARED_DATA.is_dir():
    os.environ[_locate.ENV_VAR] = str(_SHARED_DATA)

TINY = dict(window=12, channels=16, n_layers=1, n_heads=2, n_samples=4, epochs=3, batch_size=16, verbose=False)


@pytest.fixture(scope="session")
def sinusoids():
    """(with_gaps, complete) wide frames, 300 hourly rows x 4 features, 20% MCAR gaps."""
    return correlated_sinusoids(300, 4, seed=3)


@pytest.fixture(scope="session")
def tiny_imputer(sinusoids):
    """A quickly fitted tiny imputer shared by API tests (never mutate it in a test: clone or deepcopy)."""
    X, _ = sinusoids
    return Imputer(random_state=0, **TINY).fit(X)


def panel_frame(n_series=12, rows=20, k=3, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.arange(rows)
        v = np.sin(t[:, None] / 3.0 + rng.normal(size=(1, k))) + 0.1 * rng.normal(size=(rows, k))
        v[rng.random(v.shape) < 0.2] = np.nan
        idx = pd.MultiIndex.from_arrays([np.full(rows, f"s{i}"), t], names=["id", "hour"])
        frames.append(pd.DataFrame(v, index=idx, columns=[f"f{j}" for j in range(k)]))
    return pd.concat(frames)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No default search root holds any data; returns an empty folder to use as data root."""
    home = tmp_path / "home"
    work = tmp_path / "work" / "cwd"
    home.mkdir()
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for var in (_locate.ENV_VAR, CACHE_ENV_VAR, "XDG_CACHE_HOME"):  # the user cache is then ~/.cache/tsimpute
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(work)
    root = tmp_path / "root"
    root.mkdir()
    return root
