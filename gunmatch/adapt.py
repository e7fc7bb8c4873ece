"""``gunmatch adapt``: fit a gallery's X-ray screening to one station's scanner.

The station's cleared scans are read once; ``training.xray.adapt`` fine-tunes the gallery's
threat map (or the shipped one, or a fresh head) on them with the gallery's own threat
references projected in, and gates the result. An accepted map is installed (the old one
kept as ``model/threatmap.prev``) and the screening thresholds are measured again on the
held-out cleared scans (and, while the time budget lasts, the others training never saw),
with the very settings searches use. A refused one changes nothing.
Either way the report is written to ``GALLERY/adapt-report.json``.

The service runs the same thing as a background ``AdaptJob`` (``POST /v1/admin/adapt``, the
analyst page's button) on the X-ray scans it has itself declared clear (``cleared_scans``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
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
from screening.screen import ScreeningConfig, load_transmission, screen_transmission
from training.xray.adapt import (
    PLAN_SHARE,
    AdaptConfig,
    AdaptResult,
    Costs,
    adapt_threatmap,
    fastest,
    measure_costs,
    reference_patches,
    trainable_copy,
)

log = logging.getLogger(__name__)

REPORT_FILE = "adapt-report.json"
MIN_SCANS = 4


# What decoding an unreadable scan raises (ImageError is a ValueError).
UNREADABLE = (ValueError, OSError)


def read_scan(engine: Engine, source: ImageSource) -> np.ndarray:
    """Decode one cleared scan into a transmission image, as searches decode it."""
    pre = engine.embedder.preprocess_config
    return load_transmission(source, engine.embedder.max_pixels, pre.xray_white_percentile)


def read_scans(
    engine: Engine,
    sources: Sequence[tuple[str, ImageSource]],
    decoded: Mapping[int, np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """Decode cleared scans into transmission images; unreadable ones are listed, not fatal.
    ``decoded`` holds scans already decoded, by their position in ``sources``."""
    decoded = decoded or {}
    scans, failed = [], []
    for i, (name, source) in enumerate(sources):
        try:
            scans.append(decoded[i] if i in decoded else read_scan(engine, source))
        except UNREADABLE as exc:
            failed.append((name, str(exc)))
    return scans, failed


def threat_references(gallery: Gallery, white_percentile: float) -> list[np.ndarray]:
    """The gallery's X-ray threat references as transmission images, by content id: the
    gallery lists items by the second each was added, and the order of the references picks
    which one each projection draws, so adapting one gallery's content twice must not hang
    on when its references were added."""
    refs = []
    items = gallery.items(Filters(threat=True, modality="xray"))
    for item in sorted(items, key=lambda it: it.item_id):
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


def plan_costs(
    engine: Engine,
    base: ThreatMap,
    sources: Sequence[tuple[str, ImageSource]],
    refs: Sequence[np.ndarray],
    cfg: AdaptConfig,
    screening: ScreeningConfig,
) -> tuple[Costs, list[int], list[tuple[str, str]], np.ndarray]:
    """What each piece of adapting takes here, measured on the first readable scan of a
    seeded shuffle of ``sources``: ``training.xray.adapt.measure_costs``, with decoding a scan
    and screening it for the thresholds (a gallery with no map of its own yet screens without
    one here, so the new map's passes over the scan and its mirror are added). Also the
    sources in the order a budget too short for all of them reads them (the timed scan
    first), the unreadable ones tried left out and listed, and the timed scan decoded."""
    order = [int(i) for i in np.random.default_rng(cfg.seed).permutation(len(sources))]
    failed = []
    while order:
        name, source = sources[order[0]]
        clock = time.perf_counter()
        try:
            scan = read_scan(engine, source)
            break
        except UNREADABLE as exc:
            failed.append((name, str(exc)))
            order.pop(0)
    else:
        raise ValueError(f"none of the {len(sources)} cleared scans could be read")
    read_s = time.perf_counter() - clock
    patch = max(reference_patches(refs), key=np.size)
    costs = measure_costs(trainable_copy(base), scan, patch, cfg.batch_size, cfg.scale_range)
    # The fastest of three: right after the head's timings the first two screens of a scan
    # read 1.9 and 2.7 s where the next ones took 1.5 and calibrating 1.2 s a scan; the
    # fastest of two planned twice the calibration it ran (docs/benchmarks.md, section
    # "adapt-budget-dual-energy-vivid").
    _, screen_s = fastest(
        lambda: screen_transmission(engine, scan, 1, None, lambda _: "clear", screening)
    )
    if engine.threatmap is None:
        screen_s += 2 * costs.scan
    return replace(costs, read=read_s, calibrate=screen_s), order, failed, scan


def threshold_scans(
    engine: Engine,
    scans: Sequence[np.ndarray],
    result: AdaptResult,
    unread: Sequence[tuple[str, ImageSource]],
    costs: Costs,
    end: float,
    counted: dict[str, int],
) -> Iterator[np.ndarray]:
    """The cleared scans to measure the thresholds on: every held-out one, then, while twice
    the next one's cost still ends by ``end`` (``time.perf_counter``), the ones training never
    saw: read but left out by the plan, then never read (in the plan's random order, so as
    like the station's traffic as the held-out ones). A threshold for 1% false alarms needs
    99 (``screening.calibration.scans_for_rate``); 200 scans hold out 67 to 80. ``counted``
    gets how many of each were screened."""
    counted.update(held_out=0, left_out=0, unread=0)
    for i in result.holdout:
        counted["held_out"] += 1
        yield scans[i]
    for i in result.unused:
        if time.perf_counter() + 2 * costs.calibrate > end:
            return
        counted["left_out"] += 1
        yield scans[i]
    for name, source in unread:
        if time.perf_counter() + 2 * (costs.read + costs.calibrate) > end:
            return
        try:
            scan = read_scan(engine, source)
        except UNREADABLE as exc:
            log.warning("skipping unreadable cleared scan %s: %s", name, exc)
            continue
        counted["unread"] += 1
        yield scan


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

    ``on_phase`` hears "reading" (timing each piece, then reading the scans that fit the
    budget), "adapting" and "calibrating" as each begins; the report gives their seconds.
    """
    begun: dict[str, float] = {}

    def phase(name: str) -> None:
        begun[name] = time.perf_counter()
        if on_phase is not None:
            on_phase(name)

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
        pre = engine.embedder.preprocess_config
        refs = threat_references(engine.gallery, pre.xray_white_percentile)
        base, origin = base_threatmap(engine.gallery)
        costs, order, failed, timed = plan_costs(engine, base, sources, refs, cfg, screening)
        left = cfg.minutes * 60.0 - (time.perf_counter() - started)
        fits = max(MIN_SCANS, costs.scans_that_fit(cfg, len(order), PLAN_SHARE * left))
        unread = max(0, len(order) - fits)
        if unread:
            log.warning(
                "time budget of %.0f min: reading %d of %d cleared scans", cfg.minutes, fits,
                len(sources),
            )  # fmt: skip
        chosen = sorted(order[:fits])
        scans, unreadable = read_scans(
            engine, [sources[i] for i in chosen], {chosen.index(order[0]): timed}
        )
        failed += unreadable
        if len(scans) < MIN_SCANS:
            raise ValueError(
                f"need at least {MIN_SCANS} readable cleared scans, got {len(scans)} "
                f"({len(failed)} unreadable)"
            )
        phase("adapting")
        left = cfg.minutes * 60.0 - (time.perf_counter() - started)
        result = adapt_threatmap(base, scans, refs, cfg, progress, costs, left)
        report = {
            **result.report,
            "base": origin,
            "cleared_scans_given": len(sources),
            "cleared_scans_unread": unread,  # the time budget held no more
            "unreadable_scans": failed,
        }
        if result.accepted:
            installed = install_threatmap(engine.gallery, result.model)
            report["installed_map_id"] = installed.map_id
    finally:
        engine.close()
    if result.accepted:
        phase("calibrating")
        engine = open_(gallery_dir)  # the new map, under ONNX Runtime like every search
        try:
            unread_sources = [sources[i] for i in order[fits:]]
            end = started + cfg.minutes * 60.0
            counted: dict[str, int] = {}
            held = threshold_scans(engine, scans, result, unread_sources, costs, end, counted)
            cal = calibrate_screening(engine, held, screening, false_alarm, review_rate, progress)
        finally:
            engine.close()
        report["screening_calibration"] = {
            **{k: cal[k] for k in ("alert_threshold", "review_threshold", "metrics")},
            "scans": counted,
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    ends = [*list(begun.values())[1:], time.perf_counter()]
    report["phases_s"] = {
        name: round(end - at, 1) for (name, at), end in zip(begun.items(), ends, strict=True)
    }
    atomic_write(gallery_dir / REPORT_FILE, json.dumps(report, indent=2, default=str).encode())
    return report


def station_auc(value: float | None) -> str:
    """A held-out station AUC of one size, or "none drawn" where no projection of that size
    was (``training.xray.adapt.station_measure`` leaves it None)."""
    return "none drawn" if value is None else f"{value:.3f}"


def projected(report: dict) -> str:
    """How many of the gallery's references were projected into each cleared scan."""
    n = report["config"]["projections"]
    return f"{n} projected reference{'' if n == 1 else 's'} on each"


def threshold_scans_text(calibration: dict) -> str:
    """Where the cleared scans the thresholds were measured on came from (``threshold_scans``)."""
    counted = calibration.get("scans", {})
    parts = [f"{counted.get('held_out', calibration['metrics']['scans'])} held out"]
    if counted.get("left_out"):
        parts.append(f"{counted['left_out']} read but left out of training by the plan")
    if counted.get("unread"):
        parts.append(f"{counted['unread']} not read for training")
    return ", ".join(parts)


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
    "projected",
    "read_scans",
    "station_auc",
    "station_change",
    "threat_references",
]
