"""Synthetic bag and parcel scans: container, folded clothes, clutter, optional threat.

Everything is composed in attenuation (line integral) space, so thicknesses
add and transmissions multiply wherever objects overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synth.bag import (
    CONTAINERS,
    OBJECT_THRESHOLD,
    bag_background,
    fitting_part,
    lay_part,
    paste,
    position,
)
from synth.detector import pseudo_colour, to_uint8
from synth.materials import attenuation
from synth.projection import Box, tight_box
from synth.scanner import add_belt, draw_settings, export, resample_mask, resample_rows
from synth.scene import compose
from synth.shapes import (
    BENIGN_KINDS,
    CONFUSER_KINDS,
    SCENE_KINDS,
    any_kind,
    part_kind,
    render_part,
)
from synth.styles import SCENES, ScannerStyle, get_style


@dataclass(frozen=True)
class Parcel:
    """A rendered parcel scan with the boxes of its inserted threat parts."""

    image: np.ndarray  # float32 (H, W), high-energy transmission, 1.0 = empty belt
    low: np.ndarray  # float32 (H, W), low-energy transmission
    boxes: list[Box]  # inserted threat parts (kind = part kind)
    clutter: list[Box]  # container, clothes and clutter items (kind = what it is)
    mm_per_px: float
    container: str
    threat_mask: np.ndarray | None = field(default=None, repr=False)  # threat's own pixels
    # A styled parcel's station export (uint8 grey, uint16 grey or uint8 RGB), what a
    # scanner of that style writes; None for the default style (export ``image`` as it is).
    export: np.ndarray | None = field(default=None, repr=False)
    style: str = "default"

    @property
    def threat_kind(self) -> str | None:
        """Kind of the inserted threat, or None for a clean parcel."""
        return self.boxes[0].kind if self.boxes else None

    def colour(self) -> np.ndarray:
        """Station-style dual-energy pseudo-colour rendering, uint8 (H, W, 3)."""
        return pseudo_colour(self.image, self.low)

    def station_export(self) -> np.ndarray:
        """What the scanner writes: the styled export, else the image as 8-bit grey."""
        return self.export if self.export is not None else to_uint8(self.image)


def render_parcel(seed: int, size: tuple[int, int] = (1600, 1250), threat_kind: str | None = None,
                  n_clutter: int | None = None, *,
                  threat_scale: tuple[float, float] = (0.05, 0.25),
                  overlap_prob: float = 0.5,
                  style: ScannerStyle | str | None = None,
                  extra_kind: str | None = None) -> Parcel:
    """Render a parcel scan of ``size`` = (width, height) pixels.

    With ``threat_kind`` (a part kind, or a confuser: ``CONFUSER_KINDS``, small enough to
    be placed as a part is) one random instance of that kind is inserted at a random
    angle, with its longer side ``threat_scale`` times the longer image side, and
    with probability ``overlap_prob`` one or two clutter items laid over it.

    ``style`` (a ``synth.styles`` preset name or ``ScannerStyle``) renders the parcel as
    another scanner would and fills it with another scene mix (``_render_styled``); None
    or ``"default"`` is today's generator, unchanged.

    ``extra_kind`` lays one more item (any kind, e.g. a confuser) into the bag last, as
    clutter, at physical scale, drawn from a random stream of its own: the parcel is the
    same parcel as without it, plus that item (its box is the last of ``clutter``).
    """
    if extra_kind is not None:
        any_kind(extra_kind)
    if style is not None:
        chosen = get_style(style)
        if not chosen.is_default:
            return _render_styled(seed, size, threat_kind, n_clutter, chosen, threat_scale,
                                  overlap_prob, extra_kind)
    w, h = (int(v) for v in size)
    if w < 64 or h < 64:
        raise ValueError("parcel size must be at least 64 x 64 pixels")
    _classic_kind(threat_kind)
    if not 0 < threat_scale[0] <= threat_scale[1] <= 1:
        raise ValueError("threat_scale must satisfy 0 < low <= high <= 1")
    rng = np.random.default_rng(seed)
    container = str(rng.choice(CONTAINERS, p=[0.5, 0.25, 0.25]))
    bw_px, bh_px = w * rng.uniform(0.8, 0.94), h * rng.uniform(0.78, 0.92)
    pitch = rng.uniform(480, 720) / bw_px
    cxp = w / 2 + rng.uniform(-0.4, 0.4) * (w - bw_px)
    cyp = h / 2 + rng.uniform(-0.4, 0.4) * (h - bh_px)
    acc, region, clutter = bag_background(rng, container, cxp, cyp, bw_px, bh_px, pitch, w, h)
    boxes: list[Box] = []
    mask = None
    overlap_at: list[tuple[float, float]] = []
    if threat_kind is not None:
        side = int(round(rng.uniform(*threat_scale) * max(w, h)))
        part = render_part(threat_kind, rng, size_px=max(side, 12),
                           angle_deg=float(rng.uniform(0, 360)), flip=bool(rng.random() < 0.5))
        att = {e: attenuation(part.layers, e) for e in ("high", "low")}
        x, y = position(rng, att["high"].shape, region)
        paste(acc["low"], att["low"], x, y)
        sy, sx, crop = paste(acc["high"], att["high"], x, y)
        own = np.exp(-crop) < OBJECT_THRESHOLD
        box = tight_box(own, threat_kind, x0=sx.start, y0=sy.start)
        if box is not None:
            boxes.append(box)
            mask = np.zeros((h, w), bool)
            mask[sy, sx] = own
            if rng.random() < overlap_prob:
                overlap_at = [(box.x + rng.uniform(0, box.w), box.y + rng.uniform(0, box.h))
                              for _ in range(int(rng.integers(1, 3)))]
    n = int(rng.integers(5, 14)) if n_clutter is None else int(n_clutter)
    centres: list = [None] * n + overlap_at
    for centre in centres:
        clutter += _lay(rng, str(rng.choice(BENIGN_KINDS)), pitch, region, acc, centre)
    if extra_kind is not None:
        clutter += _lay(_extra_rng(seed), extra_kind, pitch, region, acc)
    return Parcel(np.exp(-acc["high"]), np.exp(-acc["low"]), boxes, clutter, pitch, container,
                  mask)


def _extra_rng(seed: int) -> np.random.Generator:
    """The stream ``extra_kind`` is drawn from (no other draw of the parcel uses it)."""
    return np.random.default_rng([int(seed), 5])


def _lay(rng: np.random.Generator, kind: str, pitch: float, region, acc: dict,
         centre=None) -> list[Box]:
    """Lay one item of ``kind`` at physical scale into the bag (``acc``, attenuation by
    energy); its box, if any of it shows."""
    return lay_part(rng, fitting_part(rng, kind, pitch, region), kind, region, acc, centre)


def _classic_kind(kind: str | None) -> None:
    """Raise a ValueError unless the classic scene can hold ``kind``: a part kind or a
    confuser (placed as a part is), or None."""
    if kind is None or kind in CONFUSER_KINDS:
        return
    if kind in SCENE_KINDS:
        raise ValueError(f"the classic scene holds part kinds and confusers only, not "
                         f"{kind!r}; pick another scene mix for long guns")
    part_kind(kind)


def _scale_rows(box: Box, f: float, rows: int) -> Box:
    y0, y1 = int(box.y * f), min(rows, int(np.ceil((box.y + box.h) * f)))
    return Box(box.x, y0, box.w, max(1, y1 - y0), box.kind)


def _render_styled(seed: int, size: tuple[int, int], threat_kind: str | None,
                   n_clutter: int | None, style: ScannerStyle,
                   threat_scale: tuple[float, float], overlap_prob: float,
                   extra_kind: str | None = None) -> Parcel:
    """A parcel of ``style``: its scene at its resolution and pixel pitch, belt, export.

    The scene of the "classic" mix is the default one (``threat_scale`` and ``overlap_prob``
    apply to it only); other mixes are composed at physical scale (``scene.compose``).
    Boxes and the threat mask are in the export's pixels.
    """
    w, h = (int(v) for v in size)
    if threat_kind is not None:
        any_kind(threat_kind)
    look_rng = np.random.default_rng([int(seed), 1])
    settings = draw_settings(style.look, look_rng)
    ew = max(64, int(round(w * settings.resolution)))
    eh = max(64, int(round(h * settings.resolution)))
    rows = max(64, int(round(eh * settings.aspect)))  # square-pixel rows before resampling
    if style.scene == SCENES["classic"]:
        p = render_parcel(seed, (ew, rows), threat_kind, n_clutter, threat_scale=threat_scale,
                          overlap_prob=overlap_prob, extra_kind=extra_kind)
        high, low, boxes, clutter, pitch, container, mask = (
            p.image, p.low, p.boxes, p.clutter, p.mm_per_px, p.container, p.threat_mask)
    else:
        extra = None if extra_kind is None else (extra_kind, _extra_rng(seed))
        c = compose(np.random.default_rng([int(seed), 2]), (ew, rows), style.scene, threat_kind,
                    n_clutter, extra=extra)
        high, low, boxes, clutter, pitch, container, mask = (
            c.high, c.low, c.boxes, c.clutter, c.mm_per_px, c.container, c.threat_mask)
    if rows != eh:
        f = eh / rows
        high, low = resample_rows(high, eh), resample_rows(low, eh)
        clutter = [_scale_rows(b, f, eh) for b in clutter]
        if mask is not None:
            mask = resample_mask(mask, eh)
            box = tight_box(mask, threat_kind or "")
            boxes = [box] if box is not None else []
            mask = mask if box is not None else None
    if style.look.belt:
        high, low = add_belt(high, low, look_rng, pitch)
    image = export(high, low, style.look, settings, look_rng)
    return Parcel(high, low, boxes, clutter, pitch, container, mask, export=image,
                  style=style.name)
