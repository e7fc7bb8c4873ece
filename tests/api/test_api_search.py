"""/v1/search, /v1/search/batch, /v1/compare and every bad-input case, through TestClient."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.api.helpers import draw, hdr, png_bytes


def _search(client, key, data: bytes, name="q.png", **form):
    return client.post("/v1/search", files={"image": (name, data)}, data=form, headers=hdr(key))


def test_search_finds_the_same_kind_and_decides(client, keys):
    r = _search(client, keys["station"], png_bytes(draw("slide", 1)), k="3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"][0]["label"] == "pistol_slide"
    assert body["matches"][0]["score"] > 0.99  # the very same drawing is in the gallery
    assert len(body["matches"]) == 3
    assert body["query_id"].startswith("q_")
    dec = body["decision"]
    assert dec["decision"] == "alert"  # a threat reference, score above the default 0.85
    assert dec["best_threat"]["label"] == "pistol_slide"
    assert dec["calibrated"] is False and dec["threshold"] == dec["alert_threshold"]


def test_benign_query_is_not_alert_and_history_grows(client, keys):
    data = png_bytes(draw("umbrella", 0))
    first = _search(client, keys["station"], data).json()
    assert first["matches"][0]["label"] == "umbrella"
    assert first["decision"]["decision"] in ("review", "clear")
    assert first["decision"]["best_threat"]["threat"] is True
    second = _search(client, keys["station"], data).json()
    assert [h["query_id"] for h in second["history"]][:1] == [first["query_id"]]


def test_filters_and_modality(client, mixed_client, keys):
    r = _search(client, keys["station"], png_bytes(draw("slide", 0)), category="benign")
    assert r.status_code == 200
    assert {m["category"] for m in r.json()["matches"]} == {"benign"}
    # the decision still sees the threat outside the filtered list
    assert r.json()["decision"]["decision"] == "alert"
    r = _search(client, keys["station"], png_bytes(draw("spanner", 0)), threat_only="true")
    assert all(m["threat"] for m in r.json()["matches"])
    r = _search(client, keys["station"], png_bytes(draw("spanner", 0)), modality="xray")
    assert r.status_code == 422 and "photo gallery" in r.json()["detail"]  # not declared mixed
    r = _search(mixed_client, keys["station"], png_bytes(draw("spanner", 0)), modality="xray")
    assert r.status_code == 200 and r.json()["modality"] == "xray"


@pytest.mark.parametrize(
    "fmt,kw", [("JPEG", {"quality": 90}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"quality": 90})]
)
def test_accepted_formats(client, keys, fmt, kw):
    r = _search(client, keys["station"], png_bytes(draw("barrel", 0), fmt, **kw), name="q.img")
    assert r.status_code == 200, r.text
    assert r.json()["matches"][0]["label"] == "barrel"


def test_16_bit_grey_tiff(mixed_client, keys):
    grey = np.asarray(draw("barrel", 1).convert("L"), dtype=np.uint16) * 257
    img = Image.fromarray(grey.astype(np.uint16))
    assert img.mode.startswith("I;16")
    r = _search(mixed_client, keys["station"], png_bytes(img, "TIFF"), name="scan.tif",
                modality="xray")  # fmt: skip
    assert r.status_code == 200, r.text


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb)."""
    raw = zlib.compress(b"\x00" * (w + 1) * 8)  # far too little data: never decoded anyway

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "name,data,status,words",
    [
        ("notes.txt", b"hello, this is not an image at all", 415, "not a supported image"),
        ("big.png", b"\x89PNG" + b"0" * 2_000_001, 413, "upload limit"),
        ("bomb.png", _bomb_png(3000, 3000), 413, "exceeds the limit of 4 MP"),
        ("hugebomb.png", _bomb_png(30000, 30000), 413, "too large"),
        ("empty.png", b"", 422, "empty"),
    ],
)
def test_bad_images(client, keys, name, data, status, words):
    r = _search(client, keys["station"], data, name=name)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert name in r.json()["detail"]


def test_truncated_image_is_422(client, keys):
    data = png_bytes(draw("slide", 2).resize((300, 300)))
    r = _search(client, keys["station"], data[: len(data) // 2], name="cut.png")
    assert r.status_code == 422 and "truncated or corrupt" in r.json()["detail"]


def test_wrong_field_names_are_422(client, keys):
    files = {"file": ("q.png", png_bytes(draw("slide", 0)))}
    r = client.post("/v1/search", files=files, headers=hdr(keys["station"]))
    assert r.status_code == 422
    assert r.json()["detail"] == "missing field 'image'"
    r = _search(client, keys["station"], png_bytes(draw("slide", 0)), k="0")
    assert r.status_code == 422 and r.json()["detail"].startswith("k:")
    r = _search(client, keys["station"], png_bytes(draw("slide", 0)), category="spaceship")
    assert r.status_code == 422 and "unknown category" in r.json()["detail"]


def test_regions_on_a_scan(mixed_client, keys):
    client = mixed_client  # X-ray queries on the photo gallery
    scan = Image.new("L", (320, 200), 250)
    scan.paste(draw("slide", 0).convert("L"), (20, 40))
    scan.paste(draw("umbrella", 1).convert("L"), (200, 60))
    r = _search(client, keys["station"], png_bytes(scan), name="scan.png", modality="xray",
                regions="true")  # fmt: skip
    assert r.status_code == 200, r.text
    regions = r.json()["regions"]
    assert isinstance(regions, list)
    for reg in regions:
        x, y, w, h = reg["box"]
        assert 0 <= x < 320 and 0 <= y < 200 and w > 0 and h > 0
        assert reg["decision"] in ("alert", "review", "clear")
    plain = _search(client, keys["station"], png_bytes(scan), name="scan.png", modality="xray",
                    regions="false")  # fmt: skip
    assert plain.json()["regions"] is None
    # X-ray queries are screened region by region unless asked not to be.
    default = _search(client, keys["station"], png_bytes(scan), name="scan.png", modality="xray")
    assert isinstance(default.json()["regions"], list)
    photo = _search(client, keys["station"], png_bytes(scan), name="scan.png", modality="photo")
    assert photo.json()["regions"] is None


def test_batch(client, keys):
    files = [
        ("images", ("a.png", png_bytes(draw("slide", 0)))),
        ("images", ("b.txt", b"nope")),
        ("images", ("c.png", png_bytes(draw("spanner", 1)))),
    ]
    r = client.post("/v1/search/batch", files=files, headers=hdr(keys["station"]))
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [e["status"] for e in res] == [200, 415, 200]
    assert res[0]["result"]["matches"][0]["label"] == "pistol_slide"
    assert res[2]["result"]["matches"][0]["label"] == "spanner"
    assert "not a supported image" in res[1]["error"]["detail"]
    too_many = [("images", (f"{i}.png", png_bytes(draw("slide", 0)))) for i in range(5)]
    r = client.post("/v1/search/batch", files=too_many, headers=hdr(keys["station"]))
    assert r.status_code == 413 and "limit is 4" in r.json()["detail"]


def test_compare_two_images_and_item(client, keys):
    a, b = png_bytes(draw("slide", 0)), png_bytes(draw("slide", 0))
    r = client.post(
        "/v1/compare", files={"image_a": ("a.png", a), "image_b": ("b.png", b)},
        headers=hdr(keys["station"]),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["similarity"] > 0.99 and r.json()["verdict"] == "match"
    item = client.get("/v1/gallery/items?category=benign&limit=1", headers=hdr(keys["station"]))
    item_id = item.json()["items"][0]["item_id"]
    r = client.post(
        "/v1/compare", files={"image_a": ("a.png", a)}, data={"item_id": item_id},
        headers=hdr(keys["station"]),
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["item"]["item_id"] == item_id
    assert r.json()["similarity"] < 0.99
    r = client.post(
        "/v1/compare", files={"image_a": ("a.png", a)}, data={"item_id": "nope"},
        headers=hdr(keys["station"]),
    )  # fmt: skip
    assert r.status_code == 404
    r = client.post("/v1/compare", files={"image_a": ("a.png", a)}, headers=hdr(keys["station"]))
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]


def test_search_needs_a_valid_key(client, keys):
    data = png_bytes(draw("slide", 0))
    assert client.post("/v1/search", files={"image": ("q.png", data)}).status_code == 401
    r = _search(client, keys["revoked"], data)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert _search(client, "gm_made_up", data).status_code == 401


def test_huge_declared_body_is_refused_before_reading(client, keys):
    r = client.post(
        "/v1/search",
        content=b"x" * 10,
        headers={**hdr(keys["station"]), "Content-Length": str(10**9), "Content-Type": "a/b"},
    )
    assert r.status_code == 413


def test_stream_names_reach_error_messages(client, keys):
    r = _search(client, keys["station"], io.BytesIO(b"GIF89a broken").getvalue(), name="x.gif")
    assert r.status_code in (415, 422) and "x.gif" in r.json()["detail"]
