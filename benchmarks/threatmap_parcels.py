"""Threat maps alone, at the parcel level: does the hottest cell tell parcels with a part?

Each scan's score is its map's highest logit, from one pass and from the average over the
scan and its mirror image (``--views 1 2``, the default; ``--one-pass`` is ``--views 2``;
``--views 4`` adds both upside down, ``ScreeningConfig.map_views``). Parcels are the screening
benchmark's validation parcels (``--split val`` seeds), never the reported ones:

    python -m benchmarks.threatmap_parcels runs/threatmap --positives 120 --negatives 120

``--styles`` renders each parcel in a scanner style drawn for its seed (every look and scene
of ``synth.styles``) and decodes its station export as the service decodes an upload;
``--guns`` puts a whole pistol or revolver at 25-45% of the side in each positive.
``--confusers`` renders the clean seeds again with a shuriken or a razor blade in each bag
(``StyleSampler.threat_for``, in any scene) and rates the maps against those bags too
(columns "vs confusers").
``--zooms`` lists the sizes to try, each a comma-separated set of multiples of the map's own
(``ScreeningConfig.map_zooms``; ``--zooms 1 1.333 1,1.333``: 960 px, 1280 px, both).
``--shares`` with two maps also scores their ensembles (``gunmatch model ship A B --shares
S 1-S``) from each map's logits, one row per share S of the first map:

    python -m benchmarks.threatmap_parcels models/threatmap-v1 models/threatmap-v3 \
        --one-pass --styles --guns --shares 0 0.3 0.4 0.5 1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.xray_domain import GUN_SCALE, HANDGUNS, PART_SCALE, scan_png
from benchmarks.xray_screening import (
    VAL_NEGATIVE_SEED,
    VAL_POSITIVE_SEED,
    VIEWS_TEXT,
    rate_at,
    scan_size,
)
from gunmatch.allocator import hold_freed_memory
from matcher.images import DEFAULT_MAX_PIXELS
from matcher.preprocess import PreprocessConfig
from matcher.threatmap import MAP_VIEWS, load_threatmap
from screening.screen import load_transmission
from synth.shapes import THREAT_KINDS
from synth.styles import DEFAULT, StyleSampler, get_style
from training.xray.threatmap import ranking


def parcel_image(
    seed: int,
    size,
    kind: str | None,
    styles: StyleSampler | None,
    guns: bool,
    confuser: bool = False,
):
    """The scan a map sees: today's render, or a styled station export decoded as uploads are
    (with ``confuser``, a clean seed's bag holding a shuriken or razor blade)."""
    style = styles.for_seed(seed) if styles is not None else None
    if confuser:
        kind = StyleSampler(confusers=1.0).threat_for(seed, None, style or get_style(DEFAULT))
    scale = GUN_SCALE if guns else PART_SCALE
    parcel, data = scan_png(seed, size, kind, style, scale)
    if style is None:
        return parcel.image
    return load_transmission(data, DEFAULT_MAX_PIXELS, PreprocessConfig().xray_white_percentile)


def plan(positives: int, negatives: int, confusers: bool) -> list[tuple[str, int]]:
    """Each parcel's group ("threat", "clean", "confuser") and seed: validation seeds, and
    with ``confusers`` the clean seeds once more."""
    threat = [("threat", VAL_POSITIVE_SEED + i) for i in range(positives)]
    clean = [("clean", VAL_NEGATIVE_SEED + positives + i) for i in range(negatives)]
    return threat + clean + [("confuser", seed) for _, seed in clean if confusers]


def against(scores: np.ndarray, threat: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    """``ranking`` of the threat parcels against the ``negative`` ones, plus detection at 1%
    false alarms (``det_1``)."""
    both = threat | negative
    out = ranking(scores[both], threat[both])
    out["det_1"] = rate_at(scores[threat], scores[negative], 0.01)[0]
    return out


def mixed_best(first: list[np.ndarray], second: list[np.ndarray], share: float) -> np.ndarray:
    """Each scan's hottest cell of ``share`` x the first map's logits + the rest x the second's
    (an ensemble's logits, ``matcher.threatmap.ensemble_threatmaps``)."""
    return np.array(
        [(share * a + (1.0 - share) * b).max() for a, b in zip(first, second, strict=True)]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("maps", nargs="+", help="threat map directories")
    p.add_argument("--positives", type=int, default=120)
    p.add_argument("--negatives", type=int, default=120)
    p.add_argument("--size", default="1600x1250", help="scan WxH")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--styles", action="store_true", help="parcels in scanner styles")
    p.add_argument("--guns", action="store_true", help="whole handguns at 25-45%% of the side")
    p.add_argument(
        "--confusers",
        action="store_true",
        help="also the clean seeds with a shuriken or razor blade in each bag",
    )
    p.add_argument("--one-pass", action="store_true", help="only the mirror pass (--views 2)")
    p.add_argument(
        "--views",
        type=int,
        nargs="+",
        choices=MAP_VIEWS,
        default=[1, 2],
        help="views averaged, one row each (1: the scan; 2: and its mirror; 4: and both "
        "upside down); --shares mixes the last",
    )
    p.add_argument(
        "--shares",
        type=float,
        nargs="+",
        help="with two maps: also their ensembles, this share of the first map's logits",
    )
    p.add_argument(
        "--zooms",
        nargs="+",
        default=["1"],
        metavar="Z[,Z...]",
        help="sizes the maps run at, one row each: comma-separated multiples of their own",
    )
    args = p.parse_args(argv)
    if args.shares and (len(args.maps) != 2 or not all(0 <= x <= 1 for x in args.shares)):
        p.error("--shares needs two maps and shares between 0 and 1")
    try:
        zoom_sets = [tuple(float(z) for z in zs.split(",")) for zs in args.zooms]
    except ValueError:
        p.error("--zooms takes comma-separated numbers, e.g. 1 1.333 1,1.333")
    if args.shares and zoom_sets != [(1.0,)]:
        p.error("--shares mixes maps at their own size only")
    styles = StyleSampler(()) if args.styles else None
    passes = [2] if args.one_pass else args.views
    torch.set_num_threads(args.threads)
    hold_freed_memory()  # as every gunmatch command does
    size = scan_size(args)
    maps = {d: load_threatmap(d).use_onnx(args.threads) for d in args.maps}  # as screening runs it
    runs = [(d, f, z) for d in maps for f in passes for z in zoom_sets]
    scores: dict[tuple[str, int, tuple], list[float]] = {r: [] for r in runs}
    grids: dict[str, list[np.ndarray]] = {d: [] for d in maps}  # the last views, for --shares
    parcels = plan(args.positives, args.negatives, args.confusers)
    group = np.array([g for g, _ in parcels])
    kinds = HANDGUNS if args.guns else THREAT_KINDS
    for i, (g, seed) in enumerate(tqdm(parcels, desc="parcels", unit="parcel")):
        kind = kinds[i % len(kinds)] if g == "threat" else None
        image = parcel_image(seed, size, kind, styles, args.guns, g == "confuser")
        for d, views, zooms in runs:
            hot = maps[d].predict(image, views=views, zooms=zooms)
            scores[(d, views, zooms)].append(hot.best)
            if views == passes[-1] and args.shares:
                grids[d].append(hot.logits)
    what = "a whole handgun" if args.guns else "a part"
    look = ", styled" if args.styles else ""
    again = ", then the clean seeds with a confuser in each bag" if args.confusers else ""
    print(f"{args.positives} parcels with {what}, {args.negatives} without{again}")
    print(f"(validation seeds{look})\n")
    vs = " vs confusers: AUC, det. 1% / 5% FA |" if args.confusers else ""
    print(f"| map | passes | AUC | det. above highest clean | det. 1% FA | det. 5% FA |{vs}")
    print("|---|---|---|---|---|---|" + ("---|" if args.confusers else ""))
    rows = {
        (d + (f" at {'+'.join(f'{z:g}' for z in zooms)}" if len(zoom_sets) > 1 else ""),
         VIEWS_TEXT[views]): np.array(s)
        for (d, views, zooms), s in scores.items()
    }  # fmt: skip
    first, second = args.maps if args.shares else ("", "")
    for share in args.shares or []:
        name = f"{share:g} x {first} + {1 - share:g} x {second}"
        rows[(name, VIEWS_TEXT[passes[-1]])] = mixed_best(grids[first], grids[second], share)
    threat = group == "threat"
    for (d, how), a in rows.items():
        r = against(a, threat, group == "clean")
        line = f"| {d} | {how} | {r['auc']:.3f} | {r['det_max_clean']:.3f} | {r['det_1']:.3f} "
        line += f"| {r['det_5']:.3f} |"
        if args.confusers:
            c = against(a, threat, group == "confuser")
            line += f" {c['auc']:.3f}, {c['det_1']:.3f} / {c['det_5']:.3f} |"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
