"""Files written by the previous release (Imputer format 2, ImageImputer format 1) load into the current
layout and sample what the previous release sampled from them (to float32 rounding: the expected outputs were
written on another CPU, whose vector units may round differently); files round-trip in the current format."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tsimpute import Imputer
from tsimpute.checkpoint import read_checkpoint
from tsimpute.threads import torch_threads

DATA = Path(__file__).parent / "data" / "checkpoints"
EXPECTED = np.load(DATA / "expected_outputs.npz")


def assert_same_sampling(actual, expected) -> None:
    """Equal up to float32 rounding of the network's arithmetic (observed values are checked exactly apart)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_format2_imputer_file_is_migrated_and_samples_as_before(tmp_path):
    raw = torch.load(DATA / "imputer_format2.pt", weights_only=True)
    assert raw["format_version"] == 2 and "sigma_table" in raw["model_config"]  # the old layout
    payload = read_checkpoint(DATA / "imputer_format2.pt", "tsimpute.Imputer", 3)
    assert payload["format_version"] == 3
    assert "sigma_table" not in payload["network"] and payload["denoiser"]["parameterization"] == "residual"
    assert payload["data"]["window"] == raw["window"]

    X = pd.read_csv(DATA / "imputer_format2_input.csv", index_col=0)
    imp = Imputer.load(DATA / "imputer_format2.pt").set_params(precision="fp32")
    assert imp.step_selection == "learned" and list(imp.steps_) == raw["learned_steps"].tolist()
    assert imp.denoiser_.parameterization.first_guess is not None
    np.testing.assert_array_equal(imp.mean_, raw["mean"].numpy())
    with torch_threads(1):
        out = imp.transform(X)
        quantiles = imp.predict_quantiles(X, quantiles=(0.1, 0.9), n_samples=4)
    assert_same_sampling(out.to_numpy(), EXPECTED["imputer_transform"])
    assert_same_sampling(quantiles.to_numpy(), EXPECTED["imputer_quantiles"])
    observed = X.notna().to_numpy()
    np.testing.assert_array_equal(out.to_numpy()[observed], X.to_numpy()[observed])

    imp.save(tmp_path / "now.pt")
    assert torch.load(tmp_path / "now.pt", weights_only=True)["format_version"] == Imputer._checkpoint_version
    with torch_threads(1):
        again = Imputer.load(tmp_path / "now.pt").set_params(precision="fp32").transform(X)
    pd.testing.assert_frame_equal(again, out)


def test_format1_image_file_is_migrated_and_samples_as_before():
    pytest.importorskip("diffusers", reason="the image backend needs the image extra")
    from tsimpute.image_imputer import ImageImputer

    imp = ImageImputer.load(DATA / "image_format1.pt")
    assert imp.image_shape_ == (1, 8, 8) and imp.widths == (16,)
    with torch_threads(1):
        assert_same_sampling(imp.transform(EXPECTED["image_input"]), EXPECTED["image_transform"])
        assert_same_sampling(imp.sample(4), EXPECTED["image_sample"])


def test_a_file_missing_what_its_version_needs_is_refused(tmp_path):
    raw = torch.load(DATA / "imputer_format2.pt", weights_only=True)
    del raw["model_config"]
    torch.save(raw, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="lacks 'model_config'"):
        Imputer.load(tmp_path / "broken.pt")
