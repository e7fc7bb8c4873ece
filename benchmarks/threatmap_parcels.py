"""Threat maps alone, at the parcel level: does the hottest cell tell parcels with a part?

Each scan's score is its map's highest logit, from one pass and from the average over the
scan and its mirror image (``ScreeningConfig.map_flip``). Parcels are the screening
benchmark's validation parcels (``--split val`` seeds), never the reported ones:

    python -m benchmarks.threatmap_parcels runs/threatmap --positives 120 --negatives 120
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.xray_screening import VAL_NEGATIVE_SEED, VAL_POSITIVE_SEED, rate_at
from matcher.threatmap import load_threatmap
from synth.shapes import THREAT_KINDS
from synth.xray import render_parcel
from training.xray.threatmap import ranking


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("maps", nargs="+", help="threat map directories")
    p.add_argument("--positives", type=int, default=120)
    p.add_argument("--negatives", type=int, default=120)
    p.add_argument("--size", default="1600x1250", help="scan WxH")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    maps = {d: load_threatmap(d).use_onnx(args.threads) for d in args.maps}  # as screening runs it
    scores: dict[tuple[str, bool], list[float]] = {(d, f): [] for d in maps for f in (False, True)}
    n = args.positives + args.negatives
    positive = np.arange(n) < args.positives
    for i in tqdm(range(n), desc="parcels", unit="parcel"):
        kind = THREAT_KINDS[i % len(THREAT_KINDS)] if positive[i] else None
        seed = (VAL_POSITIVE_SEED if positive[i] else VAL_NEGATIVE_SEED) + i
        image = render_parcel(seed, size=size, threat_kind=kind).image
        for d, tmap in maps.items():
            for flip in (False, True):
                scores[(d, flip)].append(tmap.predict(image, flip=flip).best)
    print(f"{args.positives} parcels with a part, {args.negatives} without (validation seeds)\n")
    print("| map | passes | AUC | det. above highest clean | det. 1% FA | det. 5% FA |")
    print("|---|---|---|---|---|---|")
    for (d, flip), s in scores.items():
        a = np.array(s)
        r = ranking(a, positive)
        det1 = rate_at(a[positive], a[~positive], 0.01)[0]
        print(
            f"| {d} | {'scan + mirror' if flip else 'one'} | {r['auc']:.3f} "
            f"| {r['det_max_clean']:.3f} | {det1:.3f} | {r['det_5']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
