"""Beer-Lambert X-ray rendering of synthetic parts and parcels.

``transmission = exp(-sum_i mu(material_i, energy) * thickness_i)``: 1.0 is the
empty belt, darker is denser.  Two energies are rendered; the high-energy image
is the single-energy grey scan and the low/high pair feeds ``pseudo_colour``.
Parcel scenes live in ``parcel.py`` and display exports in ``detector.py``;
both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from synth.detector import (
    detector_response,
    gaussian_blur,
    pseudo_colour,
    to_uint8,
    to_uint16,
)
from synth.materials import MATERIALS, attenuation
from synth.parcel import Parcel, render_parcel
from synth.projection import Box, tight_box
from synth.shapes import render_part

__all__ = [
    "MATERIALS", "Box", "Parcel", "XrayImage", "attenuation", "detector_response",
    "gaussian_blur", "pseudo_colour", "render_isolated", "render_parcel", "to_uint8",
    "to_uint16", "transmission",
]


def transmission(layers: Mapping[str, np.ndarray], energy: str = "high") -> np.ndarray:
    """Transmitted fraction exp(-sum mu t) of per-material thickness maps, float32 in (0, 1]."""
    return np.exp(-attenuation(layers, energy)).astype(np.float32)


@dataclass(frozen=True)
class XrayImage:
    """An isolated scan: high-energy (grey) and low-energy transmissions of one part."""

    kind: str
    transmission: np.ndarray  # float32 (H, W), high energy, 1.0 = empty belt
    low: np.ndarray  # float32 (H, W), low energy
    box: Box  # tight box of the part (transmission < 0.98)
    mm_per_px: float

    def colour(self) -> np.ndarray:
        """Station-style dual-energy pseudo-colour rendering, uint8 (H, W, 3)."""
        return pseudo_colour(self.transmission, self.low)


def render_isolated(kind: str, seed: int, size: int = 256, rotation: float | None = None, *,
                    margin: float = 0.1) -> XrayImage:
    """Clean scan of one random instance of ``kind``, centred on an empty size x size belt.

    ``rotation`` (degrees) fixes the in-plane angle and disables mirroring; None draws
    a random angle and mirror from the seed, as parts lie on a belt.
    """
    if size < 16:
        raise ValueError("size must be at least 16 pixels")
    if not 0.0 <= margin < 0.45:
        raise ValueError("margin must be in [0, 0.45)")
    rng = np.random.default_rng(seed)
    if rotation is None:
        angle, flip = float(rng.uniform(0.0, 360.0)), bool(rng.random() < 0.5)
    else:
        angle, flip = float(rotation), False
    part = render_part(kind, rng, size_px=int(round(size * (1 - 2 * margin))), angle_deg=angle,
                       flip=flip)
    ph, pw = part.thickness.shape
    y0, x0 = (size - ph) // 2, (size - pw) // 2
    images = {}
    for energy in ("high", "low"):
        att = np.zeros((size, size), np.float32)
        att[y0:y0 + ph, x0:x0 + pw] = attenuation(part.layers, energy)
        images[energy] = np.exp(-att)
    box = tight_box(images["high"] < 0.98, kind) or Box(x0, y0, pw, ph, kind)
    return XrayImage(kind, images["high"], images["low"], box, part.mm_per_px)
