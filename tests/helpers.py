"""Plain helpers shared by tests: generated images, the X-ray screening test settings, and a
tamperer's edit of a gallery's service state.

Fixtures live in conftest.py; test modules import helpers from here, never from each other.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gunmatch.state import STATE_DB, open_state
from matcher.threatmap import ThreatMapConfig
from screening.regions import ProposalConfig
from screening.screen import ScreeningConfig
from synth.xray import render_parcel
from training.xray.threatmap import ThreatMapTrainConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shape_image(label: str, seed: int, size: int = 96) -> Image.Image:
    """A small drawing whose shape depends on the label and details on the seed."""
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(200, 255, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    fg = tuple(int(v) for v in rng.integers(0, 80, 3))
    j = lambda: int(rng.integers(-6, 7))  # noqa: E731
    if label == "barrel":
        d.rectangle([8 + j(), 40 + j(), 88 + j(), 54 + j()], fill=fg)
        d.rectangle([8, 45, 88, 49], fill=bg)
    elif label == "magazine":
        d.rectangle([36 + j(), 10 + j(), 60 + j(), 86 + j()], fill=fg)
    elif label == "spring":
        for x in range(10, 86, 8):
            d.line([x, 30 + j(), x + 4, 66 + j()], fill=fg, width=3)
    else:
        d.ellipse([20 + j(), 20 + j(), 76 + j(), 76 + j()], outline=fg, width=6)
    return img


def write_image_tree(root: Path, labels: list[str], per_label: int, seed: int = 0) -> Path:
    """root/<label>/<label>_<i>.png with generated drawings."""
    for li, label in enumerate(labels):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            shape_image(label, seed * 1000 + li * 100 + i).save(root / label / f"{label}_{i}.png")
    return root


def varied_image(label: str, seed: int) -> Image.Image:
    """A label's drawing at a random place and size on random clutter (distinct dHashes)."""
    rng = np.random.default_rng(seed + 7919)
    canvas = Image.fromarray(rng.integers(120, 255, (12, 12, 3), dtype=np.uint8)).resize((96, 96))
    size = int(rng.integers(48, 80))
    x, y = (int(v) for v in rng.integers(0, 96 - size, 2))
    canvas.paste(shape_image(label, seed).resize((size, size)), (x, y))
    return canvas


def write_varied_tree(root: Path, labels: list[str], per_label: int) -> Path:
    """root/<label>/<label>_<i>.png of varied drawings."""
    for li, label in enumerate(labels):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            varied_image(label, li * 100 + i).save(root / label / f"{label}_{i}.png")
    return root


SIZE = 64  # model input: tiny so the whole file runs in seconds
SCREEN_CFG = ScreeningConfig(proposals=ProposalConfig(max_regions=12), max_regions=8)
REFS = [("slide", True, 11), ("barrel", True, 12), ("pen", False, 13), ("key", False, 14)]


def xray_png(t: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    if mode == "I;16":
        Image.fromarray((t * 65535).astype(np.uint16)).save(buf, "PNG")
    else:
        Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


TINY = ThreatMapTrainConfig(
    map=ThreatMapConfig(long_side=256, width=16),
    parcels=6,
    val_parcels=3,
    epochs=3,
    parcel_size=(400, 320),
    threads=1,
)


def cleared_pngs(n: int, seed: int = 800) -> list[tuple[str, bytes]]:
    """``n`` small generated parcels without a threat, as (name, 8-bit PNG) pairs."""
    out = []
    for i in range(n):
        t = render_parcel(seed + i, size=(400, 320), threat_kind=None, n_clutter=3).image
        out.append((f"cleared_{i}.png", xray_png(t)))
    return out


def state_sql(gallery: Path, sql: str) -> None:
    """Run one statement on the gallery's state database behind the service's back (a
    tamperer's edit): state.sqlite, or the shared gallery's PostgreSQL schema."""
    state = open_state(gallery)
    try:
        if state.db is not None:
            with state.db.transaction() as conn:
                conn.execute(sql)
            return
        conn = sqlite3.connect(state.location.state_dir / STATE_DB)
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
    finally:
        state.close()


def build_gallery(gallery: Path, model_dir: Path, src: Path) -> dict:
    """Build an embedded gallery of the labelled folder ``src`` with ``model_dir``; its items
    by label (the last of each)."""
    from gunmatch.indexing import build, gallery_writer, scan_source
    from gunmatch.service import create_engine

    engine = create_engine(gallery, str(model_dir), threads=1)
    try:
        build(
            scan_source(src),
            engine.embedder,
            gallery_writer(engine.gallery, engine.embedder.model_id),
            progress=False,
        )
        return {it.label: it for it in engine.gallery.items(limit=None)}
    finally:
        engine.close()
