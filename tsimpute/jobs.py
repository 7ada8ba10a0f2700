"""Batch imputation jobs over files: parts in, parts out, a manifest; resumable, atomic, shardable.

A job fills the gaps of every *part* of its input with a fitted :class:`~tsimpute.Imputer` and writes one
output part per input part into an output folder:

- **Input**: one CSV or Parquet file, or a folder of Parquet parts (``*.parquet`` / ``*.pq``, in name
  order). With ``id_col`` every part holds whole series: a series found in two parts is an error.
- **Bounded memory**: a part is imputed a few series at a time (at most ``max_rows`` rows per call, whole
  series), so the samples held at once (``n_samples x rows x columns``) do not grow with the part.
- **Atomic**: a part is written under a hidden temporary name in the output folder and renamed when
  complete; an interrupted job (Ctrl-C, SIGKILL) leaves no partial part under a part's name.
- **Manifest** (``_manifest.json``): the job's settings and, for every finished part, its input's sha256,
  its row count and the gaps filled. It is rewritten atomically after every part.
- **Resume**: ``resume=True`` skips the parts the manifest lists as finished (same input checksum, output
  present with the recorded row count) and does the rest. An input that changed since it was recorded,
  or settings that differ from the manifest's, are refused. Without ``resume`` an output folder that
  already holds a manifest is refused.
- **Reproducible**: every part is imputed on its own from the imputer's sampling seed, so a resumed job,
  or a job sharded over processes, writes the same values as one uninterrupted run (for a seeded
  imputer, on the same machine).
- **Sharded**: under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` in the environment) rank ``r`` of ``n``
  takes parts ``r, r + n, ...``, writes them and a manifest shard; after a barrier (``torch.distributed``,
  gloo) rank 0 merges the shards into the manifest.

Every part is checked before any is imputed: readable, the same columns and types as the first part,
``id_col`` / ``time_col`` present, numeric feature columns, no duplicate ``(id, time)`` pair. Errors name
the file (and for Parquet the row group) and nothing is written. Values the imputer refuses (an infinite
value, a value far beyond the scale seen in fit) are found when their part is imputed: the error names the
part, and the parts finished before it are kept for ``resume``. A part without rows gives an empty part.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .checksums import sha256_file
from .distributed import barrier, distributed_rank, process_group
from .io import _require_pyarrow, read_table, table_format, write_table

__all__ = ["MANIFEST", "JobSummary", "distributed_rank", "find_parts", "run_impute_job", "sample_series"]

MANIFEST = "_manifest.json"
_PARQUET = (".parquet", ".pq")


@dataclass
class JobSummary:
    """What a job did: parts imputed and skipped, rows, gaps filled, time and peak memory of this process."""

    parts: int = 0
    parts_skipped: int = 0
    rows: int = 0
    gaps_filled: int = 0
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    output: str = ""
    rank: int = 0
    world_size: int = 1

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        shard = f" (rank {self.rank} of {self.world_size})" if self.world_size > 1 else ""
        return (f"{self.parts} parts imputed, {self.parts_skipped} already done{shard}: {self.rows} rows, "
                f"{self.gaps_filled} gaps filled in {self.seconds:.1f} s ({self.rows_per_second:.0f} rows/s), "
                f"peak memory {self.peak_memory_mb:.0f} MB; output {self.output}")


def find_parts(source: str | os.PathLike[str]) -> list[Path]:
    """The input parts: the file itself, or the Parquet files of a folder in name order."""
    source = Path(source)
    if source.is_file():
        table_format(source)  # a clear error for an unknown suffix
        return [source]
    if source.is_dir():
        parts = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _PARQUET
                       and not p.name.startswith((".", "_")))
        if not parts:
            raise FileNotFoundError(f"no Parquet parts (*.parquet, *.pq) in folder {os.fspath(source)!r}")
        return parts
    raise FileNotFoundError(f"input {os.fspath(source)!r} not found")


def fingerprint(path: Path) -> str:
    """sha256 of a file's bytes."""
    return sha256_file(path)


# ----------------------------------------------------------------------------- checks
def _schema(path: Path) -> dict[str, str]:
    """Column name -> type name of a part, without reading its data (Parquet) or from its first rows (CSV)."""
    try:
        if table_format(path) == "parquet":
            _require_pyarrow()
            import pyarrow.parquet as pq

            return {f.name: str(f.type) for f in pq.read_schema(path)}
        sep = "\t" if table_format(path) == "tsv" else ","
        return {c: str(t) for c, t in pd.read_csv(path, sep=sep, nrows=1000).dtypes.items()}
    except ImportError:
        raise
    except Exception as exc:  # any reader error: the file is not a readable table
        raise ValueError(f"cannot read {os.fspath(path)!r}: {exc}") from None


def _numeric(type_name: str) -> bool:
    return any(type_name.startswith(p) for p in ("int", "uint", "float", "double", "halffloat", "bool", "decimal",
                                                  "null"))


def _row_group_of(path: Path, row: int) -> str:
    """`` (row group g)`` for a Parquet row index, else empty."""
    if table_format(path) != "parquet":
        return f" (row {row})"
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    counts = np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    return f" (row group {int(np.searchsorted(counts, row, side='right'))}, row {row})"


def _read_index(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        if table_format(path) == "parquet":
            return pd.read_parquet(path, columns=columns)
        sep = "\t" if table_format(path) == "tsv" else ","
        return pd.read_csv(path, sep=sep, usecols=columns)
    except Exception as exc:
        raise ValueError(f"cannot read {os.fspath(path)!r}: {exc}") from None


def check_parts(parts: list[Path], *, id_col: str | None, time_col: str | None) -> dict[Path, int]:
    """Check every part before any is imputed (see the module docstring); returns the row count of each."""
    if id_col is not None and time_col is None:
        raise ValueError("id_col needs time_col (a panel is indexed by (id, time))")
    first = _schema(parts[0])
    index_cols = [c for c in (id_col, time_col) if c is not None]
    seen: dict[object, Path] = {}
    rows: dict[Path, int] = {}
    for path in parts:
        schema = first if path == parts[0] else _schema(path)
        for col in index_cols:
            if col not in schema:
                raise ValueError(f"{os.fspath(path)!r} has no column {col!r}; columns: {list(schema)}")
        if schema != first:
            diff = sorted(set(schema.items()) ^ set(first.items()))
            raise ValueError(f"{os.fspath(path)!r} does not have the columns and types of {os.fspath(parts[0])!r}: "
                             f"they differ in {diff}")
        bad = [c for c, t in schema.items() if c not in index_cols and not _numeric(t)]
        if bad:
            raise ValueError(f"{os.fspath(path)!r}: feature columns must be numeric; {bad} are "
                             f"{[schema[c] for c in bad]}")
        if not index_cols:
            rows[path] = len(_read_index(path, [next(iter(schema))]))
            continue
        index = _read_index(path, index_cols)
        rows[path] = len(index)
        dup = index.duplicated(keep="first").to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            key = tuple(v.item() if isinstance(v, np.generic) else v for v in index.iloc[row])
            raise ValueError(f"{os.fspath(path)!r}{_row_group_of(path, row)}: duplicate {tuple(index_cols)} "
                             f"pair {key if len(key) > 1 else key[0]!r}")
        if id_col is not None:
            for sid in pd.unique(index[id_col]):
                other = seen.setdefault(sid, path)
                if other != path:
                    raise ValueError(f"series {sid!r} is split between {os.fspath(other)!r} and "
                                     f"{os.fspath(path)!r}: every series must lie in one part")
    return rows


# ----------------------------------------------------------------------------- manifest
def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class _Manifest:
    settings: dict
    parts: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> _Manifest | None:
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(raw["settings"], raw["parts"])
        except (ValueError, KeyError) as exc:
            raise ValueError(f"the job manifest {os.fspath(path)!r} is unreadable ({exc}): remove the output "
                             "folder to start again") from None

    def write(self, path: Path) -> None:
        _atomic_write_text(path, json.dumps({"version": 1, **asdict(self)}, indent=1))


def _manifests(output: Path) -> Iterator[Path]:
    yield output / MANIFEST
    yield from sorted(output.glob("_manifest.rank*.json"))


# ----------------------------------------------------------------------------- the job
def _impute_part(imputer, frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """``imputer.transform`` a few whole series at a time (at most ``max_rows`` rows per call, or one series).
    A part without rows gives an empty part."""
    if len(frame) == 0:
        return frame.copy()
    if not isinstance(frame.index, pd.MultiIndex) or len(frame) <= max_rows:
        return imputer.transform(frame)
    ids = frame.index.get_level_values(0)
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(frame)]])
    chunks, begin = [], 0
    for s, e in zip(starts, ends, strict=True):
        if e - begin > max_rows and s > begin:
            chunks.append(imputer.transform(frame.iloc[begin:s]))
            begin = s
    chunks.append(imputer.transform(frame.iloc[begin:]))
    return pd.concat(chunks)


def _settings(imputer, max_rows: int, id_col, time_col) -> dict:
    return {"n_samples": int(imputer.n_samples), "steps": [int(s) for s in imputer.inference_steps()],
            "sampler": imputer.sampler, "seeded": bool(getattr(imputer, "_seeded", False)),
            "sample_seed": int(getattr(imputer, "_sample_seed", 0)), "max_rows": int(max_rows),
            "id_col": id_col, "time_col": time_col}


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


@contextlib.contextmanager
def _removed_on_failure(path: Path):
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def run_impute_job(
    imputer,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    resume: bool = False,
    max_rows: int = 100_000,
    rank: int | None = None,
    world_size: int | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> JobSummary:
    """Impute every part of ``source`` into the folder ``output`` with a fitted ``imputer``.

    ``rank`` / ``world_size`` default to torchrun's environment (:func:`distributed_rank`). ``log`` receives
    one line per part (None: silent); ``progress`` shows a bar of rows with their rate and the time left.
    Returns this process's :class:`JobSummary`. See the module docstring.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(imputer, "model_")
    if not (isinstance(max_rows, int) and max_rows >= 1):
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    env_rank, env_world = distributed_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
    log = log or (lambda msg: None)
    started = time.perf_counter()
    parts = find_parts(source)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {os.fspath(output)!r} is a file; give a folder for the job's parts")
    rows = check_parts(parts, id_col=id_col, time_col=time_col)
    settings = _settings(imputer, max_rows, id_col, time_col)

    done: dict[str, dict] = {}
    existing = [m for m in _manifests(output) if m.is_file()] if output.is_dir() else []
    if existing and not resume:
        raise ValueError(f"{os.fspath(output)!r} already holds a job's output ({existing[0].name}): pass resume "
                         "(--resume) to continue it, or choose another folder")
    for path in existing:
        manifest = _Manifest.read(path)
        if manifest.settings != settings:
            changed = sorted(k for k in settings if manifest.settings.get(k) != settings[k])
            raise ValueError(f"the job in {os.fspath(output)!r} was started with other settings ({changed}): "
                             "resume it with the same imputer and options, or choose another folder")
        done.update(manifest.parts)
    with process_group(world_size):
        output.mkdir(parents=True, exist_ok=True)
        for stale in output.glob(".*.tmp*"):  # left by a killed job: never a finished part
            with contextlib.suppress(OSError):
                stale.unlink()
        barrier()  # every rank has checked the folder before any writes to it
        mine = parts[rank::world_size]
        with tqdm(total=sum(rows[p] for p in mine), desc=f"impute (rank {rank})" if world_size > 1 else "impute",
                  unit="row", unit_scale=True, disable=not progress) as bar:
            summary = _run_parts(imputer, mine, rows, output, settings, done, rank, world_size, log,
                                 bar.update)
        if world_size > 1:
            barrier()
            if rank == 0:
                _merge_shards(output, settings)
            barrier()
        else:  # shards of an earlier sharded run: their parts were read into this run's manifest
            for path in output.glob("_manifest.rank*.json"):
                path.unlink()
    summary.seconds = time.perf_counter() - started
    summary.peak_memory_mb = _peak_mb()
    return summary


def _run_parts(imputer, mine, rows, output, settings, done, rank, world_size, log, advance) -> JobSummary:
    shard_path = output / (MANIFEST if world_size == 1 else f"_manifest.rank{rank}.json")
    shard = _Manifest(settings, {k: v for k, v in done.items() if world_size == 1})
    summary = JobSummary(output=os.fspath(output), rank=rank, world_size=world_size)
    for path in mine:
        digest = fingerprint(path)
        out_name = path.name  # the parts of a folder are all Parquet; a single file keeps its format
        record = done.get(path.name)
        if record is not None:
            if record["sha256"] != digest:
                raise ValueError(f"{os.fspath(path)!r} changed since the job recorded it (sha256 "
                                 f"{record['sha256'][:12]}... now {digest[:12]}...): its output would mix two "
                                 "inputs; start the job again in a new folder")
            if (output / out_name).is_file() and record["rows"] == rows[path]:
                shard.parts[path.name] = record
                summary.parts_skipped += 1
                advance(rows[path])
                log(f"{path.name}: done before, skipped")
                continue
        t0 = time.perf_counter()
        frame = read_table(path, time_col=settings["time_col"], id_col=settings["id_col"])
        try:
            filled = _impute_part(imputer, frame, settings["max_rows"])
        except (ValueError, TypeError) as exc:  # bad values in this part: say which part
            raise type(exc)(f"{os.fspath(path)!r}: {exc}") from None
        gaps = int(frame.isna().to_numpy().sum() - filled.isna().to_numpy().sum())
        tmp = output / f".{out_name}.tmp{os.getpid()}"
        with _removed_on_failure(tmp):
            write_table(filled, tmp, fmt=table_format(out_name))
            os.replace(tmp, output / out_name)
        shard.parts[path.name] = {"sha256": digest, "rows": len(frame), "gaps_filled": gaps, "output": out_name,
                                  "seconds": round(time.perf_counter() - t0, 3)}
        shard.write(shard_path)
        summary.parts += 1
        summary.rows += len(frame)
        summary.gaps_filled += gaps
        advance(len(frame))
        log(f"{path.name}: {len(frame)} rows, {gaps} gaps filled in {time.perf_counter() - t0:.1f} s")
    shard.write(shard_path)
    return summary


def _merge_shards(output: Path, settings: dict) -> None:
    """Merge the manifest shards of every rank (and an earlier manifest) into the manifest."""
    merged = _Manifest(settings)
    for path in _manifests(output):
        manifest = _Manifest.read(path)
        if manifest is not None:
            merged.parts.update(manifest.parts)
    merged.write(output / MANIFEST)
    for path in output.glob("_manifest.rank*.json"):
        path.unlink()


def sample_series(source: str | os.PathLike[str], *, id_col: str | None = None, time_col: str | None = None,
                  max_rows: int = 1_000_000, seed: int = 0) -> pd.DataFrame:
    """Whole series drawn at random from the parts of ``source`` up to ``max_rows`` rows: a training table.

    Parts are visited in a random order (``seed``) and read one at a time; the series of a part are taken
    in a random order while they fit in what is left of ``max_rows`` (at least one series is taken). Memory
    is bounded by ``max_rows`` plus one part, whatever the size of ``source``. Without ``id_col`` a part is
    one series (taken whole or not at all).
    """
    if not (isinstance(max_rows, int) and max_rows >= 1):
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    parts = find_parts(source)
    rows = check_parts(parts, id_col=id_col, time_col=time_col)
    rng = np.random.default_rng(seed)
    taken: list[pd.DataFrame] = []
    left = max_rows
    for i in rng.permutation(len(parts)):
        path = parts[i]
        if left <= 0:
            break
        if id_col is None:
            if rows[path] <= left or not taken:
                taken.append(read_table(path, time_col=time_col))
                left -= rows[path]
            continue
        frame = read_table(path, time_col=time_col, id_col=id_col)
        ids = frame.index.unique(0)
        sizes = frame.groupby(level=0, sort=False).size()
        for sid in ids[rng.permutation(len(ids))]:
            if sizes[sid] <= left or not taken:
                taken.append(frame.loc[[sid]])
                left -= int(sizes[sid])
    return pd.concat(taken).sort_index() if id_col is not None else pd.concat(taken)
