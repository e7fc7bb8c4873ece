"""Materials of the synthetic parts and their effective X-ray attenuation.

The coefficients are effective linear attenuation coefficients (1/mm) for a
dual-energy baggage scanner.  ``mu_high`` follows NIST XCOM mass attenuation
times density near 120 keV, the mean energy of a 160 kVp beam hardened by a
few mm of steel (lead is kept below its K-edge value, as such a beam sees it).
``mu_low`` is ``mu_high`` times the low/high log-ratio such scanners measure
after beam hardening (about 1.2 for organics, 1.5 for light metals, 1.85-2.1
for steel, brass and lead); that ratio is what the pseudo-colour export
classifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    """One material: effective attenuation at the two energies and a photo colour."""

    name: str
    density: float  # g/cm^3
    mu_high: float  # 1/mm, high-energy channel (the single-energy grey image)
    ratio: float  # mu_low / mu_high
    rgb: tuple[int, int, int]  # base colour for photo-like renderings

    @property
    def mu_low(self) -> float:
        """Effective attenuation (1/mm) in the low-energy channel."""
        return self.mu_high * self.ratio


MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material("organic", 1.00, 0.0160, 1.22, (128, 92, 64)),
        Material("plastic", 1.20, 0.0190, 1.20, (38, 38, 42)),
        Material("glass", 2.50, 0.0400, 1.45, (196, 214, 218)),
        Material("aluminium", 2.70, 0.0430, 1.50, (168, 170, 176)),
        Material("steel", 7.87, 0.2200, 1.85, (74, 76, 82)),
        Material("copper", 8.96, 0.3000, 1.90, (184, 115, 60)),
        Material("brass", 8.50, 0.2800, 1.90, (186, 150, 78)),
        Material("lead", 11.35, 2.5000, 2.05, (112, 112, 118)),
    )
}


def material(name: str) -> Material:
    """Return the material called ``name`` or raise a ValueError listing the known ones."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(f"unknown material {name!r}; known: {sorted(MATERIALS)}") from None


ENERGIES: tuple[str, ...] = ("high", "low")


def attenuation(layers: Mapping[str, np.ndarray], energy: str = "high") -> np.ndarray:
    """Beer-Lambert line integral sum_i mu_i * t_i (float32) of per-material thickness maps."""
    if energy not in ENERGIES:
        raise ValueError(f"unknown energy {energy!r}; known: {ENERGIES}")
    if not layers:
        raise ValueError("no layers")
    out: np.ndarray | None = None
    for name, t in layers.items():
        m = material(name)
        mu = np.float32(m.mu_high if energy == "high" else m.mu_low)
        out = mu * np.asarray(t, np.float32) if out is None else out + mu * t
    return out
