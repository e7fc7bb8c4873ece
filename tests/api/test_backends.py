"""A representative slice of the API on both backends: the embedded gallery (FAISS + SQLite,
state in state.sqlite) and a shared one (Milvus + PostgreSQL, state in its schema)."""

from __future__ import annotations

import os

from gunmatch.state import load_keyring, open_state
from tests.api.helpers import draw, hdr, png_bytes, search
from tests.helpers import shape_image


def _state(gal):
    return open_state(gal, keyring=load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"]))


def test_search_feedback_and_audit_land_in_the_backend_state(backend_client):
    kind, gal, client, keys = backend_client
    r = search(client, keys["station"], png_bytes(draw("slide", 1)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"][0]["label"] == "pistol_slide"
    fb = client.post("/v1/feedback", json={"query_id": body["query_id"], "verdict": "correct",
                     "item_id": body["matches"][0]["item_id"]}, headers=hdr(keys["analyst"]))
    assert fb.status_code == 201, fb.text
    state = _state(gal)
    try:
        assert state.location.shared == (kind == "shared")
        assert state.audit.by_query(body["query_id"]).action == "search"
        assert [f.query_id for f in state.feedback.list()][-1] == body["query_id"]
    finally:
        state.close()
    assert (gal / "state.sqlite").exists() == (kind == "embedded")
    v = client.get("/v1/audit/verify", headers=hdr(keys["analyst"]))
    assert v.status_code == 200 and v.json()["ok"] and v.json()["rows"] >= 2


def test_add_then_find_then_delete_a_reference(backend_client):
    _, _, client, keys = backend_client
    img = png_bytes(shape_image("magazine", 777))
    r = client.post("/v1/gallery/items", files={"image": ("m.png", img)},
                    data={"label": "new_mag", "category": "magazine"},
                    headers=hdr(keys["analyst"]))  # fmt: skip
    assert r.status_code == 201, r.text
    item_id = r.json()["item"]["item_id"]
    assert search(client, keys["station"], img).json()["matches"][0]["item_id"] == item_id
    assert client.delete(f"/v1/gallery/items/{item_id}", headers=hdr(keys["analyst"])).is_success
    hits = search(client, keys["station"], img).json()["matches"]
    assert item_id not in [m["item_id"] for m in hits]


def test_keys_and_sessions_through_the_api(backend_client):
    kind, gal, client, keys = backend_client
    r = client.post("/v1/keys", json={"name": f"desk {kind}", "role": "station"},
                    headers=hdr(keys["admin"]))  # fmt: skip
    assert r.status_code == 201, r.text
    desk = r.json()["key"]
    signed = client.post("/v1/session", json={"api_key": desk})
    assert signed.status_code == 200 and client.get("/v1/session").status_code == 200
    assert client.delete(f"/v1/keys/desk {kind}", headers=hdr(keys["admin"])).is_success
    assert search(client, desk, png_bytes(draw("barrel", 0))).status_code == 401
    assert client.get("/v1/session").status_code == 401  # the key's sessions ended with it
    client.cookies.clear()
    state = _state(gal)
    try:
        assert not state.keys.get(f"desk {kind}").active
    finally:
        state.close()


def test_reload_announces_itself_on_a_shared_gallery(backend_client):
    kind, gal, client, keys = backend_client
    state = _state(gal)
    try:
        before = state.reload_generation()
        r = client.post("/v1/admin/reload", headers=hdr(keys["admin"]))
        assert r.status_code == 200, r.text
        after = state.reload_generation()
    finally:
        state.close()
    if kind == "shared":
        assert after == before + 1
    else:
        assert before is None and after is None
