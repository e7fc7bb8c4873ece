"""The service in a real uvicorn process, over HTTP: search, errors, SIGHUP reload, shutdown."""

from __future__ import annotations

import signal
import time

import httpx

from tests.api.helpers import draw, png_bytes


def test_search_over_http_and_reload_on_sighup(live_server):
    url, keys, proc = live_server["url"], live_server["keys"], live_server["proc"]
    headers = {"X-API-Key": keys["station"]}
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        r = http.post("/v1/search", files={"image": ("q.png", png_bytes(draw("barrel", 0)))},
                      data={"k": "2"}, headers=headers)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["matches"][0]["label"] == "barrel" and len(r.json()["matches"]) == 2
        bad = http.post("/v1/search", files={"image": ("x.txt", b"text")}, headers=headers)
        assert bad.status_code == 415 and bad.headers["content-type"] == "application/json"
        assert http.post("/v1/search", files={"image": ("q.png", b"x")}).status_code == 401

        before = http.get("/readyz").json()
        assert before["reloads"] == 0
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        ready = before
        while ready.get("reloads") == 0 and time.monotonic() < deadline:
            assert proc.poll() is None, "SIGHUP must reload, not stop the service"
            r = http.post("/v1/search", files={"image": ("q.png", png_bytes(draw("slide", 0)))},
                          headers=headers)  # fmt: skip
            assert r.status_code == 200  # served throughout the reload
            ready = http.get("/readyz").json()
            time.sleep(0.2)
        assert ready["reloads"] == 1 and ready["model_id"] == before["model_id"]
        audit = http.get("/v1/audit/verify", headers={"X-API-Key": keys["analyst"]}).json()
        assert audit["ok"] is True
    proc.terminate()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Traceback" not in proc.stdout.read()
