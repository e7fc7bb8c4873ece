"""POST/GET /v1/admin/adapt: the service adapts its threat map on the scans it declared clear."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from api.app import ServiceConfig, create_app
from gunmatch.search import new_query_id
from gunmatch.service import open_engine
from gunmatch.settings import get_settings
from matcher.threatmap import load_threatmap
from tests.api.helpers import create_keys, hdr
from tests.helpers import cleared_pngs
from training.xray.adapt import AdaptConfig


@dataclass(frozen=True)
class QuickLenient(AdaptConfig):
    """Two epochs and a small gate that accepts whatever the tiny map learns (the gate itself
    is tested in tests/training/test_adapt.py), so the service's install-and-reload shows."""

    epochs: int = 2
    gate_parcels: int = 6
    holdout: float = 0.5
    require_gain: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate_margin", 1.0)


@pytest.fixture()
def service(mapped_gallery, monkeypatch):
    """A service over the tiny mapped X-ray gallery, with admin and station keys."""
    monkeypatch.setattr("api.routes.admin.AdaptConfig", QuickLenient)
    keys = create_keys(mapped_gallery, "admin", "station")
    admin, station = keys["admin"], keys["station"]
    settings = get_settings(threads=1, queue_size=2)
    cfg = ServiceConfig(mapped_gallery, settings=settings,
                        opener=lambda d: open_engine(d, threads=1))  # fmt: skip
    with TestClient(create_app(cfg)) as client:
        yield client, admin, station, mapped_gallery


def _seed_cleared(client, n: int) -> None:
    """Searches the service declared clear, written to its audit trail as a search writes them."""
    audit = client.app.state.services.audit
    for name, data in cleared_pngs(n):
        sha, rel = audit.store_image(data, ".png")
        audit.append("search", "station key", new_query_id(), sha, rel, "m", "clear",
                     {"filename": name, "modality": "xray"})  # fmt: skip


def test_adapt_needs_admin_and_enough_cleared_scans(service):
    client, admin, station, _ = service
    assert client.post("/v1/admin/adapt", json={}, headers=hdr(station)).status_code == 403
    r = client.post("/v1/admin/adapt", json={}, headers=hdr(admin))
    assert r.status_code == 422 and "declared clear" in r.json()["detail"]
    bad = client.post("/v1/admin/adapt", json={"minutes": 0}, headers=hdr(admin))
    assert bad.status_code == 422
    status = client.get("/v1/admin/adapt", headers=hdr(admin)).json()
    assert status["state"] == "idle"


def test_adapt_runs_in_the_background_installs_and_reloads(service):
    client, admin, _, gallery = service
    before = load_threatmap(gallery / "model" / "threatmap").map_id
    _seed_cleared(client, 6)
    r = client.post("/v1/admin/adapt", json={"minutes": 5, "gate_margin": 0.2},
                    headers=hdr(admin))  # fmt: skip
    assert r.status_code == 202 and r.json()["state"] == "running" and r.json()["scans"] == 6
    deadline = time.monotonic() + 600
    while (status := client.get("/v1/admin/adapt", headers=hdr(admin)).json())["state"] in (
        "running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert status["state"] == "done", status
    report = status["report"]
    assert report["cleared_scans"] == 6 and report["installed_map_id"] != before
    services = client.app.state.services
    assert services.holder.reloads == 1
    engine_map = services.holder.current.engine.threatmap
    assert engine_map is not None and engine_map.map_id == report["installed_map_id"]
    actions = [r.action for r in services.audit.list(8)]
    assert "admin.adapt" in actions and "admin.adapt.start" in actions
    assert services.audit.verify().ok
