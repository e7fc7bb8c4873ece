"""gunmatch bench: suite selection, section writing, and the measuring helpers on tiny inputs."""

from __future__ import annotations

import json
import shlex
import types

import numpy as np
import pytest

from benchmarks import cli as bench
from benchmarks import xray_fusion
from benchmarks.report import begun, command_line, git_rev, write_section
from benchmarks.scale import fmt, run_size
from benchmarks.synthvec import VectorSpec
from benchmarks.timing import table, time_calls
from benchmarks.xray_fusion import figures, partial_detection
from gunmatch.cli import main
from index.factory import IndexConfig
from synth.styles import StyleSampler


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


def test_xray_fusion_rescores_dumped_regions(tmp_path, capsys):
    def row(positive, regions, truth=(0, 0, 10, 10)):
        return {
            "positive": positive,
            "truth": [list(truth)] if positive else [],
            "regions": [
                {"box": list(b), "retrieval": r, "logit": lg, "fit": ft, "own": own}
                for b, r, lg, ft, own in regions
            ],
        }

    rows = [
        # Found by the map on the part (retrieval prefers a stray box), then by retrieval only.
        row(True, [((0, 0, 10, 10), 0.1, 2.0, 1.0, 0), ((50, 50, 10, 10), 0.5, -3.0, 0.0, 0)]),
        row(True, [((0, 0, 10, 10), 0.6, -3.0, 0.0, 0)]),
        row(False, [((0, 0, 10, 10), 0.3, -1.0, 0.0, 0)]),
        row(False, [((0, 0, 10, 10), 0.2, -2.0, 0.0, 0)]),
    ]
    retrieval = figures(rows, lambda r, lg, ft, own: r)
    assert retrieval["max_clean"] == 1.0 and retrieval["auc"] == 1.0
    assert retrieval["hit_1"] == 0.5  # the first parcel's top box is the stray one
    fused = figures(rows, lambda r, lg, ft, own: r + 0.1 * lg + ft)  # 1.3, 0.3 vs 0.2, 0.0
    assert fused["max_clean"] == 1.0 and fused["hit_1"] == 1.0 and fused["hit_all"] == 1.0
    map_only = figures(rows, lambda r, lg, ft, own: lg)  # 2.0, -3.0 vs -1.0, -2.0
    assert map_only["max_clean"] == 0.5 and map_only["auc"] == 0.5
    # Of two boxes the map rates alike, the map's own wins with the box weight.
    gun = [row(True, [((0, 0, 4, 4), 0.9, 3.0, 1.0, 0), ((0, 0, 10, 10), 0.4, 3.0, 1.0, 1)])]
    assert figures(gun + rows[2:], lambda r, lg, ft, own: r + lg + ft)["hit_all"] == 0.0
    assert figures(gun + rows[2:], lambda r, lg, ft, own: r + lg + ft + own)["hit_all"] == 1.0
    assert partial_detection(np.array([3.0, 1.5]), np.array([2.0, 1.0, 0.0]), 0.34) == 0.75
    # A screening benchmark's dump is one set; a domain benchmark's, one set per row.
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(rows))
    rows_path = tmp_path / "domain.json"
    rows_path.write_text(json.dumps({"in-domain mix": rows}))
    assert xray_fusion.main([str(path), str(rows_path), "--weights", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "[in-domain mix]" in out and "[dump]" in out
    assert "| retrieval + 0 x logit + 0 x fit + 0 x own box | 1.000 | 1.000 |" in out
    assert "| map logit alone | 0.500 |" in out and "20 x probability + fit (before)" in out


def test_threatmap_parcels_mixes_two_maps_logits_as_an_ensemble_would():
    from benchmarks.threatmap_parcels import against, mixed_best
    from benchmarks.threatmap_parcels import main as parcels_main

    a = [np.array([[4.0, 0.0]]), np.array([[-2.0, 1.0]])]
    b = [np.array([[0.0, 2.0]]), np.array([[2.0, -1.0]])]
    np.testing.assert_allclose(mixed_best(a, b, 1.0), [4.0, 1.0])
    np.testing.assert_allclose(mixed_best(a, b, 0.0), [2.0, 2.0])
    # 0.25 x a + 0.75 x b: the hottest cell of the mixture, not a mix of the hottest cells
    np.testing.assert_allclose(mixed_best(a, b, 0.25), [1.5, 1.0])
    with pytest.raises(SystemExit):
        parcels_main(["only-one-map", "--shares", "0.5"])
    with pytest.raises(SystemExit):
        parcels_main(["m1", "m2", "--shares", "1.5"])
    with pytest.raises(SystemExit):  # zoom sets are numbers
        parcels_main(["m1", "--zooms", "1,big"])
    with pytest.raises(SystemExit):  # ensembles are mixed at the maps' own size
        parcels_main(["m1", "m2", "--shares", "0.5", "--zooms", "1,1.333"])
    with pytest.raises(SystemExit):  # a map averages 1, 2 or 4 views
        parcels_main(["m1", "--views", "3"])
    # Each row against one set of negatives: the clean bags, or the confuser bags.
    scores = np.array([3.0, 2.0, 1.0, 0.0, 2.5])
    threat = np.array([True, True, False, False, False])
    clean = np.array([False, False, True, True, False])
    easy = against(scores, threat, clean)
    assert easy["auc"] == 1.0 and easy["det_1"] == 1.0 and easy["det_max_clean"] == 1.0
    hard = against(scores, threat, ~threat & ~clean)
    assert hard["auc"] == 0.5 and hard["det_1"] == 0.5 and hard["det_5"] == 0.5


def test_reports_name_the_maps_views_at_each_size():
    from benchmarks.xray_screening import views_text

    assert views_text([2], [1.0, 4 / 3], 960) == (
        "960 px averaged with its mirror image, 1280 px averaged with its mirror image"
    )
    assert views_text([1, 4], [1.0, 4 / 3], 960) == (
        "960 px one pass, 1280 px averaged over its mirror image and both upside down"
    )


def test_only_a_trained_models_section_carries_the_xray_notes(tmp_path):
    from benchmarks.xray_screening import NOTES, section_notes

    # The ImageNet baseline's section once received the whole notes file of the result's.
    assert section_notes("efficientnet_lite0", None) == ("xray-imagenet", None)
    assert section_notes(str(tmp_path), None) == ("xray", str(NOTES))
    assert section_notes(str(tmp_path), "mine.md") == ("xray", "mine.md")
    assert section_notes("efficientnet_lite0", "mine.md") == ("xray-imagenet", "mine.md")


def test_threatmap_parcels_confuser_bags_are_the_clean_seeds_holding_one():
    from benchmarks.threatmap_parcels import parcel_image, plan

    parcels = plan(2, 3, confusers=True)
    assert [g for g, _ in parcels] == ["threat"] * 2 + ["clean"] * 3 + ["confuser"] * 3
    assert [s for g, s in parcels if g == "clean"] == [s for g, s in parcels if g == "confuser"]
    assert len({s for _, s in parcels}) == 5
    assert [g for g, _ in plan(2, 3, confusers=False)] == ["threat"] * 2 + ["clean"] * 3
    styles = StyleSampler(())
    seed = next(s for s in range(200) if styles.for_seed(s).scene.name != "classic")
    clean = parcel_image(seed, (400, 320), None, styles, False)
    hard = parcel_image(seed, (400, 320), None, styles, False, confuser=True)
    assert clean.shape == hard.shape and not np.array_equal(clean, hard)
    # The classic scene and today's unstyled parcels hold one too.
    classic = next(s for s in range(200) if styles.for_seed(s).scene.name == "classic")
    for s, sampler in ((classic, styles), (seed, None)):
        clean = parcel_image(s, (400, 320), None, sampler, False)
        hard = parcel_image(s, (400, 320), None, sampler, False, confuser=True)
        assert clean.shape == hard.shape and not np.array_equal(clean, hard)


def test_recorded_command_pastes_back_into_a_shell():
    argv = ["--only", "in-domain mix", "dense", "--write"]
    line = command_line("benchmarks.xray_domain", argv)
    assert shlex.split(line)[3:] == argv
    assert command_line("benchmarks.scale", []) == ".venv/bin/python -m benchmarks.scale"


def test_a_long_runs_machine_line_names_its_commit_and_load_at_start():
    line = begun()
    assert line.endswith(f"; commit {git_rev()}") and "load average at start " in line


def test_soak_memory_trace_tells_growth_from_levelling_off():
    from benchmarks.soak import memory_growth, memory_trace

    every_5s = np.arange(0.0, 1800.0, 5.0)
    growing = [(t, int(700e6 + 1e6 * t / 60)) for t in every_5s]  # 1 MB a minute throughout
    level = [(t, int(700e6 + 1e6 * min(t, 600.0) / 60)) for t in every_5s]  # flat after 10 min
    up = memory_trace(growing, 60.0)
    flat = memory_trace(level, 60.0)
    assert len(up) == len(flat) == 10
    assert (np.diff(up) > 0).all() and up[-1] - up[0] > 20
    assert flat[0] < flat[2] and len(set(flat[3:])) == 1  # the stretches after 600 s are equal
    # The first and last minute alone read both as growth.
    assert memory_growth(growing, 60.0)[2] > 3 and memory_growth(level, 60.0)[2] > 1
    # A spike in one sample moves no stretch's median; no samples, no trace.
    spiked = [(t, m + (int(500e6) if t == 900.0 else 0)) for t, m in level]
    assert memory_trace(spiked, 60.0) == flat
    assert memory_trace([], 60.0) == []


def test_soak_counts_the_vectors_added_between_its_minutes_as_data():
    from benchmarks.soak import vectors_added_mb

    every_5s = [(t, int(700e6)) for t in np.arange(0.0, 600.0, 5.0)]
    # warm-up 60 s: the first minute's samples are 60-115 s (middle 87.5), the last 540-595
    # (middle 567.5); 500 adds and 100 deletes in between, 50 adds before and 50 after
    changes = [(87.5 + i * 0.9, 1) for i in range(500)] + [(100.0 + i, -1) for i in range(100)]
    changes += [(70.0, 1)] * 50 + [(580.0, 1)] * 50
    assert vectors_added_mb(changes, every_5s, 60.0, 1280) == pytest.approx(400 * 1280 * 4 / 1e6)
    assert vectors_added_mb([], every_5s, 60.0, 1280) == 0.0
