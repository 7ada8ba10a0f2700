"""The benchmark behind ``tsimpute bench``: train once, sample with different step counts, compare.

- :func:`run_benchmark` runs one dataset's protocol and returns a :class:`BenchResult` (a tidy DataFrame of
  rows ``(dataset, method, steps, seed)`` plus the settings that produced them);
- :func:`write_results` writes JSON, CSV and a PNG plot (errors against steps, reliability diagrams of the
  sampled methods); :func:`format_table` prints a summary;
- :data:`PROFILES` (``smoke``, ``quick``, ``paper``) size the runs;
- :mod:`tsimpute.benchmark.baselines` holds the classical imputers, :mod:`tsimpute.benchmark.saits` PyPOTS' SAITS.
"""

from .baselines import BASELINES, Baseline
from .profiles import PROFILES, BenchProfile, get_profile
from .report import format_table, git_revision, machine_info, summarize, write_results
from .runner import (
    CALIBRATION_FIELDS,
    DEFAULT_METHODS,
    DIFFUSION_METHODS,
    METHODS,
    PEER_METHODS,
    PRETRAINED_MODELS,
    ROW_FIELDS,
    BenchResult,
    default_methods,
    parse_steps,
    run_benchmark,
)
from .tasks import BENCH_DATASETS, BenchTask, build_task

__all__ = [
    "BASELINES",
    "BENCH_DATASETS",
    "CALIBRATION_FIELDS",
    "DEFAULT_METHODS",
    "DIFFUSION_METHODS",
    "METHODS",
    "PEER_METHODS",
    "PRETRAINED_MODELS",
    "PROFILES",
    "ROW_FIELDS",
    "BenchProfile",
    "BenchResult",
    "BenchTask",
    "Baseline",
    "build_task",
    "default_methods",
    "format_table",
    "get_profile",
    "git_revision",
    "machine_info",
    "parse_steps",
    "run_benchmark",
    "summarize",
    "write_results",
]
