"""`gunmatch gallery build|info|list|add|remove|update|reindex`."""

from __future__ import annotations

import argparse
from pathlib import Path

from gunmatch.commands.common import (
    UsageError,
    add_gallery_arg,
    add_runtime_args,
    add_screening_args,
    emit_json,
    gallery_dir,
    out,
    runtime,
    screening_config,
    serving_runtime,
)
from gunmatch.commands.transfer import register_actions as register_transfer
from gunmatch.indexing import (
    SourceRecord,
    build,
    gallery_writer,
    read_metadata_csv,
    scan_source,
)
from gunmatch.maps import install_threatmap, remove_threatmap
from gunmatch.reindex import reindex, reload_replicas
from gunmatch.service import create_engine, open_engine
from index import CATEGORY_KEYS, Filters, Gallery
from matcher.preprocess import MODALITIES
from screening.augment import AugmentConfig, clutter_items, xray_augmenter
from screening.calibration import calibrate_screening, calibration_file
from screening.screen import load_transmission


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `gallery` command group."""
    g = sub.add_parser("gallery", help="build and curate the reference gallery")
    gs = g.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)

    p = gs.add_parser(
        "build", help="index SRC/<label>/<image> into a gallery (adds only new images)"
    )
    p.add_argument("src", type=Path, help="folder with one sub-folder per label")
    add_gallery_arg(p)
    p.add_argument("--modality", choices=MODALITIES, default="photo")
    p.add_argument(
        "--metadata", type=Path, help="CSV: file,category,make_model,calibre,threat,notes"
    )
    p.add_argument("--threat-labels", default="", help="comma-separated labels that are threats")
    p.add_argument(
        "--model",
        help="backbone name or trained model directory (new galleries; X-ray default: the "
        "shipped models/xray-v1 where present, else efficientnet_lite0)",
    )
    p.add_argument(
        "--no-shipped",
        action="store_true",
        help="X-ray: neither the shipped X-ray model nor the shipped threat map",
    )
    p.add_argument("--added-by", default="cli")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _augment_arg(p)
    add_runtime_args(p)
    p.set_defaults(func=cmd_build)

    p = gs.add_parser("info", help="model, size and labels of a gallery")
    add_gallery_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = gs.add_parser("list", help="list items")
    add_gallery_arg(p)
    p.add_argument("--label")
    p.add_argument("--category", choices=CATEGORY_KEYS)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = gs.add_parser("add", help="add reference images with metadata")
    p.add_argument("images", nargs="+", type=Path)
    add_gallery_arg(p)
    p.add_argument("--label", required=True)
    _metadata_args(p)
    p.add_argument("--modality", choices=MODALITIES, default=None)
    p.add_argument("--added-by", default="cli")
    _augment_arg(p)
    add_runtime_args(p)
    p.set_defaults(func=cmd_add)

    p = gs.add_parser(
        "add-clutter",
        help="X-ray: add regions of cleared parcels (no threat) as benign clutter references",
    )
    p.add_argument("scans", nargs="+", type=Path, help="scans known to hold no threat")
    add_gallery_arg(p)
    p.add_argument("--per-scan", type=int, default=8, help="regions taken from each scan")
    p.add_argument("--added-by", default="cli")
    add_runtime_args(p)
    p.set_defaults(func=cmd_add_clutter)

    p = gs.add_parser(
        "calibrate-screening",
        help="X-ray: set screening thresholds from cleared scans (alert on the top 1%%)",
    )
    p.add_argument("scans", nargs="+", type=Path, help="scans known to hold no threat")
    add_gallery_arg(p)
    p.add_argument(
        "--false-alarm", type=float, default=0.01, help="share of cleared scans that alert"
    )
    p.add_argument(
        "--review-rate", type=float, default=0.05, help="share of cleared scans sent to review"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_screening_args(p)
    add_runtime_args(p)
    p.set_defaults(func=cmd_calibrate_screening)

    p = gs.add_parser(
        "threatmap",
        help="X-ray: install a threat map (gunmatch train-threatmap) in a gallery, or remove it",
    )
    p.add_argument("path", nargs="?", type=Path, help="threat map directory to install")
    add_gallery_arg(p)
    p.add_argument("--remove", action="store_true", help="remove the gallery's threat map")
    p.set_defaults(func=cmd_threatmap)

    p = gs.add_parser("remove", help="remove items by id")
    p.add_argument("item_ids", nargs="+")
    add_gallery_arg(p)
    p.set_defaults(func=cmd_remove)

    p = gs.add_parser("update", help="edit an item's metadata")
    p.add_argument("item_id")
    add_gallery_arg(p)
    p.add_argument("--label")
    _metadata_args(p)
    p.set_defaults(func=cmd_update)

    p = gs.add_parser(
        "reindex",
        help="re-embed a gallery's stored images with another model",
        description="Like 'gunmatch model promote' without the gate: a shadow on the "
        "gallery's own backend (a directory, or a new Milvus collection and vectors in the "
        "PostgreSQL schema of a shared gallery), switched in; a shared gallery's replicas "
        "then reload.",
    )
    add_gallery_arg(p)
    p.add_argument("--model", required=True, help="backbone name or trained model directory")
    p.add_argument("--quiet", action="store_true")
    add_runtime_args(p)
    p.set_defaults(func=cmd_reindex)
    register_transfer(gs)  # import / export between backends


def _metadata_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--category", choices=CATEGORY_KEYS)
    p.add_argument("--make-model")
    p.add_argument("--calibre")
    p.add_argument("--threat", dest="threat", action="store_true", default=None)
    p.add_argument("--no-threat", dest="threat", action="store_false")
    p.add_argument("--notes")
    p.add_argument("--source")


def _augment_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--augment-xray",
        type=int,
        default=0,
        metavar="N",
        help="also index N projected variants of each X-ray reference inside generated "
        "cluttered scans (default 0: off)",
    )


def _augmenter(args: argparse.Namespace, embedder):
    """The X-ray augmentation stage for --augment-xray N, or None when N is 0."""
    if args.augment_xray < 0:
        raise UsageError("--augment-xray must be 0 or more")
    if not args.augment_xray:
        return None

    return xray_augmenter(embedder, AugmentConfig(variants=args.augment_xray))


def _check_dir(path: Path) -> None:

    if not path.is_dir():
        raise UsageError(f"{path} is not a directory")


def cmd_build(args: argparse.Namespace) -> int:
    """Index a labelled folder tree."""
    _check_dir(args.src)
    if args.metadata is not None and not args.metadata.is_file():
        raise UsageError(f"{args.metadata} does not exist")
    metadata = read_metadata_csv(args.metadata) if args.metadata else None
    records = scan_source(args.src, args.modality, metadata, args.threat_labels.split(","))
    engine = create_engine(
        gallery_dir(args), args.model, args.modality, **runtime(args), shipped=not args.no_shipped
    )
    try:
        report = build(
            records,
            engine.embedder,
            gallery_writer(engine.gallery, engine.embedder.model_id, args.added_by),
            batch_size=engine.embedder.batch_size,
            progress=not args.quiet,
            known_shas=engine.gallery.store.known_shas(),
            augment_fn=_augmenter(args, engine.embedder),
        )
    finally:
        engine.close()
    for path, reason in report.failed:
        out(f"failed: {path}: {reason}")
    out(
        f"indexed {report.added} new, {report.skipped} already present, "
        f"{len(report.failed)} failed, of {report.total} images; gallery {gallery_dir(args)} "
        f"model {engine.embedder.model_id}"
    )
    return 1 if report.failed and not (report.added or report.skipped) else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print gallery info."""
    with Gallery.open(gallery_dir(args)) as g:
        info = g.info()
    if args.json:
        emit_json(info)
        return 0
    for key in (
        "path",
        "model_id",
        "dim",
        "modality",
        "items",
        "vectors",
        "index_type",
        "created_at",
    ):
        out(f"{key:>11}: {info[key]}")
    out("     labels: " + ", ".join(f"{k} ({v})" for k, v in sorted(info["labels"].items())))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List items."""
    with Gallery.open(gallery_dir(args)) as g:
        items = g.items(Filters(category=args.category), limit=None)
    if args.label:
        items = [i for i in items if i.label == args.label]
    items = items[: args.limit] if args.limit else items
    for it in items:
        if args.json:
            emit_json(it.to_dict())
        else:
            threat = "THREAT" if it.threat else "-"
            out(
                f"{it.item_id}  {it.label:<16} {it.category:<14} {threat:<6} "
                f"{it.make_model} {it.source}"
            )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Add single images with metadata."""
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise UsageError(f"not a file: {', '.join(missing)}")
    engine = open_engine(gallery_dir(args), **runtime(args))
    modality = args.modality or engine.gallery.modality
    records = [
        SourceRecord(
            path=p,
            label=args.label,
            category=args.category or "other",
            threat=bool(args.threat),
            make_model=args.make_model or "",
            calibre=args.calibre or "",
            notes=args.notes or "",
            modality=modality,
        )
        for p in args.images
    ]
    try:
        report = build(
            records,
            engine.embedder,
            gallery_writer(engine.gallery, engine.embedder.model_id, args.added_by),
            progress=False,
            known_shas=engine.gallery.store.known_shas(),
            augment_fn=_augmenter(args, engine.embedder),
        )
    finally:
        engine.close()
    for path, reason in report.failed:
        out(f"failed: {path}: {reason}")
    out(f"added {report.added}, already present {report.skipped}, failed {len(report.failed)}")
    return 1 if report.failed else 0


def _check_scans(paths: list[Path]) -> None:

    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"not a file: {', '.join(missing)}")


def _transmissions(engine, paths: list[Path], failed: list[str]):
    """(path, transmission) of each readable scan; unreadable ones are reported and listed."""
    white = engine.embedder.preprocess_config.xray_white_percentile
    for path in paths:
        try:
            yield path, load_transmission(path, engine.embedder.max_pixels, white)
        except (ValueError, OSError) as exc:
            failed.append(str(path))
            out(f"failed: {path}: {exc}")


def cmd_add_clutter(args: argparse.Namespace) -> int:
    """Regions of cleared scans as benign references; bad files are reported, the rest added."""
    if args.per_scan < 1:
        raise UsageError("--per-scan must be at least 1")
    _check_scans(args.scans)
    engine = open_engine(gallery_dir(args), **serving_runtime(args))
    failed: list[str] = []
    added, skipped = 0, 0
    try:
        for path, t in _transmissions(engine, args.scans, failed):
            items = clutter_items(engine.embedder, t, args.per_scan, str(path), args.added_by)
            result = engine.gallery.add(items, engine.embedder.model_id)
            added += len(result.added)
            skipped += len(result.skipped)
    finally:
        engine.close()
    out(f"added {added} clutter references, already present {skipped}, failed scans {len(failed)}")
    return 1 if len(failed) == len(args.scans) else 0


def cmd_calibrate_screening(args: argparse.Namespace) -> int:
    """Screen cleared scans with the search settings and write screening-calibration.json."""
    cfg = screening_config(args)
    if not 0 < args.false_alarm <= args.review_rate < 1:
        raise UsageError("need 0 < --false-alarm <= --review-rate < 1")
    _check_scans(args.scans)
    engine = open_engine(gallery_dir(args), **serving_runtime(args))
    failed: list[str] = []
    try:
        scans = (t for _, t in _transmissions(engine, args.scans, failed))
        try:
            data = calibrate_screening(
                engine, scans, cfg, args.false_alarm, args.review_rate, not args.quiet
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        m = data["metrics"]
        out(
            f"screening thresholds from {m['scans']} cleared scans ({len(failed)} unreadable): "
            f"alert >= {data['alert_threshold']:.4f} ({m['alerts_on_cleared']} of them; about "
            f"{m['expected_false_alarm']:.1%} of new clean parcels), review >= "
            f"{data['review_threshold']:.4f} ({m['reviews_on_cleared']}; about "
            f"{m['expected_review_rate']:.1%} review or alert); written to "
            f"{calibration_file(engine)}. Searches with the same settings use them."
        )
    finally:
        engine.close()
    return 0


def cmd_threatmap(args: argparse.Namespace) -> int:
    """Install a threat map in GALLERY/model/threatmap (checked by loading it), or remove it."""
    if (args.path is None) == (not args.remove):
        raise UsageError("give a threat map directory to install, or --remove")
    with Gallery.open(gallery_dir(args)) as g:
        if g.modality != "xray":
            raise UsageError(f"{g.root} is a {g.modality} gallery; threat maps are for X-ray")
        if args.remove:
            existed = remove_threatmap(g)
            out(f"removed the threat map of {g.root}" if existed else f"{g.root} had none")
            return 0
        try:
            tmap = install_threatmap(g, args.path)
        except (FileNotFoundError, ValueError) as exc:  # not a map, or not for this trunk
            raise UsageError(f"{exc} (gunmatch train-threatmap --out DIR makes one)") from exc
        auc = tmap.card.get("val", {}).get("auc")
        out(
            f"installed threat map {args.path} in {g.root}"
            + (f" (held-out AUC {auc:.3f})" if isinstance(auc, float) else "")
            + "; X-ray searches use it from the next open (serve: reload with SIGHUP)"
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Remove items."""
    with Gallery.open(gallery_dir(args)) as g:
        removed = g.remove(args.item_ids)
    out(f"removed {len(removed)}: {' '.join(removed)}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """Edit metadata."""
    changes = {
        "label": args.label,
        "category": args.category,
        "make_model": args.make_model,
        "calibre": args.calibre,
        "threat": args.threat,
        "notes": args.notes,
        "source": args.source,
    }
    with Gallery.open(gallery_dir(args)) as g:
        item = g.update(args.item_id, **changes)
    emit_json(item.to_dict())
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Re-embed stored images with another model."""
    info = reindex(gallery_dir(args), args.model, progress=not args.quiet, **runtime(args))
    out(f"re-indexed {info['items']} items with model {info['model_id']}")
    gen = reload_replicas(gallery_dir(args))
    if gen is not None:
        out(f"reload generation {gen}: every replica serving the gallery reloads")
    return 0
