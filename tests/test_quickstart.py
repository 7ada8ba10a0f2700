"""The README's quick start, as printed: ``Imputer(random_state=0).fit_transform(X)`` with every default.

Measured (``benchmarks/results/quickstart_defaults.md``, 2-core CPU): MAE 0.1052 on the gaps against linear
interpolation's 0.1047 (ratio 1.005), column means 1.07, in about 40 s. The diffusion imputer is on par with
interpolation on this example, not below it: the test asserts parity within 2% (and the gap to column
means), so that a change that makes the default fit worse than interpolation fails here.
"""

import numpy as np

from tsimpute import Imputer
from tsimpute.synthetic import correlated_sinusoids


def test_quick_start_with_every_default_is_on_par_with_linear_interpolation():
    X, complete = correlated_sinusoids(n_rows=600, n_features=4, missing_rate=0.2, seed=0)
    gaps = X.isna().to_numpy()

    def mae(frame):
        return np.abs(frame.to_numpy() - complete.to_numpy())[gaps].mean()

    diffusion = mae(Imputer(random_state=0, verbose=False).fit_transform(X))
    interpolation = mae(X.interpolate(limit_direction="both"))
    means = mae(X.fillna(X.mean()))
    assert diffusion < 1.02 * interpolation, (diffusion, interpolation)
    assert diffusion < means / 8, (diffusion, means)
