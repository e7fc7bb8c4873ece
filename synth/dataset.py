"""Write synthetic reference sets (folder per label) and labelled parcel sets to disk."""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from synth.detector import pseudo_colour, to_uint8, to_uint16
from synth.parcel import render_parcel
from synth.photo import render_photo
from synth.shapes import PART_KINDS, THREAT_KINDS, any_kind, part_kind
from synth.styles import ScannerStyle, StyleSampler, get_style
from synth.xray import render_isolated

MODALITIES: tuple[str, ...] = ("xray", "xray_colour", "photo")
PARCEL_FORMATS: tuple[str, ...] = ("gray8", "gray16", "colour")
LABELS_CSV, LABELS_JSONL = "labels.csv", "labels.jsonl"
DETECTOR_NOISE, DETECTOR_BLUR = 0.008, 0.6


def derive_seed(seed: int, *keys: str | int) -> int:
    """Stable 63-bit seed for one item from a base seed and identifying keys."""
    words = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _kinds(kinds: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    out = list(default if kinds is None else kinds)
    if not out:
        raise ValueError("no kinds given")
    for k in out:
        part_kind(k)
    return out


def write_reference_set(out_dir: str | Path, kinds: Sequence[str] | None = None,
                        per_kind: int = 4, modality: str = "xray", seed: int = 0,
                        size: int = 256) -> list[Path]:
    """Write ``out_dir/<kind>/<kind>_<i>.png`` for each kind; returns the written paths."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {MODALITIES}")
    if per_kind < 1:
        raise ValueError("per_kind must be at least 1")
    out = Path(out_dir)
    paths: list[Path] = []
    for kind in _kinds(kinds, list(PART_KINDS)):
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            s = derive_seed(seed, kind, i, modality)
            if modality == "photo":
                img = render_photo(kind, s, size)
            else:
                scan = render_isolated(kind, s, size)
                if modality == "xray":
                    noise_rng = np.random.default_rng(s + 1)
                    img = Image.fromarray(to_uint8(scan.transmission, noise_rng,
                                                   noise=DETECTOR_NOISE, blur_sigma=DETECTOR_BLUR))
                else:
                    img = Image.fromarray(scan.colour())
            path = folder / f"{kind}_{i}.png"
            img.save(path)
            paths.append(path)
    return paths


def _encode(parcel, fmt: str, rng: np.random.Generator) -> Image.Image:
    if fmt == "gray8":
        return Image.fromarray(to_uint8(parcel.image, rng, noise=DETECTOR_NOISE,
                                        blur_sigma=DETECTOR_BLUR))
    if fmt == "gray16":
        return Image.fromarray(to_uint16(parcel.image, rng, noise=DETECTOR_NOISE,
                                         blur_sigma=DETECTOR_BLUR))
    return Image.fromarray(pseudo_colour(parcel.image, parcel.low))


StyleChoice = str | ScannerStyle | Callable[[np.random.Generator], ScannerStyle] | None


def _style_for(style: StyleChoice, seed: int) -> ScannerStyle | None:
    """A fixed style, or one drawn for this parcel by a sampler (``synth.styles.StyleSampler``)."""
    if style is None or isinstance(style, (str, ScannerStyle)):
        return None if style is None else get_style(style)
    return style.for_seed(seed) if isinstance(style, StyleSampler) \
        else style(np.random.default_rng([seed, 3]))


def write_parcel_set(out_dir: str | Path, n_with: int, n_without: int, seed: int = 0,
                     kinds: Sequence[str] | None = None, *, size: tuple[int, int] = (1600, 1250),
                     fmt: str = "gray8", style: StyleChoice = None) -> Path:
    """Write parcel scans plus ``labels.csv`` and ``labels.jsonl``; returns ``out_dir``.

    Positives cycle through ``kinds`` (default: all threat kinds); the order of
    positives and negatives is shuffled deterministically.  One CSV row per box
    (one row with empty box fields for a clean parcel).

    ``style`` (a preset name, a ``ScannerStyle``, or a sampler called with each parcel's
    generator) renders parcels as that scanner style; a styled parcel is written as its
    scanner exports it (``fmt`` then applies to default-style parcels only) and its labels
    name the style.
    """
    if fmt not in PARCEL_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {PARCEL_FORMATS}")
    if n_with < 0 or n_without < 0 or n_with + n_without == 0:
        raise ValueError("need a non-negative number of parcels, at least one in total")
    threat_kinds = [any_kind(k).key for k in kinds] if kinds else _kinds(kinds, THREAT_KINDS)
    plan: list[str | None] = [threat_kinds[i % len(threat_kinds)] for i in range(n_with)]
    plan += [None] * n_without
    order = np.random.default_rng(derive_seed(seed, "order")).permutation(len(plan))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for idx, j in enumerate(order):
        kind = plan[j]
        s = derive_seed(seed, "parcel", idx)
        chosen = _style_for(style, s)
        parcel = render_parcel(s, size=size, threat_kind=kind, style=chosen)
        name = f"parcel_{idx:05d}.png"
        if parcel.export is not None:
            Image.fromarray(parcel.export).save(out / name)
        else:
            _encode(parcel, fmt, np.random.default_rng(s + 1)).save(out / name)
        height, width = parcel.image.shape
        record = {
            "file": name, "threat_kind": kind or "",
            "category": any_kind(kind).category if kind else "",
            "width": width, "height": height, "container": parcel.container,
            "boxes": [b.to_dict() for b in parcel.boxes],
        }
        if style is not None:
            record["style"] = parcel.style
        records.append(record)
    with open(out / LABELS_JSONL, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with open(out / LABELS_CSV, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "threat_kind", "category", "x", "y", "w", "h"])
        for rec in records:
            rows = rec["boxes"] or [None]
            for b in rows:
                box = [b["x"], b["y"], b["w"], b["h"]] if b else ["", "", "", ""]
                writer.writerow([rec["file"], rec["threat_kind"], rec["category"], *box])
    return out
