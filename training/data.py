"""Training samples from labelled folders or from a gallery plus analyst feedback, and
grouped splits that keep copies and near-copies of one source on the same side."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from matcher.images import is_image_path, load_image

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One training image: where it came from, its label and the group it splits with."""

    path: Path
    label: str
    modality: str = "photo"
    group: str = ""
    # Labels this image is known NOT to match (rejected feedback): hard negatives.
    negatives: list[str] = field(default_factory=list)


def scan_folders(root: str | Path, modality: str = "photo") -> list[Sample]:
    """``root/<label>/<image>`` -> samples (sorted, so runs are reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    samples = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.rglob("*")):
            if f.is_file() and is_image_path(f):
                samples.append(Sample(f, label_dir.name, modality))
    if not samples:
        raise ValueError(f"no images found under {root}/<label>/")
    return samples


def dhash(img: Image.Image, size: int = 8) -> int:
    """Difference hash of a small grey thumbnail (64 bits for size 8)."""
    grey = np.asarray(img.convert("L").resize((size + 1, size), Image.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


# Copy markers only: " (1)", "_copy", "-copy2", "copy of x", Roboflow ".rf.<hash>", "x_jpg".
# Plain trailing numbers stay: IMG_0001 and IMG_0002 are different photos.
_COPY_SUFFIX = re.compile(
    r"(\.rf\.[0-9a-f]+|\s*\(\d{1,3}\)|[_\-\s]*(copy|kopie)[_\-\s]*\d{0,3}|_(jpe?g|png|webp))+$",
    re.I,
)
_COPY_PREFIX = re.compile(r"^(copy of\s+)+", re.I)


def stem_key(path: Path) -> str:
    """File stem with copy markers stripped ("x (1)", "x_copy2", Roboflow ".rf.<hash>")."""
    stem = path.stem.lower()
    key = _COPY_PREFIX.sub("", _COPY_SUFFIX.sub("", stem))
    return key or stem


def near_copy_roots(paths: list[Path], hashes: list[int], max_distance: int = 4) -> list[int]:
    """Per item, the smallest index of its group: items sharing a stem key (copy markers
    stripped) or a dHash within ``max_distance`` bits, transitively, share a group."""
    parent = list(range(len(paths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_stem: dict[str, int] = {}
    for i, path in enumerate(paths):
        key = stem_key(path)
        if key in by_stem:
            union(i, by_stem[key])
        else:
            by_stem[key] = i
    bits = np.array(hashes, dtype=np.uint64)
    for i in range(len(bits)):
        x = np.bitwise_xor(bits[i + 1 :], bits[i])
        dist = np.array([bin(int(v)).count("1") for v in x], dtype=np.int32)
        for j in np.nonzero(dist <= max_distance)[0]:
            union(i, i + 1 + int(j))
    return [find(i) for i in range(len(paths))]


def assign_groups(samples: list[Sample], images: list[Image.Image], max_distance: int = 4) -> None:
    """Set ``Sample.group``: samples sharing a stem key or a near-equal dHash share a group."""
    roots = near_copy_roots([s.path for s in samples], [dhash(im) for im in images], max_distance)
    for s, root in zip(samples, roots, strict=True):
        s.group = f"g{root}"


def co_labels(samples: list[Sample], index: dict[str, int]) -> dict[int, list[int]]:
    """Per sample whose group also holds other labels, those labels' indices: the same
    picture filed under two labels (a wall of rifles and shotguns), after ``assign_groups``."""
    by_group: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s.label:
            by_group[s.group].add(s.label)
    out = {}
    for i, s in enumerate(samples):
        others = sorted(by_group[s.group] - {s.label})
        if s.label and others:
            out[i] = [index[lab] for lab in others]
    return out


def grouped_split(
    samples: list[Sample], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, val), stratified by label, with whole groups on one side."""
    rng = np.random.default_rng(seed)
    groups_by_label: dict[str, list[str]] = defaultdict(list)
    members: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        if s.group not in members:
            groups_by_label[s.label].append(s.group)
        members[s.group].append(i)
    val: list[int] = []
    for label in sorted(groups_by_label):
        groups = groups_by_label[label]
        if len(groups) < 2 or val_fraction <= 0:
            continue
        order = rng.permutation(len(groups))
        n_val = max(1, round(len(groups) * val_fraction))
        n_val = min(n_val, len(groups) - 1)
        for g in (groups[k] for k in order[:n_val]):
            val.extend(members[g])
    val_set = set(val)
    train = [i for i in range(len(samples)) if i not in val_set]
    return train, sorted(val)


def load_images(
    samples: list[Sample], max_side: int = 320
) -> tuple[list[Sample], list[Image.Image]]:
    """Decode every sample once, downscaled to ``max_side``; unreadable files are skipped."""
    kept, images = [], []
    for s in samples:
        try:
            img = load_image(s.path)
        except (ValueError, OSError) as exc:
            log.warning("skipping %s: %s", s.path, exc)
            continue
        img.load()
        if max(img.size) > max_side:
            img = img.copy()
            img.thumbnail((max_side, max_side), Image.BILINEAR)
        kept.append(s)
        images.append(img)
    return kept, images
