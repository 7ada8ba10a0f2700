"""CSDI's published PhysioNet network: exact conversion, the fused and ATen paths, bf16, config errors, Imputer."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tsimpute import Imputer
from tsimpute.datasets import PHYSIONET_VARIABLES, load_physionet
from tsimpute.models import CSDIConfig, cpu_kernels
from tsimpute.models.csdi_weights import config_from_csdi_state, convert_csdi_state_dict, load_csdi_denoiser
from tsimpute.pretrained import (
    CSDI_PHYSIONET_DIR,
    CSDI_PHYSIONET_SHA256,
    CSDISettings,
    csdi_physionet_scaler,
    read_csdi_config,
    read_csdi_state,
)

# what the authors' own network (their code, these weights, CPU, fp32, eval mode) predicts for 4 inputs
REFERENCE = Path(__file__).parent / "data" / "csdi_physionet_reference_outputs.npz"
# bf16 network against CSDI's fp32 outputs (whose std is 0.72): measured max 0.045, mean 0.002
BF16_MAX_ABS, BF16_MEAN_ABS = 0.1, 0.005


@pytest.fixture(scope="module")
def state():
    return read_csdi_state()[0]


@pytest.fixture(scope="module")
def reference():
    r = np.load(REFERENCE)
    cond = torch.from_numpy(r["cond_mask"])
    x = torch.stack([cond * torch.from_numpy(r["observed_values"]), (1 - cond) * torch.from_numpy(r["noisy_target"])],
                    dim=-1)  # (B, K, L, 2): CSDI's two input channels, channels-last
    positions = torch.from_numpy(r["timepoints"]).expand(cond.shape[0], -1)
    return x, torch.from_numpy(r["diffusion_step"]), cond, positions, torch.from_numpy(r["predicted_noise"])


def _predict(model, reference, dtype=torch.float32):
    x, t, cond, positions, _ = reference
    with torch.no_grad():
        side = [s.to(dtype) for s in model.encode_side(cond, positions)]
        model.to(dtype)
        return model(x, t, side).float()


def test_packaged_files_are_the_published_ones():
    import hashlib

    assert hashlib.sha256((CSDI_PHYSIONET_DIR / "model.pth").read_bytes()).hexdigest() == CSDI_PHYSIONET_SHA256
    assert "MIT License" in (CSDI_PHYSIONET_DIR / "LICENSE").read_text()
    assert "Yusuke Tashiro" in (CSDI_PHYSIONET_DIR / "LICENSE").read_text()


def test_config_read_from_the_weights_and_base_yaml(state):
    cfg = config_from_csdi_state(state)
    assert (cfg.n_features, cfg.channels, cfg.n_layers, cfg.ff_dim, cfg.side_dim) == (35, 64, 4, 64, 145)
    settings = read_csdi_config(CSDI_PHYSIONET_DIR / "base.yaml")
    assert settings == CSDISettings(n_layers=4, channels=64, n_heads=8, n_steps=50, schedule="quad",
                                    beta_start=1e-4, beta_end=0.5)
    assert sum(v.numel() for v in convert_csdi_state_dict(state, cfg).values()) == 414_065


@pytest.mark.parametrize("attention", ["math", "sdpa"])
def test_aten_path_reproduces_csdi_outputs(state, reference, attention):
    model = load_csdi_denoiser(state)
    model.attention = attention
    x = reference[0]
    assert not model.blocks[0].time_layer.fused(torch.zeros(1, *x.shape[1:3], 64), x.shape[2])
    out = _predict(model, reference)
    torch.testing.assert_close(out, reference[-1], rtol=0, atol=1e-5)


def test_fused_cpu_path_reproduces_csdi_outputs(state, reference):
    assert cpu_kernels.available()
    model = load_csdi_denoiser(state)
    model.attention = "fused"
    x = reference[0]
    with torch.no_grad():
        assert model.blocks[0].time_layer.fused(torch.zeros(1, *x.shape[1:3], 64), x.shape[2])
    out = _predict(model, reference)
    torch.testing.assert_close(out, reference[-1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention", ["math", "fused"])
def test_bf16_network_is_close_to_csdi_outputs(state, reference, attention):
    model = load_csdi_denoiser(state)
    model.attention = attention
    err = (_predict(model, reference, torch.bfloat16) - reference[-1]).abs()
    assert err.max() <= BF16_MAX_ABS and err.mean() <= BF16_MEAN_ABS, (err.max(), err.mean())


@pytest.mark.parametrize("change,tensor", [
    (dict(n_features=34), "embed_layer.weight"),
    (dict(channels=32), "diffmodel.input_projection.weight"),
    (dict(n_layers=3), "diffmodel.residual_layers.3."),
    (dict(n_layers=5), "blocks.4."),
    (dict(feature_emb_dim=8), "embed_layer.weight"),
])
def test_config_that_does_not_match_names_the_tensor(state, change, tensor):
    cfg = CSDIConfig(**{**dict(n_features=35), **change})
    with pytest.raises(ValueError, match="does not match the weights") as err:
        convert_csdi_state_dict(state, cfg)
    assert tensor in str(err.value)


def test_imputer_architecture_mismatch_is_an_error():
    with pytest.raises(ValueError, match="residual_layers.2"):
        Imputer.from_csdi(n_layers=2)
    with pytest.raises(ValueError, match="embed_layer.weight"):
        Imputer.from_csdi(feature_names=[f"x{i}" for i in range(30)], mean=np.zeros(30), scale=np.ones(30))


def test_schedule_mismatch_must_be_explicit():
    with pytest.raises(ValueError, match="allow_schedule_mismatch"):
        Imputer.from_csdi(n_steps=100)
    with pytest.raises(ValueError, match="allow_schedule_mismatch"):
        Imputer.from_csdi(schedule="linear")
    imp = Imputer.from_csdi(n_steps=100, schedule="linear", allow_schedule_mismatch=True)
    assert imp.n_steps == 100 and imp.schedule == "linear" and len(imp.steps_) == 100


def test_damaged_packaged_weights_are_refused(tmp_path, monkeypatch):
    import tsimpute.pretrained as pretrained

    for name in ("model.pth", "base.yaml", "scaler.json"):
        (tmp_path / name).write_bytes((CSDI_PHYSIONET_DIR / name).read_bytes())
    with open(tmp_path / "model.pth", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(pretrained, "CSDI_PHYSIONET_DIR", tmp_path)
    with pytest.raises(ValueError, match="damaged"):
        Imputer.from_csdi()


def test_foreign_files_are_clear_errors(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="not a CSDI conditional model"):
        Imputer.from_csdi(tmp_path)
    with pytest.raises(FileNotFoundError, match="no CSDI weights"):
        Imputer.from_csdi(tmp_path / "missing.pth")


def test_scaler_is_csdi_statistics_of_all_set_a():
    mean, std = csdi_physionet_scaler()
    info = json.loads((CSDI_PHYSIONET_DIR / "scaler.json").read_text())
    assert info["variables"] == list(PHYSIONET_VARIABLES) and info["n_stays"] == 4000
    assert mean.shape == std.shape == (35,) and (std > 0).all()
    try:
        data = load_physionet("set-a", source="full")
    except FileNotFoundError:
        pytest.skip("PhysioNet set-a archive not found: the recomputation needs it (the shipped values are used)")
    from tsimpute.datasets import zscore_stats

    m, s = zscore_stats(data.values)
    np.testing.assert_allclose(mean, m, rtol=1e-12)
    np.testing.assert_allclose(std, s, rtol=1e-12)


def _stays(n=2):
    d = load_physionet("set-a", source="sample")
    idx = pd.MultiIndex.from_product([d.record_ids[:n], range(48)], names=["RecordID", "hour"])
    return pd.DataFrame(d.values[:n].reshape(-1, 35), index=idx, columns=list(d.variables))


def test_from_csdi_imputes_physionet_stays():
    imp = Imputer.from_csdi(n_samples=3, step_selection="uniform", target_steps=3, random_state=0, verbose=False)
    assert list(imp.feature_names_in_) == list(PHYSIONET_VARIABLES) and imp.chain == "respaced"
    np.testing.assert_array_equal(imp.mean_, csdi_physionet_scaler()[0])
    X = _stays()
    before = X.copy()
    out = imp.transform(X)
    pd.testing.assert_frame_equal(X, before)  # input not mutated
    obs = X.notna().to_numpy()
    assert np.array_equal(out.to_numpy()[obs], X.to_numpy()[obs])  # observed cells bit-for-bit
    assert not out.isna().any().any()
    _, info = imp.sample(X, n_samples=3, return_info=True)
    assert info.steps == 3
    again = Imputer.from_csdi(n_samples=3, step_selection="uniform", target_steps=3, random_state=0,
                              verbose=False).transform(X)
    pd.testing.assert_frame_equal(out, again)  # random_state seeds sampling


def test_from_csdi_imputer_saves_and_loads(tmp_path):
    imp = Imputer.from_csdi(n_samples=2, step_selection="uniform", target_steps=2, random_state=1, verbose=False)
    imp.save(tmp_path / "csdi.pt")
    back = Imputer.load(tmp_path / "csdi.pt")
    X = _stays(1)
    pd.testing.assert_frame_equal(imp.transform(X), back.transform(X))


def test_published_network_is_a_warm_start():
    imp = Imputer.from_csdi(n_samples=2, step_selection="uniform", target_steps=2, random_state=0, verbose=False,
                            warm_start=True, max_steps=2, batch_size=4, validation_fraction=0.3)
    published = {k: v.clone() for k, v in imp.model_.state_dict().items()}
    kept = []
    imp.fit(_stays(), callback=lambda h, state: kept.append({k: v.clone() for k, v in state.items()}))
    # training began at the published weights, under CSDI's scaler
    assert all(torch.equal(kept[0][k], v) for k, v in published.items())
    np.testing.assert_array_equal(imp.mean_, csdi_physionet_scaler()[0])
    assert imp.history_.steps == 2 and list(imp.feature_names_in_) == list(PHYSIONET_VARIABLES)
