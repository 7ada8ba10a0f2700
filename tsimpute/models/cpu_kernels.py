"""Fused CPU kernels for inference: attention with small heads, residual + layer norm, GELU, gating, skip sums.

CSDI attends over many short sequences (48 time steps, 35 features) with heads of 8 channels. Through ATen
such attention is a few tiny GEMMs per head and an exp-bound softmax, each a pass through memory; the kernels
in ``cpu_kernels.cpp`` keep a head's scores, exponentials and weighted values in registers, and read the
sequences in place (attention over features needs no transpose). They compute in float32 from float32 or
bfloat16 tensors (exponentials to 1.2e-7 relative error, 4e-5 for bfloat16 outputs; denormals flushed to
zero), forward only: the models call them in inference only, never where autograd records.

The source is compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``)
for this machine's CPU, and cached in ``kernels/`` under tsimpute's cache folder (:func:`tsimpute.cache.cache_dir`:
``$TSIMPUTE_CACHE_DIR``, else the user cache folder, ``~/.cache/tsimpute`` on Linux).
Where no compiler is found or compiling fails, :func:`available` is False, a warning says why once, and
the models use their ATen path. ``TSIMPUTE_NATIVE=0`` disables the kernels; ``TSIMPUTE_NATIVE_ARCH=0`` builds
them for any CPU of the architecture (no ``-march=native``: no AVX-512 or bfloat16 instructions).

Each call splits its work over ``torch.get_num_threads()`` threads (the calls release the GIL); sampling
runs them inside worker threads of one thread each (:func:`tsimpute.inference.parallel_forward`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..cache import cache_dir as _cache_root

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=fast", "-fPIC", "-shared"]
_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_MIN_UNITS_PER_THREAD = 8


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``kernels/`` in tsimpute's cache folder (:func:`tsimpute.cache.cache_dir`)."""
    return _cache_root() / "kernels"


def _compiler() -> str | None:
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx)
    return next((path for name in ("c++", "g++", "clang++") if (path := shutil.which(name))), None)


def _cpu_fingerprint() -> str:
    """Model and flags of this CPU: a kernel built with ``-march=native`` must not run on another CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(keep)))
    except OSError:
        return platform.processor()


def _build(cxx: str) -> Path:
    """Compile the source for this machine (or reuse the cached build); returns the shared library."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    source = SOURCE.read_bytes()
    # a compiler that does not know -march=native still builds portable code; TSIMPUTE_NATIVE_ARCH=0 asks for it
    portable_only = os.environ.get("TSIMPUTE_NATIVE_ARCH", "1").strip() == "0"
    attempts = ([],) if portable_only else (["-march=native"], [])
    errors = []
    for extra in attempts:
        key = hashlib.sha256(
            b"\0".join(s.encode() if isinstance(s, str) else s for s in
                       (source, cxx, version, " ".join(_FLAGS + extra), platform.machine(), _cpu_fingerprint()))
        ).hexdigest()[:16]
        target = cache_dir() / f"cpu_kernels-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            tmp_lib = Path(tmp) / target.name
            proc = subprocess.run([cxx, *_FLAGS, *extra, str(SOURCE), "-o", str(tmp_lib)], capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(tmp_lib, target)  # atomic: concurrent builds of the same key are harmless
                return target
            errors.append(proc.stderr.strip()[-2000:])
    raise RuntimeError("compiling the fused CPU kernels failed:\n" + "\n".join(errors))


_LOAD_LOCK = threading.Lock()
_LOADED: list = []  # [library or None] once loaded: read without the lock on every later call


def _library() -> ctypes.CDLL | None:
    if not _LOADED:
        with _LOAD_LOCK:  # threads that sample at the same time build and load once
            if not _LOADED:
                _LOADED.append(_load())
    return _LOADED[0]


@functools.lru_cache(maxsize=1)
def _load() -> ctypes.CDLL | None:
    if os.environ.get("TSIMPUTE_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    cxx = _compiler()
    if cxx is None:
        warnings.warn("no C++ compiler found ($CXX, c++, g++, clang++): tsimpute uses its slower ATen path on CPU "
                      "(TSIMPUTE_NATIVE=0 silences this)", RuntimeWarning, stacklevel=4)
        return None
    try:
        lib = ctypes.CDLL(str(_build(cxx)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        warnings.warn(f"fused CPU kernels unavailable, using the ATen path: {exc}", RuntimeWarning, stacklevel=4)
        return None
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    signatures = {
        "tsi_attention": [ptr, ptr, ptr, i32, i64, i64, i64, i64, i64, i64, i32, i32, i32],
        "tsi_add_layer_norm": [ptr, ptr, ptr, ptr, ptr, ptr, i32, i64, i64, i32, ctypes.c_float],
        "tsi_bias_gelu": [ptr, ptr, ptr, i32, i64, i64, i32],
        "tsi_gated": [ptr, ptr, ptr, i32, i64, i64, i64, i32],
        "tsi_residual_skip": [ptr, ptr, ptr, ptr, ptr, i32, i64, i64, i32, i32],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, i32
    return lib


def available() -> bool:
    """Whether the fused kernels are built and loaded (compiles them on the first call)."""
    return _library() is not None


_POOLS: dict[tuple[int, bool], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def thread_pool(threads: int, single_threaded_torch: bool = False) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` workers (made once per size); with ``single_threaded_torch`` each
    worker runs torch with one intra-op thread."""
    key = (threads, single_threaded_torch)
    with _POOLS_LOCK:
        if key not in _POOLS:
            init = (torch.set_num_threads, (1,)) if single_threaded_torch else (None, ())
            _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="tsimpute", initializer=init[0],
                                             initargs=init[1])
        return _POOLS[key]


def _run(fn, n_units: int, head: tuple, tail: tuple) -> None:
    """``fn(*head, i0, i1, *tail)`` over the units ``[0, n_units)``, split across threads."""
    threads = max(1, min(torch.get_num_threads(), n_units // _MIN_UNITS_PER_THREAD))
    bounds = [n_units * i // threads for i in range(threads + 1)]

    def call(i: int) -> int:
        return fn(*head, bounds[i], bounds[i + 1], *tail)

    codes = [call(0)] if threads == 1 else list(thread_pool(threads).map(call, range(threads)))
    if any(codes):
        raise ValueError(f"{fn.__name__}: unsupported shape (error codes {codes})")


def _check(*tensors: torch.Tensor) -> int:
    dtype = tensors[0].dtype
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous() or dtype not in _DTYPES:
            raise ValueError("the fused CPU kernels take contiguous float32 or bfloat16 CPU tensors of one dtype")
    return _DTYPES[dtype]


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels can run on ``x`` (CPU, float32/bfloat16, no autograd) and are available."""
    return (x.device.type == "cpu" and x.dtype in _DTYPES and not (torch.is_grad_enabled() and x.requires_grad)
            and available())


def attention_supported(seq_len: int, channels: int, n_heads: int) -> bool:
    """Whether :func:`attention` and :func:`add_layer_norm` take sequences of ``seq_len`` and this width."""
    head = channels // n_heads if n_heads > 0 and channels % n_heads == 0 else 0
    return 1 <= seq_len <= 512 and head in (4, 8, 16, 32) and channels % 16 == 0 and channels <= 1024


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def attention(qkv: torch.Tensor, n_heads: int, seq_dim: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head softmax attention along ``seq_dim`` of packed projections ``qkv + bias (..., 3C)`` → ``(..., C)``.

    Every other leading dimension indexes independent sequences; see :func:`attention_supported` for the
    shapes taken. Same maths as :func:`layers.multi_head_attention`.
    """
    qkv = qkv.contiguous()
    dims = qkv.shape[:-1]
    seq_dim = seq_dim % qkv.dim()
    c = qkv.shape[-1] // 3
    out = torch.empty((*dims, c), dtype=qkv.dtype)
    s = dims[seq_dim]
    after = int(torch.Size(dims[seq_dim + 1:]).numel())
    before = int(torch.Size(dims[:seq_dim]).numel())
    dtype = _check(qkv, *(() if bias is None else (bias,)))
    # sequence (a, b): a over the dims before seq_dim, b over those after; element e is token a*S*after + b + e*after
    _run(_library().tsi_attention, before * after, (qkv.data_ptr(), _ptr(bias), out.data_ptr(), dtype),
         (after, s * after, 1, after, s, c, n_heads))
    return out


def add_layer_norm(x: torch.Tensor, y: torch.Tensor, norm: torch.nn.LayerNorm,
                   y_bias: torch.Tensor | None = None) -> torch.Tensor:
    """``norm(x + y + y_bias)`` over the last dimension, in one pass."""
    out = torch.empty_like(x)
    c = x.shape[-1]
    dtype = _check(x, y, norm.weight, norm.bias, *(() if y_bias is None else (y_bias,)))
    _run(_library().tsi_add_layer_norm, x.numel() // c,
         (x.data_ptr(), y.data_ptr(), _ptr(y_bias), norm.weight.data_ptr(), norm.bias.data_ptr(), out.data_ptr(),
          dtype), (c, norm.eps))
    return out


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gelu(x + bias)`` (exact GELU, as :func:`torch.nn.functional.gelu`) over the last dimension."""
    out = torch.empty_like(x)
    c = x.shape[-1]
    _run(_library().tsi_bias_gelu, x.numel() // c, (x.data_ptr(), bias.data_ptr(), out.data_ptr(), _check(x, bias)),
         (c,))
    return out


def gated_activation(y: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """``sigmoid(g) * tanh(f)`` with ``[g, f] = y + side`` (last dimension 2C); ``side`` is broadcast over leading
    repeats of ``y`` (``y.numel()`` a multiple of ``side.numel()``)."""
    c2 = y.shape[-1]
    out = torch.empty((*y.shape[:-1], c2 // 2), dtype=y.dtype)
    _run(_library().tsi_gated, y.numel() // c2, (y.data_ptr(), side.data_ptr(), out.data_ptr(), _check(y, side)),
         (side.numel() // c2, c2 // 2))
    return out


def residual_skip(x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor,
                  skip: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """End of a residual block: ``[res, sk] = y + bias`` (last dimension 2C) gives ``((x + res) / sqrt(2), skip + sk)``
    (``sk`` alone when ``skip`` is None). ``skip`` is updated in place."""
    c = x.shape[-1]
    out = torch.empty_like(x)
    first = skip is None
    if first:
        skip = torch.empty_like(x)
    _run(_library().tsi_residual_skip, x.numel() // c,
         (x.data_ptr(), y.data_ptr(), bias.data_ptr(), out.data_ptr(), skip.data_ptr(), _check(x, y, bias, skip)),
         (c, int(first)))
    return out, skip
