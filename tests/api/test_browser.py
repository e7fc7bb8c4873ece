"""The web form in headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gunmatch.demo import build_demo
from screening.regions import iou
from tests.api.helpers import create_keys, draw, serve
from tests.servers import moved_to

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} missing: install Debian's chromium (make browser) to run this test",
    ),
]
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        yield ctx
        ctx.close()


def test_sign_in_upload_and_see_verdict(browser, live_server, tmp_path):
    image = tmp_path / "query.png"
    draw("slide", 0).save(image)
    page = browser.new_page()
    page.goto(live_server["url"] + "/")
    assert page.locator("#signin-btn").inner_text() == "登录"  # Chinese by default
    page.fill("#key-input", live_server["keys"]["analyst"])
    page.click("#signin-btn")
    page.wait_for_selector("#app:not([hidden])")
    page.set_input_files("#file-input", str(image))
    verdict = page.wait_for_selector("#verdict[data-decision]", timeout=30_000)
    assert verdict.get_attribute("data-decision") == "alert"
    assert "警报" in verdict.inner_text()
    first = page.locator("#matches .match").first
    assert "pistol_slide" in first.inner_text()
    page.wait_for_function(
        "() => { const i = document.querySelector('#matches img'); "
        "return i && i.complete && i.naturalWidth > 0; }"
    )  # the thumbnail loaded through the session cookie
    page.click("#lang-btn")
    assert "ALERT" in page.locator("#verdict").inner_text()
    page.locator("#matches .match").first.get_by_role("button", name="Correct").click()
    page.wait_for_selector("text=Feedback recorded")
    page.goto(live_server["url"] + "/gallery")
    page.wait_for_selector("#items tbody tr")
    assert page.locator("#items tbody tr").count() >= 12
    assert page.locator("#feedback tbody tr").count() >= 1
    page.close()


def test_xray_boxes_name_best_match_and_part_probability(browser, mapped_gallery, scan, tmp_path):
    root = mapped_gallery  # the tiny X-ray gallery with the tiny threat map
    key = create_keys(root, "station", name="{role}")["station"]
    image = tmp_path / "scan.png"
    Image.fromarray((scan[0] * 255 + 0.5).astype(np.uint8), "L").save(image)
    page = browser.new_page()
    with serve(root) as (url, _):
        page.goto(url + "/")
        page.fill("#key-input", key)
        page.click("#signin-btn")
        page.wait_for_selector("#app:not([hidden])")
        page.check("#regions")
        with page.expect_response("**/v1/search") as info:
            page.set_input_files("#file-input", str(image))
        regions = info.value.json()["regions"]
        page.wait_for_selector("#boxes rect.region", state="attached", timeout=30_000)
        rects = page.locator("#boxes rect.region")
        assert regions and rects.count() == len(regions)
        for i, r in enumerate(regions):  # the hover text of each box, in Chinese
            m = r["threat_match"]
            want = f"{m['label']} 相似度 {m['score']:.3f} · 部件概率 {r['map_score'] * 100:.0f}%"
            assert rects.nth(i).locator("title").text_content() == want
            d = r["decision"]["decision"] if isinstance(r["decision"], dict) else r["decision"]
            assert rects.nth(i).get_attribute("class") == f"region {d}"
    page.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, gallery_backend, request):
    """`gunmatch demo`'s gallery, as `make demo` builds it (shipped X-ray model and map), on
    the backend."""
    info = build_demo(tmp_path_factory.mktemp("demo"), threads=2)
    with moved_to(gallery_backend, Path(info["gallery"]), request) as gallery:
        info["gallery"] = str(gallery)
        info["key"] = create_keys(gallery, "station", name="{role}")["station"]
        yield info


def test_demo_showcase_alerts_with_a_red_banner_and_a_box_on_the_part(browser, demo):
    """The demo's showcase (a slide the gallery has not seen, in a cluttered parcel) alerts
    in the web form, with an alert box on the slide; the 分区筛查 box shows it was used."""
    page = browser.new_page()
    with serve(Path(demo["gallery"])) as (url, _):
        page.goto(url + "/")
        page.fill("#key-input", demo["key"])
        page.click("#signin-btn")
        page.wait_for_selector("#app:not([hidden])")
        assert page.is_checked("#regions")  # an X-ray gallery: regions are screened by default
        with page.expect_response("**/v1/search") as info:
            page.set_input_files("#file-input", demo["query"])
        res = info.value.json()
        verdict = page.wait_for_selector("#verdict[data-decision]", timeout=60_000)
        assert verdict.get_attribute("data-decision") == "alert", res["decision"]
        assert "警报" in verdict.inner_text()
        color = page.eval_on_selector("#verdict", "e => getComputedStyle(e).backgroundColor")
        r, g, b = (int(v) for v in color[color.index("(") + 1 : color.index(")")].split(",")[:3])
        assert r > 150 and g < 100 and b < 100, color  # the red banner
        page.wait_for_selector("#boxes rect.region.alert", state="attached", timeout=30_000)
        boxes = np.array([r["box"] for r in res["regions"] if _decision(r) == "alert"], float)
        assert iou(boxes, np.array([demo["query_box"]], float))[:, 0].max() >= 0.3
        assert page.is_checked("#regions")
    page.close()


def _decision(region: dict) -> str:
    d = region["decision"]
    return d["decision"] if isinstance(d, dict) else d


def _adapt_status(small: float | None) -> dict:
    """A refused adaptation's status as ``GET /v1/admin/adapt`` answers it."""
    station = {
        "before": {"auc": 0.924, "auc_small": small, "auc_large": 0.951},
        "after": {"auc": 0.976, "auc_small": small and small - 0.1, "auc_large": 0.99},
    }
    report = {when: {"station": station[when], "generated": {"auc": 0.98}} for when in station}
    return {"state": "refused", "phase": "", "started": 1.0, "budget_s": 900.0, "scans": 200,
            "elapsed_s": 860.0, "error": "", "report": report}  # fmt: skip


def test_adapt_status_shows_small_parts_and_larger_objects_apart(browser, mapped_gallery):
    key = create_keys(mapped_gallery, "admin", name="{role}")["admin"]
    page = browser.new_page()
    answers = [_adapt_status(0.8), _adapt_status(None)]

    def answer(route):  # the adaptation's status, as the service reports a refused one
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answers[0]))

    page.route("**/v1/admin/adapt", answer)
    with serve(mapped_gallery) as (url, _):
        page.goto(url + "/gallery")
        page.fill("#key-input", key)
        page.click("#signin-btn")
        status = page.wait_for_selector("#adapt-status:not(:empty)")
        assert status.inner_text() == (
            "未通过门槛，保留原热图。留出扫描 AUC 0.924 → 0.976"
            " (小部件 0.800 → 0.700, 较大物体 0.951 → 0.990)"
        )
        assert status.get_attribute("class") == "error"
        answers.pop(0)  # a station whose projections were all large: the size left out
        page.click("#lang-btn")
        page.reload()
        status = page.wait_for_selector("#adapt-status:not(:empty)")
        assert status.inner_text() == (
            "Refused by the gate; the map is unchanged. Held-out scans' AUC 0.924 → 0.976"
            " (larger objects 0.951 → 0.990)"
        )
        # A report that says what adapt used: of 1000 offered, the budget held 280.
        used = {"training_scans": 167, "held_out_scans": 112, "cleared_scans": 279,
                "cleared_scans_given": 1000, "cleared_scans_unread": 720,
                "unreadable_scans": []}  # fmt: skip
        answers[0]["report"].update(used)
        page.reload()
        status = page.wait_for_selector("#adapt-status:not(:empty)")
        assert status.inner_text().endswith(
            "(larger objects 0.951 → 0.990); scans trained on / held out: 167 / 112"
            " (of 1000 offered: the time budget held these)"
        )
        # Every scan offered used (the unreadable one tried): no word of the budget.
        answers[0]["report"].update(
            cleared_scans_given=280, cleared_scans_unread=0, unreadable_scans=[["x.png", "?"]]
        )
        page.click("#lang-btn")
        page.reload()
        status = page.wait_for_selector("#adapt-status:not(:empty)")
        assert status.inner_text().endswith("；训练 / 留出扫描：167 / 112")
        # An installed map's thresholds: the scans they came from and the share to expect.
        answers[0].update(state="done")
        answers[0]["report"]["screening_calibration"] = {
            "alert_threshold": 2.5, "review_threshold": 1.5,
            "metrics": {"scans": 67, "expected_false_alarm": 1 / 68},
        }  # fmt: skip
        page.click("#lang-btn")
        page.reload()
        status = page.wait_for_selector("#adapt-status:not(:empty)")
        assert status.inner_text().endswith(
            "scans trained on / held out: 167 / 112; alert threshold from 67 cleared scans "
            "training never saw: about 1.5% of clean parcels will alert"
        )
    page.close()
