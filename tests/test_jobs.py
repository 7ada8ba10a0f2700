"""Batch imputation jobs over files: every row once, atomic parts, manifest, resume after kill -9, bad input,
sharding under torchrun, and a fitted imputer that travels to worker processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tsimpute import Imputer
from tsimpute.cli import app
from tsimpute.io import read_table
from tsimpute.jobs import MANIFEST, find_parts, run_impute_job, sample_series

from .conftest import panel_frame

pytest.importorskip("pyarrow", reason="batch jobs over Parquet parts need pyarrow (the [parquet] extra)")

SMALL = dict(window=12, channels=8, n_layers=1, n_heads=2, n_samples=4, max_steps=6, batch_size=8,
             verbose=False, random_state=0)
runner = CliRunner()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small seeded imputer fitted on a panel, and its saved file."""
    frame = panel_frame(n_series=6, rows=30)
    imp = Imputer(**SMALL).fit(frame)
    path = tmp_path_factory.mktemp("model") / "m.pt"
    imp.save(path)
    return imp, path


def _write_parts(folder: Path, n_parts: int = 4, series_per_part: int = 3, rows: int = 30, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = panel_frame(n_series=n_parts * series_per_part, rows=rows, seed=seed).reset_index()
    ids = frame["id"].unique()
    for p in range(n_parts):
        part = frame[frame["id"].isin(ids[p * series_per_part:(p + 1) * series_per_part])]
        part.to_parquet(folder / f"part-{p:03d}.parquet", index=False, row_group_size=40)
    return folder


def _read_output(folder: Path) -> pd.DataFrame:
    parts = sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _job(imp, src, out, **kw):
    return run_impute_job(imp, src, out, id_col="id", time_col="hour", **kw)


def test_job_writes_every_row_once_with_observed_values_unchanged(fitted, tmp_path):
    imp, _ = fitted
    src = _write_parts(tmp_path / "in")
    summary = _job(imp, src, tmp_path / "out", max_rows=40)  # several calls per part
    inputs = pd.concat([pd.read_parquet(p) for p in find_parts(src)], ignore_index=True)
    out = _read_output(tmp_path / "out")
    assert summary.parts == 4 and summary.rows == len(inputs) == len(out)
    assert summary.gaps_filled == int(inputs.isna().to_numpy().sum())
    key = ["id", "hour"]
    merged = inputs.merge(out, on=key, suffixes=("", "_out"), validate="one_to_one")
    for col in ("f0", "f1", "f2"):
        seen = merged[col].notna()
        assert np.array_equal(merged.loc[seen, col].to_numpy(), merged.loc[seen, col + "_out"].to_numpy())
        assert merged[col + "_out"].notna().all()
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert sorted(manifest["parts"]) == [p.name for p in find_parts(src)]
    assert all(len(r["sha256"]) == 64 and r["rows"] == 90 for r in manifest["parts"].values())
    # a part is what transform gives for it, series by series (max_rows bounds rows per call, not results)
    part = read_table(find_parts(src)[0], time_col="hour", id_col="id")
    by_series = pd.concat([imp.transform(part.loc[[sid]]) for sid in part.index.unique(0)])
    again = _job(imp, src, tmp_path / "out2", max_rows=1)
    assert again.parts == 4
    got = pd.read_parquet(tmp_path / "out2" / "part-000.parquet").set_index(["id", "hour"])
    pd.testing.assert_frame_equal(got, by_series, check_names=False)


def test_existing_output_needs_resume_and_resume_skips_finished_parts(fitted, tmp_path):
    imp, _ = fitted
    src = _write_parts(tmp_path / "in")
    _job(imp, src, tmp_path / "out")
    with pytest.raises(ValueError, match="already holds a job's output"):
        _job(imp, src, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("part-*")}
    resumed = _job(imp, src, tmp_path / "out", resume=True)
    assert resumed.parts == 0 and resumed.parts_skipped == 4
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").glob("part-*")} == before
    # settings that would change the values are refused
    other = pickle.loads(pickle.dumps(imp)).set_params(n_samples=6)
    with pytest.raises(ValueError, match="other settings.*n_samples"):
        _job(other, src, tmp_path / "out", resume=True)
    # an input changed since it was recorded is refused, naming the file
    frame = pd.read_parquet(src / "part-002.parquet")
    frame.loc[0, "f0"] = 123.0
    frame.to_parquet(src / "part-002.parquet", index=False)
    with pytest.raises(ValueError, match=r"part-002\.parquet.*changed since the job recorded it"):
        _job(imp, src, tmp_path / "out", resume=True)


def test_interrupted_part_leaves_nothing_visible(fitted, tmp_path, monkeypatch):
    imp, _ = fitted
    src = _write_parts(tmp_path / "in")
    import tsimpute.jobs as jobs

    real = jobs.write_table
    calls = []

    def interrupted(df, path, fmt=None):
        calls.append(path)
        if len(calls) == 3:
            Path(path).write_bytes(b"half a part")
            raise KeyboardInterrupt
        return real(df, path, fmt)

    monkeypatch.setattr(jobs, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _job(imp, src, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [MANIFEST, "part-000.parquet", "part-001.parquet"]  # the third part's file is gone
    assert sorted(json.loads((tmp_path / "out" / MANIFEST).read_text())["parts"]) == names[1:]
    monkeypatch.setattr(jobs, "write_table", real)
    resumed = _job(imp, src, tmp_path / "out", resume=True)
    assert (resumed.parts, resumed.parts_skipped) == (2, 2)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tsimpute", "impute", *args]


def test_kill_9_then_resume_gives_the_uninterrupted_output(fitted, tmp_path):
    _, model = fitted
    src = _write_parts(tmp_path / "in", n_parts=6, rows=60)
    common = ["--model", str(model), "--id-col", "id", "--time-col", "hour", "--quiet", "--threads", "1",
              "--max-rows", "60"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(_cli(str(src), str(tmp_path / "full"), *common), env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    reference = _read_output(tmp_path / "full")
    for kill_after in (0, 1, 4):  # parts listed in the manifest when the job is killed
        out = tmp_path / f"killed{kill_after}"
        proc = subprocess.Popen(_cli(str(src), str(out), *common), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            manifest = out / MANIFEST
            listed = len(json.loads(manifest.read_text())["parts"]) if manifest.is_file() else 0
            if listed >= kill_after and out.exists():
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL  # killed mid-job, not finished
        # every part visible after the kill is complete
        for part in out.glob("part-*.parquet"):
            assert len(pd.read_parquet(part)) == 180
        res = subprocess.run(_cli(str(src), str(out), *common, "--resume"), env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        skipped = int(res.stdout.split(" parts imputed, ")[1].split(" already done")[0])
        assert kill_after <= skipped < 6
        pd.testing.assert_frame_equal(_read_output(out), reference)
        assert not list(out.glob(".*"))  # no temporary file left


@pytest.mark.parametrize("case", ["schema", "missing id", "duplicate", "text column", "unreadable", "split"])
def test_bad_parts_are_refused_naming_the_file_and_nothing_is_written(fitted, tmp_path, case):
    imp, _ = fitted
    src = _write_parts(tmp_path / "in")
    bad = src / "part-002.parquet"
    frame = pd.read_parquet(bad)
    if case == "schema":
        frame.rename(columns={"f2": "f9"}).to_parquet(bad, index=False)
        match = r"part-002\.parquet.*columns and types"
    elif case == "missing id":
        frame.drop(columns="id").to_parquet(bad, index=False)
        match = r"part-002\.parquet.*no column 'id'"
    elif case == "duplicate":
        pd.concat([frame, frame.iloc[[50]]]).to_parquet(bad, index=False, row_group_size=40)
        match = r"part-002\.parquet' \(row group 2, row 90\): duplicate \('id', 'hour'\) pair \('s7', 20\)"
    elif case == "text column":
        for p in find_parts(src):
            f = pd.read_parquet(p)
            f["f1"] = f["f1"].astype(str)
            f.to_parquet(p, index=False)
        match = r"part-000\.parquet.*numeric.*'f1'"
    elif case == "unreadable":
        bad.write_bytes(b"not a parquet file")
        match = r"cannot read .*part-002\.parquet"
    else:
        other = pd.read_parquet(src / "part-000.parquet")
        pd.concat([frame, other[other["id"] == other["id"].iloc[0]].assign(hour=lambda d: d["hour"] + 100)]
                  ).to_parquet(bad, index=False)
        match = r"series 's0' is split between .*part-000\.parquet.*part-002\.parquet"
    with pytest.raises(ValueError, match=match):
        _job(imp, src, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    res = runner.invoke(app, ["impute", str(src), str(tmp_path / "out"), "--model", str(fitted[1]),
                              "--id-col", "id", "--time-col", "hour", "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output and "part-00" in res.output


def test_cli_job_needs_a_model_and_prints_a_summary(fitted, tmp_path):
    _, model = fitted
    src = _write_parts(tmp_path / "in", n_parts=2)
    res = runner.invoke(app, ["impute", str(src), str(tmp_path / "out"), "--id-col", "id", "--time-col", "hour"])
    assert res.exit_code == 2 and "needs --model" in res.output
    res = runner.invoke(app, ["impute", str(src), str(tmp_path / "out"), "--model", str(model), "--id-col", "id",
                              "--time-col", "hour", "-q"])
    assert res.exit_code == 0, res.output
    assert "2 parts imputed, 0 already done: 180 rows" in res.output and "rows/s" in res.output
    assert "peak memory" in res.output


def test_torchrun_shards_the_parts_and_writes_what_one_process_writes(fitted, tmp_path):
    imp, model = fitted
    src = _write_parts(tmp_path / "in", n_parts=5)
    _job(imp, src, tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "tsimpute", "impute", str(src), str(tmp_path / "sharded"), "--model", str(model),
           "--id-col", "id", "--time-col", "hour", "-q", "--threads", "1"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rank 0 of 2" in res.stdout and "rank 1 of 2" in res.stdout
    pd.testing.assert_frame_equal(_read_output(tmp_path / "sharded"), _read_output(tmp_path / "single"))
    manifest = json.loads((tmp_path / "sharded" / MANIFEST).read_text())
    assert len(manifest["parts"]) == 5 and not list((tmp_path / "sharded").glob("_manifest.rank*"))


def _transform_in_worker(payload: bytes, frame: pd.DataFrame) -> pd.DataFrame:
    return pickle.loads(payload).transform(frame)


def test_a_fitted_imputer_travels_to_worker_processes(fitted):
    imp, _ = fitted
    frames = [panel_frame(n_series=2, rows=30, seed=s) for s in (5, 6)]
    payload = pickle.dumps(imp)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_transform_in_worker, [(payload, f) for f in frames])
    for frame, got in zip(frames, results, strict=True):
        pd.testing.assert_frame_equal(got, imp.transform(frame))


def test_fit_on_a_folder_draws_whole_series_up_to_a_row_budget(tmp_path):
    src = _write_parts(tmp_path / "in", n_parts=4, series_per_part=3, rows=30)
    sample = sample_series(src, id_col="id", time_col="hour", max_rows=200, seed=0)
    sizes = sample.groupby(level=0).size()
    assert len(sample) <= 200 and len(sizes) == 6 and bool((sizes == 30).all())  # whole series only
    again = sample_series(src, id_col="id", time_col="hour", max_rows=200, seed=0)
    pd.testing.assert_frame_equal(sample, again)
    assert len(sample_series(src, id_col="id", time_col="hour", max_rows=10)) == 30  # at least one series
    res = runner.invoke(app, ["fit", str(src), str(tmp_path / "m.pt"), "--id-col", "id", "--time-col", "hour",
                              "--max-rows", "120", "--window", "12", "--epochs", "1", "--seed", "0", "-q"])
    assert res.exit_code == 0, res.output
    assert Imputer.load(tmp_path / "m.pt").n_features_in_ == 3


def test_dask_workers_fill_their_own_partitions_as_in_the_readme(fitted, tmp_path):
    dd = pytest.importorskip("dask.dataframe", reason="the Dask example needs dask[dataframe] (in the [dev] extra)")
    imp, _ = fitted
    src = _write_parts(tmp_path / "in", n_parts=3)

    def fill(part: pd.DataFrame) -> pd.DataFrame:  # the README's example, verbatim
        return imp.transform(part.set_index(["id", "hour"])).reset_index()

    ddf = dd.read_parquet(src, split_row_groups=False)  # whole files: a series never straddles partitions
    filled = ddf.map_partitions(fill, meta=ddf._meta).compute(scheduler="processes", num_workers=2)
    expected = pd.concat([fill(part.compute()) for part in ddf.to_delayed()])
    assert len(filled) == 3 * 3 * 30 and not filled.isna().any().any()
    pd.testing.assert_frame_equal(filled.reset_index(drop=True), expected.reset_index(drop=True))
