"""Turn trained X-ray models into artifacts the project ships: compact, carded, with goldens.

A shipped threat map keeps only its head, in float16 (the trunk is the bundled ImageNet
Lite0); a shipped retrieval model keeps only the tensors that differ from the bundled trunk,
in float16. Each gets ``card.json`` (the command that trained it, seeds, the generator's
version, a hash of its training data, validation metrics measured on the shipped, rounded
weights where they can be) and ``golden.json`` (its outputs on a fixed generated scan, which
a test recomputes).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

import synth
from matcher import Embedder, load_checkpoint
from matcher.model import EmbeddingModel, save_delta
from matcher.preprocess import grey_to_tensor, letterbox_grey
from matcher.threatmap import ThreatMap, ensemble_threatmaps, load_threatmap, save_threatmap
from synth.shapes import PART_KINDS
from synth.styles import StyleSampler
from synth.xray import render_isolated, render_parcel
from training.xray.head import TRAIN_SEED as XRAY_TRAIN_SEED
from training.xray.styled import training_parcel
from training.xray.threatmap import (
    TRAIN_SEED,
    VAL_SEED,
    build_cache,
    parcel_plan,
    ranking,
    scan_scores,
)

GOLDEN_SEED = 91_000_000  # the fixed generated scan of the golden outputs
GOLDEN_SIZE = (800, 640)
GOLDEN_KIND = "slide"
GOLDEN_CELLS = ((0.25, 0.25), (0.5, 0.5), (0.75, 0.4), (0.3, 0.8))  # (x, y) fractions
HASHED_RENDERS = 16  # training images hashed into a card's data hash


def generator_version() -> str:
    """SHA-256 (16 hex) of the generator's source: changes whenever its output may change."""
    h = hashlib.sha256()
    for path in sorted(Path(synth.__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def data_hash(plan: object, images: Iterable[np.ndarray]) -> str:
    """SHA-256 of a training plan (JSON) and the first rendered training images (uint16)."""
    h = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode())
    for image in images:
        h.update(np.round(np.clip(image, 0, 1) * 65535).astype("<u2").tobytes())
    return h.hexdigest()


def golden_scan() -> np.ndarray:
    """The fixed generated parcel (a slide inside) the golden outputs are measured on."""
    return render_parcel(GOLDEN_SEED, size=GOLDEN_SIZE, threat_kind=GOLDEN_KIND).image


def threatmap_golden(tmap: ThreatMap) -> dict:
    """The map's logits on the golden scan: shape, max, mean and a few cells (eager torch)."""
    result = tmap.predict(golden_scan())
    rows, cols = result.logits.shape
    cells = [result.logits[int(y * rows), int(x * cols)] for x, y in GOLDEN_CELLS]
    return {
        "scan": {"seed": GOLDEN_SEED, "size": list(GOLDEN_SIZE), "kind": GOLDEN_KIND},
        "shape": [rows, cols],
        "max": float(result.logits.max()),
        "mean": float(result.logits.mean()),
        "cells": [float(c) for c in cells],
    }


def model_golden(model: EmbeddingModel) -> dict:
    """The model's embedding of a fixed isolated render: its first values and its top cosine."""
    size = model.config.preprocess.input_size
    t = render_isolated(GOLDEN_KIND, GOLDEN_SEED, 128).transmission
    batch = grey_to_tensor(letterbox_grey(t, size), model.config.preprocess)[None]
    vec = Embedder(model, batch_size=1).embed_tensors(batch)[0]
    return {
        "render": {"kind": GOLDEN_KIND, "seed": GOLDEN_SEED, "side": 128},
        "dim": int(vec.shape[0]),
        "first": [float(v) for v in vec[:8]],
    }


def _write(out: Path, card: dict, golden: dict) -> dict:
    (out / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    (out / "golden.json").write_text(json.dumps(golden, indent=2) + "\n")
    return card


def trained_styles(cfg: dict) -> StyleSampler | None:
    """The style sampler a training config (``ThreatMapTrainConfig`` as JSON) ran with."""
    styles = cfg.get("styles")
    if not styles:
        return None
    return StyleSampler(**{**styles, "exclude": tuple(styles.get("exclude", ()))})


def ship_threatmap(
    src: str | Path | list[str | Path],
    out: str | Path,
    command: str,
    progress: bool = True,
    shares: list[float] | None = None,
) -> dict:
    """Store a trained map's head in float16 under ``out``, re-measured, carded, with goldens.

    Several maps make one ensemble (``ensemble_threatmaps``: their logits averaged, weighted
    by ``shares`` when given); its card keeps each member's and is re-measured on the default
    generator's held-out parcels.
    """
    out = Path(out)
    srcs = [Path(p) for p in src] if isinstance(src, list) else [Path(src)]
    if shares is not None and len(srcs) == 1:  # ensemble_threatmaps checks the shares
        raise ValueError("shares weigh the maps of an ensemble: give several maps")
    if len(srcs) == 1:
        trained = load_threatmap(srcs[0])
        train_card = trained.card
        cfg = train_card.get("config", {})
        members = None
    else:
        trained = ensemble_threatmaps([load_threatmap(p) for p in srcs], shares)
        train_card = trained.card
        cfg = {}
        members = [m["map_id"] for m in train_card["members"]]
    save_threatmap(trained, out, card=train_card, half=True)
    shipped = load_threatmap(out)
    n_val = int(train_card.get("val_parcels", 160))
    clean_every = int(cfg.get("clean_every", 3))
    size = tuple(cfg.get("parcel_size", (1600, 1250)))
    styles = trained_styles(cfg)  # held-out parcels and hashed data as the map was trained
    val = build_cache(shipped, parcel_plan(n_val, clean_every, VAL_SEED), size, progress,
                      "held-out parcels (shipped weights)", styles)  # fmt: skip
    positive = np.array([k != "" for k in val.kinds])
    if members is None:
        plan = parcel_plan(int(train_card.get("parcels", 2400)), clean_every, TRAIN_SEED)
        renders = (training_parcel(s, size, k, styles)[1] for s, k in plan[:HASHED_RENDERS])
    else:  # an ensemble's data are its members' (each card holds its own data hash)
        plan, renders = {"members": members}, iter(())
    card = {
        "name": out.name,
        "kind": "xray-threatmap",
        "map_id": shipped.map_id,
        "command": command,
        "ship_command": f"gunmatch model ship {' '.join(map(str, srcs))} --name {out.name}"
        + (f" --shares {' '.join(f'{x:g}' for x in shares)}" if shares else ""),
        "seeds": {"train": TRAIN_SEED, "val": VAL_SEED, "torch": cfg.get("seed", 0)},
        "generator": generator_version(),
        "data_hash": data_hash({"plan": plan, "size": size}, renders),
        "data_hash_covers": f"the training plan and its first {HASHED_RENDERS} parcels"
        if members is None
        else "the member maps' ids",
        "metrics": {
            "val": ranking(scan_scores(shipped, val), positive),
            "val_parcels": n_val,
            "val_styles": cfg.get("styles"),
            "weights": "float16 head, as shipped",
        },
        "training": {
            k: train_card.get(k)
            for k in ("best_epoch", "parcels", "total_s", "config", "val", "members", "init_map_id")
            if k in train_card
        },
        "shipped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return _write(out, card, threatmap_golden(shipped))


def ship_model(src: str | Path, out: str | Path, command: str) -> dict:
    """Store a trained X-ray retrieval model as its float16 difference from the bundled trunk."""
    out = Path(out)
    trained = load_checkpoint(src)
    train_card = trained.card
    save_delta(trained, out, card=train_card)
    shipped = load_checkpoint(out)
    size = int(train_card.get("config", {}).get("crops", {}).get("input_size", 112))
    kinds = sorted(train_card.get("labels", []))
    renders = (
        render_isolated(k, XRAY_TRAIN_SEED, 128).transmission for k in kinds if k in PART_KINDS
    )
    card = {
        "name": out.name,
        "kind": train_card.get("kind", "xray-model"),
        "model_id": shipped.model_id,
        "command": command,
        "ship_command": f"gunmatch model ship {src} --name {out.name}",
        "seeds": {
            "train": XRAY_TRAIN_SEED,
            "torch": train_card.get("config", {}).get("fit", {}).get("seed"),
        },
        "generator": generator_version(),
        "data_hash": data_hash(
            {"config": train_card.get("config"), "labels": kinds, "input_size": size},
            renders,
        ),
        "data_hash_covers": "the training config, its labels and one isolated render per label",
        "metrics": {
            "val": train_card.get("fit", {}),
            "weights": "float32 training weights (the golden test checks the float16 ones)",
        },
        "training": {k: train_card.get(k) for k in ("samples", "seconds", "class_counts")},
        "size_bytes": sum(f.stat().st_size for f in out.iterdir()),
        "shipped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with torch.no_grad():
        golden = model_golden(shipped)
    return _write(out, card, golden)


__all__ = [
    "GOLDEN_SEED",
    "data_hash",
    "generator_version",
    "golden_scan",
    "model_golden",
    "ship_model",
    "ship_threatmap",
    "threatmap_golden",
]
