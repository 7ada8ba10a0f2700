"""The ``tsimpute`` command line: a thin typer layer over the library (parse, call, print).

Commands: ``bench`` (:mod:`tsimpute.benchmark`), ``datasets`` (:mod:`tsimpute.datasets`), ``fit`` and
``impute`` (:class:`tsimpute.Imputer` with :mod:`tsimpute.io`). Errors the user can fix (missing files,
checksum mismatches, bad values) are printed as one ``Error:`` line with exit code 1; bad options exit 2.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Annotated

import typer

from ._version import __version__
from .threads import torch_threads as _torch_threads

app = typer.Typer(
    help="Few-step diffusion imputation for multivariate time series.",
    no_args_is_help=True,
    add_completion=False,
)

_USER_ERRORS = (FileNotFoundError, ValueError, TypeError, ImportError)  # not typer.Exit (a RuntimeError)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tsimpute {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version, exit."),
    ] = False,
) -> None:
    """Few-step diffusion imputation for multivariate time series."""


@contextlib.contextmanager
def _user_errors():
    """Print library errors the user can fix as one line and exit 1 (no traceback)."""
    try:
        yield
    except _USER_ERRORS as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None




@contextlib.contextmanager
def _process_settings(threads: int | None):
    """The process-wide settings of a command that trains or samples: torch's threads for its duration, and an
    allocator that keeps freed memory (:func:`tsimpute.inference.tune_cpu_allocator`; an application's choice,
    which the library never makes by itself)."""
    from .inference import tune_cpu_allocator

    tune_cpu_allocator()
    with _torch_threads(threads):
        yield


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _usage_error(message: str) -> typer.Exit:
    """Print a bad-option message as one line; the caller raises the returned exit (code 2)."""
    _err(f"Error: {message}")
    return typer.Exit(2)


# ----------------------------------------------------------------------------- bench
def _opt(kind, help: str):
    return Annotated[kind, typer.Option(help=help)]


@app.command()
def bench(
    dataset: Annotated[str, typer.Argument(help="physionet, pm25 or synthetic; images: digits, mnist or "
                                                "fashion-mnist.")],
    steps: _opt(str | None, "Step counts, e.g. 50,25,10,5 (default: the profile's).") = None,
    profile: _opt(str, "smoke (CI, < 2 min), quick (< 20 min on 2 CPU cores), converged (for --model) or "
                       "paper (GPU).") = "smoke",
    model: _opt(str | None, "Evaluate a published network instead of training one: csdi-physionet (CSDI's "
                            "PhysioNet weights, shipped with tsimpute).") = None,
    seed: _opt(list[str] | None, "Model seed; repeat it or give a comma list (mean ± std).") = None,
    methods: _opt(str | None, "Comma list of methods (default: all but learned-finetune; saits, which needs "
                              "the peers extra, only on request in the smoke profile).") = None,
    missing_ratio: _opt(float, "PhysioNet: share of observed values held out.") = 0.1,
    source: _opt(str, "PhysioNet data: auto, full (archive) or sample (embedded).") = "auto",
    data_dir: _opt(Path | None, "Data root searched first.") = None,
    device: _opt(str, "Torch device (diffusion model and SAITS): cpu, cuda, cuda:N or auto.") = "cpu",
    out: _opt(Path, "Folder for the JSON / CSV / PNG results.") = Path("bench-results"),
    epochs: _opt(int | None, "Override the profile's training epochs (diffusion model).") = None,
    max_time: _opt(float | None, "Wall-clock budget of each diffusion training run, in seconds (ends at the "
                                 "first of the epochs and this).") = None,
    n_samples: _opt(int | None, "Override the profile's samples per window.") = None,
    n_train: _opt(int | None, "Override the profile's number of training series.") = None,
    n_test: _opt(int | None, "Override the profile's number of test windows.") = None,
    chain: _opt(str | None, "Reverse chain of step subsets: respaced or masked.") = None,
    mask_objective: _opt(str | None, "Step-mask reward: loss or imputation.") = None,
    mask_weight: _opt(str | None, "Step-mask loss weight: simple or elbo.") = None,
    threads: _opt(int | None, "Torch CPU threads (default: torch's choice).") = None,
    plot: _opt(bool, "Write the PNG plot (needs the plot extra).") = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or messages.")] = False,
) -> None:
    """Train once, sample with different step counts and selections, compare with classical imputers and SAITS.

    Image datasets (digits, mnist, fashion-mnist) train a UNet and compare generation and inpainting instead.
    """
    from . import benchmark
    from .benchmark.images import IMAGE_DATASETS

    if dataset in IMAGE_DATASETS:
        _bench_images(dataset, steps, profile, seed, data_dir, device, out, n_train, threads, plot, quiet)
        return
    if dataset not in benchmark.BENCH_DATASETS:
        names = ", ".join(benchmark.BENCH_DATASETS + IMAGE_DATASETS)
        raise _usage_error(f"unknown dataset {dataset!r}; choose one of {names}")
    if profile not in benchmark.PROFILES:
        raise _usage_error(f"unknown profile {profile!r}; choose one of {', '.join(benchmark.PROFILES)}")
    try:
        seeds = [int(s) for item in (seed or ["0"]) for s in item.split(",") if s.strip()]
    except ValueError:
        raise _usage_error(f"--seed takes integers, got {', '.join(seed or [])}") from None
    method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    if threads is not None and threads < 1:
        raise _usage_error(f"--threads must be at least 1, got {threads}")
    mask_options = {k: v for k, v in (("chain", chain), ("mask_objective", mask_objective),
                                       ("mask_weight", mask_weight)) if v is not None}
    if model is not None and model not in benchmark.PRETRAINED_MODELS:
        raise _usage_error(f"unknown model {model!r}; choose one of {', '.join(benchmark.PRETRAINED_MODELS)}")
    if max_time is not None and max_time <= 0:
        raise _usage_error(f"--max-time must be a positive number of seconds, got {max_time:g}")
    command = _bench_command(dataset, steps, profile, seeds, methods, missing_ratio, source, data_dir, device,
                             out, epochs, n_samples, n_train, n_test, mask_options, threads, model, max_time)
    log = (lambda msg: None) if quiet else _err
    with _user_errors(), _process_settings(threads), warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        result = benchmark.run_benchmark(
            dataset, profile=profile, steps=steps, seeds=seeds, methods=method_list,
            missing_ratio=missing_ratio, data_dir=data_dir, source=source, device=device, verbose=not quiet,
            log=log, mask_options=mask_options, epochs=epochs, n_samples=n_samples, n_train=n_train,
            n_test=n_test, model=model, max_time=max_time,
        )
        paths = benchmark.write_results(result, out, command=command, plot=plot)
    typer.echo(benchmark.format_table(result.rows))
    for note in result.notes:
        typer.echo(f"note: {note}")
    _echo_written(paths, result.metadata["wall_seconds"])


def _echo_written(paths: dict, wall_seconds: float) -> None:
    """The files a benchmark wrote (or why one was not), and its wall time."""
    for kind, path in paths.items():
        if isinstance(path, Path):
            typer.echo(f"wrote {path}")
        else:
            _err(f"{kind}: {path}")
    typer.echo(f"wall time {wall_seconds:.1f} s")


def _bench_images(dataset, steps, profile, seed, data_dir, device, out, n_train, threads, plot, quiet) -> None:
    from .benchmark.images import IMAGE_PROFILES, format_image_table, run_image_benchmark, write_image_results

    if profile not in IMAGE_PROFILES:
        raise _usage_error(f"unknown profile {profile!r} for images; choose one of {', '.join(IMAGE_PROFILES)}")
    try:
        counts = tuple(int(k) for k in steps.split(",") if k.strip()) if steps else None
        seeds = [int(s) for item in (seed or ["0"]) for s in item.split(",") if s.strip()]
    except ValueError:
        raise _usage_error("--steps and --seed take integers") from None
    if threads is not None and threads < 1:
        raise _usage_error(f"--threads must be at least 1, got {threads}")
    parts = ["tsimpute bench", dataset, f"--profile {profile}", f"--seed {seeds[0]}"]
    parts += [f"{k} {v}" for k, v in (("--steps", steps), ("--n-train", n_train), ("--data-dir", data_dir),
                                      ("--threads", threads)) if v is not None]
    parts += [f"--device {device}"] if device != "cpu" else []
    overrides = {"n_train": n_train} if n_train is not None else {}
    log = (lambda msg: None) if quiet else _err
    with _user_errors(), _process_settings(threads), warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        result = run_image_benchmark(dataset, profile=profile, steps=counts, seed=seeds[0], data_dir=data_dir,
                                     device=device, verbose=not quiet, log=log, **overrides)
        paths = write_image_results(result, out, command=" ".join(parts + [f"--out {out}"]), plot=plot)
    typer.echo(format_image_table(result.rows))
    typer.echo(f"note: {result.metadata['metric_note']}")
    _echo_written(paths, result.metadata["wall_seconds"])


def _bench_command(dataset, steps, profile, seeds, methods, missing_ratio, source, data_dir, device, out,
                   epochs, n_samples, n_train, n_test, mask_options, threads, model=None, max_time=None) -> str:
    """The command line that reproduces a run (recorded in the JSON)."""
    parts = ["tsimpute bench", dataset, f"--profile {profile}", f"--seed {','.join(map(str, seeds))}"]
    if model is not None:
        parts.append(f"--model {model}")
    if dataset != "pm25":
        parts.append(f"--missing-ratio {missing_ratio:g}")
    opts = {"--steps": steps, "--methods": methods, "--data-dir": data_dir, "--epochs": epochs,
            "--max-time": None if max_time is None else f"{max_time:g}",
            "--n-samples": n_samples, "--n-train": n_train, "--n-test": n_test, "--threads": threads,
            **{f"--{k.replace('_', '-')}": v for k, v in mask_options.items()}}
    if source != "auto":
        opts["--source"] = source
    if device != "cpu":
        opts["--device"] = device
    parts += [f"{k} {v}" for k, v in opts.items() if v is not None]
    parts.append(f"--out {out}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- datasets
@app.command()
def datasets(
    data_dir: _opt(Path | None, "Data root searched first.") = None,
    download: _opt(str | None, "Download this dataset from its official source.") = None,
    verify: _opt(bool, "Also check the files' sha256 checksums.") = False,
) -> None:
    """List the datasets: size, license and where their files were found (optionally download one)."""
    from . import datasets as ds

    if download is not None and download not in ds.DATASETS:
        raise _usage_error(f"unknown dataset {download!r}; choose one of {', '.join(ds.DATASETS)}")
    with _user_errors():
        if download is not None:
            for path in ds.download_dataset(download, data_dir):
                typer.echo(f"downloaded {path}")
        rows = ds.dataset_status(data_dir, verify=verify)
    for row in rows:
        info = ds.DATASETS[row.name]
        size = "" if row.size is None else f", {row.size / 1e6:.1f} MB"
        where = f"in {row.location}" if row.location is not None else "not found"
        typer.echo(f"{row.name:<18} {info.title}; {info.shape}")
        typer.echo(f"  files:   {row.files_found}/{row.files_total} found{size}, {where}")
        if row.verified is not None:
            typer.echo(f"  sha256:  {'ok' if row.verified else 'MISMATCH (delete and download again)'}")
        if row.embedded_sample:
            typer.echo(f"  sample:  {ds.SAMPLE_STAYS} real stays ship with the package (used when not found)")
        typer.echo(f"  license: {info.license}")
    typer.echo("Searched, in order: " + "; ".join(f"{p} ({why})" for p, why in ds.search_roots(data_dir)))


# ----------------------------------------------------------------------------- fit / impute
def _params(epochs, window, n_samples, steps, step_selection, precision, device, seed, quiet) -> dict:
    params = {"epochs": epochs, "window": window, "n_samples": n_samples, "target_steps": steps,
              "step_selection": step_selection, "precision": precision, "device": device,
              "random_state": seed}
    params = {k: v for k, v in params.items() if v is not None}
    params["verbose"] = not quiet
    return params


_Epochs = Annotated[int | None, typer.Option(help="Training epochs (default: none; length in steps).")]
_Window = Annotated[int | None, typer.Option(help="Window rows (default: 48, or the longest series if shorter).")]
_NSamples = Annotated[int | None, typer.Option(help="Samples per gap; the median is written (default 50).")]
_Steps = Annotated[int | None, typer.Option(help="Steps kept by uniform / quadratic / learned selection.")]
_Selection = Annotated[str | None, typer.Option(help="all, uniform, quadratic or learned.")]
_Precision = Annotated[str | None, typer.Option(help="auto (bf16 where the hardware has it), fp32 or bf16.")]
_Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")]
_Seed = Annotated[int | None, typer.Option(help="Random seed (reproducible results).")]
_TimeCol = Annotated[str | None, typer.Option(help="Time column (becomes the index).")]
_IdCol = Annotated[str | None, typer.Option(help="Series id column of a panel (needs --time-col).")]
_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
_Threads = Annotated[int | None, typer.Option(help="Torch CPU threads (default: torch's choice).")]


@app.command()
def fit(
    input: Annotated[Path, typer.Argument(help="CSV or Parquet table with gaps (NaN / empty cells), or a folder "
                                               "of Parquet parts (whole series drawn up to --max-rows).")],
    model_file: Annotated[Path, typer.Argument(help="Where to save the fitted imputer.")],
    max_rows: _opt(int, "With a folder INPUT: rows of whole series drawn at random to fit on.") = 1_000_000,
    max_steps: _opt(int | None, "Optimizer steps (default: 1000 unless --epochs is given).") = None,
    batch_size: _opt(int | None, "Windows per step (per process under torchrun; default 16).") = None,
    time_col: _TimeCol = None,
    id_col: _IdCol = None,
    epochs: _Epochs = None,
    window: _Window = None,
    n_samples: _NSamples = None,
    steps: _Steps = None,
    step_selection: _Selection = None,
    precision: _Precision = None,
    device: _Device = None,
    seed: _Seed = None,
    threads: _Threads = None,
    quiet: _Quiet = False,
) -> None:
    """Train an imputer on a table and save it (use it later with impute --model).

    Under ``torchrun --nproc-per-node N -m tsimpute fit ...`` training is data parallel
    (DistributedDataParallel; NCCL on GPUs, one per process, gloo on CPUs) and rank 0 writes the file.
    """
    import random

    from .distributed import barrier, broadcast_from_zero, distributed_rank, local_device, process_group
    from .estimator import resolve_device
    from .imputer import Imputer
    from .io import read_table

    if threads is not None and threads < 1:
        raise _usage_error(f"--threads must be at least 1, got {threads}")
    rank, world = distributed_rank()
    with _user_errors(), _process_settings(threads):
        dev = local_device(resolve_device(device or "auto"))
        with process_group(world, dev):
            if seed is None and world > 1:  # every rank must draw the same windows, targets and weights
                seed = int(broadcast_from_zero(random.randrange(2**31 - 1)))
            if input.is_dir():
                from .jobs import sample_series

                frame = sample_series(input, id_col=id_col, time_col=time_col, max_rows=max_rows, seed=seed or 0)
                if not quiet and rank == 0:
                    _err(f"fitting on {len(frame)} rows of whole series drawn from the parts of {input}")
            else:
                frame = read_table(input, time_col=time_col, id_col=id_col)
                if len(frame) == 0:
                    raise ValueError(f"{input} has no rows (only a header): nothing to fit on")
            params = _params(epochs, window, n_samples, steps, step_selection, precision,
                             str(dev) if world > 1 else device, seed, quiet or rank > 0)
            params.update({k: v for k, v in (("max_steps", max_steps), ("batch_size", batch_size)) if v is not None})
            imp = Imputer(**params).fit(frame)
            if rank == 0:
                model_file.parent.mkdir(parents=True, exist_ok=True)
                imp.save(model_file)
            barrier()  # the file exists when any rank returns
    if rank == 0:
        typer.echo(f"saved {model_file}" + (f" (trained on {world} processes)" if world > 1 else ""))


@app.command()
def impute(
    input: Annotated[Path, typer.Argument(help="CSV or Parquet table with gaps (NaN / empty cells), or a folder "
                                               "of Parquet parts (needs --model and a folder OUTPUT).")],
    output: Annotated[Path, typer.Argument(help="Where to write the filled table (CSV or Parquet), or a folder: "
                                                "a batch job writes one part per input part and a manifest.")],
    model: _opt(Path | None, "A saved imputer (from `tsimpute fit`); without it, fit on INPUT.") = None,
    resume: _opt(bool, "Batch job: continue the job in the OUTPUT folder, skipping finished parts.") = False,
    max_rows: _opt(int, "Batch job: rows imputed per call (whole series), which bounds memory.") = 100_000,
    save_model: _opt(Path | None, "Also save the imputer fitted on INPUT here.") = None,
    time_col: _TimeCol = None,
    id_col: _IdCol = None,
    epochs: _Epochs = None,
    window: _Window = None,
    n_samples: _NSamples = None,
    steps: _Steps = None,
    step_selection: _Selection = None,
    precision: _Precision = None,
    device: _Device = None,
    seed: _Seed = None,
    threads: _Threads = None,
    quiet: _Quiet = False,
) -> None:
    """Fill the gaps of a table with the median of diffusion samples and write it."""
    from .imputer import Imputer
    from .io import read_table, write_table

    if threads is not None and threads < 1:
        raise _usage_error(f"--threads must be at least 1, got {threads}")
    if _is_job(input, output, resume):
        if model is None:
            raise _usage_error("a batch job (a folder INPUT or OUTPUT, or --resume) needs --model: fit first "
                               "with `tsimpute fit` on a representative table")
        with _user_errors(), _process_settings(threads):
            _impute_job(input, output, model, resume, max_rows, time_col, id_col, n_samples, steps,
                        step_selection, precision, device, quiet)
        return
    with _user_errors(), _process_settings(threads):
        frame = read_table(input, time_col=time_col, id_col=id_col)
        if len(frame) == 0:
            raise ValueError(f"{input} has no rows (only a header): nothing to impute")
        if model is not None:
            if epochs is not None or window is not None:
                _err("note: --epochs and --window are ignored with --model (the imputer is already fitted)")
            imp = Imputer.load(model, device=device)
            params = _params(None, None, n_samples, steps, step_selection, precision, None, None, quiet)
            imp.set_params(**params)
        else:
            params = _params(epochs, window, n_samples, steps, step_selection, precision, device, seed, quiet)
            imp = Imputer(**params).fit(frame)
            if save_model is not None:
                imp.save(save_model)
        filled = imp.transform(frame)
        write_table(filled, output)
    gaps = int(frame.isna().to_numpy().sum())
    typer.echo(f"wrote {output} ({gaps} gaps filled)")


def _is_job(input: Path, output: Path, resume: bool) -> bool:
    """A batch job: a folder on either side (an OUTPUT without a suffix is a folder), or --resume."""
    return resume or input.is_dir() or output.is_dir() or not output.suffix


def _impute_job(input, output, model, resume, max_rows, time_col, id_col, n_samples, steps, step_selection,
                precision, device, quiet) -> None:
    import os

    from .distributed import distributed_rank
    from .imputer import Imputer
    from .jobs import run_impute_job

    rank, world = distributed_rank()
    if device is None and world > 1 and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():  # one GPU per process under torchrun
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    imp = Imputer.load(model, device=device)
    imp.set_params(**_params(None, None, n_samples, steps, step_selection, precision, None, None, True))
    log = None if quiet else (lambda msg: _err(f"[rank {rank}] {msg}" if world > 1 else msg))
    summary = run_impute_job(imp, input, output, id_col=id_col, time_col=time_col, resume=resume,
                             max_rows=max_rows, log=log, progress=not quiet)
    typer.echo(summary.describe())


if __name__ == "__main__":
    app()
