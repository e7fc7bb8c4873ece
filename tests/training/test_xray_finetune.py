"""X-ray fine-tuning on generated crops: augmentation, cached views, a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gunmatch.cli import main
from matcher import load_model
from training.fit import FitConfig
from training.xray.finetune import XrayFinetuneConfig, augment_transmission, finetune_xray
from training.xray.head import XrayHeadConfig


def test_augment_transmission_keeps_geometry_up_to_symmetry_and_monotone_gamma():
    rng = np.random.default_rng(0)
    t = np.linspace(0.05, 1.0, 64, dtype=np.float32).reshape(8, 8)
    t[0, 0] = 0.01  # a marker that must land on a corner
    for _ in range(20):
        out = augment_transmission(t, rng, (0.8, 1.25))
        assert out.shape == t.shape and out.dtype == np.float32
        assert np.all((out > 0) & (out <= 1.0))
        corners = [out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]]
        assert min(corners) == out.min()  # darkest pixel stays on a corner
        # the values are the input's raised to one power (a thickness change)
        g = np.log(out.min()) / np.log(t.min())
        assert 0.8 <= g <= 1.25
        np.testing.assert_allclose(np.sort(out.ravel()), np.sort(t.ravel()) ** g, rtol=1e-5)
    same = augment_transmission(t, np.random.default_rng(0), (1.0, 1.0))
    np.testing.assert_allclose(np.sort(same.ravel()), np.sort(t.ravel()), rtol=1e-6)


@pytest.mark.slow
def test_tiny_finetune_learns_and_writes_a_loadable_checkpoint(tmp_path):
    cfg = XrayFinetuneConfig(
        crops=XrayHeadConfig(
            parcels=6,
            parcel_size=(480, 376),
            regions=12,
            isolated_per_kind=1,
            projected_per_kind=1,
            max_per_class=12,
            max_background=30,
        ),
        head_dim=32,
        aug_passes=1,
        val_every=3,
        fit=FitConfig(epochs=2, batch_size=32, patience=5),
    )
    report = finetune_xray(cfg, tmp_path / "m", progress=False)
    assert report["train_samples"] > 0 and report["val_samples"] > 0
    assert report["train_samples"] + report["val_samples"] == report["samples"]
    assert "background" in report["labels"]
    losses = [h["loss"] for h in report["fit"]["history"][1:]]
    assert losses[-1] < losses[0]
    model = load_model(tmp_path / "m")
    assert model.model_id == report["model_id"]
    assert model.dim == 32 and model.config.preprocess.input_size == 112
    card = json.loads((tmp_path / "m" / "train_config.json").read_text())
    assert card["kind"] == "xray-finetune"


def test_cli_train_xray_rejects_bad_arguments_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train-xray", "--out", str(tmp_path / "m"), "--epochs", "0"])
    assert exc.value.code == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["train-xray", "--out", str(tmp_path / "m"), "--freeze-blocks", "99"]) == 1
    assert "freeze_blocks must be in [0, 15]" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
