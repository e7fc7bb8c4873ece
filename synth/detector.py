"""Detector effects and display exports of transmission images.

``to_uint8`` / ``to_uint16`` quantise a transmission (1.0 = empty belt) to grey
PNG arrays, optionally after detector blur and noise; the 16-bit export keeps
``bits`` significant bits in the high bits of the word, as 12-bit scanners
write them.  ``pseudo_colour`` renders a dual-energy pair the way screening
stations do: orange for organics, green for inorganics and light metals, blue
for metals, darker for denser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Palette:
    """How a station paints a dual-energy pair: material hues, class anchors and shading.

    The defaults are the generator's own station look; other scanner styles
    (``synth.styles``) shift hues, anchors (another calibration) and shading.
    """

    organic: tuple[float, float, float] = (1.00, 0.58, 0.12)  # orange
    inorganic: tuple[float, float, float] = (0.30, 0.78, 0.22)  # green
    metal: tuple[float, float, float] = (0.16, 0.38, 1.00)  # blue
    # low/high log-ratio anchors (see materials.py): organics ~1.2, light metals ~1.5, steel ~1.85
    r_organic: float = 1.24
    r_inorganic: float = 1.47
    r_metal: float = 1.80
    sat_attenuation: float = 0.25  # objects thinner than this (-log T) are pale
    lum_floor: float = 0.08
    lum_scale: float = 0.92
    lum_gamma: float = 0.6
    lum_gain: float = 1.15


STATION_PALETTE = Palette()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float image with edge padding."""
    image = np.asarray(image, dtype=np.float32)
    if sigma <= 0:
        return image.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    out = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * (p[i:i + n] if axis == 0 else p[:, i:i + n])
        out = acc
    return out


def noise_sigma(t: np.ndarray, noise: float) -> np.ndarray:
    """The detector's noise (standard deviation) at transmission ``t``, for a scanner whose
    noise level is ``noise``: signal-dependent, with a floor."""
    return noise * (np.sqrt(np.clip(t, 0.0, 1.0)) + 0.15)


def detector_response(t: np.ndarray, rng: np.random.Generator | None = None, *,
                      noise: float = 0.01, blur_sigma: float = 0.6) -> np.ndarray:
    """Blur (detector point spread) then add signal-dependent noise; result in [0, 1]."""
    out = gaussian_blur(t, blur_sigma)
    if rng is not None and noise > 0:
        sigma = noise_sigma(out, noise)
        out = out + sigma * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def to_uint8(t: np.ndarray, rng: np.random.Generator | None = None, *, noise: float = 0.0,
             blur_sigma: float = 0.0) -> np.ndarray:
    """8-bit grey (255 = empty belt), after optional blur and noise (noise needs rng)."""
    out = detector_response(t, rng, noise=noise, blur_sigma=blur_sigma)
    return np.round(out * 255.0).astype(np.uint8)


def to_uint16(t: np.ndarray, rng: np.random.Generator | None = None, *, bits: int = 12,
              noise: float = 0.0, blur_sigma: float = 0.0) -> np.ndarray:
    """16-bit grey with ``bits`` significant bits shifted to the top of the word."""
    if not 1 <= bits <= 16:
        raise ValueError("bits must be between 1 and 16")
    out = detector_response(t, rng, noise=noise, blur_sigma=blur_sigma)
    q = np.round(out * (2 ** bits - 1)).astype(np.uint16)
    return q << np.uint16(16 - bits)


def pseudo_colour(high: np.ndarray, low: np.ndarray, palette: Palette | None = None) -> np.ndarray:
    """Station-style RGB uint8 image from high- and low-energy transmissions."""
    pal = STATION_PALETTE if palette is None else palette
    floor = np.float32(1e-30)
    high = np.clip(np.asarray(high, np.float32), floor, 1.0)
    low = np.clip(np.asarray(low, np.float32), floor, 1.0)
    if high.shape != low.shape or high.ndim != 2:
        raise ValueError("high and low must be 2-D arrays of the same shape")
    ah, al = -np.log(high), -np.log(low)
    ratio = al / np.maximum(ah, 1e-4)
    r_org, r_inorg, r_met = pal.r_organic, pal.r_inorganic, pal.r_metal
    ratio = np.where(low <= floor, np.maximum(ratio, r_met), ratio)  # impenetrable: metal
    w_org = np.clip((r_inorg - ratio) / (r_inorg - r_org), 0.0, 1.0)
    w_met = np.clip((ratio - r_inorg) / (r_met - r_inorg), 0.0, 1.0)
    w_inorg = 1.0 - w_org - w_met
    hue = (w_org[..., None] * np.array(pal.organic, np.float32)
           + w_inorg[..., None] * np.array(pal.inorganic, np.float32)
           + w_met[..., None] * np.array(pal.metal, np.float32))
    sat = np.clip(ah / pal.sat_attenuation, 0.0, 1.0)[..., None]  # thin objects are pale
    lum = (pal.lum_floor + pal.lum_scale * high ** pal.lum_gamma)[..., None]  # denser is darker
    rgb = ((1.0 - sat) + sat * hue) * np.minimum(1.0, lum * pal.lum_gain)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
