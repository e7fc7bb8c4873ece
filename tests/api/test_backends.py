"""Where the service state lands on the gallery's backend (``--backend``): the embedded
gallery's in state.sqlite, a shared one's in its PostgreSQL schema, where a reload is also
announced to every replica. The rest of the API runs on either backend in the other modules."""

from __future__ import annotations

import os

from gunmatch.state import load_keyring, open_state
from tests.api.helpers import draw, hdr, png_bytes, search


def _state(gal):
    return open_state(gal, keyring=load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"]))


def test_search_feedback_and_audit_land_in_the_backend_state(
    client, keys, gallery_copy, gallery_backend
):
    r = search(client, keys["station"], png_bytes(draw("slide", 1)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"][0]["label"] == "pistol_slide"
    fb = client.post("/v1/feedback", json={"query_id": body["query_id"], "verdict": "correct",
                     "item_id": body["matches"][0]["item_id"]}, headers=hdr(keys["analyst"]))
    assert fb.status_code == 201, fb.text
    state = _state(gallery_copy)
    try:
        assert state.location.shared == (gallery_backend == "shared")
        assert state.audit.by_query(body["query_id"]).action == "search"
        assert [f.query_id for f in state.feedback.list()][-1] == body["query_id"]
    finally:
        state.close()
    assert (gallery_copy / "state.sqlite").exists() == (gallery_backend == "embedded")
    v = client.get("/v1/audit/verify", headers=hdr(keys["analyst"]))
    assert v.status_code == 200 and v.json()["ok"] and v.json()["rows"] >= 2


def test_reload_announces_itself_on_a_shared_gallery(client, keys, gallery_copy, gallery_backend):
    state = _state(gallery_copy)
    try:
        before = state.reload_generation()
        r = client.post("/v1/admin/reload", headers=hdr(keys["admin"]))
        assert r.status_code == 200, r.text
        after = state.reload_generation()
    finally:
        state.close()
    if gallery_backend == "shared":
        assert after == before + 1
    else:
        assert before is None and after is None
