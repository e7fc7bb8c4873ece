"""Vector sketches of parts in millimetres, rasterised to per-material thickness maps.

A part generator records primitives (slabs, rods, tubes, wires, polygons) in a
``Sketch`` in part coordinates (mm, x along the part, y downwards).  ``rasterize``
evaluates them on a pixel grid under a view rotation, so rotated renderings are
exact rather than resampled.  Every primitive gives the thickness (mm) that an
X-ray crossing the pixel travels through the material; thicknesses add.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from synth.materials import MATERIALS

Point = tuple[float, float]


@dataclass(frozen=True)
class Op:
    """One recorded primitive in part coordinates."""

    prim: str  # box | ellipse | rod | wire | polygon | ball
    material: str
    pts: np.ndarray  # (n, 2) anchor points, mm
    angle: float  # orientation in radians (box, ellipse)
    size: tuple[float, ...]
    depth: float  # slab thickness along the beam, mm
    cut: bool  # remove material instead of adding it


class Sketch:
    """Recorder of primitives; ``placed`` nests a translation and rotation for composites."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._rot = 0.0
        self._off = np.zeros(2)

    def _tf(self, pts: Sequence[Point] | np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        c, s = math.cos(self._rot), math.sin(self._rot)
        return p @ np.array([[c, s], [-s, c]]) + self._off

    def _add(self, prim, material, pts, size, *, angle=0.0, depth=0.0, cut=False) -> None:
        if material not in MATERIALS:
            raise ValueError(f"unknown material {material!r}; known: {sorted(MATERIALS)}")
        self.ops.append(Op(prim, material, self._tf(pts), angle + self._rot,
                           tuple(float(v) for v in size), float(depth), cut))

    @contextmanager
    def placed(self, dx: float, dy: float, angle_deg: float = 0.0) -> Iterator[Sketch]:
        """Record the enclosed primitives rotated by angle_deg and moved by (dx, dy)."""
        saved = (self._rot, self._off.copy())
        self._off = self._tf([(dx, dy)])[0]
        self._rot += math.radians(angle_deg)
        try:
            yield self
        finally:
            self._rot, self._off = saved

    def box(self, mat: str, cx: float, cy: float, w: float, h: float, depth: float, *,
            angle_deg: float = 0.0, r: float = 0.0, cut: bool = False) -> None:
        """Flat slab shaped as a (rounded, rotated) rectangle centred on (cx, cy)."""
        r = min(r, w / 2, h / 2)
        self._add("box", mat, [(cx, cy)], (w, h, r), angle=math.radians(angle_deg),
                  depth=depth, cut=cut)

    def ellipse(self, mat: str, cx: float, cy: float, rx: float, ry: float, depth: float, *,
                angle_deg: float = 0.0, cut: bool = False) -> None:
        """Flat slab shaped as an ellipse (a disc seen end-on when rx == ry)."""
        self._add("ellipse", mat, [(cx, cy)], (rx, ry), angle=math.radians(angle_deg),
                  depth=depth, cut=cut)

    def rod(self, mat: str, p0: Point, p1: Point, r0: float, r1: float | None = None, *,
            wall: float | None = None, caps: bool = True, cut: bool = False) -> None:
        """Cylinder (tapered if r1 is given) lying in the plane; ``wall`` makes it a tube."""
        r1 = r0 if r1 is None else r1
        self._add("rod", mat, [p0, p1], (r0, r1, -1.0 if wall is None else wall,
                                         float(caps and wall is None)), cut=cut)

    def wire(self, mat: str, pts: Sequence[Point] | np.ndarray, r: float, *,
             cut: bool = False) -> None:
        """Round wire of radius r along a polyline (self-crossings do not add)."""
        if len(pts) < 2:
            raise ValueError("a wire needs at least two points")
        self._add("wire", mat, pts, (r,), cut=cut)

    def polygon(self, mat: str, pts: Sequence[Point] | np.ndarray, depth: float, *,
                cut: bool = False) -> None:
        """Flat slab shaped as a simple polygon."""
        if len(pts) < 3:
            raise ValueError("a polygon needs at least three points")
        self._add("polygon", mat, pts, (), depth=depth, cut=cut)

    def ball(self, mat: str, cx: float, cy: float, r: float, *, cut: bool = False) -> None:
        """Solid sphere."""
        self._add("ball", mat, [(cx, cy)], (r,), cut=cut)

    def extent(self) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) of all material-adding primitives, mm."""
        boxes = np.array([_op_bbox(op) for op in self.ops if not op.cut])
        if boxes.size == 0:
            raise ValueError("empty sketch")
        return (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())


def _op_bbox(op: Op) -> tuple[float, float, float, float]:
    p = op.pts
    if op.prim in ("box", "ellipse"):
        c, s = abs(math.cos(op.angle)), abs(math.sin(op.angle))
        if op.prim == "box":
            hw = (op.size[0] * c + op.size[1] * s) / 2
            hh = (op.size[0] * s + op.size[1] * c) / 2
        else:
            hw = math.hypot(op.size[0] * c, op.size[1] * s)
            hh = math.hypot(op.size[0] * s, op.size[1] * c)
        return (p[0, 0] - hw, p[0, 1] - hh, p[0, 0] + hw, p[0, 1] + hh)
    pad = 0.0 if op.prim == "polygon" else max(op.size[:2])
    return (p[:, 0].min() - pad, p[:, 1].min() - pad, p[:, 0].max() + pad, p[:, 1].max() + pad)


def _chord(r: np.ndarray | float, d: np.ndarray) -> np.ndarray:
    """Length of a beam at distance d from the axis of a cylinder of radius r."""
    return 2.0 * np.sqrt(np.maximum(np.square(r) - np.square(d), 0.0))


def _cover(sd: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased pixel coverage from a signed distance (negative inside)."""
    return np.clip(0.5 - sd / px, 0.0, 1.0)


def _seg_dist(u, v, a, b) -> tuple[np.ndarray, np.ndarray, float]:
    """Along-axis coordinate, perpendicular distance, and length for segment a-b."""
    e = b - a
    length = float(math.hypot(*e))
    ex, ey = (float(e[0]) / length, float(e[1]) / length) if length > 1e-9 else (1.0, 0.0)
    length = max(length, 1e-9)
    du, dv = u - float(a[0]), v - float(a[1])
    return du * ex + dv * ey, np.abs(du * ey - dv * ex), length


def _eval(op: Op, u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    """Thickness (mm) contributed by one primitive at part coordinates (u, v)."""
    if op.prim == "ball":
        return _chord(op.size[0], np.hypot(u - float(op.pts[0, 0]), v - float(op.pts[0, 1])))
    if op.prim == "rod":
        r0, r1, wall, caps = op.size
        s, d, length = _seg_dist(u, v, op.pts[0], op.pts[1])
        t = np.clip(s / length, 0.0, 1.0)
        r = r0 + (r1 - r0) * t
        if caps:
            return _chord(r, np.hypot(d, s - t * length))
        along = _cover(np.maximum(-s, s - length), px)
        out = _chord(r, d)
        if wall > 0:
            out = out - _chord(np.maximum(r - wall, 0.0), d)
        return out * along
    raise ValueError(f"unknown primitive {op.prim!r}")


class _View:
    """Pixel grid: pixel centre (x, y) in mm about the grid centre maps to part coords."""

    def __init__(self, px: float, shape: tuple[int, int], centre: tuple[float, float],
                 fwd: np.ndarray) -> None:
        self.px, self.shape, self.centre = px, shape, centre
        self.fwd = tuple(float(v) for v in fwd.ravel())  # part -> screen
        self.m = tuple(float(v) for v in np.linalg.inv(fwd).ravel())  # screen -> part
        h, w = shape
        self.xs = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) * px)[None, :]
        self.ys = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) * px)[:, None]

    def window(self, bbox, coords: bool = True) -> tuple | None:
        """Pixel slices covering a part-coordinate bbox, with the part coords of those pixels."""
        a, b, c, d = self.fwd
        cx, cy = self.centre
        dx0, dx1, dy0, dy1 = bbox[0] - cx, bbox[2] - cx, bbox[1] - cy, bbox[3] - cy
        sx0 = min(a * dx0, a * dx1) + min(b * dy0, b * dy1)
        sx1 = max(a * dx0, a * dx1) + max(b * dy0, b * dy1)
        sy0 = min(c * dx0, c * dx1) + min(d * dy0, d * dy1)
        sy1 = max(c * dx0, c * dx1) + max(d * dy0, d * dy1)
        h, w = self.shape
        j0 = max(int(math.floor(sx0 / self.px + w / 2)) - 1, 0)
        j1 = min(int(math.ceil(sx1 / self.px + w / 2)) + 2, w)
        i0 = max(int(math.floor(sy0 / self.px + h / 2)) - 1, 0)
        i1 = min(int(math.ceil(sy1 / self.px + h / 2)) + 2, h)
        if j0 >= j1 or i0 >= i1:
            return None
        if not coords:
            return slice(i0, i1), slice(j0, j1), None, None
        x, y = self.xs[:, j0:j1], self.ys[i0:i1]
        m00, m01, m10, m11 = self.m
        return slice(i0, i1), slice(j0, j1), cx + m00 * x + m01 * y, cy + m10 * x + m11 * y


def _make_view(extent, size_px, mm_per_px, angle_deg, flip, margin_px) -> _View:
    x0, y0, x1, y1 = (float(v) for v in extent)
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, -s], [s, c]])  # part -> screen rotation
    fwd = rot @ (np.diag([-1.0, 1.0]) if flip else np.eye(2))
    w_mm, h_mm = x1 - x0, y1 - y0
    rw = abs(c) * w_mm + abs(s) * h_mm
    rh = abs(s) * w_mm + abs(c) * h_mm
    if mm_per_px is None:
        if size_px <= 2 * margin_px + 2:
            raise ValueError(f"size_px={size_px} too small")
        mm_per_px = max(rw, rh) / (size_px - 2 * margin_px)
    if not mm_per_px > 0:
        raise ValueError("mm_per_px must be positive")
    shape = (int(math.ceil(rh / mm_per_px - 1e-6)) + 2 * margin_px,
             int(math.ceil(rw / mm_per_px - 1e-6)) + 2 * margin_px)
    return _View(mm_per_px, shape, ((x0 + x1) / 2, (y0 + y1) / 2), fwd)


def rasterize(sketch: Sketch, *, size_px: int = 256, mm_per_px: float | None = None,
              angle_deg: float = 0.0, flip: bool = False, margin_px: int = 2,
              extent: tuple[float, float, float, float] | None = None
              ) -> tuple[dict[str, np.ndarray], float]:
    """Rasterise a sketch to per-material float32 thickness maps (mm) and the pixel pitch.

    The longer side of the output is ``size_px`` unless ``mm_per_px`` fixes the scale;
    ``extent`` (x0, y0, x1, y1 in mm) fixes the framed area instead of the sketch's own.
    """
    view = _make_view(extent or sketch.extent(), size_px, mm_per_px, angle_deg, flip, margin_px)
    layers: dict[str, np.ndarray] = {}
    for op in sketch.ops:
        layer = layers.get(op.material)
        if layer is None:
            if op.cut:
                continue
            layer = layers[op.material] = np.zeros(view.shape, np.float32)
        if op.prim in _FLAT or op.prim == "wire":
            t = _wire(view, op) if op.prim == "wire" else _polygon(view, op)
            if t is None:
                continue
            sy, sx, val = t
        else:
            win = view.window(_op_bbox(op))
            if win is None:
                continue
            sy, sx, u, v = win
            val = _eval(op, u, v, view.px)
        if op.cut:
            np.maximum(layer[sy, sx] - val, 0.0, out=layer[sy, sx])
        else:
            layer[sy, sx] += val
    return layers, view.px


def _wire(view: _View, op: Op):
    """Distance-to-polyline wire: vectorised over segments, or per segment if it is long."""
    full = view.window(_op_bbox(op))
    if full is None:
        return None
    sy, sx, u, v = full
    r = op.size[0]
    a, b = op.pts[:-1].astype(np.float32), op.pts[1:].astype(np.float32)
    if u.size * len(a) <= 60_000:
        e = b - a
        length = np.maximum(np.hypot(e[:, 0], e[:, 1]), 1e-9)[:, None, None]
        ex, ey = e[:, 0, None, None] / length, e[:, 1, None, None] / length
        du, dv = u[None] - a[:, 0, None, None], v[None] - a[:, 1, None, None]
        along = np.clip(du * ex + dv * ey, 0.0, length)
        dd = np.hypot(du - along * ex, dv - along * ey)
        return sy, sx, _chord(r, dd.min(axis=0))
    dist = np.full(u.shape, np.inf, dtype=np.float32)
    for pa, pb in zip(a, b, strict=True):
        seg = (min(pa[0], pb[0]) - r, min(pa[1], pb[1]) - r,
               max(pa[0], pb[0]) + r, max(pa[1], pb[1]) + r)
        win = view.window(seg)
        if win is None:
            continue
        wy, wx, su, sv = win
        along, d, length = _seg_dist(su, sv, pa, pb)
        dd = np.hypot(d, along - np.clip(along, 0.0, length))
        sub = (slice(wy.start - sy.start, wy.stop - sy.start),
               slice(wx.start - sx.start, wx.stop - sx.start))
        np.minimum(dist[sub], dd, out=dist[sub])
    return sy, sx, _chord(r, dist)


_FLAT = ("box", "ellipse", "polygon")


def _arc_steps(radius_px: float, angle: float) -> int:
    """Vertices for an arc so the chord error stays under ~0.1 pixel."""
    return int(np.clip(angle / 2 * math.sqrt(5 * max(radius_px, 0.0)) + 1, 2, 128))


def _outline(op: Op, px: float) -> np.ndarray:
    """Polygon (part coords) approximating a flat primitive's outline."""
    if op.prim == "polygon":
        return op.pts
    if op.prim == "ellipse":
        rx, ry = op.size
        n = max(12, _arc_steps(max(rx, ry) / px, 2 * math.pi))
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        local = np.stack([rx * np.cos(t), ry * np.sin(t)], 1)
    else:
        w, h, r = op.size
        hw, hh = w / 2 - r, h / 2 - r
        if r / px < 0.25:
            local = np.array([(hw, hh), (-hw, hh), (-hw, -hh), (hw, -hh)]) * (
                (hw + r) / max(hw, 1e-9), (hh + r) / max(hh, 1e-9))
        else:
            n = _arc_steps(r / px, math.pi / 2)
            parts = []
            for k, (cx, cy) in enumerate(((hw, hh), (-hw, hh), (-hw, -hh), (hw, -hh))):
                t = np.linspace(k * math.pi / 2, (k + 1) * math.pi / 2, n)
                parts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1))
            local = np.concatenate(parts)
    c, s = math.cos(op.angle), math.sin(op.angle)
    return local @ np.array([[c, s], [-s, c]]) + op.pts[0]


def _polygon(view: _View, op: Op):
    """Flat slab: its outline filled by PIL on a supersampled mask of its window."""
    win = view.window(_op_bbox(op), coords=False)
    if win is None:
        return None
    sy, sx = win[0], win[1]
    wh, ww = sy.stop - sy.start, sx.stop - sx.start
    sup = 4 if wh * ww <= 100_000 else (3 if wh * ww <= 400_000 else 2)
    pts = _outline(op, view.px)
    a, b, c, d = view.fwd
    h, w = view.shape
    du, dv = pts[:, 0] - view.centre[0], pts[:, 1] - view.centre[1]
    jx = ((a * du + b * dv) / view.px + w / 2 - sx.start) * sup
    iy = ((c * du + d * dv) / view.px + h / 2 - sy.start) * sup
    mask = Image.new("L", (ww * sup, wh * sup), 0)
    ImageDraw.Draw(mask).polygon(list(zip(jx.tolist(), iy.tolist(), strict=True)), fill=255)
    cover = np.asarray(mask.reduce(sup), dtype=np.float32)
    return sy, sx, cover * np.float32(op.depth / 255.0)
