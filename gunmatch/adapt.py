"""``gunmatch adapt``: fit a gallery's X-ray screening to one station's scanner.

The station's cleared scans are read once; ``training.xray.adapt`` fine-tunes the gallery's
threat map (or the shipped one, or a fresh head) on them with the gallery's own threat
references projected in, and gates the result. An accepted map is installed (the old one
kept as ``model/threatmap.prev``) and the screening thresholds are measured again on the
held-out cleared scans, with the very settings searches use. A refused one changes nothing.
Either way the report is written to ``GALLERY/adapt-report.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gunmatch.maps import install_threatmap
from gunmatch.service import Engine, open_engine
from gunmatch.shipped import default_threatmap
from index import Filters, Gallery
from index.files import atomic_write
from matcher.images import DEFAULT_MAX_PIXELS, ImageSource
from matcher.threatmap import ThreatMap, is_threatmap, load_threatmap
from screening.calibration import calibrate_screening
from screening.screen import ScreeningConfig, load_transmission
from training.xray.adapt import AdaptConfig, adapt_threatmap

log = logging.getLogger(__name__)

REPORT_FILE = "adapt-report.json"
MIN_SCANS = 4


def read_scans(
    engine: Engine, sources: Sequence[tuple[str, ImageSource]]
) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """Decode cleared scans into transmission images; unreadable ones are listed, not fatal."""
    pre = engine.embedder.preprocess_config
    scans, failed = [], []
    for name, source in sources:
        try:
            scans.append(
                load_transmission(source, engine.embedder.max_pixels, pre.xray_white_percentile)
            )
        except (ValueError, OSError) as exc:  # ImageError is a ValueError
            failed.append((name, str(exc)))
    return scans, failed


def threat_references(gallery: Gallery, white_percentile: float) -> list[np.ndarray]:
    """The gallery's X-ray threat references as transmission images."""
    refs = []
    for item in gallery.items(Filters(threat=True, modality="xray")):
        path = gallery.root / item.image_file
        refs.append(load_transmission(path.read_bytes(), DEFAULT_MAX_PIXELS, white_percentile))
    return refs


def base_threatmap(gallery: Gallery) -> tuple[ThreatMap, str]:
    """The map to adapt and where it came from: the gallery's, the shipped one, or a new head."""
    if is_threatmap(gallery.threatmap_dir):
        return load_threatmap(gallery.threatmap_dir), "gallery"
    shipped = default_threatmap()
    if shipped is not None:
        return load_threatmap(shipped), f"shipped ({shipped.name})"
    return ThreatMap(), "new head"


def adapt_gallery(
    gallery_dir: str | Path,
    sources: Sequence[tuple[str, ImageSource]],
    cfg: AdaptConfig | None = None,
    screening: ScreeningConfig | None = None,
    false_alarm: float = 0.01,
    review_rate: float = 0.05,
    threads: int | None = None,
    progress: bool = True,
    runtime: str = "torch",
    opener: Callable[[Path], Engine] | None = None,
) -> dict:
    """Adapt, gate, install and recalibrate; returns the report (also written to the gallery)."""
    cfg = cfg or AdaptConfig()
    screening = screening or ScreeningConfig()
    gallery_dir = Path(gallery_dir)
    open_ = opener or (lambda d: open_engine(d, threads=threads, runtime=runtime))
    started = time.perf_counter()
    engine = open_(gallery_dir)
    try:
        if engine.gallery.modality != "xray":
            raise ValueError(
                f"{gallery_dir} is a {engine.gallery.modality} gallery; adapt is for X-ray"
            )
        scans, failed = read_scans(engine, sources)
        if len(scans) < MIN_SCANS:
            raise ValueError(
                f"need at least {MIN_SCANS} readable cleared scans, got {len(scans)} "
                f"({len(failed)} unreadable)"
            )
        pre = engine.embedder.preprocess_config
        refs = threat_references(engine.gallery, pre.xray_white_percentile)
        base, origin = base_threatmap(engine.gallery)
        result = adapt_threatmap(base, scans, refs, cfg, progress)
        report = {**result.report, "base": origin, "unreadable_scans": failed}
        if result.accepted:
            installed = install_threatmap(engine.gallery, result.model)
            report["installed_map_id"] = installed.map_id
    finally:
        engine.close()
    if result.accepted:
        engine = open_(gallery_dir)  # the new map, under ONNX Runtime like every search
        try:
            held = [scans[i] for i in result.holdout]
            cal = calibrate_screening(engine, held, screening, false_alarm, review_rate, progress)
        finally:
            engine.close()
        report["screening_calibration"] = {
            k: cal[k] for k in ("alert_threshold", "review_threshold", "metrics")
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write(gallery_dir / REPORT_FILE, json.dumps(report, indent=2, default=str).encode())
    return report


__all__ = ["REPORT_FILE", "adapt_gallery", "base_threatmap", "read_scans", "threat_references"]
