"""notebooks/evaluation.ipynb executes on a report made from a small generated set."""

from __future__ import annotations

from pathlib import Path

import pytest

from matcher import Embedder, build_pretrained
from matcher.model import with_preprocess
from tests.helpers import write_varied_tree
from training.evaluate import evaluate
from training.report import write_report

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "evaluation.ipynb"


@pytest.mark.slow
def test_evaluation_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="needs the 'train' extra (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="needs the 'train' extra (nbclient)")
    pytest.importorskip("ipykernel", reason="needs the 'train' extra (ipykernel)")
    labels = ["barrel", "magazine", "spring"]
    g = write_varied_tree(tmp_path / "g", labels, 3)
    q = write_varied_tree(tmp_path / "q", labels, 2)
    model = with_preprocess(build_pretrained(), input_size=64)
    report = write_report(evaluate(g, q, Embedder(model, threads=1), ["barrel"]), tmp_path / "r")

    monkeypatch.setenv("GUNMATCH_REPORT", str(report))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "6 queries, 9 references" in outputs
    assert "alert: threshold" in outputs
    assert "plotted 15 embeddings" in outputs
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
