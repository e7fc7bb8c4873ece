"""Two `gunmatch serve` replicas (real uvicorn processes) over one shared gallery: items in a
real PostgreSQL, vectors in a real milvus-lite server, keys / sessions / audit chain in the
gallery's schema. What one replica does, the other sees; killing one loses nothing it
acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gunmatch.cli import main
from gunmatch.state import load_keyring, open_state
from tests.api.helpers import draw, hdr, png_bytes, start_serve, stop, wait_ready
from tests.helpers import shape_image
from tests.servers import imported

pytestmark = pytest.mark.slow


def start(gallery: Path) -> tuple[str, subprocess.Popen]:
    """`gunmatch serve` on a free port (not waited for), watching reloads every 0.5 s."""
    return start_serve(gallery, GUNMATCH_RELOAD_POLL_S="0.5")


def add(url: str, key: str, data: bytes, label: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/gallery/items", files={"image": (f"{label}.png", data)},
        data={"label": label, "category": "barrel"}, headers=hdr(key), timeout=timeout,
    )  # fmt: skip


def search(url: str, key: str, data: bytes, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/search", files={"image": ("q.png", data)}, data={"k": "3"},
        headers=hdr(key), timeout=timeout,
    )  # fmt: skip


def unique_image(seed: int) -> bytes:
    """A drawing no other call returns (so every add is a new item)."""
    return png_bytes(shape_image("barrel", 900_000 + seed))


@pytest.fixture()
def shared(tmp_path, built_gallery, request) -> Iterator[Path]:
    """The tiny gallery imported into PostgreSQL + Milvus, with its (empty) shared state."""
    with imported(built_gallery, tmp_path / "shared", request) as gal:
        yield gal


def test_two_replicas_share_items_keys_reloads_and_one_audit_chain(shared, tmp_path):
    state = open_state(shared)
    try:
        admin = state.keys.create("root", "admin")[1]
        analyst = state.keys.create("desk", "analyst")[1]
    finally:
        state.close()
    (url_a, proc_a), (url_b, proc_b) = start(shared), start(shared)
    try:
        ready_b = wait_ready(url_b, proc_b)
        wait_ready(url_a, proc_a)
        # 1. An add through A is found through B at once.
        img = unique_image(1)
        r = add(url_a, analyst, img, "new_barrel")
        assert r.status_code == 201, r.text
        item_id, acked = r.json()["item"]["item_id"], time.monotonic()
        while True:
            hits = search(url_b, analyst, img).json()["matches"]
            if hits and hits[0]["item_id"] == item_id:
                break
            assert time.monotonic() - acked < 2.0, "B did not find A's add within 2 s"
            time.sleep(0.1)
        seen_after = time.monotonic() - acked
        assert httpx.get(f"{url_b}/v1/gallery/items/{item_id}", headers=hdr(analyst)).is_success

        # 2. A key created and revoked through A: accepted, then refused, by B.
        r = httpx.post(f"{url_a}/v1/keys", json={"name": "station 7", "role": "station"},
                       headers=hdr(admin))  # fmt: skip
        assert r.status_code == 201, r.text
        station = r.json()["key"]
        assert search(url_b, station, img).status_code == 200
        assert httpx.delete(f"{url_a}/v1/keys/station 7", headers=hdr(admin)).is_success
        assert search(url_b, station, img).status_code == 401

        # 3. A reload through A reloads B too (the reload generation in the database).
        r = httpx.post(f"{url_a}/v1/admin/reload", headers=hdr(admin), timeout=120)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while wait_ready(url_b, proc_b)["reloads"] == ready_b["reloads"]:
            assert time.monotonic() < deadline, "B did not reload after A's reload"
            time.sleep(0.2)

        # 4. 40 searches and adds, interleaved across both replicas from 4 clients at once.
        queries = [png_bytes(draw(k, v)) for k in ("slide", "barrel", "spanner") for v in (0, 1)]
        done: dict[str, list] = {"search": [], "add": [], "errors": []}
        lock = threading.Lock()

        def client(n: int) -> None:
            for i in range(10):
                url = (url_a, url_b)[(n + i) % 2]
                try:
                    if i % 2:
                        resp = add(url, analyst, unique_image(100 + n * 10 + i), f"part{n}")
                        kind, value = "add", resp.json()["item"]["item_id"]
                    else:
                        resp = search(url, analyst, queries[(n + i) % len(queries)])
                        kind, value = "search", resp.json()["query_id"]
                    ok = resp.status_code in (200, 201)
                except Exception as exc:  # reported below
                    kind, value, ok = "errors", repr(exc), True
                with lock:
                    done[kind if ok else "errors"].append(value if ok else resp.text)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not done["errors"], done["errors"][:3]
        assert len(done["search"]) == 20 and len(set(done["add"])) == 20

        # 5. SIGKILL A while adds are in flight: what it acknowledged survives, B serves on.
        acked_a: list[str] = []
        acked_seed: dict[str, int] = {}

        def adder(n: int) -> None:
            for i in range(50):
                seed = 5000 + n * 100 + i
                try:
                    resp = add(url_a, analyst, unique_image(seed), "killed", 10)
                except httpx.HTTPError:
                    return
                if resp.status_code == 201:
                    with lock:
                        acked_a.append(resp.json()["item"]["item_id"])
                        acked_seed[acked_a[-1]] = seed

        adders = [threading.Thread(target=adder, args=(n,)) for n in range(2)]
        for t in adders:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked_a) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.15)  # into the next adds
        os.kill(proc_a.pid, signal.SIGKILL)
        proc_a.wait()
        for t in adders:
            t.join()
        assert len(acked_a) >= 2
        r = add(url_b, analyst, unique_image(9999), "after_kill")  # B writes (and replays)
        assert r.status_code == 201, r.text
        for iid in [*acked_a, *done["add"], item_id]:
            got = httpx.get(f"{url_b}/v1/gallery/items/{iid}", headers=hdr(analyst))
            assert got.status_code == 200, (iid, got.text)
        for iid in acked_a:  # every add A acknowledged is searchable on B
            hits = search(url_b, analyst, unique_image(acked_seed[iid])).json()["matches"]
            assert hits[0]["item_id"] == iid
    finally:
        stop(proc_a)
        stop(proc_b)

    # One audit chain, intact, each request recorded exactly once.
    assert main(["audit", "verify", "--gallery", str(shared)]) == 0
    state = open_state(shared, keyring=load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"]))
    try:
        rows = state.audit.list(limit=10_000)
    finally:
        state.close()
    searches = [r.query_id for r in rows if r.action == "search"]
    added = [r.to_dict()["results"]["item_id"] for r in rows if r.action == "gallery.add"]
    for qid in done["search"]:
        assert searches.count(qid) == 1
    for iid in [*done["add"], *acked_a, item_id]:
        assert added.count(iid) == 1
    print(f"\nB found A's add {seen_after * 1000:.0f} ms after A acknowledged it; "
          f"{len(acked_a)} adds acknowledged by A before SIGKILL, all on B; "
          f"{len(rows)} audit rows, chain intact")  # fmt: skip
