"""Golden values for the bundled weights (regenerate: python -m matcher.golden --write ...)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from matcher.golden import CROSSWORD_PUZZLE, golden_values

GOLDEN = json.loads((Path(__file__).parent / "golden" / "golden.json").read_text())


@pytest.mark.parametrize("backbone", sorted(GOLDEN))
def test_golden_values(backbone):
    torch.set_num_threads(2)
    expected = GOLDEN[backbone]
    got = golden_values(backbone)
    assert got["top_classes"][0] == CROSSWORD_PUZZLE == expected["top_classes"][0]
    np.testing.assert_allclose(got["top_logits"], expected["top_logits"], atol=0.02)
    assert got["model_id"] == expected["model_id"]
    emb = np.asarray(got["embedding"])
    assert abs(np.linalg.norm(emb) - 1.0) < 1e-4
    np.testing.assert_allclose(
        emb[expected["embedding_indices"]], expected["embedding_values"], atol=2e-3
    )
