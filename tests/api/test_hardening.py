"""The hostile review of issue #14, repeatable: each attack that once got through is refused."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from api.logs import RedactSecretsFilter
from tests.api.helpers import draw, endless_body, hdr, png_bytes, search, serve

FOREIGN = "https://evil.example"
OWN = "http://testserver"  # TestClient's origin
INT64_OVER = "9223372036854775808"
MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}
IMAGE_PART = (
    b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
    b"Content-Type: image/png\r\n\r\n"
)


@pytest.fixture(scope="module")
def logged_server(gallery_copy: Path, keys: dict[str, str]):
    """The service in uvicorn with its access log on (stdout is read by the last test)."""
    with serve(gallery_copy, log_level="info") as (url, proc):
        yield {"url": url, "proc": proc, "keys": keys}


def _rss(proc) -> int:
    return psutil.Process(proc.pid).memory_info().rss


def _sign_in(client: TestClient, key: str) -> str:
    """Sign in and hand back the session cookie's value (kept out of the client's jar)."""
    r = client.post("/v1/session", json={"api_key": key})
    assert r.status_code == 200, r.text
    token = r.cookies["gunmatch_session"]
    client.cookies.clear()
    return token


def _cookie(token: str, origin: str | None = OWN) -> dict[str, str]:
    h = {"Cookie": f"gunmatch_session={token}"}
    if origin:
        h["Origin"] = origin
    return h


# -- High: bodies ------------------------------------------------------------------------
def test_unauthenticated_chunked_body_without_end_is_answered_unread(logged_server):
    url, proc = logged_server["url"], logged_server["proc"]
    before = _rss(proc)
    for path in ("/v1/search", "/v1/keys", "/v1/gallery/items"):
        out = endless_body(url, path, MULTIPART, IMAGE_PART)
        assert out["status"] == 401 and out["closed"], out
        # answered before the client could push more than the socket buffers hold
        assert out["sent_before_answer"] < 16_000_000, out
    assert _rss(proc) - before < 0.1 * before


def test_authenticated_endless_bodies_are_cut_at_the_limit(logged_server):
    url, proc, keys = logged_server["url"], logged_server["proc"], logged_server["keys"]
    before = _rss(proc)
    key = {"X-API-Key": keys["admin"]}
    out = endless_body(url, "/v1/keys", {**key, "Content-Type": "application/json"})
    assert out["status"] == 413 and out["closed"], out
    out = endless_body(url, "/v1/session", {"Content-Type": "application/json"})  # no key needed
    assert out["status"] == 413 and out["closed"], out
    # an upload route: cut at the upload limit (20 MB + form overhead), spooled, then closed
    out = endless_body(url, "/v1/search", {**key, **MULTIPART}, IMAGE_PART)
    assert out["status"] == 413 and out["closed"], out
    assert out["sent_before_answer"] < 40_000_000, out
    assert _rss(proc) - before < 0.1 * before
    with httpx.Client(base_url=url, timeout=10) as http:  # still serving
        assert http.get("/v1/session", headers=key).status_code == 200


def test_declared_length_over_the_limit_is_refused_before_reading(logged_server):
    url, keys = logged_server["url"], logged_server["keys"]
    with httpx.Client(base_url=url, timeout=10) as http:
        json_type = {"Content-Type": "application/json"}
        r = http.post("/v1/keys", content=b"{" + b" " * 70_000 + b"}",
                      headers={**hdr(keys["admin"]), **json_type})  # fmt: skip
        assert r.status_code == 413 and r.headers["connection"] == "close"
        r = http.post("/v1/search", content=b"x" * 100, headers={"Content-Length": "100"})
        assert r.status_code == 401  # the key is checked first


# -- Medium: sessions, CSRF, audit (the audit forgeries are in tests/gunmatch/test_state.py) --
def test_session_cookie_is_a_token_and_logout_ends_it(client, keys):
    token = _sign_in(client, keys["analyst"])
    assert token.startswith("gms_") and token != keys["analyst"]
    assert client.get("/v1/session", headers=_cookie(token)).json()["name"] == "analyst key"
    assert client.delete("/v1/session", headers=_cookie(token)).status_code == 204
    client.cookies.clear()
    r = client.get("/v1/session", headers=_cookie(token))  # replay of the old cookie
    assert r.status_code == 401


def test_revoking_a_key_ends_its_sessions_and_admins_list_them(client, keys):
    made = client.post("/v1/keys", json={"name": "kiosk", "role": "station"},
                       headers=hdr(keys["admin"])).json()  # fmt: skip
    token = _sign_in(client, made["key"])
    assert client.get("/v1/session", headers=_cookie(token)).status_code == 200
    listed = client.get("/v1/sessions?active=true", headers=hdr(keys["admin"])).json()
    assert any(s["key_name"] == "kiosk" and s["active"] for s in listed)
    assert client.delete("/v1/keys/kiosk", headers=hdr(keys["admin"])).status_code == 200
    assert client.get("/v1/session", headers=_cookie(token)).status_code == 401
    sid = next(s["id"] for s in listed if s["key_name"] == "kiosk")
    r = client.delete(f"/v1/sessions/{sid}", headers=hdr(keys["admin"]))
    assert r.status_code == 200 and r.json()["active"] is False


def test_cookie_writes_from_a_foreign_origin_are_refused(client, keys, gallery_copy):
    token = _sign_in(client, keys["admin"])
    body = {"name": "csrf admin", "role": "admin"}
    r = client.post("/v1/keys", json=body, headers=_cookie(token, FOREIGN))
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = client.post("/v1/keys", json=body, headers=_cookie(token, origin=None))  # no Origin
    assert r.status_code == 403
    r = client.post("/v1/keys", json=body,
                    headers={**_cookie(token, None), "Referer": f"{FOREIGN}/page"})  # fmt: skip
    assert r.status_code == 403
    names = [k["name"] for k in client.get("/v1/keys", headers=hdr(keys["admin"])).json()]
    assert "csrf admin" not in names
    item = client.get("/v1/gallery/items?limit=1", headers=hdr(keys["admin"])).json()["items"][0]
    path = f"/v1/gallery/items/{item['item_id']}"
    r = client.patch(path, json={"notes": "x"}, headers=_cookie(token, FOREIGN))
    assert r.status_code == 403
    files = {"image": ("n.png", png_bytes(draw("barrel", 2)))}
    r = client.post("/v1/gallery/items", files=files, data={"label": "csrf"},
                    headers=_cookie(token, FOREIGN))  # fmt: skip
    assert r.status_code == 403
    # the service's own pages may write; reads and header-key clients are unaffected
    assert client.patch(path, json={"notes": "ok"}, headers=_cookie(token)).status_code == 200
    assert client.get("/v1/keys", headers=_cookie(token, FOREIGN)).status_code == 200
    r = client.post("/v1/keys", json={"name": "header client", "role": "station"},
                    headers={**hdr(keys["admin"]), "Origin": FOREIGN})  # fmt: skip
    assert r.status_code == 201


def test_int64_offsets_and_ids_are_422(client, keys):
    h = hdr(keys["admin"])
    for url in (f"/v1/gallery/items?offset={INT64_OVER}", f"/v1/audit?offset={INT64_OVER}",
                f"/v1/audit/{INT64_OVER}/image", f"/v1/feedback?offset={INT64_OVER}",
                f"/v1/sessions/{INT64_OVER}"):  # fmt: skip
        r = client.request("DELETE" if "sessions" in url else "GET", url, headers=h)
        assert r.status_code == 422, (url, r.text)
    assert client.get("/healthz").status_code == 200


# -- Low ---------------------------------------------------------------------------------
def test_batch_is_admitted_whole_and_audits_only_what_it_answers(client, keys, monkeypatch):
    services = client.app.state.services
    queue = services.queue
    images = [("images", (f"{k}.png", png_bytes(draw(k, 1)))) for k in ("slide", "barrel")]
    images.append(("images", ("bad.txt", b"not an image")))
    real = queue.embed_batch
    calls = {"n": 0}

    async def busy_after_first(engine, make_batch):  # others fill the queue meanwhile
        calls["n"] += 1
        out = await real(engine, make_batch)
        if calls["n"] == 1:
            queue._admitted += queue.capacity
        return out

    monkeypatch.setattr(queue, "embed_batch", busy_after_first)
    before = services.audit.count()
    try:
        r = client.post("/v1/search/batch", files=images, headers=hdr(keys["station"]))
    finally:
        queue._admitted -= queue.capacity if calls["n"] else 0
    assert r.status_code == 200, r.text
    assert [e["status"] for e in r.json()["results"]] == [200, 200, 415]
    assert services.audit.count() - before == 2  # one row per delivered result

    queue._admitted += queue.capacity  # full before the batch arrives: refused whole
    try:
        before = services.audit.count()
        r = client.post("/v1/search/batch", files=images[:2], headers=hdr(keys["station"]))
        assert r.status_code == 503 and r.headers["retry-after"]
        assert services.audit.count() == before
        r = search(client, keys["station"], png_bytes(draw("slide", 0)))
        assert r.status_code == 503
    finally:
        queue._admitted -= queue.capacity
    metrics = client.get("/metrics").text
    line = next(ln for ln in metrics.splitlines()
                if ln.startswith("gunmatch_queue_rejections_total"))  # fmt: skip
    assert float(line.split()[-1]) == 2.0


def test_failed_auth_is_throttled_per_client(client, keys):
    guesser = TestClient(client.app, client=("203.0.113.7", 40000))
    limit = client.app.state.services.settings.auth_fail_limit
    for _ in range(limit):
        assert guesser.get("/v1/gallery", headers=hdr("gm_wrong")).status_code == 401
    r = guesser.get("/v1/gallery", headers=hdr("gm_wrong"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert guesser.get("/v1/gallery", headers=hdr(keys["station"])).status_code == 429  # locked
    assert client.get("/v1/gallery", headers=hdr(keys["station"])).status_code == 200  # others
    signer = TestClient(client.app, client=("203.0.113.8", 40000))
    for _ in range(limit):
        assert signer.post("/v1/session", json={"api_key": "gm_wrong"}).status_code == 401
    assert signer.post("/v1/session", json={"api_key": keys["station"]}).status_code == 429
    body = signer.post("/v1/feedback", json={}, headers=hdr("gm_wrong"))  # via the guard
    assert body.status_code == 429


@pytest.mark.parametrize(
    "name", ["  ", "\x1b[31mred\x1b[0m", "line\nbreak", "evil\u202egpj.exe", "x" * 101]
)
def test_key_names_are_validated(client, keys, name):
    r = client.post("/v1/keys", json={"name": name, "role": "station"}, headers=hdr(keys["admin"]))
    assert r.status_code == 422, r.text


def test_duplicate_key_name_is_409_and_the_last_admin_stays(client, keys):
    h = hdr(keys["admin"])
    assert client.post("/v1/keys", json={"name": "station key", "role": "station"},
                       headers=h).status_code == 409  # fmt: skip
    r = client.delete("/v1/keys/admin key", headers=h)
    assert r.status_code == 409 and "last active admin" in r.json()["detail"]
    assert client.get("/v1/keys", headers=h).status_code == 200


def test_secrets_in_query_strings_are_redacted_from_the_access_log(logged_server):
    url, proc, keys = logged_server["url"], logged_server["proc"], logged_server["keys"]
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get(f"/v1/gallery?api_key={keys['admin']}").status_code == 401
        assert http.get("/v1/gallery?token=gms_stolen&x=1").status_code == 401
    proc.terminate()
    proc.wait(timeout=15)
    log = proc.stdout.read()
    assert "api_key=***" in log and "token=***&x=1" in log
    assert keys["admin"] not in log and "gms_stolen" not in log
    args = ("1.2.3.4:5", "GET", "/v1/x?Api_Key=gm_s3cret", "1.1", 401)
    rec = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                            args, None)  # fmt: skip
    RedactSecretsFilter().filter(rec)
    assert "gm_s3cret" not in rec.getMessage()


def test_gallery_and_state_are_private(client, keys, gallery_copy, gallery_backend):
    assert search(client, keys["station"], png_bytes(draw("umbrella", 2))).status_code == 200
    databases = {"state.sqlite", "gallery.sqlite", "index.faiss"}  # + WAL files; shared: none
    seen = set()
    for path in [gallery_copy, *gallery_copy.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        seen.add(path.name)
    assert "manifest.json" in seen
    assert any(p.parent.name == "queries" for p in gallery_copy.rglob("*"))
    if gallery_backend == "embedded":
        assert databases <= seen
    else:  # items, vectors and state are in PostgreSQL + Milvus, nothing of them in files
        assert not databases & seen


def test_docs_are_served_from_the_package_with_security_headers(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/static/swagger/swagger-ui-bundle.js" in docs.text and "https://" not in docs.text
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404
    for path in ("/", "/docs", "/healthz", "/v1/gallery", "/nowhere"):
        h = client.get(path).headers
        assert "frame-ancestors 'none'" in h["content-security-policy"], path
        assert "script-src 'self'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"


def test_mismatched_modality_is_refused_on_add(client, keys):
    before = client.get("/v1/gallery", headers=hdr(keys["analyst"])).json()["items"]
    files = {"image": ("x.png", png_bytes(draw("spanner", 2)))}
    r = client.post("/v1/gallery/items", files=files, data={"label": "xr", "modality": "xray"},
                    headers=hdr(keys["analyst"]))  # fmt: skip
    assert r.status_code == 422 and "photo gallery" in r.json()["detail"]
    assert client.get("/v1/gallery", headers=hdr(keys["analyst"])).json()["items"] == before


def test_malformed_bodies_are_422_and_openapi_declares_the_key(client, keys):
    r = client.post("/v1/search", content=b"--x\r\nbroken",
                    headers={**hdr(keys["station"]),
                             "Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert r.status_code == 422, r.text
    r = client.post("/v1/keys", content=b"{not json", headers={**hdr(keys["admin"]),
                    "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    ops = [op for p in schema["paths"].values() for op in p.values()]
    assert all("400" not in op.get("responses", {}) for op in ops)
    search_op = schema["paths"]["/v1/search"]["post"]
    assert {"ApiKey": []} in search_op["security"]
