"""Gallery, feedback, keys, audit, session, reload, health and metrics endpoints."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from api.embedding import EmbeddingQueue, QueueFullError
from tests.api.helpers import draw, hdr, png_bytes, search
from tests.helpers import state_sql


def _add(client, key, data, label="new_ref", **form):
    form = {"label": label, **form}
    return client.post(
        "/v1/gallery/items", files={"image": ("ref.png", data)}, data=form, headers=hdr(key)
    )


def test_gallery_info_and_listing(client, keys):
    info = client.get("/v1/gallery", headers=hdr(keys["station"])).json()
    assert info["items"] == 12 and {c["key"] for c in info["categories"]} >= {"slide", "benign"}
    page = client.get("/v1/gallery/items?threat=true&limit=2", headers=hdr(keys["station"]))
    assert page.status_code == 200
    assert page.json()["total"] == 6 and len(page.json()["items"]) == 2
    one = page.json()["items"][0]
    r = client.get(f"/v1/gallery/items/{one['item_id']}", headers=hdr(keys["station"]))
    assert r.json()["label"] == one["label"]
    thumb = client.get(one["thumbnail_url"], headers=hdr(keys["station"]))
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    assert client.get("/v1/gallery/items/nope", headers=hdr(keys["station"])).status_code == 404
    assert client.get("/v1/gallery/items?limit=0", headers=hdr(keys["station"])).status_code == 422


def test_add_edit_delete_reference(client, keys):
    data = png_bytes(draw("spanner", 0).rotate(90))
    assert _add(client, keys["station"], data).status_code == 403
    r = _add(client, keys["analyst"], data, category="whole_firearm", threat="true",
             make_model="Acme M1")  # fmt: skip
    assert r.status_code == 201, r.text
    item = r.json()["item"]
    assert r.json()["added"] and item["threat"] and item["added_by"] == "analyst key"
    again = _add(client, keys["analyst"], data)
    assert again.status_code == 200 and again.json()["added"] is False
    found = search(client, keys["station"], data)
    assert found.json()["matches"][0]["item_id"] == item["item_id"]
    url = f"/v1/gallery/items/{item['item_id']}"
    r = client.patch(url, json={"label": "renamed", "threat": False}, headers=hdr(keys["analyst"]))
    assert r.status_code == 200 and r.json()["label"] == "renamed" and not r.json()["threat"]
    assert client.patch(url, json={"sha256": "x"}, headers=hdr(keys["analyst"])).status_code == 422
    assert client.patch(url, json={}, headers=hdr(keys["analyst"])).status_code == 422
    r = client.patch(url, json={"category": "nonsense"}, headers=hdr(keys["analyst"]))
    assert r.status_code == 422 and "unknown category" in r.json()["detail"]
    assert client.delete(url, headers=hdr(keys["station"])).status_code == 403
    assert client.delete(url, headers=hdr(keys["analyst"])).status_code == 204
    assert client.get(url, headers=hdr(keys["analyst"])).status_code == 404
    assert client.delete(url, headers=hdr(keys["analyst"])).status_code == 404


def test_failed_writes_leave_gallery_and_audit_intact(client, keys):
    before = client.get("/v1/gallery", headers=hdr(keys["analyst"])).json()["items"]
    audit_before = client.get("/v1/audit?limit=1", headers=hdr(keys["analyst"])).json()["total"]
    assert _add(client, keys["analyst"], b"not an image").status_code == 415
    assert _add(client, keys["analyst"], png_bytes(draw("slide", 0))[:200]).status_code == 422
    assert _add(client, keys["analyst"], png_bytes(draw("slide", 0)), label="").status_code == 422
    after = client.get("/v1/gallery", headers=hdr(keys["analyst"])).json()["items"]
    assert after == before
    audit = client.get("/v1/audit?limit=1", headers=hdr(keys["analyst"])).json()
    assert audit["total"] == audit_before
    assert client.get("/v1/audit/verify", headers=hdr(keys["analyst"])).json()["ok"] is True


def test_feedback_and_adding_the_query(client, keys):
    data = png_bytes(draw("barrel", 2).rotate(180))
    res = search(client, keys["station"], data)
    q = res.json()
    top = q["matches"][0]["item_id"]
    body = {"query_id": q["query_id"], "item_id": top, "verdict": "wrong"}
    assert client.post("/v1/feedback", json=body, headers=hdr(keys["station"])).status_code == 403
    r = client.post(
        "/v1/feedback",
        json={**body, "correct_label": "barrel_flipped",
              "add_reference": {"label": "barrel_flipped", "category": "barrel", "threat": True}},
        headers=hdr(keys["analyst"]),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    fb = r.json()
    assert fb["verdict"] == "wrong" and fb["added_item_id"] and fb["query_image"]
    assert fb["query_sha256"] == q["sha256"]
    listed = client.get("/v1/feedback", headers=hdr(keys["analyst"])).json()
    assert listed["feedback"][-1]["id"] == fb["id"]
    again = search(client, keys["station"], data)
    assert again.json()["matches"][0]["item_id"] == fb["added_item_id"]
    bad = {"query_id": "q_nope", "item_id": top, "verdict": "correct"}
    assert client.post("/v1/feedback", json=bad, headers=hdr(keys["analyst"])).status_code == 404
    bad = {**body, "verdict": "maybe"}
    assert client.post("/v1/feedback", json=bad, headers=hdr(keys["analyst"])).status_code == 422
    bad = {**body, "colour": "red"}
    assert client.post("/v1/feedback", json=bad, headers=hdr(keys["analyst"])).status_code == 422


def test_audit_records_searches_with_image(client, keys):
    data = png_bytes(draw("slide", 2))
    q = search(client, keys["station"], data)
    assert client.get("/v1/audit", headers=hdr(keys["station"])).status_code == 403
    recs = client.get(f"/v1/audit?sha256={q.json()['sha256']}", headers=hdr(keys["analyst"]))
    rec = recs.json()["records"][0]
    assert rec["query_id"] == q.json()["query_id"] and rec["key_name"] == "station key"
    assert rec["decision"] == q.json()["decision"]["decision"] and rec["model_id"]
    assert rec["results"]["matches"][0][0] == q.json()["matches"][0]["item_id"]
    img = client.get(f"/v1/audit/{rec['id']}/image", headers=hdr(keys["analyst"]))
    assert img.status_code == 200 and img.content == data
    assert client.get("/v1/audit/999999/image", headers=hdr(keys["analyst"])).status_code == 404


def test_key_management(client, keys):
    assert client.get("/v1/keys", headers=hdr(keys["analyst"])).status_code == 403
    r = client.post("/v1/keys", json={"name": "Bus station 3", "role": "station"},
                    headers=hdr(keys["admin"]))  # fmt: skip
    assert r.status_code == 201
    new = r.json()["key"]
    assert client.get("/v1/session", headers=hdr(new)).json() == {
        "name": "Bus station 3", "role": "station"
    }  # fmt: skip
    dup = client.post("/v1/keys", json={"name": "Bus station 3", "role": "station"},
                      headers=hdr(keys["admin"]))  # fmt: skip
    assert dup.status_code == 409
    bad = client.post("/v1/keys", json={"name": "x", "role": "god"}, headers=hdr(keys["admin"]))
    assert bad.status_code == 422
    listed = client.get("/v1/keys", headers=hdr(keys["admin"])).json()
    assert "Bus station 3" in {k["name"] for k in listed}
    assert all("key_hash" not in k for k in listed)
    assert client.delete("/v1/keys/Bus station 3", headers=hdr(keys["admin"])).status_code == 200
    assert client.get("/v1/session", headers=hdr(new)).status_code == 401
    assert client.delete("/v1/keys/nobody", headers=hdr(keys["admin"])).status_code == 404


def test_session_cookie_sign_in(client, keys):
    c = TestClient(client.app)  # same running app, fresh cookie jar
    assert c.get("/v1/session").status_code == 401
    assert c.post("/v1/session", json={"api_key": "gm_wrong"}).status_code == 401
    r = c.post("/v1/session", json={"api_key": keys["analyst"]})
    assert r.status_code == 200 and r.json()["role"] == "analyst"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert c.get("/v1/gallery/items?limit=1").status_code == 200
    assert c.delete("/v1/session").status_code == 204
    c.cookies.clear()
    assert c.get("/v1/gallery/items?limit=1").status_code == 401


def test_health_ready_metrics_and_pages(client, keys):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_id"].startswith("efficientnet")
    text = client.get("/metrics").text
    assert "gunmatch_requests_total" in text and "gunmatch_request_seconds_bucket" in text
    assert 'route="/v1/search"' in text and "gunmatch_gallery_items" in text
    assert f'model_id="{ready["model_id"]}"' in text
    page = client.get("/")
    assert page.status_code == 200 and 'lang="zh-CN"' in page.text and "capture=" in page.text
    assert "https://" not in page.text and "http://" not in page.text  # no CDN
    assert client.get("/gallery").status_code == 200
    assert client.get("/static/search.js").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]


def test_reload_swaps_engine_and_keeps_serving(client, keys):
    assert client.post("/v1/admin/reload", headers=hdr(keys["analyst"])).status_code == 403
    services = client.app.state.services
    old_slot = services.holder.current
    with services.holder.acquire() as held:  # a request "in flight" on the old engine
        r = client.post("/v1/admin/reload", headers=hdr(keys["admin"]))
        assert r.status_code == 200 and r.json()["reloads"] >= 1
        assert services.holder.current is not old_slot
        assert held.retired and held.engine.gallery.search(
            held.engine.embedder.embed([draw("slide", 0)]), 1
        )  # still usable until released
    data = png_bytes(draw("slide", 0))
    r = search(client, keys["station"], data)
    assert r.status_code == 200 and r.json()["matches"][0]["label"] == "pistol_slide"


def test_full_queue_answers_503_at_once(client, keys):
    q = EmbeddingQueue(workers=1, queue_size=0)
    release = asyncio.Event()

    async def scenario():
        loop = asyncio.get_running_loop()
        blocker = loop.create_task(q.run(lambda: asyncio.run_coroutine_threadsafe(
            release.wait(), loop).result(5)))  # fmt: skip
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError):
            await q.run(lambda: None)
        release.set()
        await blocker

    asyncio.run(scenario())
    q.close()
    services = client.app.state.services
    original, services.queue = services.queue, EmbeddingQueue(workers=1, queue_size=0)
    services.queue._admitted = services.queue.capacity  # saturated by other requests
    try:
        data = png_bytes(draw("slide", 0))
        r = search(client, keys["station"], data)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert "busy" in r.json()["detail"]
    finally:
        services.queue.close()
        services.queue = original


def test_audit_chain_detects_tampering(client, keys, gallery_copy):
    alert = search(client, keys["station"], png_bytes(draw("slide", 0))).json()
    assert alert["decision"]["decision"] == "alert"
    assert client.get("/v1/audit/verify", headers=hdr(keys["analyst"])).json()["ok"]
    state_sql(gallery_copy,
              f"UPDATE audit_log SET decision='clear' WHERE query_id='{alert['query_id']}'")
    report = client.get("/v1/audit/verify", headers=hdr(keys["analyst"])).json()
    assert report["ok"] is False and "MAC" in report["problem"]
