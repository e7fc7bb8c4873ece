"""gunmatch bench: suite selection, section writing, and the measuring helpers on tiny inputs."""

from __future__ import annotations

import types

import numpy as np
import pytest

from benchmarks.report import write_section
from benchmarks.scale import fmt, run_size
from benchmarks.synthvec import VectorSpec
from benchmarks.timing import table, time_calls
from gunmatch.cli import main
from gunmatch.commands import bench
from index.factory import IndexConfig


def test_list_and_unknown_suite(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("core", "embedding", "scale", "microbatch", "http"))
    with pytest.raises(SystemExit) as exc:
        main(["bench", "nonsense"])
    assert exc.value.code == 2


def test_selected_suites_write_their_sections(tmp_path, monkeypatch):
    calls = []

    def fake_run(quick, threads, command):
        calls.append((quick, threads, command))
        return f"## fake\n\nCommand: `{command}`"

    monkeypatch.setitem(bench.SUITES, "fake", bench.Suite("fakemod", "fake"))
    monkeypatch.setattr(bench, "_load", lambda name: types.SimpleNamespace(run=fake_run))
    doc = tmp_path / "b.md"
    write_section("other", "kept", doc)
    assert main(["bench", "fake", "--quick", "--threads", "1", "--out", str(doc)]) == 0
    text = doc.read_text()
    assert "kept" in text and "gunmatch bench fake --quick --threads 1" in text
    assert calls == [(True, 1, "gunmatch bench fake --quick --threads 1")]
    assert bench.selected([]) == list(bench.DEFAULT_ORDER)


def test_failed_suite_is_reported_with_exit_1(tmp_path, monkeypatch, capsys):
    def broken(quick, threads, command):
        raise RuntimeError("out of memory")

    monkeypatch.setitem(bench.SUITES, "fake", bench.Suite("fakemod", "fake"))
    monkeypatch.setattr(bench, "_load", lambda name: types.SimpleNamespace(run=broken))
    assert main(["bench", "fake", "--out", str(tmp_path / "b.md")]) == 1
    assert "out of memory" in capsys.readouterr().err


def test_scale_rows_on_a_tiny_gallery():
    spec = VectorSpec(dim=32, latent=8, clusters=20, seed=1)
    rows = run_size(600, spec, 8, {"hnsw": IndexConfig(kind="hnsw")}, n_queries=30, flat_queries=5)
    assert [r[1].split(" ")[0] for r in rows] == ["flat", "PCA-8"]
    exact, ann = rows
    assert exact[4]["recall"] == pytest.approx(1.0)
    assert 0.8 <= ann[4]["recall"] <= 1.0
    assert ann[3] > 0 and exact[3] >= 600 * 32 * 4  # saved sizes are measured, not guessed
    cells = fmt(rows, 0)
    assert cells[0][-1] == "1.000" and cells[1][0] == "600"


def test_timing_helpers():
    t = time_calls(lambda i: sum(range(100)), repeats=5, warmup=1)
    assert len(t.samples_ms) == 5 and t.p50 <= t.p99 and np.isfinite(t.mean)
    assert table(["a", "b"], [[1, 2]]).splitlines()[2] == "| 1 | 2 |"
