"""X-ray screening under domain shift: held-out scanner styles and clutter families.

The project's proxy for real scans (issue #13). Parcels are rendered by ``synth.styles``:
a scanner look (grey or dual-energy pseudo-colour export, palette, noise, blur, resolution,
pixel pitch, belt) times a scene mix (clutter family, density, stacking, threats at true
scale). Each scan is screened as the service screens an upload: its station export is
written as PNG, decoded (``xray_to_transmission``) and screened region by region.

Rows, all on the same parcel seeds (a row differs from another only by its style):

- ``default``: today's generator, the in-domain figure of ``benchmarks.xray_screening``;
- ``in-domain mix``: styles drawn (per seed) from the families the model was trained on,
  i.e. every look and scene except ``--held-out`` (omitted when all are held out);
- one row per held-out family: that look with scenes drawn from the trained scenes (or that
  scene with trained looks).

Leave-one-style-out: train with ``StyleSampler(exclude=(F,))`` (``ThreatMapTrainConfig.styles``,
``XrayHeadConfig.styles``), then run this with ``--held-out F``. Without ``--held-out`` every
family but the default look and the classic scene is held out, which is the right reading
for models trained on today's generator only. Seeds: positives from 82,000,000, clean
parcels from 86,000,000, disjoint from every training, validation and benchmark range.

    .venv/bin/python -m benchmarks.xray_domain --quick
    .venv/bin/python -m benchmarks.xray_domain --model runs/xray-ft --threatmap runs/map \\
        --held-out noisy-lowres dense --positives 60 --negatives 60 --write
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.report import begun, command_line, publish
from benchmarks.xray_screening import (
    VAL_NEGATIVE_SEED,
    VAL_POSITIVE_SEED,
    add_map_size_args,
    add_regions_arg,
    build_gallery,
    dump_config,
    dump_row,
    gallery_text,
    open_as_served,
    rate_at,
    regions_text,
    scan_size,
    with_regions,
)
from gunmatch.allocator import hold_freed_memory
from gunmatch.decision import threshold_decision_fn
from gunmatch.service import Engine
from index import Filters
from matcher.images import load_image
from screening.regions import iou
from screening.screen import ScreeningConfig, screen_image
from synth.parcel import render_parcel
from synth.shapes import CONFUSER_KINDS, LONG_GUN_KINDS, THREAT_KINDS
from synth.styles import LOOKS, SCENES, ScannerStyle, StyleSampler

log = logging.getLogger("benchmarks.xray_domain")

POSITIVE_SEED = 82_000_000  # parcels with a threat
NEGATIVE_SEED = 86_000_000  # clean parcels
DEFAULT_LOOK, DEFAULT_SCENE = "default", "classic"
# --guns: whole handguns in bags, at 25-45% of the scan's longer side (the maintainers'
# real-scan sets: a revolver projected in at 25-45%, real handguns inside real bags).
HANDGUNS = ("pistol", "revolver")
GUN_SCALE = (0.25, 0.45)
# --guns long: a whole rifle or shotgun at true scale in a long carton or gun bag (scenes
# other than the classic one, which holds parts only; the gallery gains long-gun references).
PART_SCALE = (0.05, 0.25)  # render_parcel's default: a part's longer side


@dataclass(frozen=True)
class Row:
    """One reported row: a name and the style of each parcel seed (None: today's parcels)."""

    name: str
    held_out: bool
    style_of: Callable[[int], ScannerStyle | None]


def _draw(names: Sequence[str], seed: int, salt: int) -> str:
    return names[int(np.random.default_rng([seed, 4, salt]).integers(len(names)))]


def plan_rows(held_out: Sequence[str] | None) -> list[Row]:
    """The rows for a set of held-out families (None: all but the default look and scene;
    empty: nothing held out, one in-domain row per family, for models trained on them all)."""
    families = set(LOOKS) | set(SCENES)
    styled = [n for n in [*LOOKS, *SCENES] if n not in (DEFAULT_LOOK, DEFAULT_SCENE)]
    if held_out is None:
        held_out = styled
    unknown = set(held_out) - families
    if unknown:
        raise ValueError(
            f"unknown style families {sorted(unknown)}; "
            f"looks: {sorted(LOOKS)}, scenes: {sorted(SCENES)}"
        )
    looks = [n for n in LOOKS if n not in held_out]
    scenes = [n for n in SCENES if n not in held_out]
    if not looks or not scenes:
        raise ValueError("hold out some looks or scenes, not all of either")
    rows = [Row("default", False, lambda seed: None)]
    trained = StyleSampler(tuple(held_out))
    if len(looks) > 1 or len(scenes) > 1:
        rows.append(Row("in-domain mix", False, trained.for_seed))
    for name in held_out or styled:
        if name in LOOKS:

            def style_of(seed: int, look: str = name) -> ScannerStyle:
                return ScannerStyle(LOOKS[look], SCENES[_draw(scenes, seed, 1)])
        else:

            def style_of(seed: int, scene: str = name) -> ScannerStyle:
                return ScannerStyle(LOOKS[_draw(looks, seed, 2)], SCENES[scene])

        rows.append(Row(name, bool(held_out), style_of))
    return rows


def scan_png(
    seed: int,
    size: tuple[int, int],
    kind: str | None,
    style: ScannerStyle | None,
    threat_scale: tuple[float, float] = PART_SCALE,
    extra_kind: str | None = None,
):
    """The parcel of ``seed`` in ``style`` (with ``extra_kind`` laid in as clutter) and its
    station export as PNG bytes."""
    parcel = render_parcel(seed, size=size, threat_kind=kind, style=style,
                           threat_scale=threat_scale, extra_kind=extra_kind)  # fmt: skip
    buf = io.BytesIO()
    Image.fromarray(parcel.station_export()).save(buf, "PNG")
    return parcel, buf.getvalue()


def _kind(i: int, style: ScannerStyle | None, args: argparse.Namespace) -> str:
    if args.guns:
        guns = LONG_GUN_KINDS if args.guns == "long" else HANDGUNS
        return guns[i % len(guns)]
    kinds = THREAT_KINDS
    if args.long_guns and style is not None and style.scene.name != DEFAULT_SCENE:
        kinds = THREAT_KINDS + LONG_GUN_KINDS
    return kinds[i % len(kinds)]


def whole_image_score(engine: Engine, data: bytes) -> float:
    """What ``gunmatch search --no-regions`` decides on: the whole scan's best similarity to
    a threat reference."""
    image = load_image(io.BytesIO(data), engine.embedder.max_pixels)
    vector = engine.embedder.embed_tensors(engine.embedder.prepare(image, "xray")[None])
    best = engine.gallery.search(vector, 1, Filters(threat=True))[0]
    return float(best[0].score) if best else -1.0


def _figures(pos: np.ndarray, neg: np.ndarray, hit: np.ndarray | None) -> dict:
    out = {
        "auc": float(
            np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
        )
    }
    for fa in (0.01, 0.05):
        det, thr = rate_at(pos, neg, fa)
        detected = pos > thr
        out[fa] = {"det": det}
        if hit is not None:
            hits = hit[detected] >= 0.3
            out[fa]["hit"] = float(np.mean(hits)) if detected.any() else float("nan")
    return out


def screen_row(engine: Engine, row: Row, args: argparse.Namespace, cfg: ScreeningConfig) -> dict:
    """Screen a row's positives and negatives; detection, AUC and box hits."""
    size = scan_size(args)
    decide = threshold_decision_fn(0.9, 0.7)
    # Scans with a threat, clean ones, and with --confusers the clean bags again, each with a
    # shuriken or a razor blade laid in (the same bag otherwise: ``extra_kind``).
    scores: dict[str, list[float]] = {"threat": [], "clean": [], "confuser": []}
    whole: dict[str, list[float]] = {"threat": [], "clean": [], "confuser": []}
    hit, dump = [], []
    scale = GUN_SCALE if args.guns else PART_SCALE
    val = args.split == "val"
    pos0, neg0 = (
        (VAL_POSITIVE_SEED if val else POSITIVE_SEED),
        (VAL_NEGATIVE_SEED if val else NEGATIVE_SEED),
    )
    clock = time.perf_counter()
    n_confusers = args.negatives if args.confusers else 0
    for i in range(args.positives + args.negatives + n_confusers):
        positive = i < args.positives
        j = i - args.positives - args.negatives  # >= 0: a confuser bag
        what = "threat" if positive else ("confuser" if j >= 0 else "clean")
        seed = pos0 + i if positive else neg0 + (args.positives + j if j >= 0 else i)
        style = row.style_of(seed)
        kind = _kind(i, style, args) if positive else None
        extra = CONFUSER_KINDS[j % len(CONFUSER_KINDS)] if what == "confuser" else None
        parcel, data = scan_png(seed, size, kind, style, scale, extra)
        res = screen_image(engine, io.BytesIO(data), 3, None, decide, cfg)
        scores[what].append(res.score if res.score is not None else -1.0)
        if args.whole_image:
            whole[what].append(whole_image_score(engine, data))
        if positive:
            gt = np.array([parcel.boxes[0].as_tuple()], float)
            top = np.array([res.regions[0].box], float) if res.regions else np.zeros((1, 4))
            hit.append(float(iou(top, gt)[0, 0]))
        if args.dump:
            dump.append(dump_row(res, parcel, positive, cfg))
    hit_a = np.array(hit)
    pos = np.array(scores["threat"])
    out = {
        "row": row.name,
        "held_out": row.held_out,
        "seconds": time.perf_counter() - clock,
        "hit_all": float(np.mean(hit_a >= 0.3)),
        "map": engine.threatmap is not None and cfg.use_map,
        **_figures(pos, np.array(scores["clean"]), hit_a),
        # each bag's score, in seed order (threat bags, then clean ones)
        "scores": {"threat": scores["threat"], "clean": scores["clean"]},
    }
    if args.confusers:
        out["confuser"] = _figures(pos, np.array(scores["confuser"]), hit_a)
    if args.whole_image:
        out["whole"] = _figures(np.array(whole["threat"]), np.array(whole["clean"]), None)
        if args.confusers:
            out["whole_confuser"] = _figures(
                np.array(whole["threat"]), np.array(whole["confuser"]), None
            )
    if args.dump:
        out["dump"] = dump
    log.info("%s: det@1%% %.3f, AUC %.3f", row.name, out[0.01]["det"], out["auc"])
    return out


def open_or_build(root: Path, args: argparse.Namespace) -> Engine:
    """The given gallery, or a fresh one built as ``benchmarks.xray_screening`` builds it."""
    if args.gallery:
        return open_as_served(Path(args.gallery), args.threads)
    return build_gallery(root, args, LONG_GUN_KINDS if args.guns == "long" else ())


def screening_config(args: argparse.Namespace) -> ScreeningConfig:
    """The screening settings the options ask for (unmerged regions with ``--dump``)."""
    cfg = ScreeningConfig(
        crop_size=args.crop,
        score_mode=args.score_mode,
        score_k=args.score_k,
        map_weight=args.map_weight,
        map_zooms=tuple(args.map_zooms),
        map_views=tuple(args.map_views),
    )
    cfg = with_regions(cfg, args.regions)
    return dump_config(cfg) if args.dump else cfg


def true_scale_rows(rows: list[Row]) -> list[Row]:
    """``rows`` for bags holding a long gun (a scene kind, drawn at true scale).
    The classic scene holds part kinds only: the default row goes, and where a row draws the
    classic scene for a seed it draws one of the other trained scenes instead (the look, and
    a held-out scene, stay as drawn)."""
    held = {r.name for r in rows if r.held_out}
    scenes = [n for n in SCENES if n != DEFAULT_SCENE and n not in held]
    if not scenes:
        raise ValueError("long guns need a trained scene besides classic; hold fewer scenes out")

    def recast(row: Row) -> Row:
        def style_of(seed: int) -> ScannerStyle:
            style = row.style_of(seed)
            if style.scene.name != DEFAULT_SCENE:
                return style
            return ScannerStyle(style.look, SCENES[_draw(scenes, seed, 3)])

        return Row(row.name, row.held_out, style_of)

    return [recast(r) for r in rows if r.name != DEFAULT_LOOK]


def chosen_rows(
    held_out: Sequence[str] | None, only: Sequence[str] | None, true_scale: bool = False
) -> list[Row]:
    """``plan_rows(held_out)`` (``true_scale_rows`` of them if asked), limited to the rows
    named in ``only`` (if any)."""
    rows = plan_rows(held_out)
    if true_scale:
        rows = true_scale_rows(rows)
    if only:
        unknown = set(only) - {r.name for r in rows}
        if unknown:
            raise ValueError(f"no rows {sorted(unknown)}; rows: {[r.name for r in rows]}")
        rows = [r for r in rows if r.name in only]
    return rows


def rows_of(args: argparse.Namespace) -> list[Row]:
    """The rows the options ask for. Long guns need a scene besides classic; a confuser bag is
    the clean bag plus one item, which any scene holds, so ``--confusers`` screens the very
    bags of the run without it."""
    return chosen_rows(held_out_arg(args.held_out), args.only, args.guns == "long")


def run(args: argparse.Namespace) -> list[dict]:
    """Build or open the gallery, screen every row, return each row's figures."""
    torch.set_num_threads(args.threads)
    hold_freed_memory()  # as every gunmatch command does
    cfg = screening_config(args)
    rows = rows_of(args)
    tmp = Path(tempfile.mkdtemp(prefix="xray-domain-"))
    try:
        engine = open_or_build(tmp / "gallery", args)
        try:
            results = [screen_row(engine, row, args, cfg) for row in rows]
        finally:
            engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.dump:
        Path(args.dump).write_text(json.dumps({r["row"]: r.pop("dump") for r in results}))
    return results


def held_out_arg(names: Sequence[str] | None) -> list[str] | None:
    """``--held-out``'s families; ``none`` alone: nothing held out."""
    if names is not None and [n.lower() for n in names] == ["none"]:
        return []
    return None if names is None else list(names)


def threat_text(args: argparse.Namespace) -> str:
    """What a positive bag holds, as a section's parcel line says it."""
    return {
        None: "part kinds in turn"
        + (", plus long guns outside the classic scene" if args.long_guns else ""),
        "hand": f"a whole pistol or revolver at {GUN_SCALE[0]:.0%}-{GUN_SCALE[1]:.0%} of the side",
        "long": "a whole rifle or shotgun in turn, at true scale in a long carton or gun bag, "
        "the classic scene's draws replaced by other trained scenes; the gallery holds "
        f"{args.refs_per_kind} references of each long gun too",
    }[args.guns]


def markdown(args: argparse.Namespace, results: list[dict], command: str, started: str) -> str:
    """The docs/benchmarks.md section: held-out rows beside the in-domain ones."""
    source = f"gallery {args.gallery}" if args.gallery else f"gallery built {gallery_text(args)}"
    held = ", ".join(r["row"] for r in results if r["held_out"])
    has_map = any(r["map"] for r in results)  # (a given gallery may hold one or not)
    what = {
        None: "X-ray screening under domain shift: bags holding a part",
        "hand": "X-ray screening: whole handguns in bags, region screening vs whole image",
        "long": "X-ray screening: whole long guns in bags, region screening vs whole image",
    }[args.guns]
    threat = threat_text(args)
    lines = [
        f"## {what}"
        + (f", models trained without {held}" if held else ", models trained on every style")
        + (", against bags holding a shuriken or razor blade too" if args.confusers else "")
        + (" - smoke run, not figures" if args.quick else ""),
        "",
        f"Command: `{command}`  ",
        f"Machine: {started}  ",
        f"Screening: {source}; {regions_text(args.regions, has_map)}, "
        f"map weight {args.map_weight}, map "
        f"zooms {' '.join(f'{z:.3g}' for z in args.map_zooms)} (views "
        f"{' '.join(map(str, args.map_views))}), crops {args.crop} px. Each scan is its station "
        f"export (PNG), decoded as the service decodes uploads.  ",
        f"Parcels per row: {args.positives} with a threat ({threat}) and "
        f"{args.negatives} clean"
        + (
            f", then the same clean bags again, each with a shuriken or a razor blade laid "
            f"in at true size and nothing else changed ({', '.join(CONFUSER_KINDS)} in turn; "
            f"prohibited, not firearm parts), screened as clean bags (columns 'confusers')"
            if args.confusers
            else ""
        )
        + f", {args.size} px requested (a look's resolution rescales it), "
        f"the same seeds in every row. Held out: {held or 'nothing'}. False-alarm thresholds "
        f"are quantiles of the row's own clean parcels (below 100, 1% is the highest clean "
        f"score).",
        "",
        "| style | held out | detection at 1% FA | at 5% FA | AUC | box hit (all) | "
        "box hit at 1% FA | seconds |"
        + (" whole image: det. 1% / 5% FA, AUC |" if args.whole_image else "")
        + (
            " confusers: det. 1% / 5% FA, AUC |"
            + (" confusers, whole image: det. 1% / 5% FA, AUC |" if args.whole_image else "")
            if args.confusers
            else ""
        ),
        "|---|---|---|---|---|---|---|---|"
        + ("---|" if args.whole_image else "")
        + ("---|" * (1 + args.whole_image) if args.confusers else ""),
    ]
    for r in results:
        extra = [r[k] for k in ("whole", "confuser", "whole_confuser") if k in r]
        lines.append(
            f"| {r['row']} | {'yes' if r['held_out'] else 'no'} | {r[0.01]['det']:.3f} | "
            f"{r[0.05]['det']:.3f} | {r['auc']:.3f} | {r['hit_all']:.3f} | "
            f"{r[0.01]['hit']:.3f} | {r['seconds']:.0f} |"
            + "".join(
                f" {f[0.01]['det']:.3f} / {f[0.05]['det']:.3f}, {f['auc']:.3f} |" for f in extra
            )
        )
    if args.quick:
        lines += [
            "",
            "Smoke run (--quick): too few parcels for figures; it shows the harness "
            "works, not how well screening transfers.",
        ]
    return "\n".join(lines)


def section_name(guns: str | None, results: list[dict], confusers: bool = False) -> str:
    """docs/benchmarks.md section: part, handgun or long-gun bags (against confuser bags too,
    or not), shipped models or one set of leave-out models (named by the families they never
    saw, so that each set keeps its own)."""
    held = [r["row"] for r in results if r["held_out"]]
    name = {None: "domain", "hand": "domain-guns", "long": "domain-long-guns"}[guns]
    name += "-confusers" if confusers else ""
    return name + ("-held-out-" + "-".join(held) if held else "")


def parser() -> argparse.ArgumentParser:
    """Command-line options (the gallery ones match ``benchmarks.xray_screening``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--held-out",
        nargs="+",
        metavar="FAMILY",
        help=f"held-out looks/scenes (looks: {', '.join(LOOKS)}; scenes: "
        f"{', '.join(SCENES)}); 'none' when the models were trained on every family "
        "(the shipped ones); default: all but default and classic",
    )
    p.add_argument("--positives", type=int, default=60)
    p.add_argument("--negatives", type=int, default=60)
    p.add_argument("--size", default="1600x1250", help="requested scan WxH")
    p.add_argument(
        "--long-guns",
        action="store_true",
        help="positives include rifles and shotguns (scenes other than classic)",
    )
    p.add_argument(
        "--guns",
        nargs="?",
        const="hand",
        choices=("hand", "long"),
        help="positives are whole guns (bags holding a gun): hand (or no value), a pistol or "
        "revolver at 25-45%% of the scan's side; long, a rifle or shotgun at true scale in a "
        "long carton or gun bag (no default row; the gallery gains long-gun references)",
    )
    p.add_argument(
        "--confusers",
        action="store_true",
        help="also screen the clean seeds again with a shuriken or razor blade in each bag "
        "(prohibited, not a firearm part): detection against those bags as well, on the "
        "rows as drawn (the clean columns are the run without this option)",
    )
    p.add_argument(
        "--whole-image",
        action="store_true",
        help="also score each scan by a whole-image search (gunmatch search --no-regions)",
    )
    p.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="parcel seeds: the reported ones, or validation ones for choosing settings",
    )
    p.add_argument("--only", nargs="+", metavar="ROW", help="screen only these rows")
    p.add_argument("--dump", help="write every scan's regions per row (JSON) for xray_fusion")
    p.add_argument("--gallery", help="screen with this gallery (its model and threat map)")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--threatmap", help="threat map directory (gunmatch train-threatmap)")
    p.add_argument("--refs-per-kind", type=int, default=4)
    p.add_argument("--benign-refs", type=int, default=2)
    p.add_argument("--augment", type=int, default=2)
    p.add_argument("--clutter-refs", type=int, default=0)
    p.add_argument("--crop", type=int, default=128)
    add_regions_arg(p)
    p.add_argument("--score-mode", choices=("match", "margin"), default=ScreeningConfig.score_mode)
    p.add_argument("--score-k", type=int, default=ScreeningConfig.score_k)
    p.add_argument("--map-weight", type=float, default=ScreeningConfig.map_weight)
    add_map_size_args(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 4 + 4 parcels per row at 640x500, a small gallery",
    )
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md section")
    return p


QUICK = {
    "positives": 4,
    "negatives": 4,
    "size": "640x500",
    "refs_per_kind": 2,
    "benign_refs": 1,
    "augment": 0,
}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = parser()
    args = p.parse_args(argv)
    if args.quick:  # smaller defaults; options given on the command line still win
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = begun()
    results = run(args)
    text = markdown(args, results, command_line("benchmarks.xray_domain", argv), started)
    publish(text, section_name(args.guns, results, args.confusers), args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
