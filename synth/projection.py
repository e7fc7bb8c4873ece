"""Threat image projection (TIP): insert an isolated object scan into a background scan.

Everything here operates on *transmission* images: float arrays in [0, 1] where
1.0 is the empty belt and darker means more attenuation.  Under Beer-Lambert
the transmissions of stacked objects multiply, so projecting an object is a
pixel-wise product.  Display images (8-bit or 16-bit PNG values) must first
go through ``to_transmission`` and come back with ``from_transmission``;
multiplying display values with other gamma or windowing is not physical.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_FLOOR = 1e-6  # transmissions below this are treated as fully opaque


@dataclass(frozen=True)
class Box:
    """Axis-aligned pixel box: top-left (x, y), width, height, and an optional label."""

    x: int
    y: int
    w: int
    h: int
    kind: str = ""

    def as_tuple(self) -> tuple[int, int, int, int]:
        """Return (x, y, w, h)."""
        return (self.x, self.y, self.w, self.h)

    def to_dict(self) -> dict[str, int | str]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def contains(self, other: Box) -> bool:
        """True if ``other`` lies entirely inside this box."""
        return (self.x <= other.x and self.y <= other.y and other.x + other.w <= self.x + self.w
                and other.y + other.h <= self.y + self.h)


def tight_box(mask: np.ndarray, kind: str = "", *, x0: int = 0, y0: int = 0) -> Box | None:
    """Smallest box around the True pixels of a 2-D mask (offset by x0, y0), or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return Box(int(x0 + cols[0]), int(y0 + rows[0]), int(cols[-1] - cols[0] + 1),
               int(rows[-1] - rows[0] + 1), kind)


def to_transmission(image: np.ndarray) -> np.ndarray:
    """Convert an 8-bit, 16-bit or float grey image to float32 transmission in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
            raise ValueError("float transmission must be finite and within [0, 1]")
        return image.astype(np.float32, copy=False)
    raise TypeError(f"unsupported image dtype {image.dtype}; expected uint8, uint16 or float")


def from_transmission(t: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """Quantise a float transmission to uint8 or uint16 display values (full range)."""
    peak = {np.uint8: 255.0, np.uint16: 65535.0}.get(np.dtype(dtype).type)
    if peak is None:
        raise TypeError("dtype must be numpy.uint8 or numpy.uint16")
    return np.round(np.clip(t, 0.0, 1.0) * peak).astype(dtype)


def _check_grey(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a 2-D float transmission array; use to_transmission")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(f"{name} must lie in [0, 1]")
    return a


def transform_object(obj: np.ndarray, *, scale: float = 1.0, angle_deg: float = 0.0) -> np.ndarray:
    """Scale then rotate (counter-clockwise, canvas expanded, filled with 1.0) a transmission.

    Resampling happens on attenuation (-log t), which is what adds up physically.
    Scale 1 and angle 0 return an exact copy.
    """
    obj = _check_grey("obj", obj).astype(np.float32)
    if not scale > 0:
        raise ValueError("scale must be positive")
    if scale == 1.0 and angle_deg % 360.0 == 0.0:
        return obj.copy()
    att = Image.fromarray(-np.log(np.maximum(obj, _FLOOR)), mode="F")
    if scale != 1.0:
        h, w = obj.shape
        att = att.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    if angle_deg % 360.0 != 0.0:
        att = att.rotate(angle_deg, resample=Image.BILINEAR, expand=True, fillcolor=0.0)
    return np.exp(-np.maximum(np.asarray(att, dtype=np.float32), 0.0))


def project(background: np.ndarray, obj: np.ndarray, *, scale: float = 1.0,
            angle_deg: float = 0.0, x: int = 0, y: int = 0,
            threshold: float = 0.98) -> tuple[np.ndarray, Box | None]:
    """Multiply a transformed object transmission into a background at top-left (x, y).

    Parts falling outside the background are clipped.  Returns the new image and
    the tight box of object pixels darker than ``threshold`` (None if none land).
    """
    background = _check_grey("background", background)
    patch = transform_object(obj, scale=scale, angle_deg=angle_deg)
    out = background.astype(np.float32, copy=True)
    ph, pw = patch.shape
    bh, bw = out.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + pw, bw), min(y + ph, bh)
    if x0 >= x1 or y0 >= y1:
        return out, None
    crop = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    out[y0:y1, x0:x1] *= crop
    return out, tight_box(crop < threshold, x0=x0, y0=y0)


def random_projection(background: np.ndarray, obj: np.ndarray, rng: np.random.Generator, *,
                      scale_range: tuple[float, float] = (0.6, 1.4),
                      angle_range: tuple[float, float] = (0.0, 360.0),
                      inside: bool = True, threshold: float = 0.98
                      ) -> tuple[np.ndarray, Box | None]:
    """Project ``obj`` at a random scale, angle and position (fully inside when it fits)."""
    scale = float(rng.uniform(*scale_range))
    angle = float(rng.uniform(*angle_range))
    bh, bw = np.shape(background)
    oh, ow = np.shape(obj)
    a = math.radians(angle)
    pw = abs(math.cos(a)) * ow * scale + abs(math.sin(a)) * oh * scale
    ph = abs(math.sin(a)) * ow * scale + abs(math.cos(a)) * oh * scale
    lo_x, lo_y = (0, 0) if inside else (-int(pw) // 2, -int(ph) // 2)
    hi_x = max(bw - int(math.ceil(pw)) - 1, lo_x) if inside else bw - int(pw) // 2
    hi_y = max(bh - int(math.ceil(ph)) - 1, lo_y) if inside else bh - int(ph) // 2
    x = int(rng.integers(lo_x, hi_x + 1))
    y = int(rng.integers(lo_y, hi_y + 1))
    return project(background, obj, scale=scale, angle_deg=angle, x=x, y=y, threshold=threshold)
