"""The models shipped in models/: each loads and reproduces its recorded golden outputs.

A golden output is measured on a fixed generated input when the model is shipped
(`gunmatch model ship`); a changed loader, preprocessing or generator shows up here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gunmatch.shipped import MODELS_DIR, THREATMAP, list_shipped
from matcher import load_checkpoint
from matcher.threatmap import load_threatmap
from training.ship import model_golden, threatmap_golden

SHIPPED = list_shipped()


def test_the_threat_map_is_shipped():
    names = [entry["name"] for entry in SHIPPED]
    assert THREATMAP in names, f"models/ holds {names}"


@pytest.mark.parametrize("entry", SHIPPED, ids=[entry["name"] for entry in SHIPPED])
def test_shipped_model_matches_its_golden_outputs(entry):
    path = MODELS_DIR / entry["name"]
    card, golden = entry["card"], json.loads((path / "golden.json").read_text())
    for key in ("command", "seeds", "generator", "data_hash", "metrics"):
        assert card.get(key), f"{entry['name']}: card has no {key}"
    if entry["kind"] == "xray-threatmap":
        tmap = load_threatmap(path)
        assert tmap.map_id == card["map_id"]
        again = threatmap_golden(tmap)
        assert again["shape"] == golden["shape"]
        np.testing.assert_allclose(again["cells"], golden["cells"], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(again["max"], golden["max"], rtol=1e-3, atol=1e-3)
    else:
        again = model_golden(load_checkpoint(path))
        assert again["dim"] == golden["dim"]
        np.testing.assert_allclose(again["first"], golden["first"], atol=1e-4)
