"""Photo recipe choices made on a validation split of gallery/ only (issue #15).

queries/ is never read here. Three steps:

    # 1. a grouped 80/20 split of gallery/ (near-copies on one side), as symlink folders
    .venv/bin/python -m benchmarks.photo_validation split DATA/gallery runs/split
    # 2. train on the train part with gunmatch train's defaults
    .venv/bin/gunmatch train runs/split/train --out runs/split-model --threads 2
    # 3a. search-time steps on the validation part: flips, object crops, re-ranking
    .venv/bin/python -m benchmarks.photo_validation search runs/split-model runs/split
    # the time budget: gunmatch train on the first 125 images of each label (500)
    .venv/bin/python -m benchmarks.photo_validation subset DATA/gallery runs/500 --per-label 125
    # 3b. schedule lengths and other settings ("base", "input_size", "freeze_blocks",
    #     "aug_passes" and "last_stride" too):
    #     variants on one cache of frozen features per cache setting, mean over splits
    .venv/bin/python -m benchmarks.photo_validation schedule DATA/gallery \\
        --variants '[{"epochs": 6}, {"epochs": 12, "freeze_blocks": 6}]' --split-seeds 0,1

Each step prints JSON lines; the choices and their figures are in benchmarks/notes/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from gunmatch.allocator import hold_freed_memory
from matcher import load_model
from matcher.images import load_image
from matcher.model import with_preprocess
from matcher.pooling import l2_normalize
from matcher.preprocess import letterbox_box, photo_to_rgb, preprocess
from training.data import (
    Sample,
    assign_groups,
    co_labels,
    grouped_split,
    load_images,
    scan_folders,
)
from training.features import cache_views
from training.fit import fit
from training.train import (
    PHOTO_INPUT_SIZE,
    TrainConfig,
    decode_side,
    photo_fit,
    prepare_model,
)
from training.trunk import blocks

VAL_FRACTION = 0.2


def load_grouped(gallery: Path) -> tuple[list[Sample], list[Image.Image]]:
    """gallery/'s samples and images, decoded and grouped as train() does it at 288 px."""
    samples, images = load_images(scan_folders(gallery), decode_side(PHOTO_INPUT_SIZE))
    assign_groups(samples, images)
    return samples, images


def write_split(gallery: Path, out: Path, seed: int = 0) -> dict:
    """``out/train/<label>/`` and ``out/val/<label>/``: symlinks to gallery/'s images."""
    samples, _ = load_grouped(gallery)
    train_idx, val_idx = grouped_split(samples, VAL_FRACTION, seed)
    for part, idx in (("train", train_idx), ("val", val_idx)):
        for i in idx:
            link = out / part / samples[i].label / samples[i].path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(samples[i].path.resolve())
    return {"train": len(train_idx), "val": len(val_idx), "seed": seed}


def write_subset(gallery: Path, out: Path, per_label: int) -> int:
    """``out/<label>/``: symlinks to the first ``per_label`` images of each label (sorted by
    name), the data set of the training-time budget (500 images: 125 per label of 4)."""
    n = 0
    for label_dir in sorted(p for p in gallery.iterdir() if p.is_dir()):
        for path in sorted(p for p in label_dir.iterdir() if p.is_file())[:per_label]:
            link = out / label_dir.name / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(path.resolve())
            n += 1
    return n


def activation_box(img: Image.Image, fmap: torch.Tensor, size: int) -> tuple[int, ...]:
    """The box of the trunk's above-mean activations (letterboxed frame -> image pixels),
    with a 10% margin; the whole image where the box is degenerate."""
    energy = fmap.clamp(min=0).pow(2).sum(0).sqrt().numpy()
    ys, xs = np.nonzero(energy > energy.mean())
    if not len(xs):  # flat activations: no object stands out
        return (0, 0, img.width, img.height)
    nw, _, left, top = letterbox_box(img.width, img.height, size)
    sx, sy = size / energy.shape[1], size / energy.shape[0]
    scale = img.width / nw
    x0, x1 = (xs.min() * sx - left) * scale, ((xs.max() + 1) * sx - left) * scale
    y0, y1 = (ys.min() * sy - top) * scale, ((ys.max() + 1) * sy - top) * scale
    mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    box = (
        int(max(0, x0 - mx)),
        int(max(0, y0 - my)),
        int(min(img.width, x1 + mx)),
        int(min(img.height, y1 + my)),
    )
    if box[2] - box[0] < 16 or box[3] - box[1] < 16:
        return (0, 0, img.width, img.height)
    return box


def embed_views(model_dir: Path, folder: Path) -> dict[str, np.ndarray]:
    """Per image of ``folder/<label>/``: the plain, mirrored and activation-crop embeddings."""
    model = load_model(model_dir).eval()
    cfg = model.config.preprocess

    def run(images: list[Image.Image]) -> tuple[np.ndarray, torch.Tensor]:
        x = torch.stack([preprocess(im, "photo", cfg) for im in images])
        with torch.inference_mode():
            fmap = model.backbone.features(x)
            v = model.pool(fmap)
            v = model.head(v) if model.head is not None else v
        return l2_normalize(v).numpy(), fmap

    out: dict[str, list] = {"plain": [], "flip": [], "crop": [], "labels": []}
    for s in scan_folders(folder):
        img = photo_to_rgb(load_image(s.path))
        v, fmap = run([img, ImageOps.mirror(img)])
        crop, _ = run([img.crop(activation_box(img, fmap[0], cfg.input_size))])
        for key, val in (("plain", v[0]), ("flip", v[1]), ("crop", crop[0])):
            out[key].append(val)
        out["labels"].append(s.label)
    return {k: np.asarray(v) for k, v in out.items()}


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def label_vote(sim: np.ndarray, g_labels: np.ndarray, k: int, tau: float) -> np.ndarray:
    """Each query's label by a softmax-weighted vote of its k nearest references."""
    idx = np.argsort(-sim, axis=1)[:, :k]
    top = np.take_along_axis(sim, idx, 1)
    weights = np.exp((top - top[:, :1]) / tau)
    labels = np.unique(g_labels)
    votes = np.stack([(weights * (g_labels[idx] == lab)).sum(1) for lab in labels], 1)
    return labels[votes.argmax(1)]


def prototype_fusion(sim, q, g, g_labels, lam: float) -> np.ndarray:
    """sim(q, r) + lam * sim(q, mean of r's label): the reference's class as a prior."""
    labels = np.unique(g_labels)
    means = unit(np.stack([g[g_labels == lab].mean(0) for lab in labels]))
    col = np.searchsorted(labels, g_labels)
    return sim + lam * (q @ means.T)[:, col]


def query_expansion(q, g, k: int, alpha: float) -> np.ndarray:
    """alpha-QE: the query plus its k nearest references weighted by sim**alpha, re-searched."""
    sim = q @ g.T
    idx = np.argsort(-sim, axis=1)[:, :k]
    w = np.take_along_axis(sim, idx, 1).clip(0) ** alpha
    return unit(q + (w[..., None] * g[idx]).sum(1)) @ g.T


def database_augmentation(g, k: int) -> np.ndarray:
    """DBA: each reference replaced by the similarity-weighted mean of its k nearest."""
    sim = g @ g.T
    idx = np.argsort(-sim, axis=1)[:, :k]
    w = np.take_along_axis(sim, idx, 1).clip(0)
    return unit((w[..., None] * g[idx]).sum(1))


def search_table(model_dir: Path, split: Path) -> list[dict]:
    """Top-1 on the validation part for each query/reference view and search-time step."""
    g, q = embed_views(model_dir, split / "train"), embed_views(model_dir, split / "val")
    gl, ql = g["labels"], q["labels"]
    views = {
        "plain": ("plain",),
        "flip TTA": ("plain", "flip"),
        "crop + plain": ("plain", "crop"),
        "crop + flip TTA": ("plain", "flip", "crop"),
        "crop only": ("crop",),
    }
    rows = []
    for name, keys in views.items():
        gv, qv = unit(sum(g[k] for k in keys)), unit(sum(q[k] for k in keys))
        sim = qv @ gv.T

        def top1(s: np.ndarray) -> float:
            return float(np.mean(gl[s.argmax(1)] == ql))

        row = {"views": name, "val": len(ql), "nearest": top1(sim)}
        for k, tau in ((5, 0.05), (10, 0.05), (10, 0.1), (20, 0.1)):
            row[f"vote k{k} tau{tau}"] = float(np.mean(label_vote(sim, gl, k, tau) == ql))
        for lam in (0.5, 1.0, 2.0):
            row[f"prototype {lam}"] = top1(prototype_fusion(sim, qv, gv, gl, lam))
        for k in (3, 5, 10):
            row[f"alpha-QE k{k}"] = top1(query_expansion(qv, gv, k, 3.0))
        for k in (3, 5):
            row[f"DBA k{k}"] = top1(qv @ database_augmentation(gv, k).T)
        rows.append(row)
    return rows


def with_last_stride_one(model, frozen: int):
    """``model`` with its last stride-2 block at stride 1 (padded to keep the size): the
    trained blocks after it see twice the resolution on each side, the frozen ones the same
    input (so their cached outputs still serve)."""
    mb = blocks(model)
    i = max(j for j, b in enumerate(mb) if tuple(b._depthwise_conv.stride) == (2, 2))
    if i < frozen:
        raise ValueError(f"the last stride-2 block ({i}) is frozen; freeze fewer than {i + 1}")
    conv = mb[i]._depthwise_conv
    conv.stride = (1, 1)
    conv.static_padding = nn.ZeroPad2d(conv.kernel_size[0] // 2)
    return model


def schedule_rows(gallery: Path, variants: list[dict], seeds: list[int], threads: int):
    """Validation top-1 per epoch of each fit variant (FitConfig changes, ``base``,
    ``input_size``, ``freeze_blocks``, ``aug_passes`` and ``last_stride`` 1 or 2), mean over
    splits, on one cache of frozen features per backbone, input size, frozen-block count and
    number of augmented views (gunmatch train's defaults otherwise)."""
    for variant in variants:  # before the images are read
        if variant.get("last_stride", 2) not in (1, 2):
            raise ValueError(f"last_stride is 1 or 2, not {variant['last_stride']!r}")
    torch.set_num_threads(threads)
    cfg = TrainConfig(out="")
    samples, images = load_grouped(gallery)  # grouped (so split) once, as for 288 px
    labels_sorted = sorted({s.label for s in samples})
    labels = np.array([labels_sorted.index(s.label) for s in samples])
    copies = co_labels(samples, {lab: i for i, lab in enumerate(labels_sorted)})

    def fresh_model(base: str, size: int):
        return with_preprocess(prepare_model(base, None), input_size=size)

    cached_for, views = None, None
    for variant in variants:
        change = dict(variant)
        base = change.pop("base", cfg.base)
        size = change.pop("input_size", PHOTO_INPUT_SIZE)
        frozen = change.pop("freeze_blocks", cfg.freeze_blocks)
        passes = change.pop("aug_passes", cfg.aug_passes)
        last_stride = change.pop("last_stride", 2)
        if (base, size, frozen, passes) != cached_for:
            views = None  # one cache in memory at a time
            # decoded for the input size, as train() does (320 px up to 288)
            sized = images
            if decode_side(size) != decode_side(PHOTO_INPUT_SIZE):
                sized = load_images(samples, decode_side(size))[1]
            views = cache_views(
                fresh_model(base, size), sized, [s.modality for s in samples], frozen, passes, 0
            )
            del sized
            cached_for = (base, size, frozen, passes)
        curves, seconds = [], 0.0
        for seed in seeds:
            train_idx, val_idx = grouped_split(samples, VAL_FRACTION, seed)
            fc = replace(photo_fit(**change), patience=10**6)
            model = fresh_model(base, size)
            if last_stride == 1:
                model = with_last_stride_one(model, frozen)
            res = fit(model, views, labels, train_idx, val_idx, frozen, fc,
                      len(labels_sorted), None, False, copies)  # fmt: skip
            curves.append([h["val_top1"] for h in res.history])
            seconds += res.seconds
        yield {
            **variant,
            "split_seeds": seeds,
            "val_top1_per_epoch": [round(float(x), 3) for x in np.mean(curves, 0)],
            "last_per_split": [round(c[-1], 3) for c in curves],
            "fit_seconds": round(seconds, 1),
        }


def main(argv: list[str] | None = None) -> int:
    """Run one step and print its JSON lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)
    writers = {
        "split": ("write the grouped 80/20 split as symlink folders", "--seed", 0),
        "subset": ("the first N images of each label, as symlinks", "--per-label", 125),
    }
    for name, (text, option, default) in writers.items():
        w = sub.add_parser(name, help=text)
        w.add_argument("gallery", type=Path)
        w.add_argument("out", type=Path)
        w.add_argument(option, type=int, default=default)
    r = sub.add_parser("search", help="search-time steps on the validation part")
    r.add_argument("model", type=Path)
    r.add_argument("split", type=Path)
    r.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("schedule", help="fit variants on validation splits")
    c.add_argument("gallery", type=Path)
    c.add_argument("--variants", default='[{"epochs": 6}, {"epochs": 12}]')
    c.add_argument("--split-seeds", default="0")
    c.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    hold_freed_memory()  # as every gunmatch command does
    if args.step == "split":
        print(json.dumps(write_split(args.gallery, args.out, args.seed)))
    elif args.step == "subset":
        print(json.dumps({"images": write_subset(args.gallery, args.out, args.per_label)}))
    elif args.step == "search":
        torch.set_num_threads(args.threads)
        for row in search_table(args.model, args.split):
            print(json.dumps(row), flush=True)
    else:
        seeds = [int(x) for x in args.split_seeds.split(",")]
        for row in schedule_rows(args.gallery, json.loads(args.variants), seeds, args.threads):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
