"""Shipping a trained model: float16, only what differs from the trunk, card and goldens."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from gunmatch.cli import main
from gunmatch.shipped import list_shipped
from matcher import build_pretrained, load_checkpoint, save_checkpoint
from matcher.model import with_preprocess
from matcher.threatmap import load_threatmap
from synth.styles import StyleSampler
from training.ship import (
    data_hash,
    generator_version,
    model_golden,
    ship_threatmap,
    threatmap_golden,
    trained_styles,
)
from training.xray.threatmap import ThreatMapTrainConfig


def test_a_styled_map_is_re_measured_on_the_styles_it_was_trained_on():
    sampler = StyleSampler(("tools",), long_guns=0.1, default_share=0.33)
    cfg = json.loads(json.dumps(asdict(ThreatMapTrainConfig(styles=sampler))))
    assert trained_styles(cfg) == sampler
    assert trained_styles(json.loads(json.dumps(asdict(ThreatMapTrainConfig())))) is None


def test_generator_version_and_data_hash_are_stable():
    assert generator_version() == generator_version() and len(generator_version()) == 16
    a = data_hash({"n": 1}, [np.zeros((2, 2)), np.ones((2, 2))])
    assert a == data_hash({"n": 1}, [np.zeros((2, 2)), np.ones((2, 2))])
    assert a != data_hash({"n": 2}, [np.zeros((2, 2)), np.ones((2, 2))])
    assert a != data_hash({"n": 1}, [np.zeros((2, 2)), np.full((2, 2), 0.5)])


def test_ship_threatmap_writes_a_half_head_card_and_golden(tiny_map, tmp_path):
    card = ship_threatmap(tiny_map[0], tmp_path / "tm-test", "gunmatch train-threatmap ...",
                          progress=False)  # fmt: skip
    out = tmp_path / "tm-test"
    shipped = load_threatmap(out)
    assert card["map_id"] == shipped.map_id and card["kind"] == "xray-threatmap"
    assert card["generator"] == generator_version() and len(card["data_hash"]) == 64
    assert 0.0 <= card["metrics"]["val"]["auc"] <= 1.0
    assert (out / "head.pt").stat().st_size < 0.7 * (tiny_map[0] / "head.pt").stat().st_size
    golden = json.loads((out / "golden.json").read_text())
    again = threatmap_golden(load_threatmap(out))
    assert again["shape"] == golden["shape"]
    np.testing.assert_allclose(again["cells"], golden["cells"], atol=1e-4)
    listed = list_shipped(tmp_path)
    assert [e["name"] for e in listed] == ["tm-test"] and listed[0]["card"]["map_id"]


def test_cli_ship_model_as_delta(tmp_path, capsys):
    model = with_preprocess(build_pretrained("efficientnet_lite0"), input_size=64)
    with torch.no_grad():
        for p in model.backbone.net._blocks[-1].parameters():
            p.mul_(1.01)
    model.weights_sha256 = None
    model.card = {"kind": "xray-finetune", "labels": ["slide", "background"], "fit": {}}
    save_checkpoint(model, tmp_path / "trained")
    code = main(["model", "ship", str(tmp_path / "trained"), "--name", "m-test",
                 "--out", str(tmp_path / "models")])  # fmt: skip
    assert code == 0 and "shipped model" in capsys.readouterr().out
    out = tmp_path / "models" / "m-test"
    assert json.loads((out / "meta.json").read_text())["weights"] == "delta.pt"
    shipped = load_checkpoint(out)
    golden = json.loads((out / "golden.json").read_text())
    np.testing.assert_allclose(model_golden(shipped)["first"], golden["first"], atol=1e-5)
    with pytest.raises(SystemExit):
        main(["model", "ship", str(tmp_path), "--name", "x", "--out", str(tmp_path / "m")])


def test_cli_ship_refuses_shares_that_do_not_fit_the_maps(tiny_map, tmp_path):
    m = str(tiny_map[0])
    for argv in (
        [m, "--shares", "1"],  # one map is no ensemble
        [m, m, "--shares", "1"],  # one share for two maps
        [m, m, "--shares", "1", "-1"],
        [m, m, "--shares", "0", "0"],
    ):
        with pytest.raises(SystemExit):
            main(["model", "ship", *argv, "--name", "x", "--out", str(tmp_path / "m")])
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="several maps"):  # shares of one map weigh nothing
        ship_threatmap(tiny_map[0], tmp_path / "m" / "x", "", progress=False, shares=[1.0])
    assert not (tmp_path / "m").exists()
