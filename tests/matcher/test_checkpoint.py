"""Self-describing checkpoints: round trip, stable ids, galleries built by trained models."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gunmatch.indexing import build, gallery_writer, scan_source
from gunmatch.search import SearchOptions, load_judge, search_image
from gunmatch.service import create_engine, open_engine
from matcher import Embedder, build_pretrained, load_checkpoint, load_model, save_checkpoint
from matcher.model import EmbeddingModel, ModelConfig, default_config, save_delta
from tests.helpers import shape_image, write_image_tree


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    model = EmbeddingModel(ModelConfig(head_dim=32), pretrained_backbone=False)
    out = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "m", card={"base": "test"})
    return model, out


def test_round_trip_same_outputs_and_id(trained):
    model, path = trained
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "gunmatch-model/1" and meta["dim"] == 32
    again = load_checkpoint(path)
    assert again.model_id == model.model_id == meta["model_id"]
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(model.eval()(x), again(x), atol=1e-6)


def test_resaving_loaded_model_keeps_id(trained, tmp_path):
    _, path = trained
    loaded = load_checkpoint(path)
    Embedder(loaded)  # switches to channels_last; must not change the weights' identity
    save_checkpoint(loaded, tmp_path / "copy")
    assert load_checkpoint(tmp_path / "copy").model_id == loaded.model_id


def test_corrupt_weights_refused(trained, tmp_path):
    _, path = trained
    save_checkpoint(load_checkpoint(path), tmp_path / "c")
    data = bytearray((tmp_path / "c" / "weights.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "c" / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(tmp_path / "c")


def test_unknown_model_spec():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        load_model("no-such-model")


def test_gallery_built_with_trained_model(trained, tmp_path):
    model, path = trained
    src = write_image_tree(tmp_path / "src", ["barrel", "spring"], 2)
    engine = create_engine(tmp_path / "gal", model=str(path), threads=1)
    report = build(
        scan_source(src), engine.embedder, gallery_writer(engine.gallery, engine.embedder.model_id)
    )
    assert report.added == 4 and engine.gallery.model_id == model.model_id
    engine.close()
    engine = open_engine(tmp_path / "gal", threads=1)  # the gallery's own model record
    img = tmp_path / "q.png"
    shape_image("barrel", 1).save(img)
    opts = SearchOptions(k=2)
    res = search_image(engine, "q", img, opts, load_judge(engine, opts.screening))
    assert len(res.matches) == 2
    engine.close()


def test_fine_tuned_in_place_is_saved_with_its_weights(tmp_path):
    model = build_pretrained("efficientnet_lite0")
    save_checkpoint(model, tmp_path / "bundled")
    assert json.loads((tmp_path / "bundled" / "meta.json").read_text())["weights"] == "bundled"
    with torch.no_grad():
        model.backbone.net._conv_head.weight.mul_(1.01)  # "training" that kept the hash
    save_checkpoint(model, tmp_path / "tuned")
    meta = json.loads((tmp_path / "tuned" / "meta.json").read_text())
    assert meta["weights"] == "weights.pt"
    reloaded = load_checkpoint(tmp_path / "tuned")
    assert torch.equal(
        reloaded.backbone.net._conv_head.weight, model.backbone.net._conv_head.weight
    )


def test_delta_checkpoint_keeps_only_what_changed_in_float16(tmp_path):
    config = replace(default_config("efficientnet_lite0"), head_dim=32)
    model = build_pretrained("efficientnet_lite0", config)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.backbone.net._blocks[-1].parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        want = model.eval()(x)
    path = save_delta(model, tmp_path / "delta", card={"kind": "test"})
    meta = json.loads((path / "meta.json").read_text())
    assert meta["weights"] == "delta.pt" and meta["base"]["backbone"] == "efficientnet_lite0"
    stored = torch.load(path / "delta.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert any(k.startswith("head.") for k in stored)
    assert "backbone.net._conv_stem.weight" not in stored
    assert (path / "delta.pt").stat().st_size < 2_000_000  # the whole model is ~14 MB in fp32
    loaded = load_checkpoint(path)
    assert loaded.model_id == meta["model_id"] and loaded.card == {"kind": "test"}
    with torch.no_grad():
        got = loaded(x)
    assert torch.allclose(got, want, atol=2e-3)
    # A gallery's copy of the model keeps it as a delta with the same id.
    copy_dir = save_checkpoint(loaded, tmp_path / "gallery-model")
    assert (copy_dir / "delta.pt").read_bytes() == (path / "delta.pt").read_bytes()
    assert load_checkpoint(copy_dir).model_id == loaded.model_id
    meta["base"]["weights_sha256"] = "0" * 64
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="difference from"):
        load_checkpoint(path)
