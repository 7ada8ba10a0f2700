"""Imputation and training throughput of tsimpute's CSDI denoiser, side by side with PyPOTS' CSDI.

PhysioNet-shaped windows (K=35 features, L=48 steps, ~80% missing) and CSDI's default architecture
(4 blocks, 64 channels, 8 heads, 414,065 parameters). Weights are random: the cost of a step does not
depend on them. Every measured row runs in a fresh subprocess, so its peak memory (``ru_maxrss``) is its own.

Rows (``--out FILE.json``, ``rows``): ``impl`` (tsimpute | pypots), ``phase`` (gemm | forward | impute | train),
``precision``, ``steps``, ``n_samples``, ``windows``, ``batch_size``, ``seconds``, ``window_samples_per_s``
(training: ``steps_per_s``), ``ms_per_ws_step``, ``gflops`` (effective: the FLOPs the step really needs,
see :func:`flops_per_window_sample_step`, over the median wall time; ``gflops_fastest`` over the fastest
repetition, gemm and forward rows), ``peak_mem_mb`` (peak RSS of the row's process),
``load1`` (1-minute load average when the row ended: other processes share the machine).

Forward rows compare the attention implementations (``sdpa``, ``math``, ``fused``) and, with ``split``, the
sampling path (the batch split over worker threads, see :func:`tsimpute.denoisers.parallel_forward`).
Imputation rows start with a one-step warm-up of the same job (PyPOTS: one window), then time the job;
``native: false`` rows use the ATen path, as where no C++ compiler is installed.

PyPOTS rows are added when ``pypots`` imports (``pip install pypots``; the ``peers`` extra). Run::

    python benchmarks/throughput.py --quick --out benchmarks/results/throughput_quick.json

``--calls``: the cost of a few-call (e.g. distilled) sampler per imputed window, against PyPOTS' SAITS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

K, L, MISSING = 35, 48, 0.8
ARCH = dict(channels=64, n_layers=4, n_heads=8, ff_dim=64, time_emb_dim=128, feature_emb_dim=16, step_emb_dim=128)


# ----------------------------------------------------------------------------------------------- helpers
def flops_per_window_sample_step(k: int = K, l: int = L, *, side: bool = False, c: int = 64, ff: int = 64,
                                 n_layers: int = 4, side_dim: int = 145) -> float:
    """Multiply-add FLOPs (x2) of one denoiser call on one window-sample (CSDI architecture).

    ``side=False`` is what tsimpute computes per step (side projections cached per window);
    ``side=True`` adds the side-information projection that PyPOTS/CSDI recompute at every step.
    """
    tokens = k * l
    layer = 2 * c * 3 * c + 2 * c * c + 2 * 2 * c * ff  # in_proj, out_proj, feed-forward
    attn = 4 * l * c + 4 * k * c  # QK^T and PV over time (length L) and over features (length K)
    block = 2 * layer + attn + 2 * (2 * c * 2 * c)  # two transformer layers, mid and output projections
    if side:
        block += 2 * side_dim * 2 * c
    total = n_layers * block + 2 * 2 * c + 2 * c * c + 2 * c  # input, output1, output2 projections
    return float(tokens * total)


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
        flags = next((line for line in out.splitlines() if line.startswith("Flags")), "")
        if "avx512_bf16" in flags:
            cpu += " (AVX512-BF16)"
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": torch.cuda.is_available()}


def commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uncommitted working tree on top of none (no commit yet)"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True).stdout
    return f"uncommitted working tree on top of {head}" if dirty.strip() else head


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def windows(n: int, seed: int = 0):
    import torch

    from tsimpute.data import WindowSet

    g = torch.Generator().manual_seed(seed)
    observed = (torch.rand(n, K, L, generator=g) > MISSING).float()
    values = torch.randn(n, K, L, generator=g) * observed
    return WindowSet(values, observed)


def tsimpute_model():
    import torch

    from tsimpute.models import CSDIConfig, CSDIDenoiser

    torch.manual_seed(0)
    model = CSDIDenoiser(CSDIConfig(n_features=K, n_steps=50, **ARCH))
    torch.nn.init.normal_(model.output_projection2.weight, std=0.1)  # non-zero outputs (cost is the same)
    return model.eval()


def _time(fn, reps: int) -> tuple[float, float]:
    """Median and fastest wall time of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], min(times)


# ----------------------------------------------------------------------------------------------- rows
def row_gemm(spec: dict) -> dict:
    import torch

    m, k, n = spec["shape"]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["precision"]]
    sec, fastest = _time_gemm(m, k, n, dtype, spec.get("reps", 5))
    return {"seconds": sec, "gflops": 2 * m * k * n / sec / 1e9, "gflops_fastest": 2 * m * k * n / fastest / 1e9}


def _time_gemm(m: int, k: int, n: int, dtype, reps: int) -> tuple[float, float]:
    """Median and fastest time of an ``(m, k) @ (k, n)`` product."""
    import torch

    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    return _time(lambda: a @ b, reps)


def row_forward(spec: dict) -> dict:
    import torch

    from tsimpute.denoisers import parallel_forward
    from tsimpute.inference import inference_model, tune_cpu_allocator

    if spec.get("tune_allocator", True):
        tune_cpu_allocator()
    model = tsimpute_model()
    n = spec["batch_size"]
    b = max(1, n // 8)  # windows; n // b samples of each
    data = windows(b)
    net = inference_model(model, spec["precision"])
    if spec.get("attention"):
        net.attention = spec["attention"]
    with torch.no_grad():
        side = [s.to(next(net.parameters()).dtype) for s in model.encode_side(data.observed)]
        x = torch.randn(n // b, b, K, L, 2)
        t = torch.tensor([10])
        net_c = torch.compile(net, dynamic=False) if spec.get("compile") else net
        if spec.get("split"):  # the sampling path: the batch split over worker threads (one torch thread each)
            def call(x, t, side):
                return parallel_forward(net_c, x, t, side, torch.get_num_threads())
        else:
            def call(x, t, side):
                return net_c(x.view(-1, K, L, 2), t, side)
        t0 = time.perf_counter()
        call(x, t, side)
        first = time.perf_counter() - t0
        sec, fastest = _time(lambda: call(x, t, side), spec.get("reps", 15))
    # the machine's bf16 GEMM rate, measured in the same process right after (the host's speed drifts)
    gemm_sec, _ = _time_gemm(2048, 2048, 2048, torch.bfloat16, 9)
    ms = sec * 1e3 / n
    gflops = flops_per_window_sample_step() / (ms * 1e-3) / 1e9
    gemm = 2 * 2048**3 / gemm_sec / 1e9
    return {"seconds": sec, "first_call_s": first, "ms_per_ws_step": ms, "gflops": gflops,
            "gflops_fastest": flops_per_window_sample_step() * n / fastest / 1e9,
            "bf16_gemm_gflops_here": gemm, "fraction_of_bf16_gemm_here": gflops / gemm}


def row_impute(spec: dict) -> dict:
    import torch

    from tsimpute.data import WindowSet
    from tsimpute.denoisers import SeriesDenoiser
    from tsimpute.diffusion.schedules import NoiseSchedule, uniform_steps
    from tsimpute.inference import impute_windows

    device = spec.get("device", "cpu")
    model = SeriesDenoiser(tsimpute_model().to(device))
    data = windows(spec["windows"]).to(device)
    sched = NoiseSchedule(50)
    chain = sched.chain(uniform_steps(50, spec["steps"])) if spec["steps"] < 50 else sched.full_chain()
    if spec.get("tune_allocator", True):
        from tsimpute.inference import tune_cpu_allocator

        tune_cpu_allocator()
    kw = dict(n_samples=spec["n_samples"], batch_size=spec["batch_size"], precision=spec["precision"])
    # warm-up: the same job with one step (first-call costs: kernel loading, oneDNN primitives, threads)
    warm = data if device == "cpu" else WindowSet(data.values[:8], data.observed[:8])
    impute_windows(model, warm, sched.chain(uniform_steps(50, 1)),
                   generator=torch.Generator(device).manual_seed(1), **kw)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    res = impute_windows(model, data, chain, generator=torch.Generator(device).manual_seed(1), **kw)
    _sync(device)
    sec = time.perf_counter() - t0
    ws = spec["windows"] * spec["n_samples"]
    out = {"seconds": sec, "nfe": res.nfe, "window_samples_per_s": ws / sec,
           "ms_per_ws_step": sec * 1e3 / ws / spec["steps"],
           "gflops": flops_per_window_sample_step() * ws * spec["steps"] / sec / 1e9}
    if device.startswith("cuda"):
        out["gpu_peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def row_train(spec: dict) -> dict:
    import torch

    from tsimpute.denoisers import SeriesDenoiser
    from tsimpute.diffusion.schedules import NoiseSchedule
    from tsimpute.training import TrainConfig, train_denoiser

    device = spec.get("device", "cpu")
    model = SeriesDenoiser(tsimpute_model().train().to(device))
    data = windows(spec["windows"]).to(device)
    cfg = TrainConfig(epochs=1, batch_size=spec["batch_size"], precision=spec["precision"], patience=None,
                      verbose=False)
    # one warm-up epoch on a few windows, then the timed epoch
    train_denoiser(model, NoiseSchedule(50), windows(spec["batch_size"], seed=1).to(device), None, cfg,
                   torch.Generator(device).manual_seed(0))
    _sync(device)
    t0 = time.perf_counter()
    train_denoiser(model, NoiseSchedule(50), data, None, cfg, torch.Generator(device).manual_seed(0))
    _sync(device)
    sec = time.perf_counter() - t0
    n_steps = -(-spec["windows"] // spec["batch_size"])
    return {"seconds": sec, "steps_per_s": n_steps / sec, "train_steps": n_steps}


def _pypots_model(steps: int, epochs: int = 1, batch_size: int = 16):
    import logging

    logging.getLogger("pypots").setLevel(logging.ERROR)
    from pypots.imputation import CSDI

    return CSDI(n_steps=L, n_features=K, n_layers=4, n_heads=8, n_channels=64, d_time_embedding=128,
                d_feature_embedding=16, d_diffusion_embedding=128, n_diffusion_steps=steps, batch_size=batch_size,
                epochs=epochs, device="cpu", verbose=False)


def _pypots_data(n: int):
    import numpy as np

    d = windows(n)
    x = d.values.numpy().transpose(0, 2, 1).copy()  # PyPOTS: (N, L, K) with NaN gaps
    x[d.observed.numpy().transpose(0, 2, 1) == 0] = np.nan
    return {"X": x}


def row_pypots_impute(spec: dict) -> dict:
    import torch

    if spec.get("tune_allocator"):
        from tsimpute.inference import tune_cpu_allocator

        tune_cpu_allocator()
    torch.manual_seed(0)
    model = _pypots_model(spec["steps"], batch_size=spec["batch_size"])
    data = _pypots_data(spec["windows"])
    model.predict(_pypots_data(1), n_sampling_times=1)  # warm-up, as for tsimpute's rows
    t0 = time.perf_counter()
    model.predict(data, n_sampling_times=spec["n_samples"])
    sec = time.perf_counter() - t0
    ws = spec["windows"] * spec["n_samples"]
    return {"seconds": sec, "window_samples_per_s": ws / sec, "ms_per_ws_step": sec * 1e3 / ws / spec["steps"],
            "gflops": flops_per_window_sample_step(side=True) * ws * spec["steps"] / sec / 1e9}


def row_saits_impute(spec: dict) -> dict:
    """PyPOTS' SAITS with the benchmarks' settings (:class:`tsimpute.benchmark.saits.Saits`: 2 layers, d_model
    256): one deterministic imputation per window. Weights are random (the cost does not depend on them)."""
    import torch

    from tsimpute.benchmark.saits import Saits

    torch.manual_seed(0)
    model = Saits(window=L, batch_size=spec["batch_size"]).network(K)
    model.predict(_pypots_data(1))  # warm-up, as for tsimpute's rows
    data = _pypots_data(spec["windows"])
    t0 = time.perf_counter()
    model.predict(data)
    sec = time.perf_counter() - t0
    return {"seconds": sec, "window_samples_per_s": spec["windows"] / sec}


def row_pypots_train(spec: dict) -> dict:
    import torch

    torch.manual_seed(0)
    model = _pypots_model(50, epochs=1, batch_size=spec["batch_size"])
    model.fit(_pypots_data(spec["batch_size"]))  # warm-up
    model = _pypots_model(50, epochs=1, batch_size=spec["batch_size"])
    data = _pypots_data(spec["windows"])
    t0 = time.perf_counter()
    model.fit(data)
    sec = time.perf_counter() - t0
    n_steps = -(-spec["windows"] // spec["batch_size"])
    return {"seconds": sec, "steps_per_s": n_steps / sec, "train_steps": n_steps}


ROWS = {"gemm": row_gemm, "forward": row_forward, "impute": row_impute, "train": row_train,
        "pypots_impute": row_pypots_impute, "pypots_train": row_pypots_train, "saits_impute": row_saits_impute}


def run_row(spec: dict, threads: int | None) -> dict:
    """Run one row in a fresh interpreter and return its result merged into ``spec``."""
    cmd = [sys.executable, __file__, "--row", json.dumps(spec)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ)
    if spec.get("native") is False:  # the ATen path, as where no C++ compiler is installed
        env["TSIMPUTE_NATIVE"] = "0"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {**spec, "error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


def _child(spec: dict) -> None:
    kind = spec.pop("kind")
    result = ROWS[kind](spec)
    out = {**spec, **result, "peak_mem_mb": round(peak_rss_mb(), 1), "load1": round(os.getloadavg()[0], 2)}
    print(json.dumps({"kind": kind, **out}))


# ----------------------------------------------------------------------------------------------- plan
def plan_gpu(device: str, quick: bool = False) -> list[dict]:
    """On a GPU: CSDI's PhysioNet test protocol (800 stays x 100 samples) at 10 and 50 steps (``quick``: 10
    steps only), and training."""
    rows: list[dict] = []
    for prec in ("bf16", "fp32"):
        for steps in (10,) if quick else (10, 50):
            rows.append({"kind": "impute", "impl": "tsimpute", "phase": "impute", "precision": prec, "steps": steps,
                         "n_samples": 100, "windows": 800, "batch_size": None, "device": device})
        rows.append({"kind": "train", "impl": "tsimpute", "phase": "train", "precision": prec, "steps": 50,
                     "n_samples": 1, "windows": 2048, "batch_size": 64, "device": device})
    return rows


def plan_calls(peers: bool, windows: int = 64) -> list[dict]:
    """Few-call samplers (a distilled student costs what the same number of steps of its network costs) on
    ``windows`` PhysioNet-shaped windows, one sample each (``n`` samples cost about ``n`` times as much), beside
    SAITS' deterministic imputation."""
    rows: list[dict] = []
    for steps in (1, 2, 3, 4):
        for prec in ("fp32", "bf16"):
            rows.append({"kind": "impute", "impl": "tsimpute", "phase": "impute", "precision": prec,
                         "steps": steps, "n_samples": 1, "windows": windows, "batch_size": None})
    if peers:
        rows.append({"kind": "saits_impute", "impl": "pypots-saits", "phase": "impute", "precision": "fp32",
                     "steps": 1, "n_samples": 1, "windows": windows, "batch_size": 32})
    return rows


def plan(quick: bool, peers: bool, compile_rows: bool) -> list[dict]:
    rows: list[dict] = []
    for prec in ("fp32", "bf16"):
        rows.append({"kind": "gemm", "impl": "torch", "phase": "gemm", "precision": prec, "shape": [2048, 2048, 2048]})
        rows.append({"kind": "gemm", "impl": "torch", "phase": "gemm", "precision": prec, "shape": [26880, 64, 192]})
    variants = (("sdpa", False), ("math", False), ("fused", False), ("fused", True))
    for prec in ("fp32", "bf16"):
        for attn, split in variants:
            # the full profile sweeps the batch for the ATen path and the sampling path
            for n in (16,) if quick or not split and attn != "math" else (4, 8, 16, 32, 64):
                rows.append({"kind": "forward", "impl": "tsimpute", "phase": "forward", "precision": prec,
                             "attention": attn, "split": split, "batch_size": n, "steps": 1, "n_samples": 1,
                             "windows": n})
    if compile_rows:
        for prec in ("fp32", "bf16"):
            rows.append({"kind": "forward", "impl": "tsimpute", "phase": "forward", "precision": prec,
                         "attention": "math", "batch_size": 32, "steps": 1, "n_samples": 1, "windows": 32,
                         "compile": True})
    n_win, n_samp = (4, 4) if quick else (8, 8)
    bs_list = (16,) if quick else (4, 16, 64)
    for steps in (50, 10):
        for prec in ("fp32", "bf16"):
            for bs in bs_list:
                rows.append({"kind": "impute", "impl": "tsimpute", "phase": "impute", "precision": prec,
                             "steps": steps, "n_samples": n_samp, "windows": n_win, "batch_size": bs})
            if steps == 50:  # the fallback where no C++ compiler is installed
                rows.append({"kind": "impute", "impl": "tsimpute", "phase": "impute", "precision": prec,
                             "steps": steps, "n_samples": n_samp, "windows": n_win, "batch_size": 16,
                             "native": False})
        if peers:
            p_win, p_samp = (2, 2) if quick else (4, 4)
            for tuned in (False, True):  # as installed; and with tsimpute's allocator setting, for fairness
                rows.append({"kind": "pypots_impute", "impl": "pypots", "phase": "impute", "precision": "fp32",
                             "steps": steps, "n_samples": p_samp, "windows": p_win, "batch_size": 16,
                             "tune_allocator": tuned})
    t_win = 32 if quick else 128
    for prec in ("fp32", "bf16"):
        rows.append({"kind": "train", "impl": "tsimpute", "phase": "train", "precision": prec, "steps": 50,
                     "n_samples": 1, "windows": t_win, "batch_size": 16})
    if peers:
        rows.append({"kind": "pypots_train", "impl": "pypots", "phase": "train", "precision": "fp32", "steps": 50,
                     "n_samples": 1, "windows": t_win, "batch_size": 16})
    return rows


_MEASURED = ("seconds", "first_call_s", "window_samples_per_s", "ms_per_ws_step", "gflops", "gflops_fastest",
             "steps_per_s", "peak_mem_mb", "gpu_peak_mem_mb", "load1", "nfe", "train_steps",
             "bf16_gemm_gflops_here", "fraction_of_bf16_gemm_here")


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per configuration: the median of each measurement over its repetitions (``rep``), with
    ``n_reps`` and the range of ``ms_per_ws_step`` (or ``gflops``)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if "error" in r:
            continue
        key = json.dumps({k: v for k, v in r.items() if k not in _MEASURED and k not in ("rep", "gpu")},
                         sort_keys=True)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        agg = {k: v for k, v in members[0].items() if k not in _MEASURED and k != "rep"}
        for k in _MEASURED:
            vals = sorted(m[k] for m in members if isinstance(m.get(k), (int, float)))
            if vals:
                mid = len(vals) // 2
                agg[k] = vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
        spread = "ms_per_ws_step" if "ms_per_ws_step" in agg else "gflops"
        vals = [m[spread] for m in members if spread in m]
        if vals:
            agg["range"] = [min(vals), max(vals)]
        agg["n_reps"] = len(members)
        out.append(agg)
    return out


def summarise(rows: list[dict]) -> dict:
    """Ratios the issue asks for: tsimpute vs PyPOTS imputation, forward rate vs the bf16 GEMM rate, from the
    median over repetitions of each configuration."""
    rows = aggregate(rows)

    def best(**match):
        cands = [r for r in rows if "error" not in r and all(r.get(k) == v for k, v in match.items())]
        key = "steps_per_s" if match.get("phase") == "train" else "window_samples_per_s"
        return max(cands, key=lambda r: r.get(key, r.get("gflops", 0)), default=None)

    out: dict = {}
    gemm = {r["precision"] + "_" + "x".join(map(str, r["shape"])): r["gflops"] for r in rows
            if r.get("phase") == "gemm" and "error" not in r}
    out["gemm_gflops"] = gemm
    # the machine's bf16 GEMM rate: the better of the two shapes (a row slowed by another process would
    # otherwise flatter the ratio)
    bf16_rate = max((v for k, v in gemm.items() if k.startswith("bf16")), default=None)
    fwd = [r for r in rows if r.get("phase") == "forward" and "error" not in r]
    if fwd and bf16_rate:
        top = max(fwd, key=lambda r: r["gflops"])
        out["best_forward"] = {k: top.get(k) for k in ("precision", "attention", "split", "batch_size",
                                                        "ms_per_ws_step", "gflops")}
        out["best_forward"]["fraction_of_bf16_gemm"] = top["gflops"] / bf16_rate
        out["best_forward"]["bf16_gemm_gflops"] = bf16_rate
        # the same ratio with the GEMM timed in the forward row's own process (median over repetitions)
        out["best_forward"]["fraction_of_bf16_gemm_same_process"] = top.get("fraction_of_bf16_gemm_here")
    for steps in (50, 10):
        for prec in ("fp32", "bf16"):
            ours = best(impl="tsimpute", phase="impute", steps=steps, precision=prec, native=None)
            peer = best(impl="pypots", phase="impute", steps=steps)
            peer50 = best(impl="pypots", phase="impute", steps=50)
            rate = "window_samples_per_s"
            if ours and peer:
                out[f"impute_{steps}_{prec}_vs_pypots_{steps}"] = ours[rate] / peer[rate]
            if ours and peer50 and steps != 50:
                out[f"impute_{steps}_{prec}_vs_pypots_50"] = ours[rate] / peer50[rate]
    for prec in ("fp32", "bf16"):
        ours, peer = best(impl="tsimpute", phase="train", precision=prec), best(impl="pypots", phase="train")
        if ours and peer:
            out[f"train_{prec}_vs_pypots"] = ours["steps_per_s"] / peer["steps_per_s"]
    saits = best(impl="pypots-saits", phase="impute")
    if saits:  # per imputed window: one SAITS imputation against one sample of ``steps`` network calls
        for steps in (1, 2, 3, 4):
            ours = best(impl="tsimpute", phase="impute", steps=steps, n_samples=1)
            if ours:
                rate = ours["window_samples_per_s"] / saits["window_samples_per_s"]
                out[f"impute_{steps}call_1sample_vs_saits"] = rate
    return out


def variant(r: dict) -> str:
    parts = ["x".join(map(str, r["shape"])) if "shape" in r else "", r.get("attention", "")]
    if r.get("split"):
        parts.append("worker threads")
    if r.get("native") is False:
        parts.append("ATen path (no compiler)")
    if r.get("compile"):
        parts.append("torch.compile")
    if r.get("impl") == "pypots" and r.get("tune_allocator"):
        parts.append("tuned malloc")
    if r.get("impl") == "tsimpute" and r.get("tune_allocator") is False:
        parts.append("default malloc")
    return " ".join(p for p in parts if p)


def to_markdown(report: dict) -> str:
    kind = "few calls" if report.get("calls") else "quick" if report["quick"] else "full"
    lines = [f"# Throughput ({kind})", "",
             f"- command: `{report['command']}`", f"- commit: {report['commit']}",
             f"- machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
             f"torch {report['machine']['torch']} ({report['machine']['threads']} threads)",
             f"- load average at start / end: {report['load_start']} / {report['load_end']}",
             f"- each configuration run {report.get('repeat', 1)} time(s), interleaved; the table shows medians, "
             "`range` the fastest and slowest ms/ws·step (GFLOP/s for GEMMs)", "",
             "| impl | phase | precision | variant | steps | samples | windows | batch | seconds | ws/s "
             "| ms/ws·step | range | GFLOP/s | steps/s | peak MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    errors = [r for r in report["rows"] if "error" in r]
    for r in aggregate(report["rows"]) + errors:
        if "error" in r:
            lines.append(f"| {r.get('impl')} | {r.get('phase')} | {r.get('precision')} | error: "
                         f"{r['error'].splitlines()[-1][:80] if r['error'] else ''} |")
            continue

        def f(key, fmt="{:.3g}", r=r):
            v = r.get(key)
            return "" if v is None else fmt.format(v)
        lines.append(" | ".join(["", r.get("impl", ""), r.get("phase", ""), r.get("precision", ""),
                                 variant(r),
                                 f("steps", "{}"), f("n_samples", "{}"), f("windows", "{}"), f("batch_size", "{}"),
                                 f("seconds"), f("window_samples_per_s"), f("ms_per_ws_step"),
                                 "-".join(f"{v:.3g}" for v in r.get("range", [])), f("gflops"),
                                 f("steps_per_s"), f("peak_mem_mb", "{:.0f}"), f("load1", "{:.1f}"), ""]).strip())
    lines += ["", "`load`: 1-minute load average when the row ended (2.0 = this benchmark alone on 2 cores; more means",
              "other processes shared the cores and the row is slower than the machine allows).", "",
              "Summary:", "", "```", json.dumps(report["summary"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (under 5 minutes on 2 cores; on a GPU: "
                    "imputation at 10 steps only)")
    ap.add_argument("--out", type=Path, help="write the report as JSON (and a .md beside it)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd forward rows")
    ap.add_argument("--no-peers", action="store_true", help="skip PyPOTS even when it is installed")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: on a GPU, CSDI's PhysioNet "
                    "test protocol (800 stays x 100 samples) at 10 and 50 steps, and training")
    ap.add_argument("--calls", action="store_true", help="only few-call imputation (1-4 network calls, one "
                    "sample, 64 windows) beside PyPOTS' SAITS (peers extra)")
    ap.add_argument("--repeat", type=int, default=1, help="run every configuration this many times (medians)")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.row:
        _child(json.loads(args.row))
        return
    peers = find_spec("pypots") is not None and not args.no_peers
    t0 = time.perf_counter()
    report = {"command": " ".join(["python", *sys.argv]), "commit": commit(), "machine": machine(),
              "quick": args.quick, "calls": args.calls, "peers": peers,
              "load_start": [round(x, 2) for x in os.getloadavg()]}
    rows = []
    if args.device != "cpu":
        specs = plan_gpu(args.device, args.quick)
    else:
        specs = plan_calls(peers) if args.calls else plan(args.quick, peers, args.compile)
    specs = [{**spec, "rep": i} for i in range(args.repeat) for spec in specs]  # interleaved repetitions
    report["repeat"] = args.repeat
    for spec in specs:
        r = run_row(spec, args.threads)
        rows.append(r)
        msg = r.get("error", "").splitlines()[-1:] if "error" in r else ""
        print(f"{r.get('impl'):8s} {r.get('phase'):7s} {r.get('precision'):4s} "
              f"{json.dumps({k: r[k] for k in ('steps', 'batch_size', 'attention', 'shape') if k in r})} -> "
              + (f"ERROR {msg}" if msg else
                 ", ".join(f"{k}={r[k]:.4g}" for k in ("seconds", "window_samples_per_s", "ms_per_ws_step",
                                                        "gflops", "steps_per_s", "peak_mem_mb") if k in r)),
              flush=True)
    report["rows"] = rows
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["summary"] = summarise(rows)
    print(json.dumps(report["summary"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(to_markdown(report))


if __name__ == "__main__":
    main()
