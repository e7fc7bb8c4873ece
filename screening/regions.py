"""Region proposals for large X-ray scans and the box maths around them (pure numpy).

Boxes are float arrays of shape (n, 4) in ``[x, y, w, h]`` pixel coordinates of the scan.
Proposals come from two cheap sources on a downsampled attenuation map: connected components
of dense material (objects, or clusters of them) and a coarse multi-scale window grid kept
only where there is dense material. Both are ranked by how much dense material they hold and
thinned by non-maximum suppression, so a 2-megapixel scan yields a few dozen crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProposalConfig:
    """How regions are proposed on a transmission image."""

    # The attenuation map is block-averaged so its longer side is about this many cells.
    grid_cells: int = 160
    # A cell is dense when its attenuation -ln(T) exceeds its neighbourhood's floor by this
    # much (objects on thick clothes) ...
    local_contrast: float = 0.45
    # ... or exceeds this outright (T < 5%: solid metal wider than the neighbourhood).
    dense_attenuation: float = 3.0
    # Neighbourhood for the local floor, as a fraction of the longer side.
    background_frac: float = 0.025
    # Components smaller than this fraction of the image area are noise.
    min_component_frac: float = 0.0004
    # Stricter contrast levels (multiples of local_contrast) that split touching objects.
    split_levels: tuple[float, ...] = (2.0, 4.0)
    # Window longer sides as fractions of the longer image side: parts span about 5-25% of
    # it, a whole handgun in a bag 25-50%, a long gun more; stride is half a window along
    # each axis.
    window_fracs: tuple[float, ...] = (0.08, 0.14, 0.22, 0.35, 0.5)
    # Window shapes: longer over shorter side, each laid both ways (thin barrels, pins).
    window_aspects: tuple[float, ...] = (1.0, 2.5)
    # Only this many best-scoring candidates go through non-maximum suppression.
    pre_nms: int = 600
    # A window is kept when this fraction of its cells is dense.
    min_window_density: float = 0.04
    # Overlap above which the weaker of two proposals is dropped.
    nms_iou: float = 0.3
    # Box score = sum over dense cells of contrast ** score_power / area ** area_power:
    # a higher power favours thick metal over cloth folds, a higher area power small boxes.
    score_power: float = 1.0
    area_power: float = 0.5
    # Shrink each candidate to the dense cells inside it (grid windows -> object extents).
    fit_windows: bool = True
    # The most proposals returned (the embedder's batch for one scan). 96 (`gunmatch search
    # --proposals 96`) finds more parts in generated parcels at 0.83 s instead of 0.50 s per
    # 2-MP scan, but more small windows compete for the top box (docs/benchmarks.md).
    max_regions: int = 48
    # Also propose the whole image (a whole-scan match is then one of the regions).
    include_full: bool = True
    # Gun-scale boxes (longer side at least this fraction of the scan's) score low by the
    # area power, so the best few are kept whatever their rank: a whole gun gets a box of
    # its own instead of being cut into part-sized pieces.
    large_frac: float = 0.25
    large_quota: int = 4


# -- box maths ------------------------------------------------------------------------------


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[x, y, w, h] -> [x0, y0, x1, y1]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] -> [x, y, w, h]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of [x, y, w, h] boxes (negative sides count as zero)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of two sets of [x, y, w, h] boxes -> (len(a), len(b))."""
    pa, pb = xywh_to_xyxy(a), xywh_to_xyxy(b)
    lo = np.maximum(pa[:, None, :2], pb[None, :, :2])
    hi = np.minimum(pa[:, None, 2:], pb[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip [x, y, w, h] boxes to the image; boxes outside it get zero size."""
    p = xywh_to_xyxy(boxes)
    p[:, [0, 2]] = np.clip(p[:, [0, 2]], 0, width)
    p[:, [1, 3]] = np.clip(p[:, [1, 3]], 0, height)
    return xyxy_to_xywh(p)


def pad_boxes(boxes: np.ndarray, frac: float, min_pad: float = 0.0) -> np.ndarray:
    """Grow each box by ``frac`` of its own side (at least ``min_pad`` px) on every side."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    pad = np.maximum(b[:, 2:] * frac, min_pad)
    b[:, :2] -= pad
    b[:, 2:] += 2 * pad
    return b


def square_boxes(boxes: np.ndarray, min_side: float = 1.0) -> np.ndarray:
    """The square box of side max(w, h) centred on each box (crops keep their aspect)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    side = np.maximum(np.maximum(b[:, 2], b[:, 3]), min_side)
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    return np.stack([cx - side / 2, cy - side / 2, side, side], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of boxes kept by greedy non-maximum suppression, best score first."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        overlaps = iou(b[i : i + 1], b[order[1:]])[0]
        order = order[1:][overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def merge_groups(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, keys: list | None = None
) -> list[np.ndarray]:
    """Group boxes that overlap the group's best box by more than ``iou_threshold``.

    Groups are formed greedily from the best score down; when ``keys`` is given only boxes
    with the same key (e.g. the same top-matching label) merge. Each group lists indices,
    its best box first.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0] or (keys is not None and len(keys) != s.shape[0]):
        raise ValueError("boxes, scores and keys must have the same length")
    order = list(np.argsort(-s, kind="stable"))
    overlaps = iou(b, b)
    groups: list[np.ndarray] = []
    taken = np.zeros(len(s), dtype=bool)
    for i in order:
        if taken[i]:
            continue
        members = [j for j in order if not taken[j] and (j == i or overlaps[i, j] > iou_threshold)]
        if keys is not None:
            members = [j for j in members if keys[j] == keys[i]]
        taken[members] = True
        groups.append(np.asarray(members, dtype=np.int64))
    return groups


# -- dense-material segmentation ------------------------------------------------------------


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping factor x factor blocks (edges cropped to whole blocks)."""
    if factor <= 1:
        return np.asarray(image, dtype=np.float32)
    h, w = image.shape
    hh, ww = max(1, h // factor), max(1, w // factor)
    crop = np.asarray(image[: hh * factor, : ww * factor], dtype=np.float32)
    if crop.shape[0] < factor or crop.shape[1] < factor:
        return np.full((1, 1), float(np.mean(image)), dtype=np.float32)
    return crop.reshape(hh, factor, ww, factor).mean(axis=(1, 3))


def box_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 neighbourhood with edge replication, via integral images."""
    if radius < 1:
        return a.astype(np.float32)
    p = np.pad(a.astype(np.float64), radius + 1, mode="edge")
    c = p.cumsum(0).cumsum(1)
    k = 2 * radius + 1
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (s[: a.shape[0], : a.shape[1]] / (k * k)).astype(np.float32)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary dilation with a square structuring element."""
    if radius < 1:
        return mask.astype(bool)
    return box_filter(mask.astype(np.float32), radius) > 1e-6


def attenuation_map(transmission: np.ndarray, factor: int) -> np.ndarray:
    """Block-averaged attenuation -ln(T) (0 on an empty belt)."""
    t = block_mean(np.clip(transmission, 1e-4, 1.0), factor)
    return -np.log(np.clip(t, 1e-4, 1.0))


def local_contrast(att: np.ndarray, radius: int) -> np.ndarray:
    """Attenuation above a smooth local floor: objects stand out, clothes and packaging fade.

    The floor is a box mean of the running minimum (a cheap stand-in for a morphological
    opening), so anything narrower than about 2 * radius cells keeps its full contrast.
    """
    return np.maximum(att - box_filter(_min_filter(att, radius), radius), 0.0)


def dense_mask(att: np.ndarray, cfg: ProposalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cells that stand out from their neighbourhood or are dense outright, and the contrast."""
    radius = max(1, int(round(cfg.background_frac * max(att.shape))))
    contrast = local_contrast(att, radius)
    return (contrast > cfg.local_contrast) | (att > cfg.dense_attenuation), contrast


def _min_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Separable running minimum over a (2r+1)^2 window."""
    out = a
    for axis in (0, 1):
        p = np.pad(out, [(radius, radius) if ax == axis else (0, 0) for ax in (0, 1)], "edge")
        windows = np.lib.stride_tricks.sliding_window_view(p, 2 * radius + 1, axis=axis)
        out = windows.min(axis=-1)
    return out


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True cells: row, start column and end column (exclusive)."""
    h, w = mask.shape
    p = np.zeros((h, w + 2), dtype=np.int8)
    p[:, 1:-1] = mask
    d = np.diff(p, axis=1)
    rs, cs = np.nonzero(d == 1)
    re_, ce = np.nonzero(d == -1)
    # np.nonzero is row-major, so starts and ends pair up in order.
    return rs, cs, ce


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labelling (labels 1..n in raster order, 0 = background).

    Union-find over horizontal runs rather than cells: a downsampled scan mask has a few
    hundred runs, so the Python loop is short whatever the objects' shapes.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    rows, starts, ends = _runs(mask)
    n_runs = rows.size
    parent = list(range(n_runs))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(h + 1))
    for y in range(h - 1):
        a0, a1 = row_first[y], row_first[y + 1]
        b0, b1 = row_first[y + 1], row_first[y + 2]
        j = b0
        for i in range(a0, a1):
            # 8-connectivity: runs touch when [s-1, e] intervals overlap.
            while j < b1 and ends[j] < starts[i]:
                j += 1
            k = j
            while k < b1 and starts[k] <= ends[i]:
                ri, rk = find(i), find(k)
                if ri != rk:
                    parent[max(ri, rk)] = min(ri, rk)
                k += 1
    roots = np.array([find(i) for i in range(n_runs)], dtype=np.int64)
    uniq, run_label = np.unique(roots, return_inverse=True)
    labels = np.zeros((h, w), dtype=np.int32)
    for r, s, e, lab in zip(rows, starts, ends, run_label + 1, strict=True):
        labels[r, s:e] = lab
    return labels, int(uniq.size)


def component_boxes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes [x, y, w, h] (in cells) and cell counts of labels 1..n."""
    if n == 0:
        return np.zeros((0, 4)), np.zeros(0)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs] - 1
    x0 = np.full(n, np.inf)
    y0 = np.full(n, np.inf)
    x1 = np.full(n, -np.inf)
    y1 = np.full(n, -np.inf)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs)
    np.maximum.at(y1, lab, ys)
    counts = np.bincount(lab, minlength=n).astype(np.float64)
    return np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1), counts


# -- proposals ------------------------------------------------------------------------------


def window_grid(width: int, height: int, sides: list) -> np.ndarray:
    """Windows on a half-window stride covering the image; a side is ``s`` or ``(w, h)``."""
    out = []
    for side in sides:
        sw, sh = (side, side) if np.isscalar(side) else side
        sw, sh = int(min(sw, width)), int(min(sh, height))
        if sw < 1 or sh < 1:
            continue
        xs = np.unique(np.r_[np.arange(0, max(1, width - sw + 1), max(1, sw // 2)), width - sw])
        ys = np.unique(np.r_[np.arange(0, max(1, height - sh + 1), max(1, sh // 2)), height - sh])
        gx, gy = np.meshgrid(xs, ys)
        out.append(
            np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, sw), np.full(gx.size, sh)], axis=1)
        )
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 4))


def window_shapes(long_side: int, fracs, aspects) -> list[tuple[int, int]]:
    """(w, h) window shapes: each longer side at each aspect, laid both ways."""
    shapes = set()
    for f in fracs:
        a = max(2, int(round(f * long_side)))
        for r in aspects:
            b = max(2, int(round(a / r)))
            shapes.update({(a, b), (b, a)})
    return sorted(shapes)


def _box_sums(integral: np.ndarray, boxes_cells: np.ndarray) -> np.ndarray:
    """Sums of a map over [x, y, w, h] cell boxes, from its zero-padded integral image."""
    b = np.round(xywh_to_xyxy(boxes_cells)).astype(np.int64)
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    x0, x1 = np.clip(b[:, 0], 0, w), np.clip(b[:, 2], 0, w)
    y0, y1 = np.clip(b[:, 1], 0, h), np.clip(b[:, 3], 0, h)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _components(
    mask: np.ndarray, contrast: np.ndarray, shape: tuple[int, int], cfg: ProposalConfig
) -> np.ndarray:
    """Tight cell boxes of dense components, at the base threshold and at stricter ones.

    Touching objects merge at the base threshold; the stricter levels split metal from
    what it lies on, so a barrel next to batteries still gets a box of its own.
    """
    out = []
    min_cells = max(cfg.min_component_frac * mask.size, 2)
    for level in (1.0, *cfg.split_levels):
        m = mask if level == 1.0 else mask & (contrast > cfg.local_contrast * level)
        labels, n = connected_components(m)
        comp, cells = component_boxes(labels, n)
        comp = comp[cells >= min_cells]
        # Components spanning most of the scan (container walls) say nothing about where.
        big = (comp[:, 2] > 0.7 * shape[1]) | (comp[:, 3] > 0.7 * shape[0])
        out.append(comp[~big])
    return np.concatenate(out) if out else np.zeros((0, 4))


def fit_to_mask(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each [x, y, w, h] cell box shrunk to the tight box of the mask cells inside it."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    h, w = mask.shape
    for i, (x0, y0, x1, y1) in enumerate(np.round(xywh_to_xyxy(out)).astype(np.int64)):
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        sub = mask[y0:y1, x0:x1]
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        if rows.size and cols.size:
            out[i] = [x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
    return out


def keep_large(boxes: np.ndarray, limit: int, large_side: float, quota: int) -> np.ndarray:
    """Indices of the first ``limit`` boxes, with the best ``quota`` large ones among them.

    Boxes are best first. Large ones (longer side >= ``large_side``) beyond the limit take
    the places of the weakest small ones; the order stays by rank.
    """
    n = len(boxes)
    if n <= limit:
        return np.arange(n)
    large = np.flatnonzero(np.maximum(boxes[:, 2], boxes[:, 3]) >= large_side)[: min(quota, limit)]
    others = np.setdiff1d(np.arange(n), large, assume_unique=True)[: limit - len(large)]
    return np.sort(np.concatenate([large, others]))


def propose_regions(
    transmission: np.ndarray, cfg: ProposalConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes [x, y, w, h] (scan pixels) and their dense-material scores, best first.

    Scores are the local-contrast mass of dense cells inside a box divided by the square root
    of its area, which favours compact dense objects over large, thinly filled areas.
    """
    cfg = cfg or ProposalConfig()
    t = np.asarray(transmission, dtype=np.float32)
    if t.ndim != 2 or t.size == 0:
        raise ValueError(f"expected a 2-D transmission image, got shape {t.shape}")
    height, width = t.shape
    factor = max(1, int(np.ceil(max(height, width) / cfg.grid_cells)))
    att = attenuation_map(t, factor)
    mask, contrast = dense_mask(att, cfg)
    dense_att = np.where(mask, contrast**cfg.score_power, 0.0)
    integral = np.zeros((att.shape[0] + 1, att.shape[1] + 1))
    integral[1:, 1:] = dense_att.cumsum(0).cumsum(1)
    count = np.zeros_like(integral)
    count[1:, 1:] = mask.cumsum(0).cumsum(1)

    comp = _components(mask, contrast, att.shape, cfg)
    sides = window_shapes(max(att.shape), cfg.window_fracs, cfg.window_aspects)
    wins = window_grid(att.shape[1], att.shape[0], sides)
    density = _box_sums(count, wins) / np.maximum(box_area(wins), 1.0)
    wins = wins[density >= cfg.min_window_density]

    boxes = np.concatenate([comp, wins]) if len(comp) or len(wins) else np.zeros((0, 4))
    if len(boxes):
        scores = _box_sums(integral, boxes) / np.maximum(box_area(boxes), 1.0) ** cfg.area_power
        top = np.argsort(-scores, kind="stable")[: cfg.pre_nms]
        boxes, scores = boxes[top], scores[top]
        if cfg.fit_windows:
            boxes = fit_to_mask(boxes, mask)
            scores = _box_sums(integral, boxes) / np.maximum(box_area(boxes), 1.0) ** cfg.area_power
        keep = nms(boxes, scores, cfg.nms_iou)
        boxes, scores = boxes[keep], scores[keep]
    else:
        scores = np.zeros(0)
    boxes = clip_boxes(pad_boxes(boxes * factor, 0.0, min_pad=factor / 2), width, height)
    limit = cfg.max_regions - (1 if cfg.include_full else 0)
    keep = keep_large(boxes, max(limit, 0), cfg.large_frac * max(height, width), cfg.large_quota)
    boxes, scores = boxes[keep], scores[keep]
    if cfg.include_full:
        full_score = float(integral[-1, -1] / max(att.size, 1) ** cfg.area_power)
        boxes = np.concatenate([[[0.0, 0.0, float(width), float(height)]], boxes])
        scores = np.concatenate([[full_score], scores])
    return boxes, scores


def map_regions(
    logits: np.ndarray, cell: tuple[float, float], threshold: float, max_regions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [x, y, w, h] (scan pixels) of a threat map's hot areas and their peak logits.

    Cells above ``threshold`` form 8-connected components; each component's bounding box
    becomes a proposal scored by its highest logit, best first, at most ``max_regions``.
    When no cell is above the threshold the single hottest cell's 3 x 3 neighbourhood is
    proposed, so the map's best guess is always looked at.
    """
    a = np.asarray(logits, dtype=np.float64)
    if a.ndim != 2 or a.size == 0 or max_regions < 1:
        return np.zeros((0, 4)), np.zeros(0)
    labels, n = connected_components(a > threshold)
    if n:
        cells, _ = component_boxes(labels, n)
        peaks = np.full(n, -np.inf)
        np.maximum.at(peaks, labels[labels > 0] - 1, a[labels > 0])
    else:
        r, c = np.unravel_index(int(a.argmax()), a.shape)
        r0, c0 = max(r - 1, 0), max(c - 1, 0)
        r1, c1 = min(r + 2, a.shape[0]), min(c + 2, a.shape[1])
        cells = np.array([[c0, r0, c1 - c0, r1 - r0]], dtype=np.float64)
        peaks = np.array([a[r, c]])
    order = np.argsort(-peaks, kind="stable")[:max_regions]
    cw, ch = cell
    boxes = cells[order] * np.array([cw, ch, cw, ch])
    return boxes, peaks[order]
