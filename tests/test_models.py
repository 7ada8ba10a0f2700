"""The CSDI denoiser: size, shapes, initialisation, side-information reuse, precision, attention kernels."""

import pytest
import torch
from torch import nn

from tsimpute.inference import inference_model
from tsimpute.models import CSDIConfig, CSDIDenoiser
from tsimpute.models.layers import TransformerLayer, multi_head_attention

CSDI_PARAMS_K35 = 414_065  # ermongroup/CSDI and PyPOTS 1.5 CSDI at K=35, 4 blocks, 64 channels, 8 heads


def small_model(k=5, seed=0, **kw) -> CSDIDenoiser:
    torch.manual_seed(seed)
    cfg = CSDIConfig(n_features=k, channels=16, n_layers=2, n_heads=2, ff_dim=16, **kw)
    model = CSDIDenoiser(cfg)
    nn.init.normal_(model.output_projection2.weight, std=0.5)  # non-zero outputs to compare
    return model.eval()


def inputs(n=6, b=3, k=5, l=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, l, 2, generator=g), (torch.rand(b, k, l, generator=g) < 0.5).float()


def test_parameter_count_matches_csdi():
    model = CSDIDenoiser(CSDIConfig(n_features=35))
    n = sum(p.numel() for p in model.parameters())
    assert n == CSDI_PARAMS_K35
    assert abs(n - 414_000) / 414_000 < 0.05


def test_output_shape_and_zero_init():
    model = CSDIDenoiser(CSDIConfig(n_features=4, channels=16, n_layers=1, n_heads=2, ff_dim=16)).eval()
    x, cond = inputs(6, 3, 4, 10)
    with torch.no_grad():
        out = model(x, 7, model.encode_side(cond))
    assert out.shape == (6, 4, 10)
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer


@pytest.mark.parametrize("t", [3, "tensor1", "per_element"])
def test_step_argument_forms_agree(t):
    model = small_model()
    x, cond = inputs()
    side = model.encode_side(cond)
    with torch.no_grad():
        ref = model(x, 3, side)
        arg = {3: 3, "tensor1": torch.tensor([3]), "per_element": torch.full((6,), 3)}[t]
        torch.testing.assert_close(model(x, arg, side), ref)


def test_side_info_once_per_window_equals_repeated_windows():
    """Folding samples in front of shared side info = running the repeated windows as a plain batch."""
    model = small_model()
    x, cond = inputs(n=6, b=3)  # 2 samples of 3 windows
    with torch.no_grad():
        folded = model(x, 11, model.encode_side(cond))
        repeated = model(x, 11, model.encode_side(cond.repeat(2, 1, 1)))
    torch.testing.assert_close(folded, repeated, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_attention_kernels_give_the_same_network(attention):
    model = small_model()
    x, cond = inputs()
    side = model.encode_side(cond)
    with torch.no_grad():
        model.attention = "sdpa"
        ref = model(x, 5, side)
        model.attention = attention
        torch.testing.assert_close(model(x, 5, side), ref, rtol=1e-5, atol=1e-5)


def test_math_attention_chunks_match_one_pass():
    torch.manual_seed(0)
    qkv = torch.randn(300, 20, 3 * 16)  # 300 sequences x 4 heads: several cache-sized chunks
    with torch.no_grad():
        chunked = multi_head_attention(qkv, 4, impl="math")
    one = multi_head_attention(qkv.clone().requires_grad_(), 4, impl="math").detach()  # autograd: one pass
    torch.testing.assert_close(chunked, one)
    torch.testing.assert_close(chunked, multi_head_attention(qkv, 4, impl="sdpa"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_transformer_layer_equals_pytorch_encoder_layer(attention):
    """Same weights, eval mode: our layer is nn.TransformerEncoderLayer (post-norm, GELU, batch_first)."""
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, activation="gelu", batch_first=True).eval()
    ours = TransformerLayer(16, 4, 32, dropout=0.1, attention=attention).eval()
    with torch.no_grad():
        ours.in_proj.weight.copy_(ref.self_attn.in_proj_weight)
        ours.in_proj.bias.copy_(ref.self_attn.in_proj_bias)
        for name in ("out_proj",):
            getattr(ours, name).load_state_dict(getattr(ref.self_attn, name).state_dict())
        for name in ("linear1", "linear2", "norm1", "norm2"):
            getattr(ours, name).load_state_dict(getattr(ref, name).state_dict())
        x = torch.randn(7, 11, 16)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_bf16_copy_close_to_fp32():
    model = small_model()
    x, cond = inputs()
    side = model.encode_side(cond)
    net = inference_model(model, "bf16")
    assert next(net.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # master weights untouched
    with torch.no_grad():
        ref = model(x, 9, side)
        out = net(x, 9, [s.bfloat16() for s in side]).float()
        auto = _autocast(model, x, side)
    scale = ref.abs().mean()
    assert (out - ref).abs().mean() / scale < 0.03
    assert (auto - ref).abs().mean() / scale < 0.03


def _autocast(model, x, side):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(x, 9, side).float()


def test_training_step_runs_with_both_kernels():
    model = small_model().train()
    x, cond = inputs()
    for attention in ("sdpa", "math"):
        model.attention = attention
        model.zero_grad()
        model(x, torch.randint(50, (6,)), model.encode_side(cond)).square().mean().backward()
        assert model.blocks[0].time_layer.in_proj.weight.grad.abs().sum() > 0


def test_impute_windows_bf16_close_to_fp32_and_default_batch():
    from tsimpute.data import WindowSet
    from tsimpute.denoisers import SeriesDenoiser
    from tsimpute.diffusion.schedules import NoiseSchedule, uniform_steps
    from tsimpute.inference import impute_windows, tune_cpu_allocator
    from tsimpute.precision import resolve_precision

    model = small_model(k=5)
    x, cond = inputs(n=3, b=3)
    data = WindowSet(x[..., 0] * cond, cond)
    chain = NoiseSchedule(50).chain(uniform_steps(50, 5))
    runs = {
        p: impute_windows(SeriesDenoiser(model), data, chain, n_samples=4, sampler="ddim", precision=p,
                          generator=torch.Generator().manual_seed(0))
        for p in ("fp32", "bf16")
    }
    assert runs["fp32"].samples.shape == (4, 3, 5, 12)
    assert runs["fp32"].nfe == 5  # default CPU batch (16 window-samples): the 3 windows x 4 samples in one pass
    observed = cond.bool().expand(4, -1, -1, -1)
    torch.testing.assert_close(runs["bf16"].samples[observed], runs["fp32"].samples[observed])
    gap = (runs["bf16"].samples - runs["fp32"].samples).abs().mean() / runs["fp32"].samples.abs().mean()
    assert gap < 0.05
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")
    assert isinstance(tune_cpu_allocator(), bool)


def test_time_convolution_is_optional_and_reaches_neighbours_only_through_time():
    plain = CSDIDenoiser(CSDIConfig(n_features=5, channels=16, n_layers=2, n_heads=2, ff_dim=16))
    assert not any("time_conv" in name for name in plain.state_dict())  # CSDI's layout: published weights load
    model = small_model(time_kernel=3)
    assert model.blocks[0].time_conv.kernel_size == (3,)
    x, cond = inputs()
    side = model.encode_side(cond)
    with torch.no_grad():
        ref = model(x, 5, side)
        folded = model(x, 5, side)  # samples folded in front of the windows, as in sampling
        bf16 = inference_model(model, "bf16")(x, 5, [s.bfloat16() for s in side]).float()
    torch.testing.assert_close(folded, ref)
    assert ref.shape == (6, 5, 12)
    torch.testing.assert_close(bf16, ref, atol=0.1, rtol=0.1)
    # the convolution acts along time: with attention and features switched off, a change at one time
    # step moves the output only within the kernel's reach per block
    for blk in model.blocks:
        blk.time_layer.forward = lambda y, seq_dim: y
        blk.feature_layer.forward = lambda y, seq_dim: y
    x2 = x.clone()
    x2[:, :, 0, 1] += 1.0
    with torch.no_grad():
        moved = (model(x2, 5, side) - model(x, 5, side)).abs().amax(dim=(0, 1))
    assert bool((moved[:3] > 0).all()) and bool((moved[3:] == 0).all())  # 2 blocks of width 3: 2 steps away
