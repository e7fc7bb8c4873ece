"""The embedded demo gallery: generated X-ray references of parts and look-alikes.

Everything is made by the project's own generator (synth), so the demo needs no
downloaded data. ``build_demo`` is idempotent: re-running reuses what is already there,
thresholds included while the gallery and the screening settings are unchanged (so ``make
demo`` serves again at once). The gallery gets the shipped X-ray model and threat map where
present; its screening thresholds are measured on generated parcels holding no threat, and
the showcase query is a parcel holding a slide the gallery has not seen.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from gunmatch.decision import load_calibration
from gunmatch.indexing import build, gallery_writer, read_metadata_csv, scan_source
from gunmatch.search import SearchOptions, load_judge, search_image
from gunmatch.service import create_engine, open_engine
from gunmatch.settings import get_settings
from screening.calibration import calibrate_screening, fitting_calibration
from screening.screen import ScreeningConfig
from synth import PART_KINDS, render_isolated, render_parcel, to_uint8, write_reference_set
from training.evaluate import evaluate
from training.report import write_calibration

DEMO_SEED = 2026
QUERY_KIND = "slide"
PARCEL_SIZE = (1200, 940)
CLEARED_SEED = 97_000_000  # the demo's generated "cleared scans"
CLEARED_PARCELS = 40


def write_metadata(refs: Path, csv_path: Path) -> Path:
    """A metadata CSV (category, threat, bilingual notes) for the generated references."""
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "category", "threat", "make_model", "notes"])
        for path in sorted(refs.rglob("*.png")):
            kind = PART_KINDS[path.parent.name]
            w.writerow(
                [
                    str(path.relative_to(refs)),
                    kind.category,
                    "true" if kind.threat else "false",
                    "synthetic",
                    f"{kind.name_zh} / {kind.name_en} (generated demo reference)",
                ]
            )
    return csv_path


def write_query(out: Path, kind: str = QUERY_KIND, seed: int = DEMO_SEED + 999) -> Path:
    """An isolated scan of ``kind`` from a seed the gallery has not seen."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scan = render_isolated(kind, seed, 256)
    Image.fromarray(to_uint8(scan.transmission)).save(out)
    return out


def calibrate(engine, root: Path, per_kind: int = 3) -> Path:
    """Thresholds for the demo from unseen generated references (alert at 1% FPR, review at 5%)."""
    queries = root / "calibration-queries"
    if not queries.is_dir() or not any(queries.rglob("*.png")):
        write_reference_set(queries, per_kind=per_kind, modality="xray", seed=DEMO_SEED + 1)
    threats = [k for k, kind in PART_KINDS.items() if kind.threat]
    engine.gallery.flush()
    ev = evaluate(engine.gallery.root, queries, engine.embedder, threats, modality="xray")
    return write_calibration(
        ev.metrics, engine.gallery.calibration_file, f"gunmatch demo ({queries})"
    )


def write_parcel_query(
    out: Path, kind: str = QUERY_KIND, seed: int = DEMO_SEED + 999
) -> tuple[Path, list[int]]:
    """A cluttered parcel holding a ``kind`` the gallery has not seen: path and its true box."""
    out.parent.mkdir(parents=True, exist_ok=True)
    parcel = render_parcel(seed, size=PARCEL_SIZE, threat_kind=kind)
    Image.fromarray(to_uint8(parcel.image)).save(out)
    return out, [int(v) for v in parcel.boxes[0].as_tuple()]


def calibrate_parcels(engine, screening: ScreeningConfig, n: int = CLEARED_PARCELS) -> dict:
    """Screening thresholds from generated parcels holding no threat (the demo's "cleared
    scans"): about 1 in 41 new clean parcels alert (the threshold is above the highest of the
    40) and 4 in 41 reach review or alert (``screening.calibration.reached``)."""
    scans = (
        render_parcel(CLEARED_SEED + i, size=PARCEL_SIZE, threat_kind=None).image for i in range(n)
    )
    return calibrate_screening(engine, scans, screening, 0.025, 0.1)


def build_demo(root: Path, per_kind: int = 6, threads: int | None = 2) -> dict:
    """Generate references, build ``root/gallery``, calibrate, and search the showcase parcel."""
    root = Path(root)
    refs = root / "references"
    if not refs.is_dir() or not any(refs.rglob("*.png")):
        write_reference_set(refs, per_kind=per_kind, modality="xray", seed=DEMO_SEED)
    meta = write_metadata(refs, root / "references.csv")
    records = scan_source(refs, "xray", read_metadata_csv(meta))
    settings = get_settings(threads=threads)
    engine = create_engine(root / "gallery", modality="xray", threads=threads)
    try:
        added = build(
            records,
            engine.embedder,
            gallery_writer(engine.gallery, engine.embedder.model_id, "demo"),
            known_shas=engine.gallery.store.known_shas(),
        ).added
        calibration = engine.gallery.calibration_file
        if (
            added
            or not calibration.is_file()
            or not load_calibration(calibration, engine.embedder.model_id).calibrated
        ):
            calibration = calibrate(engine, root)
        engine.gallery.flush()
    finally:
        engine.close()
    # Searches run as the service runs them: its inference path and screening settings.
    engine = open_engine(root / "gallery", threads=threads, runtime=settings.runtime)
    try:
        screening = settings.screening_config()
        cleared = None if added else fitting_calibration(engine, screening)
        if cleared is None:
            cleared = calibrate_parcels(engine, screening)
        write_query(root / "queries" / f"{QUERY_KIND}_unseen.png")
        query, box = write_parcel_query(root / "queries" / f"{QUERY_KIND}_in_parcel.png")
        opts = SearchOptions(k=5, screening=screening)
        res = search_image(engine, str(query), query, opts, load_judge(engine, screening))
        return {
            "gallery": str(root / "gallery"),
            "items": len(engine.gallery),
            "model_id": engine.embedder.model_id,
            "threatmap": engine.threatmap.map_id if engine.threatmap else None,
            "query": str(query),
            "query_kind": QUERY_KIND,
            "query_box": box,
            "calibration": str(calibration),
            "screening_thresholds": [cleared["alert_threshold"], cleared["review_threshold"]],
            "matches": res.matches_dicts(),
            "decision": res.decision.decision,
            "regions": res.regions_dicts() or [],
        }
    finally:
        engine.close()
