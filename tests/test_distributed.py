"""Data-parallel training under torchrun (gloo, 2 CPU processes): the loss curve of one process with the same
global batch, identical weights on every rank, one model file; and the sharding of each epoch's windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from tsimpute import Imputer
from tsimpute.data import WindowSet

from .conftest import panel_frame

ROOT = Path(__file__).resolve().parents[1]

CURVE = textwrap.dedent("""
    import hashlib, json, sys
    import torch
    sys.path.insert(0, {root!r})
    from tests.conftest import panel_frame
    from tsimpute import Imputer
    from tsimpute.distributed import distributed_rank, process_group

    torch.set_num_threads(1)
    rank, size = distributed_rank()
    with process_group(size):
        imp = Imputer(window=12, channels=8, n_layers=1, n_heads=2, max_steps=180, batch_size=16 // size,
                      patience=None, parameterization="epsilon", validation_fraction=0, verbose=False,
                      random_state=0).fit(panel_frame(n_series=8, rows=60))
        weights = b"".join(p.detach().numpy().tobytes() for p in imp.model_.parameters())
        json.dump({{"loss": imp.history_.train_loss, "steps": imp.history_.steps,
                    "digest": hashlib.sha256(weights).hexdigest()}}, open(sys.argv[1] + f".rank{{rank}}.json", "w"))
""")


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_shards_of_an_epoch_cover_every_window_in_equal_shares():
    data = WindowSet(torch.arange(11.0).view(11, 1, 1), torch.ones(11, 1, 1))
    seen = []
    for rank in range(3):
        gen = torch.Generator().manual_seed(5)  # the same shared generator on every rank
        batches = list(data.batches(2, gen, shard=(rank, 3)))
        assert [len(b) for b in batches] == [2, 2]  # 11 windows padded to 12: 4 per rank, same batch count
        seen += [int(v) for b in batches for v in b.values.flatten()]
    assert sorted(set(seen)) == list(range(11)) and len(seen) == 12


def test_ddp_training_follows_the_single_process_curve_with_identical_ranks(tmp_path):
    script = tmp_path / "curve.py"
    script.write_text(CURVE.format(root=str(ROOT)))
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single")], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr
    res = _torchrun([str(script), str(tmp_path / "ddp")], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    one = json.loads((tmp_path / "single.rank0.json").read_text())
    r0, r1 = (json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1  # the same averaged gradients: the same weights, losses and stopping step on both ranks
    assert r0["steps"] == one["steps"] == 180
    ddp, ref = np.array(r0["loss"]), np.array(one["loss"])
    assert len(ddp) == len(ref)  # 2 x 8 windows per step: the same epochs as 16 windows on one process
    # the same curve within noise: the same start, the same fall, the same level at the end
    assert abs(ddp[:2].mean() / ref[:2].mean() - 1) < 0.1
    assert ddp[-5:].mean() < 0.6 * ddp[:2].mean() and ref[-5:].mean() < 0.6 * ref[:2].mean()
    assert abs(ddp[-5:].mean() / ref[-5:].mean() - 1) < 0.2


def test_torchrun_fit_writes_one_model_that_loads(tmp_path):
    frame = panel_frame(n_series=6, rows=40).reset_index()
    frame.to_csv(tmp_path / "panel.csv", index=False)
    res = _torchrun(["-m", "tsimpute", "fit", "panel.csv", "out/m.pt", "--id-col", "id", "--time-col", "hour",
                     "--max-steps", "8", "--batch-size", "4", "--window", "12", "--seed", "3", "-q",
                     "--threads", "1"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("saved") == 1 and "trained on 2 processes" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.pt"]
    imp = Imputer.load(tmp_path / "out" / "m.pt")
    assert imp.get_params()["batch_size"] == 4 and imp.get_params()["random_state"] == 3
    filled = imp.transform(panel_frame(n_series=2, rows=40, seed=9))
    assert not filled.isna().any().any()


GUESS = textwrap.dedent("""
    import hashlib, json, sys
    import torch
    sys.path.insert(0, {root!r})
    from tests.conftest import panel_frame
    from tsimpute import Imputer
    from tsimpute.distributed import distributed_rank, process_group

    torch.set_num_threads(1)
    rank, size = distributed_rank()
    with process_group(size):
        imp = Imputer(window=12, channels=8, n_layers=1, n_heads=2, epochs=None, max_steps=None, max_time=6.0,
                      batch_size=4, first_guess="learned", verbose=False,
                      random_state=0).fit(panel_frame(n_series=12, rows=60))
        param = imp.denoiser_.parameterization
        guess = b"".join(p.detach().numpy().tobytes() for p in param.first_guess.net.parameters())
        json.dump({{"guess": hashlib.sha256(guess).hexdigest(), "table": param.sigma_table,
                    "guess_steps": imp.guess_history_.steps, "steps": imp.history_.steps}},
                  open(sys.argv[1] + f".rank{{rank}}.json", "w"))
""")


def test_torchrun_ranks_train_the_same_learned_guess_within_a_time_budget(tmp_path):
    script = tmp_path / "guess.py"
    script.write_text(GUESS.format(root=str(ROOT)))
    res = _torchrun([str(script), str(tmp_path / "ddp")], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    r0, r1 = (json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["guess_steps"] > 0 and r0["steps"] > 0
