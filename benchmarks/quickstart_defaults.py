"""The README's quick-start data imputed with every default: ``Imputer(random_state=0).fit_transform(X)``.

Prints the diffusion imputer's MAE on the gaps next to linear interpolation's and its own fitted first guess
alone (the ``first-guess`` baseline, fitted on the same rows), the fit + transform time and the held-out
score against training steps and seconds (the checkpoint choice).
Usage: ``python benchmarks/quickstart_defaults.py``.
"""

from __future__ import annotations

import time

import numpy as np

from tsimpute import Imputer
from tsimpute.benchmark.baselines import make_baseline
from tsimpute.synthetic import correlated_sinusoids


def main() -> None:
    X, complete = correlated_sinusoids(n_rows=600, n_features=4, missing_rate=0.2, seed=0)
    gaps = X.isna().to_numpy()
    t0 = time.perf_counter()
    imp = Imputer(random_state=0, verbose=False)
    filled = imp.fit_transform(X)
    seconds = time.perf_counter() - t0
    mae = np.abs(filled - complete).to_numpy()[gaps].mean()
    interp = np.abs(X.interpolate(limit_direction="both") - complete).to_numpy()[gaps].mean()
    rows = X.to_numpy()
    guess = make_baseline("first-guess").fit(rows).predict(rows[None])[0]
    alone = np.abs(guess - complete.to_numpy())[gaps].mean()
    print(f"every default: MAE {mae:.4f}, linear interpolation {interp:.4f}, first guess alone {alone:.4f}, "
          f"fit+transform {seconds:.0f} s")
    h = imp.history_
    print(f"held-out score (model units) by optimizer step; kept step {h.best_step}, {h.steps} steps run:")
    for step, secs, score in zip(h.eval_steps, h.eval_seconds, h.valid_loss, strict=True):
        print(f"  step {step:5d}  {secs:5.1f} s  {score:.4f}")


if __name__ == "__main__":
    main()
