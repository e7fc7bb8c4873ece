"""``gunmatch adapt``: fit a gallery's X-ray screening to one station's scanner.

The station's cleared scans are read once; ``training.xray.adapt`` fine-tunes the gallery's
threat map (or the shipped one, or a fresh head) on them with the gallery's own threat
references projected in, and gates the result. An accepted map is installed (the old one
kept as ``model/threatmap.prev``) and the screening thresholds are measured again on the
held-out cleared scans, with the very settings searches use. A refused one changes nothing.
Either way the report is written to ``GALLERY/adapt-report.json``.

The service runs the same thing as a background ``AdaptJob`` (``POST /v1/admin/adapt``, the
analyst page's button) on the X-ray scans it has itself declared clear (``cleared_scans``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gunmatch.maps import install_threatmap
from gunmatch.service import Engine, open_engine
from gunmatch.shipped import default_threatmap
from gunmatch.state import AuditLog
from index import Filters, Gallery
from index.feedback import FeedbackStore
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
    on_phase: Callable[[str], None] | None = None,
) -> dict:
    """Adapt, gate, install and recalibrate; returns the report (also written to the gallery).

    ``on_phase`` hears "reading", "adapting" and "calibrating" as each begins.
    """
    phase = on_phase or (lambda _: None)
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
        phase("reading")
        scans, failed = read_scans(engine, sources)
        if len(scans) < MIN_SCANS:
            raise ValueError(
                f"need at least {MIN_SCANS} readable cleared scans, got {len(scans)} "
                f"({len(failed)} unreadable)"
            )
        pre = engine.embedder.preprocess_config
        refs = threat_references(engine.gallery, pre.xray_white_percentile)
        base, origin = base_threatmap(engine.gallery)
        phase("adapting")
        result = adapt_threatmap(base, scans, refs, cfg, progress)
        report = {**result.report, "base": origin, "unreadable_scans": failed}
        if result.accepted:
            installed = install_threatmap(engine.gallery, result.model)
            report["installed_map_id"] = installed.map_id
    finally:
        engine.close()
    if result.accepted:
        phase("calibrating")
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


def station_auc(value: float | None) -> str:
    """A held-out station AUC of one size, or "none drawn" where no projection of that size
    was (``training.xray.adapt.station_measure`` leaves it None)."""
    return "none drawn" if value is None else f"{value:.3f}"


def station_change(report: dict, key: str) -> str:
    """A held-out station AUC of ``report`` (``auc_small``, ``auc_large``) as "before ->
    after", or "none drawn" where no projection of that size was."""
    before, after = report["before"]["station"][key], report["after"]["station"][key]
    return "none drawn" if before is None else f"{station_auc(before)} -> {station_auc(after)}"


def cleared_scans(
    audit: AuditLog, feedback: FeedbackStore, limit: int, look_back: int = 20
) -> list[tuple[str, Path]]:
    """The newest X-ray searches the service declared clear, as (name, kept image) pairs.

    A search an analyst gave feedback on is left out (it may have been a miss), and so is
    one whose image is past retention. At most ``limit`` scans, from at most
    ``look_back * limit`` search records.
    """
    reviewed = {f.query_id for f in feedback.list()}
    out: list[tuple[str, Path]] = []
    page = max(limit, 100)
    for offset in range(0, look_back * limit, page):
        records = audit.list(page, offset, action="search")
        for record in records:
            results = json.loads(record.results)
            if (record.decision != "clear" or results.get("modality") != "xray"
                    or record.query_id in reviewed):  # fmt: skip
                continue
            path = audit.image_path(record)
            if path is not None:
                out.append((f"audit/{record.id}", path))
                if len(out) == limit:
                    return out
        if len(records) < page:
            break
    return out


@dataclass
class AdaptStatus:
    """Where the service's adaptation job stands."""

    state: str = "idle"  # idle | running | done | refused | failed
    phase: str = ""
    started: float | None = None
    budget_s: float = 0.0
    scans: int = 0
    elapsed_s: float = 0.0
    error: str = ""
    report: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready, with the time elapsed so far."""
        d = asdict(self)
        if self.state == "running" and self.started is not None:
            d["elapsed_s"] = round(time.time() - self.started, 1)
        return d


class AdaptJob:
    """One adaptation at a time, in a background thread; its status is polled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = AdaptStatus()
        self._thread: threading.Thread | None = None

    @property
    def status(self) -> AdaptStatus:
        """A copy of the current status."""
        with self._lock:
            return AdaptStatus(**asdict(self._status))

    def _set(self, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._status, k, v)

    def start(
        self,
        run: Callable[[Callable[[str], None]], dict],
        scans: int,
        budget_s: float,
        on_done: Callable[[dict], None] | None = None,
    ) -> AdaptStatus:
        """Start ``run(on_phase=...)`` unless a job is running (RuntimeError); ``on_done``
        gets its report when it finishes, whatever the gate said."""
        with self._lock:
            if self._status.state == "running":
                raise RuntimeError("an adaptation is already running")
            self._status = AdaptStatus("running", "starting", time.time(), budget_s, scans)
        self._thread = threading.Thread(
            target=self._work, args=(run, on_done), name="gunmatch-adapt", daemon=True
        )
        self._thread.start()
        return self.status

    def _work(self, run, on_done) -> None:
        try:
            report = run(on_phase=lambda name: self._set(phase=name))
            if on_done is not None:
                on_done(report)
            state = "done" if report["gate"]["accepted"] else "refused"
            end = {"state": state, "report": report}
        except Exception as exc:  # reported to the admin who polls; the service goes on
            log.exception("adaptation failed")
            end = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        elapsed = round(time.time() - (self.status.started or time.time()), 1)
        self._set(phase="", elapsed_s=elapsed, **end)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the running job (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = [
    "REPORT_FILE",
    "AdaptJob",
    "AdaptStatus",
    "adapt_gallery",
    "base_threatmap",
    "cleared_scans",
    "read_scans",
    "station_auc",
    "station_change",
    "threat_references",
]
