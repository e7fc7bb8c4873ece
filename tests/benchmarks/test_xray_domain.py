"""The held-out-style screening benchmark: its rows, and a tiny run end to end."""

from __future__ import annotations

import pytest

from benchmarks import cli as bench
from benchmarks import xray_domain
from benchmarks.xray_domain import held_out_arg, parser, plan_rows, run
from benchmarks.xray_screening import scan_size
from screening.regions import ProposalConfig
from screening.screen import ScreeningConfig
from synth.styles import LOOKS, SCENES

# Two parcels a side on small scans and a one-reference gallery: the harness, not figures.
TINY = ["--positives", "2", "--negatives", "2", "--size", "320x250", "--refs-per-kind", "1",
        "--benign-refs", "1", "--augment", "0", "--crop", "64", "--regions", "8",
        "--threads", "1"]  # fmt: skip


def tiny_args(*options: str):
    return parser().parse_args([*options, *TINY])


def test_rows_hold_families_out():
    rows = plan_rows(["noisy-lowres", "tools"])
    assert [r.name for r in rows] == ["default", "in-domain mix", "noisy-lowres", "tools"]
    assert [r.held_out for r in rows] == [False, False, True, True]
    assert rows[0].style_of(5) is None
    for seed in range(40):
        mixed = rows[1].style_of(seed)
        assert not {"noisy-lowres", "tools"} & set(mixed.families)
        look_row, scene_row = rows[2].style_of(seed), rows[3].style_of(seed)
        assert look_row.look.name == "noisy-lowres" and look_row.scene.name != "tools"
        assert scene_row.scene.name == "tools" and scene_row.look.name != "noisy-lowres"
    assert rows[1].style_of(7) == rows[1].style_of(7)
    everything = plan_rows(None)  # a model trained on today's generator: all else held out
    assert [r.name for r in everything[1:]] == [
        n for n in [*LOOKS, *SCENES] if n not in ("default", "classic")
    ]
    with pytest.raises(ValueError, match="unknown style families"):
        plan_rows(["polaroid"])
    with pytest.raises(ValueError, match="not all"):
        plan_rows(list(LOOKS))


def test_nothing_held_out_gives_one_in_domain_row_per_family():
    # The shipped models saw every family in training: their rows are not "held out".
    assert held_out_arg(["none"]) == [] and held_out_arg(None) is None
    assert held_out_arg(["tools"]) == ["tools"]
    rows = plan_rows(held_out_arg(parser().parse_args(["--held-out", "none"]).held_out))
    styled = [n for n in [*LOOKS, *SCENES] if n not in ("default", "classic")]
    assert [r.name for r in rows] == ["default", "in-domain mix", *styled]
    assert not any(r.held_out for r in rows)
    seen = {f for seed in range(60) for f in rows[1].style_of(seed).families}
    assert set(styled) <= seen


def test_scan_size_reads_width_by_height_and_refuses_the_rest():
    assert scan_size(tiny_args()) == (320, 250)
    assert scan_size(parser().parse_args([])) == (1600, 1250)
    for bad in ("1600", "1600x", "0x1250", "1600x1250x3", "wide"):
        with pytest.raises(SystemExit, match="WxH"):
            scan_size(parser().parse_args(["--size", bad]))


def test_registered_as_an_external_suite_taking_quick(monkeypatch):
    suite = bench.SUITES["domain"]
    assert suite.module == "benchmarks.xray_domain" and suite.external and suite.quick_flag
    calls = []
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, check: calls.append(cmd))
    bench.run_suite("domain", True, 2, None)
    bench.run_suite("xray", True, 2, None)
    assert calls[0][-2:] == ["--write", "--quick"] and calls[1][-1] == "--write"


def test_tiny_run_screens_every_row():
    args = parser().parse_args(
        [
            "--held-out",
            "noisy-lowres",
            "--positives",
            "2",
            "--negatives",
            "2",
            "--size",
            "256x200",
            "--refs-per-kind",
            "1",
            "--benign-refs",
            "1",
            "--augment",
            "0",
            "--crop",
            "64",
            "--regions",
            "8",
            "--threads",
            "1",
        ]
    )
    results = run(args)
    assert [r["row"] for r in results] == ["default", "in-domain mix", "noisy-lowres"]
    for r in results:
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["hit_all"] <= 1.0
        assert 0.0 <= r[0.01]["det"] <= r[0.05]["det"] <= 1.0
        # each bag's score is kept, threat bags and clean ones apart
        assert [len(r["scores"][k]) for k in ("threat", "clean")] == [2, 2]
    text = xray_domain.markdown(args, results, "cmd", "machine at start")
    assert "| noisy-lowres | yes |" in text and "| default | no |" in text
    # The gallery in the words every X-ray section uses: 1 reference per kind, no map.
    assert "Screening: gallery built as benchmarks.xray_screening builds it (model " in text
    assert (
        "1 reference per threat kind, 1 per benign kind, 0 projected variants, "
        "threat map none);" in text
    )
    assert text.splitlines()[0] == (
        "## X-ray screening under domain shift: bags holding a part, "
        "models trained without noisy-lowres"
    )
    assert xray_domain.section_name(None, results) == "domain-held-out-noisy-lowres"
    assert xray_domain.section_name("hand", [dict(r, held_out=False) for r in results]) == (
        "domain-guns"
    )


def test_tiny_guns_run_scores_the_whole_image_too():
    args = tiny_args("--guns", "--whole-image", "--held-out", "dense")
    results = run(args)
    for r in results:
        w = r["whole"]
        assert 0.0 <= w["auc"] <= 1.0 and 0.0 <= w[0.01]["det"] <= w[0.05]["det"] <= 1.0
    text = xray_domain.markdown(args, results, "cmd", "machine at start")
    assert text.startswith("## X-ray screening: whole handguns in bags, region screening")
    assert "whole image: det." in text
    # The report names the proposals the rows were screened with: the given count, or the
    # default one, which is smaller where the gallery's threat map proposes too.
    assert not any(r["map"] for r in results) and "; 8 proposals," in text
    args.regions = None
    plain = xray_domain.markdown(args, results, "cmd", "machine at start")
    mapped = xray_domain.markdown(
        args, [dict(r, map=True) for r in results], "cmd", "machine at start"
    )
    assert f"; {ProposalConfig.max_regions} proposals (the default)," in plain
    assert f"; {ScreeningConfig.map_proposals} proposals (the default)," in mapped


def test_long_gun_rows_never_draw_the_classic_scene():
    plain = {r.name: r for r in plan_rows(["noisy-lowres", "tools"])}
    rows = xray_domain.chosen_rows(["noisy-lowres", "tools"], None, true_scale=True)
    assert [r.name for r in rows] == ["in-domain mix", "noisy-lowres", "tools"]
    recast = 0
    for row in rows:
        for seed in range(60):
            style, before = row.style_of(seed), plain[row.name].style_of(seed)
            assert style.scene.name not in ("classic", "tools") or row.name == "tools"
            assert style.look == before.look
            if before.scene.name == "classic":
                recast += 1
            else:
                assert style == before
    assert recast > 0  # the look rows and the mix do draw the classic scene
    with pytest.raises(ValueError, match="besides classic"):
        xray_domain.chosen_rows(None, None, true_scale=True)  # every other scene held out


def test_confuser_runs_screen_the_bags_of_the_run_without_them():
    # A confuser bag is the clean bag plus one item, which the classic scene holds too: the
    # rows stay as drawn (default row included), so the clean columns of a --confusers run
    # are the figures of the same run without it. Long guns alone recast the classic scene.
    def rows(*options):
        return xray_domain.rows_of(parser().parse_args([*options, "--held-out", "none"]))

    plain, confusers, long_guns = (
        rows("--guns"),
        rows("--guns", "--confusers"),
        rows("--guns", "long"),
    )
    assert [r.name for r in confusers] == [r.name for r in plain]
    assert "default" in [r.name for r in confusers] and "default" not in [r.name for r in long_guns]
    for a, b in zip(plain[1:], confusers[1:], strict=True):
        assert all(a.style_of(seed) == b.style_of(seed) for seed in range(60))
    mix = {r.name: r for r in long_guns}["in-domain mix"]
    assert all(mix.style_of(seed).scene.name != "classic" for seed in range(60))
    assert any(plain[1].style_of(seed).scene.name == "classic" for seed in range(60))


def test_tiny_long_gun_run_puts_long_guns_in_gallery_and_bags():
    args = tiny_args("--guns", "long", "--whole-image", "--held-out", "none", "--only", "tools")
    assert [xray_domain._kind(i, None, args) for i in range(3)] == ["rifle", "shotgun", "rifle"]
    results = run(args)
    assert [r["row"] for r in results] == ["tools"]
    assert 0.0 <= results[0]["auc"] <= 1.0 and "whole" in results[0]
    text = xray_domain.markdown(args, results, "cmd", "machine at start")
    assert "whole long guns in bags" in text.splitlines()[0]
    assert "1 references of each long gun" in text
    assert xray_domain.section_name(args.guns, results) == "domain-long-guns"


def test_gallery_takes_scene_kinds_besides_parts(tmp_path):
    args = parser().parse_args(
        ["--refs-per-kind", "1", "--benign-refs", "1", "--augment", "0", "--crop", "64"]
    )
    engine = xray_domain.build_gallery(tmp_path / "g", args, ("rifle", "shotgun"))
    try:
        labels = set(engine.gallery.labels())
    finally:
        engine.close()
    assert {"rifle", "shotgun", "pistol", "slide"} <= labels


def test_tiny_confuser_run_scores_gun_bags_against_star_and_blade_bags():
    args = tiny_args(
        "--guns", "--confusers", "--whole-image", "--held-out", "none", "--only", "tools"
    )
    results = run(args)
    (r,) = results
    for key in ("confuser", "whole_confuser"):
        assert 0.0 <= r[key]["auc"] <= 1.0 and r[key][0.01]["det"] <= r[key][0.05]["det"]
    text = xray_domain.markdown(args, results, "cmd", "machine at start")
    assert "against bags holding a shuriken or razor blade too" in text.splitlines()[0]
    header, rule, row = text.splitlines()[-3:]
    assert header.count("|") == rule.count("|") == row.count("|") == 12
    assert xray_domain.section_name(args.guns, results, args.confusers) == ("domain-guns-confusers")
