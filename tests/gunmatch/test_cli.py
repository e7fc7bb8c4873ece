"""The `gunmatch` command end to end on generated images, on the gallery backend (under
``--backend shared`` the galleries it builds go to PostgreSQL + Milvus, as a user's settings
GUNMATCH_DATABASE_URL and GUNMATCH_VECTOR_URI send them)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gunmatch.cli import main
from gunmatch.state import state_location
from screening.calibration import SCREENING_CALIBRATION_FILE
from tests.helpers import shape_image, write_image_tree


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits for bad arguments
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def built(tmp_path, capsys, new_galleries):
    src = write_image_tree(tmp_path / "src", ["barrel", "magazine", "spring"], 3)
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "category", "make_model", "calibre", "threat"])
        w.writerow(["barrel/barrel_0.png", "barrel", "Glock 17", "9mm", "true"])
    gal = tmp_path / "gal"
    code, out, _ = run(
        capsys,
        "gallery",
        "build",
        str(src),
        "--gallery",
        str(gal),
        "--metadata",
        str(meta),
        "--threat-labels",
        "magazine",
        "--quiet",
        "--threads",
        "2",
    )
    assert code == 0, out
    assert "indexed 9 new" in out
    assert state_location(gal).shared == (new_galleries == "shared")
    return src, gal


def test_build_is_incremental(built, capsys, tmp_path):
    src, gal = built
    shape_image("spring", 777).save(src / "spring" / "spring_new.png")
    code, out, _ = run(capsys, "gallery", "build", str(src), "--gallery", str(gal), "--quiet")
    assert code == 0 and "indexed 1 new, 9 already present" in out


def test_search_json_lines(built, capsys, tmp_path):
    _, gal = built
    queries = tmp_path / "q"
    (queries / "nested").mkdir(parents=True)
    shape_image("barrel", 4242).save(queries / "nested" / "b.png")
    shape_image("magazine", 4343).save(queries / "m.png")
    (queries / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, out, _ = run(capsys, "search", "--gallery", str(gal), str(queries), "--k", "3", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert len(lines) == 3
    by_name = {Path(d["query"]).name: d for d in lines}
    assert "error" in by_name["broken.png"] and "matches" not in by_name["broken.png"]
    barrel = by_name["b.png"]
    assert barrel["model_id"].startswith("efficientnet_lite0-")
    assert barrel["elapsed_ms"] > 0
    assert [m["rank"] for m in barrel["matches"]] == [1, 2, 3]
    top = barrel["matches"][0]
    assert set(top) >= {"rank", "item_id", "label", "category", "threat", "score"}
    assert top["label"] == "barrel"
    assert by_name["m.png"]["matches"][0]["label"] == "magazine"
    assert by_name["m.png"]["matches"][0]["threat"] is True  # from --threat-labels


def test_metadata_csv_applied(built, capsys):
    _, gal = built
    code, out, _ = run(capsys, "gallery", "list", "--gallery", str(gal), "--json")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    glock = [r for r in rows if r["make_model"] == "Glock 17"]
    assert len(glock) == 1 and glock[0]["calibre"] == "9mm" and glock[0]["threat"] is True
    assert glock[0]["category"] == "barrel"


def test_info_add_update_remove(built, capsys, tmp_path):
    _, gal = built
    img = tmp_path / "new.png"
    shape_image("barrel", 999).save(img)
    code, out, _ = run(
        capsys,
        "gallery",
        "add",
        str(img),
        "--gallery",
        str(gal),
        "--label",
        "barrel-x",
        "--category",
        "barrel",
        "--threat",
        "--make-model",
        "Type 54",
    )
    assert code == 0 and "added 1" in out
    code, out, _ = run(capsys, "gallery", "add", str(img), "--gallery", str(gal), "--label", "dup")
    assert code == 0 and "already present 1" in out
    code, out, _ = run(capsys, "gallery", "info", "--gallery", str(gal), "--json")
    info = json.loads(out)
    assert info["items"] == 10 and info["labels"]["barrel-x"] == 1
    code, out, _ = run(
        capsys, "gallery", "list", "--gallery", str(gal), "--label", "barrel-x", "--json"
    )
    item_id = json.loads(out)["item_id"]
    code, out, _ = run(
        capsys, "gallery", "update", item_id, "--gallery", str(gal), "--calibre", "7.62"
    )
    assert code == 0 and json.loads(out)["calibre"] == "7.62"
    code, out, _ = run(capsys, "gallery", "remove", item_id, "--gallery", str(gal))
    assert code == 0
    code, _, err = run(capsys, "gallery", "remove", item_id, "--gallery", str(gal))
    assert code == 1 and "no such item" in err and "Traceback" not in err


def test_exit_codes_and_messages(built, capsys, tmp_path):
    _, gal = built
    code, _, err = run(capsys, "search", "--gallery", str(gal))
    assert code == 2
    code, _, err = run(capsys, "search", "--gallery", str(gal), "x.png", "--k", "0")
    assert code == 2 and "--k" in err
    code, _, err = run(capsys, "search", "--gallery", str(tmp_path / "nowhere"), str(gal))
    assert code == 1 and "not a gallery" in err and "Traceback" not in err
    code, _, err = run(capsys, "gallery", "build", str(tmp_path / "missing"), "--gallery", str(gal))
    assert code == 2 and "not a directory" in err
    code, out, _ = run(
        capsys, "search", "--gallery", str(gal), str(tmp_path / "missing.png"), "--json"
    )
    assert code == 1 and "does not exist" in json.loads(out)["error"]


def test_model_mismatch_refused_with_reindex_hint(built, capsys, tmp_path):
    _, gal = built
    img = tmp_path / "q.png"
    shape_image("spring", 5).save(img)
    code, _, err = run(
        capsys, "search", "--gallery", str(gal), str(img), "--model", "efficientnet_lite2"
    )
    assert code == 1 and "gunmatch gallery reindex" in err


@pytest.mark.slow
def test_reindex_switches_model(built, capsys, tmp_path):
    _, gal = built
    code, out, _ = run(
        capsys,
        "gallery",
        "reindex",
        "--gallery",
        str(gal),
        "--model",
        "efficientnet_lite2",
        "--quiet",
    )
    assert code == 0 and "re-indexed 9 items" in out
    img = tmp_path / "q.png"
    shape_image("spring", 6).save(img)
    code, out, _ = run(capsys, "search", "--gallery", str(gal), str(img), "--json", "--k", "1")
    res = json.loads(out)
    assert (
        res["model_id"].startswith("efficientnet_lite2-") and res["matches"][0]["label"] == "spring"
    )


@pytest.mark.slow  # the heaviest CLI test: references, build, calibration, screening parcels
def test_demo_builds_gallery_calibrates_and_searches(capsys, tmp_path, new_galleries):
    code, out, _ = run(capsys, "demo", "--dir", str(tmp_path / "demo"), "--per-kind", "1")
    assert code == 0, out
    assert "demo gallery:" in out and "calibrated" in out
    assert state_location(tmp_path / "demo" / "gallery").shared == (new_galleries == "shared")
    cal = json.loads((tmp_path / "demo" / "gallery" / "calibration.json").read_text())
    assert 0 < cal["review_threshold"] <= cal["alert_threshold"] <= 1
    assert cal["model_id"].startswith("efficientnet_lite0-")
    ranked = [line for line in out.splitlines() if line.strip().startswith("1.")]
    assert ranked, out
    # Idempotent: a second run reuses the generated files and adds nothing, and keeps both
    # sets of thresholds (nothing they were measured on changed).
    files = [
        tmp_path / "demo" / "gallery" / f for f in ("calibration.json", SCREENING_CALIBRATION_FILE)
    ]
    written = [f.stat().st_mtime_ns for f in files]
    code, out2, _ = run(capsys, "demo", "--dir", str(tmp_path / "demo"), "--per-kind", "1")
    assert code == 0 and "(27 items" in out2
    assert [f.stat().st_mtime_ns for f in files] == written
    assert out2.splitlines()[2:] == out.splitlines()[2:]  # the same showcase verdict and matches
