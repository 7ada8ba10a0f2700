"""The fused CPU kernels against their ATen definitions, the fused network against the ATen one, the build."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from tsimpute.denoisers import parallel_forward
from tsimpute.models import CSDIConfig, CSDIDenoiser, cpu_kernels
from tsimpute.models.csdi import gated_activation
from tsimpute.models.layers import multi_head_attention

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def test_kernels_build_on_this_machine():
    """The suite runs where a C++ compiler is installed (see README): the fast path must be the one tested."""
    assert cpu_kernels.available()


def _reference_attention(qkv, n_heads, seq_dim, bias):
    x = (qkv.float() + (0 if bias is None else bias.float())).to(qkv.dtype).float()
    y = x.movedim(seq_dim, -2)
    out = multi_head_attention(y.reshape(-1, *y.shape[-2:]), n_heads, impl="math")
    return out.view(*y.shape[:-1], -1).movedim(-2, seq_dim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,seq_dim", [((3, 5, 48), 2), ((3, 5, 48), 1), ((2, 35, 7), 1), ((6, 17), 1),
                                           ((4, 1, 3), 1), ((2, 3, 4, 5), 2)])
@pytest.mark.parametrize("head", [4, 8, 16, 32])
def test_attention_matches_math_attention(dtype, shape, seq_dim, head):
    torch.manual_seed(0)
    c = 64
    qkv = (torch.randn(*shape, 3 * c) * 2).to(dtype)
    bias = torch.randn(3 * c).to(dtype)
    out = cpu_kernels.attention(qkv, c // head, seq_dim, bias)
    assert out.shape == (*shape, c) and out.dtype == dtype
    torch.testing.assert_close(out.float(), _reference_attention(qkv, c // head, seq_dim, bias), **TOL[dtype])
    plain = cpu_kernels.attention(qkv, c // head, seq_dim)
    torch.testing.assert_close(plain.float(), _reference_attention(qkv, c // head, seq_dim, None), **TOL[dtype])


def test_attention_softmax_is_stable_for_large_scores():
    torch.manual_seed(0)
    qkv = torch.randn(2, 48, 3 * 64) * 40  # scores of several thousands: exp would overflow without the max
    out = cpu_kernels.attention(qkv, 8, 1)
    assert torch.isfinite(out).all()
    q, k, v = qkv.double().view(2, 48, 3, 8, 8).permute(2, 0, 3, 1, 4)  # float64: fp32 is ill-conditioned here
    exact = (torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v).transpose(1, 2).reshape(2, 48, 64)
    assert (out - exact).abs().max() <= 5e-5 * exact.abs().max()


def test_results_do_not_depend_on_the_number_of_threads():
    qkv = torch.randn(40, 48, 3 * 64)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_kernels.attention(qkv, 8, 1)
        torch.set_num_threads(2)
        two = cpu_kernels.attention(qkv, 8, 1)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_elementwise_kernels_match_aten(dtype):
    torch.manual_seed(1)
    c = 32
    x, y = (torch.randn(3, 7, 11, c) * 3).to(dtype), torch.randn(3, 7, 11, c).to(dtype)
    b = torch.randn(c).to(dtype)
    norm = torch.nn.LayerNorm(c).to(dtype)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
        ref = F.layer_norm((x.float() + y.float() + b.float()), (c,), norm.weight.float(), norm.bias.float())
        torch.testing.assert_close(cpu_kernels.add_layer_norm(x, y, norm, b).float(), ref, **TOL[dtype])
        torch.testing.assert_close(cpu_kernels.add_layer_norm(x, y, norm).float(),
                                   F.layer_norm(x.float() + y.float(), (c,), norm.weight.float(), norm.bias.float()),
                                   **TOL[dtype])
    wide = torch.linspace(-9, 9, 3 * 64).view(3, 64).to(dtype)  # GELU over its whole range
    b64 = torch.randn(64).to(dtype)
    torch.testing.assert_close(cpu_kernels.bias_gelu(wide, b64).float(), F.gelu(wide.float() + b64.float()),
                               **TOL[dtype])
    m = (torch.randn(4, 2, 5, 6, 2 * c) * 4).to(dtype)  # 4 samples of 2 windows
    side = torch.randn(2, 5, 6, 2 * c).to(dtype)
    ref = gated_activation(m.float() + side.float())
    out = cpu_kernels.gated_activation(m.reshape(8, 5, 6, 2 * c), side)
    torch.testing.assert_close(out.view(4, 2, 5, 6, c).float(), ref, **TOL[dtype])
    x, y, bias = torch.randn(6, c).to(dtype), torch.randn(6, 2 * c).to(dtype), torch.randn(2 * c).to(dtype)
    res, sk = (y.float() + bias.float()).chunk(2, dim=-1)
    x1, skip = cpu_kernels.residual_skip(x, y, bias, None)
    torch.testing.assert_close(x1.float(), (x.float() + res) / 2**0.5, **TOL[dtype])
    torch.testing.assert_close(skip.float(), sk, **TOL[dtype])
    prev = skip.clone()
    _, skip2 = cpu_kernels.residual_skip(x, y, bias, skip)
    torch.testing.assert_close(skip2.float(), prev.float() + sk, **TOL[dtype])


def test_bad_inputs_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        cpu_kernels.attention(torch.randn(2, 5, 48, dtype=torch.float64), 2, 1)
    with pytest.raises(ValueError, match="unsupported shape"):
        cpu_kernels.attention(torch.randn(2, 5, 3 * 48), 2, 1)  # heads of 24 channels
    assert not cpu_kernels.attention_supported(48, 48, 2)
    assert not cpu_kernels.attention_supported(600, 64, 8)
    assert cpu_kernels.attention_supported(48, 64, 8)


def _model(k=6, channels=32, heads=4, seed=0):
    torch.manual_seed(seed)
    model = CSDIDenoiser(CSDIConfig(n_features=k, channels=channels, n_layers=2, n_heads=heads, ff_dim=32))
    torch.nn.init.normal_(model.output_projection2.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k,l", [(6, 10), (1, 10), (6, 1)])
def test_fused_network_equals_aten_network(dtype, k, l):
    model = _model(k=k).to(dtype)
    cond = (torch.rand(2, k, l) > 0.5).float()
    x = torch.randn(6, k, l, 2)  # 3 samples of 2 windows
    with torch.no_grad():
        side = [s.to(dtype) for s in model.float().encode_side(cond)]
        model.to(dtype)
        model.attention = "math"
        ref = model(x, 5, side).float()
        model.attention = "fused"
        assert model.blocks[0].time_layer.fused(torch.zeros(1, k, l, 32, dtype=dtype), l)
        out = model(x, 5, side).float()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=0.05, atol=0.02)
    torch.testing.assert_close(out, ref, **tol)


def test_training_never_uses_the_forward_only_kernels():
    model = _model().train()
    cond = (torch.rand(2, 6, 10) > 0.5).float()
    assert not model.blocks[0].time_layer.fused(torch.zeros(1, 6, 10, 32), 10)
    out = model(torch.randn(2, 6, 10, 2), torch.tensor([3, 4]), model.encode_side(cond))
    out.square().mean().backward()
    assert model.blocks[0].time_layer.in_proj.weight.grad.abs().sum() > 0


def test_eval_mode_with_autograd_keeps_gradients():
    """An eval-mode forward that autograd records (saliency, fine-tuning) must not go through the kernels."""
    model = _model()
    cond = (torch.rand(2, 6, 10) > 0.5).float()
    x = torch.randn(2, 6, 10, 2, requires_grad=True)
    out = model(x, 3, model.encode_side(cond))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.blocks[0].time_layer.in_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.attention = "math"
        ref = model(x, 3, model.encode_side(cond))
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_samples,windows", [(4, 3), (1, 5), (3, 1)])
def test_parallel_forward_equals_one_call(n_samples, windows):
    model = _model()
    cond = (torch.rand(windows, 6, 10) > 0.5).float()
    inp = torch.randn(n_samples, windows, 6, 10, 2)
    t = torch.tensor([7])
    with torch.no_grad():
        side = model.encode_side(cond)
        one = model(inp.view(-1, 6, 10, 2), t, side)
        split = parallel_forward(model, inp, t, side, threads=2)
    torch.testing.assert_close(split, one, rtol=1e-5, atol=1e-6)


def _subprocess(code: str, **env) -> dict:
    full_env = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_build_is_cached_and_reused(tmp_path):
    code = """
        import json, warnings
        from tsimpute.models import cpu_kernels
        ok = cpu_kernels.available()
        print(json.dumps({"ok": ok, "files": sorted(p.name for p in cpu_kernels.cache_dir().glob("*.so"))}))
    """
    first = _subprocess(code, TSIMPUTE_CACHE_DIR=str(tmp_path))
    assert first["ok"] and len(first["files"]) == 1
    lib = tmp_path / "kernels" / first["files"][0]
    stamp = lib.stat().st_mtime_ns
    second = _subprocess(code, TSIMPUTE_CACHE_DIR=str(tmp_path))
    assert second == first and lib.stat().st_mtime_ns == stamp


def test_without_compiler_or_when_disabled_the_aten_path_is_used(tmp_path):
    code = """
        import json, warnings, torch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from tsimpute.models import cpu_kernels
            from tsimpute.models.layers import resolve_attention
            ok = cpu_kernels.available()
            impl = resolve_attention("auto", "cpu")
        print(json.dumps({"ok": ok, "impl": impl, "warnings": [str(w.message) for w in caught]}))
    """
    missing = _subprocess(code, TSIMPUTE_CACHE_DIR=str(tmp_path), CXX="no-such-compiler-xyz")
    assert missing["ok"] is False and missing["impl"] == "math"
    assert any("compiler" in w for w in missing["warnings"])
    disabled = _subprocess(code, TSIMPUTE_CACHE_DIR=str(tmp_path), TSIMPUTE_NATIVE="0")
    assert disabled == {"ok": False, "impl": "math", "warnings": []}


def test_portable_build_matches_the_references(tmp_path):
    """Without -march=native the kernels take their generic paths (no AVX-512): same results."""
    code = """
        import json, torch, torch.nn.functional as F
        from tsimpute.models import cpu_kernels
        from tsimpute.models.layers import multi_head_attention
        assert cpu_kernels.available()
        torch.manual_seed(0)
        errs = {}
        for dtype in (torch.float32, torch.bfloat16):
            qkv = torch.randn(3, 35, 3 * 64).to(dtype)
            ref = multi_head_attention(qkv.float(), 8, impl="math")
            errs[f"attention_{dtype}"] = (cpu_kernels.attention(qkv, 8, 1).float() - ref).abs().max().item()
            x = torch.randn(50, 64).to(dtype)
            b = torch.randn(64).to(dtype)
            gelu = F.gelu(x.float() + b.float())
            errs[f"gelu_{dtype}"] = (cpu_kernels.bias_gelu(x, b).float() - gelu).abs().max().item()
            norm = torch.nn.LayerNorm(64).to(dtype)
            ln = F.layer_norm(x.float() + x.float(), (64,))
            errs[f"ln_{dtype}"] = (cpu_kernels.add_layer_norm(x, x, norm).float() - ln).abs().max().item()
        print(json.dumps(errs))
    """
    errs = _subprocess(code, TSIMPUTE_CACHE_DIR=str(tmp_path), TSIMPUTE_NATIVE_ARCH="0")
    for name, err in errs.items():
        assert err < (1e-5 if "float32" in name else 3e-2), (name, err)
