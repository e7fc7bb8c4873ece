"""X-ray parcel screening benchmark on the project's generated parcels.

Gallery: isolated references of every part kind (threats and benign look-alikes) rendered
from seeds reserved for galleries, optionally with projected variants in gallery-only
backgrounds. Evaluation: parcels with one threat part and parcels without, rendered from
other seed ranges, so no part instance or background is ever seen by the gallery.

Reports detection rate at 1% and 5% false alarms (parcel score = best threat-match score
over regions), box hit rate (IoU >= 0.3 of the top region for detected parts), and seconds
per scan (decode + screen of 8-bit PNG scans). Writes the "xray" section of
docs/benchmarks.md with --write.

    .venv/bin/python -m benchmarks.xray_screening --positives 60 --negatives 60 --write
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.report import begun, command_line, publish
from gunmatch.allocator import hold_freed_memory
from gunmatch.decision import threshold_decision_fn
from gunmatch.service import Engine, open_engine
from gunmatch.settings import get_settings
from index import Gallery, NewItem
from matcher import Embedder, load_model, save_checkpoint
from matcher.model import with_preprocess
from matcher.preprocess import grey_to_tensor, letterbox_grey
from matcher.threatmap import MAP_VIEWS, views_per_zoom
from screening.augment import GALLERY_BACKGROUND_SEED, AugmentConfig, projected_variants
from screening.augment import clutter_items as xray_clutter_items
from screening.regions import ProposalConfig, iou
from screening.screen import MapTerms, ScreeningConfig, screen_image, screen_transmission
from synth.shapes import PART_KINDS, THREAT_KINDS, any_kind
from synth.xray import render_isolated, render_parcel

log = logging.getLogger("benchmarks.xray")

GALLERY_SEED = 1_000  # isolated references
POSITIVE_SEED = 20_000_000  # evaluation parcels with a threat part
NEGATIVE_SEED = 30_000_000  # evaluation parcels without
# Validation parcels for choosing settings (--split val); never the reported figures.
VAL_POSITIVE_SEED = 50_000_000
VAL_NEGATIVE_SEED = 60_000_000
CLUTTER_SEED = GALLERY_BACKGROUND_SEED + 500_000  # gallery-only clutter scans
# How each kind of model card was trained, for the section's model line.
TRAINERS = {
    "xray-lda-head": "gunmatch train-xray --method lda",
    "xray-finetune": "gunmatch train-xray",
}
# Hand-written notes (validation choices, history) kept with the script, not lost on --write.
NOTES = Path(__file__).with_name("notes") / "xray.md"
# How the reports name a view count (``ScreeningConfig.map_views``).
VIEWS_TEXT = {
    1: "one pass",
    2: "averaged with its mirror image",
    4: "averaged over its mirror image and both upside down",
}


def scan_size(args: argparse.Namespace) -> tuple[int, int]:
    """``--size`` ("WxH" in pixels) as (width, height); SystemExit for anything else."""
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        if min(width, height) < 1:
            raise ValueError(args.size)
    except ValueError:
        raise SystemExit(f"--size must be WxH in pixels, e.g. 1600x1250: {args.size!r}") from None
    return width, height


def add_map_size_args(p: argparse.ArgumentParser) -> None:
    """``--map-zooms`` and ``--map-views``: the sizes the map runs at and its views at each."""
    p.add_argument(
        "--map-zooms",
        type=float,
        nargs="+",
        default=list(ScreeningConfig.map_zooms),
        help="sizes the map runs at, multiples of its own",
    )
    p.add_argument(
        "--map-views",
        type=int,
        nargs="+",
        choices=MAP_VIEWS,
        default=list(ScreeningConfig.map_views),
        help="views of the scan the map averages at each size, one count for all or one per "
        "size (1: the scan; 2: and its mirror image; 4: and both upside down)",
    )


def add_regions_arg(p: argparse.ArgumentParser) -> None:
    """``--regions``: dense-material proposals per scan (default: the screening's own)."""
    p.add_argument(
        "--regions",
        type=int,
        help=f"proposals per scan (default {ProposalConfig.max_regions}, "
        f"{ScreeningConfig.map_proposals} with a threat map: ScreeningConfig.map_proposals)",
    )


def with_regions(cfg: ScreeningConfig, regions: int | None) -> ScreeningConfig:
    """``cfg`` with exactly ``regions`` proposals when given, else its own counts."""
    return cfg if regions is None else cfg.with_proposals(regions)


def regions_text(regions: int | None, with_map: bool) -> str:
    """How many proposals a scan gets, in words."""
    n = with_regions(ScreeningConfig(), regions).proposal_config(with_map).max_regions
    return f"{n} proposals" + ("" if regions is not None else " (the default)")


def gallery_text(args: argparse.Namespace, with_map: bool = True) -> str:
    """How the gallery was built, in words, for a section's header ("as ... builds it (...)")."""
    return (
        f"as benchmarks.xray_screening builds it (model {args.model}, "
        f"{args.refs_per_kind} reference{'' if args.refs_per_kind == 1 else 's'} per threat "
        f"kind, {args.benign_refs} per benign "
        f"kind, {args.augment} projected variants"
        + (f", threat map {args.threatmap or 'none'}" if with_map else "")
        + ")"
    )


def views_text(views: Sequence[int], zooms: Sequence[float], side: int) -> str:
    """The map's sizes and views at each, in words: "960 px averaged with its mirror image"."""
    counts = views_per_zoom(views, len(zooms))
    return ", ".join(
        f"{round(z * side)} px {VIEWS_TEXT[n]}" for z, n in zip(zooms, counts, strict=True)
    )


def _png(t: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def build_gallery(root: Path, args: argparse.Namespace, extra_kinds: Sequence[str] = ()) -> Engine:
    """References of every part kind and of ``extra_kinds`` (scene kinds such as long guns),
    with projected variants, in a fresh gallery."""
    net = load_model(args.model)
    if net.config.preprocess.input_size != args.crop:
        net = with_preprocess(net, input_size=args.crop)
    emb = Embedder(net, batch_size=64)
    # Saving re-hashes trained weights (the model_id can change), so save before creating.
    save_checkpoint(net, root / "model")
    gallery = Gallery.create(root, net.model_id, net.dim, "xray")
    pre = net.config.preprocess
    aug = AugmentConfig(variants=args.augment)
    items = []
    kinds = [*PART_KINDS, *extra_kinds]
    for index, kind in enumerate(kinds):
        spec = any_kind(kind)
        n = args.refs_per_kind if spec.threat else args.benign_refs
        for s in range(n):
            seed = GALLERY_SEED + 100 * index + s
            ref = render_isolated(kind, seed, 256).transmission
            crops = [letterbox_grey(ref, args.crop)]
            if args.augment:
                rng = np.random.default_rng(seed)
                crops += projected_variants(ref, aug, args.crop, rng)
            vecs = emb.embed_tensors(torch.stack([grey_to_tensor(c, pre) for c in crops]))
            items.append(
                NewItem(
                    vectors=vecs,
                    variants=[f"projected{i}" for i in range(len(crops) - 1)],
                    label=kind,
                    image_bytes=_png(ref),
                    category=spec.category,
                    modality="xray",
                    threat=spec.threat,
                    source=f"render_isolated({kind!r}, {seed})",
                )
            )
    items += clutter_items(emb, args)
    gallery.add(items, net.model_id)
    if args.threatmap:
        shutil.copytree(args.threatmap, gallery.threatmap_dir)
    gallery.close()
    return open_as_served(root, args.threads)


def open_as_served(root: Path, threads: int) -> Engine:
    """The gallery at ``root`` opened as ``gunmatch search`` and the service open it: crops
    embedded and the threat map run on the service's inference path (``GUNMATCH_RUNTIME``,
    ONNX Runtime by default), so the figures and timings are those of what is served."""
    return open_engine(root, threads=threads, runtime=get_settings().runtime)


def clutter_items(emb: Embedder, args: argparse.Namespace) -> list[NewItem]:
    """Benign "clutter" references: top proposals of gallery-only parcels without threats.

    With the margin score they discount regions that look like ordinary bag contents.
    """
    if args.clutter_refs < 1:
        return []
    size = scan_size(args)
    per_scan = 8
    items: list[NewItem] = []
    for j in range((args.clutter_refs + per_scan - 1) // per_scan):
        image = render_parcel(CLUTTER_SEED + j, size=size, threat_kind=None).image
        items += xray_clutter_items(emb, image, per_scan, f"render_parcel({CLUTTER_SEED + j})")
    return items[: args.clutter_refs]


def dump_row(res, parcel, positive: bool, cfg: ScreeningConfig) -> dict:
    """One scan's regions for offline study (``benchmarks.xray_fusion``): box, score without
    the map, the map's logit, the box's fit to the map's hot area, whether it is one of the
    map's own boxes, and its proposal score."""
    gt = [parcel.boxes[0].as_tuple()] if positive else []
    regions = res.regions
    map_part = MapTerms(  # what screening added to each threat score (0 without a map)
        logit=np.array([r.map_logit or 0.0 for r in regions]),
        fit=np.array([r.map_fit or 0.0 for r in regions]),
        own=np.array([r.from_map for r in regions], dtype=bool),
    ).score(cfg)
    return {
        "positive": positive,
        "kind": parcel.threat_kind,
        "truth": gt,
        "regions": [
            {
                "box": list(r.box),
                "retrieval": None if r.threat_score is None else r.threat_score - float(part),
                "logit": r.map_logit,
                "fit": r.map_fit,
                "own": r.from_map,
                "proposal": r.proposal_score,
            }
            for r, part in zip(regions, map_part, strict=True)
        ],
    }


def dump_config(cfg: ScreeningConfig) -> ScreeningConfig:
    """``cfg`` for ``--dump``: every region kept and none merged, so that rescoring offline
    picks the very box a screening with other weights would report."""
    return replace(cfg, max_regions=100_000, merge_iou=1.0)


def rate_at(pos: np.ndarray, neg: np.ndarray, fa: float) -> tuple[float, float]:
    """Detection rate at a false-alarm rate, and the threshold (scores above it alarm)."""
    thr = float(np.quantile(neg, 1.0 - fa, method="higher"))
    return float(np.mean(pos > thr)), thr


def run(args: argparse.Namespace) -> dict:
    """Build the gallery, screen the parcels, return the measured figures."""
    torch.set_num_threads(args.threads)
    hold_freed_memory()  # as every gunmatch command does
    size = scan_size(args)
    cfg = ScreeningConfig(
        crop_size=args.crop,
        score_mode=args.score_mode,
        score_k=args.score_k,
        map_weight=args.map_weight,
        map_fit_weight=args.map_fit_weight,
        map_views=tuple(args.map_views),
        map_zooms=tuple(args.map_zooms),
    )
    cfg = with_regions(cfg, args.regions)
    if args.dump:
        cfg = dump_config(cfg)
    decide = threshold_decision_fn(0.9, 0.7)
    tmp = Path(tempfile.mkdtemp(prefix="xray-bench-"))
    try:
        clock = time.perf_counter()
        engine = build_gallery(tmp / "gallery", args)
        gallery_s = time.perf_counter() - clock
        pos, neg, hit, cover, seconds, dump = [], [], [], [], [], []
        for i in range(args.positives + args.negatives):
            positive = i < args.positives
            kind = THREAT_KINDS[i % len(THREAT_KINDS)] if positive else None
            pos_seed, neg_seed = (
                (VAL_POSITIVE_SEED, VAL_NEGATIVE_SEED)
                if args.split == "val"
                else (POSITIVE_SEED, NEGATIVE_SEED)
            )
            seed = pos_seed + i if positive else neg_seed + i
            parcel = render_parcel(seed, size=size, threat_kind=kind)
            if i < args.timing_scans:
                data = _png(parcel.image)
                clock = time.perf_counter()
                res = screen_image(engine, io.BytesIO(data), 3, None, decide, cfg)
                seconds.append(time.perf_counter() - clock)
            else:
                res = screen_transmission(engine, parcel.image, 3, None, decide, cfg)
            score = res.score if res.score is not None else -1.0
            if positive:
                pos.append(score)
                gt = np.array([parcel.boxes[0].as_tuple()], float)
                top = np.array([res.regions[0].box], float) if res.regions else np.zeros((1, 4))
                hit.append(float(iou(top, gt)[0, 0]))
                boxes = res.proposal_boxes
                cover.append(float(iou(boxes, gt).max()) if len(boxes) else 0.0)
            else:
                neg.append(score)
            if args.dump:
                dump.append(dump_row(res, parcel, positive, cfg))
            if (i + 1) % 20 == 0:
                log.info("%d / %d scans", i + 1, args.positives + args.negatives)
        engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.dump:
        Path(args.dump).write_text(json.dumps(dump))
    pos_a, neg_a, hit_a = np.array(pos), np.array(neg), np.array(hit)
    out = {
        "gallery_s": gallery_s,
        "seconds": seconds,
        "hit_all": float(np.mean(hit_a >= 0.3)),
        "cover": float(np.mean(np.array(cover) >= 0.3)),
    }
    for fa in (0.01, 0.05):
        det, thr = rate_at(pos_a, neg_a, fa)
        detected = pos_a > thr
        out[fa] = {
            "det": det,
            "thr": thr,
            "hit": float(np.mean(hit_a[detected] >= 0.3)) if detected.any() else float("nan"),
        }
    out["auc"] = float(np.mean(pos_a[:, None] > neg_a[None, :]))
    return out


def markdown(args: argparse.Namespace, r: dict, command: str, started: str) -> str:
    """The docs/benchmarks.md section."""
    med = statistics.median(r["seconds"]) if r["seconds"] else float("nan")
    card = Path(args.model) / "train_config.json"
    trained = []
    if card.is_file():
        info = json.loads(card.read_text())
        trainer = TRAINERS.get(info.get("kind"), "gunmatch train-xray")
        config = info.get("config", {})
        parcels = config.get("parcels", config.get("crops", {}).get("parcels"))
        secs = info.get("seconds")
        secs = secs.get("total") if isinstance(secs, dict) else secs
        trained = [
            f"Model: {info.get('kind')} fitted by `{trainer}` on "
            f"{info.get('samples')} generated crops (training seeds only, "
            f"{parcels} parcels) in {secs} s.  "
        ]
    if args.threatmap:
        meta = json.loads((Path(args.threatmap) / "threatmap.json").read_text())
        side = meta["config"]["long_side"]
        tm = meta.get("card", {})
        how = (
            f"an ensemble of {len(tm['members'])} heads, logits averaged (member maps "
            f"{', '.join(m['map_id'] for m in tm['members'])})"
            if "members" in tm
            else f"head trained by `gunmatch train-threatmap` on {tm.get('parcels')} generated "
            f"parcels (seeds from {tm.get('train_seed')}) in {tm.get('total_s')} s, epoch "
            f"{tm.get('best_epoch')} kept on {tm.get('val_parcels')} held-out parcels"
        )
        trained.append(
            f"Threat map: {args.threatmap}, {how}; run at "
            f"{views_text(args.map_views, args.map_zooms, side)} (its own size: {side} px); "
            f"map weight {args.map_weight}.  "
        )
    lines = [
        "## X-ray parcel screening (generated parcels)"
        if Path(args.model).is_dir()
        else "## X-ray parcel screening, ImageNet baseline (generated parcels)",
        "",
        f"Command: `{command}`  ",
        *trained,
        f"Machine: {started}  ",
        f"Gallery: isolated references, {args.refs_per_kind} per threat kind and "
        f"{args.benign_refs} per benign kind, {args.augment} projected variants each, "
        f"{args.clutter_refs} clutter crops of gallery-only clean parcels, "
        f"model {args.model} at {args.crop} px ({r['gallery_s']:.0f} s to build).  ",
        f"Evaluation: {args.positives} parcels with one threat part and {args.negatives} "
        f"without, {args.size} px, seeds disjoint from the gallery's; "
        f"{regions_text(args.regions, bool(args.threatmap))} per scan, region score "
        f"{args.score_mode} "
        f"(k={args.score_k}), "
        f"threads={args.threads}. "
        f"False-alarm thresholds are quantiles of the {args.negatives} clean parcels' scores "
        f"(below 100 negatives, 1% means the highest clean score).",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| detection rate at 1% false alarms | {r[0.01]['det']:.3f} | >= 0.9 |",
        f"| detection rate at 5% false alarms | {r[0.05]['det']:.3f} | |",
        f"| box hit rate (IoU >= 0.3, top region) of parts detected at 1% FA | "
        f"{r[0.01]['hit']:.3f} | >= 0.8 |",
        f"| box hit rate of parts detected at 5% FA | {r[0.05]['hit']:.3f} | |",
        f"| box hit rate over all positive parcels | {r['hit_all']:.3f} | |",
        f"| parcel-level ROC AUC | {r['auc']:.3f} | |",
        f"| positive parcels whose part some proposal covers (IoU >= 0.3) | {r['cover']:.3f} | |",
        f"| seconds per scan, median over {len(r['seconds'])} 8-bit PNG scans "
        f"(decode + screen) | {med:.2f} | <= 1.5 |",
    ]
    if args.notes and Path(args.notes).is_file():
        lines += ["", Path(args.notes).read_text().strip()]
    return "\n".join(lines)


def section_notes(model: str, notes: str | None) -> tuple[str, str | None]:
    """The section a run writes and the notes appended to it: a trained model directory is
    the result, with the X-ray notes unless others are named; the bundled ImageNet model is
    the baseline, which takes none (the notes are the result's)."""
    if Path(model).is_dir():
        return "xray", str(NOTES) if notes is None else notes
    return "xray-imagenet", notes


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--positives", type=int, default=60)
    p.add_argument("--negatives", type=int, default=60)
    p.add_argument("--size", default="1600x1250", help="scan WxH (2 megapixels by default)")
    p.add_argument("--refs-per-kind", type=int, default=4)
    p.add_argument("--benign-refs", type=int, default=2)
    p.add_argument("--augment", type=int, default=2, help="projected variants per reference")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--crop", type=int, default=128, help="model input side for crops")
    add_regions_arg(p)
    p.add_argument("--clutter-refs", type=int, default=0, help="benign clutter references")
    p.add_argument("--split", choices=("test", "val"), default="test", help="parcel seeds")
    p.add_argument("--timing-scans", type=int, default=20)
    p.add_argument("--score-mode", choices=("match", "margin"), default="match")
    p.add_argument("--score-k", type=int, default=1, help="references averaged per side")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--threatmap", help="threat map directory (gunmatch train-threatmap)")
    p.add_argument(
        "--map-weight",
        type=float,
        default=ScreeningConfig.map_weight,
        help="weight of the threat map's logit in each region's score",
    )
    p.add_argument(
        "--map-fit-weight",
        type=float,
        default=ScreeningConfig.map_fit_weight,
        help="weight of the box's fit to the map's hot area in each region's score",
    )
    add_map_size_args(p)
    p.add_argument("--dump", help="write every scan's regions (JSON) for offline study")
    p.add_argument(
        "--notes",
        help="Markdown appended to the section (default: the X-ray notes for a trained model, "
        "none for the ImageNet baseline)",
    )
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md section")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = begun()
    section, args.notes = section_notes(args.model, args.notes)
    r = run(args)
    text = markdown(args, r, command_line("benchmarks.xray_screening", argv), started)
    publish(text, section, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
