"""What a styled scanner makes of a parcel: belt, detector effects and the station export.

``draw_settings`` fixes one scan's values from a ``ScannerLook``'s ranges; ``add_belt``
lays the belt's weave, side rails and lacing seam into the transmissions (physics, so
the parcel's own image carries them); ``export`` blurs, adds row gain errors and photon
noise, then writes what a station would: 8-bit grey (display gamma, edge enhancement),
16-bit grey (``bits`` significant bits in the high bits) or dual-energy pseudo-colour
(the look's palette, hues jittered per scan), JPEG-compressed when the look says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from synth.detector import gaussian_blur, pseudo_colour
from synth.materials import MATERIALS
from synth.styles import ScannerLook


@dataclass(frozen=True)
class ScanSettings:
    """One scan's draw from a look's ranges."""

    resolution: float
    aspect: float
    blur: float
    motion_blur: float
    noise: float
    line_noise: float
    gamma: float
    edge_enhance: float
    jpeg: int | None
    hue_shift: tuple[float, ...]  # nine values: organic, inorganic, metal RGB


def draw_settings(look: ScannerLook, rng: np.random.Generator) -> ScanSettings:
    """Draw one scan's detector and export settings from ``look``."""
    def u(r: tuple[float, float]) -> float:
        return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

    jpeg = int(rng.integers(look.jpeg[0], look.jpeg[1] + 1)) if look.jpeg else None
    shift = tuple(float(v) for v in rng.normal(0.0, look.hue_jitter, 9)) if look.hue_jitter \
        else (0.0,) * 9
    return ScanSettings(u(look.resolution), u(look.aspect), u(look.blur), u(look.motion_blur),
                        u(look.noise), u(look.line_noise), u(look.gamma), u(look.edge_enhance),
                        jpeg, shift)


def _mu(material: str, energy: str) -> float:
    m = MATERIALS[material]
    return m.mu_high if energy == "high" else m.mu_low


def add_belt(high: np.ndarray, low: np.ndarray, rng: np.random.Generator,
             mm_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The belt under the bag: faint weave, rubber edges and side rails, maybe a lacing seam.

    The scanner is calibrated on its empty belt, so the belt's mean thickness cancels and
    only its structure shows.
    """
    h, w = high.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(3.0, 6.0)) / mm_per_px
    weave = 0.25 * (np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / period))
    organic = np.maximum(weave, 0.0).astype(np.float32)  # mm of rubber above the mean
    steel = np.zeros((h, w), np.float32)
    aluminium = np.zeros((h, w), np.float32)
    rail = max(1, int(round(h * rng.uniform(0.004, 0.015))))
    edge = max(1, int(round(rng.uniform(4.0, 8.0) / mm_per_px)))
    thick = float(rng.uniform(0.5, 3.0)) if rng.random() < 0.6 else 0.0
    aluminium[:rail] += thick
    aluminium[h - rail:] += thick
    organic[rail:rail + edge] += 6.0
    organic[h - rail - edge:h - rail] += 6.0
    if rng.random() < 0.5:  # the belt's lacing seam: a row of steel clips across the belt
        x0 = int(rng.integers(0, w))
        cw = max(1, int(round(3.0 / mm_per_px)))
        step = max(2, int(round(rng.uniform(8.0, 14.0) / mm_per_px)))
        for yy in range(rail, h - rail, step):
            steel[yy:yy + max(1, step // 2), x0:x0 + cw] += 1.0
    out = []
    for t, energy in ((high, "high"), (low, "low")):
        att = (_mu("organic", energy) * organic + _mu("steel", energy) * steel
               + _mu("aluminium", energy) * aluminium)
        out.append((t * np.exp(-att)).astype(np.float32))
    return out[0], out[1]


def _motion_blur(t: np.ndarray, width: float) -> np.ndarray:
    """Box blur of ``width`` pixels along the belt (x): the detector integrates while it moves."""
    k = int(round(width))
    if k < 2:
        return t
    pad = np.pad(t, ((0, 0), (k // 2, k - 1 - k // 2)), mode="edge")
    c = np.cumsum(np.pad(pad, ((0, 0), (1, 0))), axis=1, dtype=np.float64)
    return ((c[:, k:] - c[:, :-k]) / k).astype(np.float32)


def detect(t: np.ndarray, s: ScanSettings, rng: np.random.Generator,
           noise_gain: float = 1.0, clip: bool = True) -> np.ndarray:
    """Point spread, motion blur, row gain errors and photon noise of one energy channel.

    ``clip=False`` keeps the noisy signal's negative excursions (unbiased for averaging).
    """
    out = gaussian_blur(t, s.blur) if s.blur > 0 else np.asarray(t, np.float32)
    out = _motion_blur(out, s.motion_blur)
    if s.line_noise > 0:
        gains = 1.0 + s.line_noise * rng.standard_normal(out.shape[0]).astype(np.float32)
        out = out * gains[:, None]
    if s.noise > 0:
        sigma = s.noise * noise_gain * (np.sqrt(np.clip(out, 0.0, 1.0)) + 0.1)
        out = out + sigma * rng.standard_normal(out.shape, dtype=np.float32)
    return (np.clip(out, 0.0, 1.0) if clip else np.minimum(out, 1.0)).astype(np.float32)


def _enhance(d: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask of a display image in [0, 1] (channels last allowed)."""
    if amount <= 0:
        return d
    if d.ndim == 3:
        return np.stack([_enhance(d[..., c], amount) for c in range(d.shape[2])], -1)
    return np.clip(d + amount * (d - gaussian_blur(d, 2.0)), 0.0, 1.0)


def _jpeg(arr: np.ndarray, quality: int | None) -> np.ndarray:
    if quality is None:
        return arr
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB" if arr.ndim == 3 else "L"))


def export(high: np.ndarray, low: np.ndarray, look: ScannerLook, s: ScanSettings,
           rng: np.random.Generator) -> np.ndarray:
    """The station's export of a transmission pair: uint8 (H, W), uint16 (H, W) or uint8 RGB."""
    raw = detect(high, s, rng, clip=False)
    hi = np.clip(raw, 0.0, 1.0)
    if look.export == "grey16":
        q = np.round(hi * (2 ** look.bits - 1)).astype(np.uint16)
        return q << np.uint16(16 - look.bits)
    if look.export == "grey8":
        d = _enhance(hi ** np.float32(s.gamma), s.edge_enhance)
        return _jpeg(np.round(d * 255.0).astype(np.uint8), s.jpeg)
    # The low-energy channel sees fewer photons.  Stations classify material on smoothed
    # attenuations (a noisy low/high ratio would speckle every thin object) and shade with
    # the sharp high-energy image.
    lo_raw = detect(low, s, rng, noise_gain=1.5, clip=False)
    floor = np.float32(1e-6)
    ah = gaussian_blur(-np.log(np.clip(raw, 1e-4, 1.0)), 1.0)
    al = gaussian_blur(-np.log(np.clip(lo_raw, 1e-6, 1.0)), 1.0)
    lo = np.maximum(hi, floor) ** (al / np.maximum(ah, 1e-3))
    sh = s.hue_shift

    def hue(base, k):
        return tuple(float(np.clip(v + sh[3 * k + i], 0.0, 1.0)) for i, v in enumerate(base))

    pal = look.palette
    pal = replace(pal, organic=hue(pal.organic, 0), inorganic=hue(pal.inorganic, 1),
                  metal=hue(pal.metal, 2))
    rgb = pseudo_colour(hi, lo, pal).astype(np.float32) / 255.0
    rgb = _enhance(rgb, s.edge_enhance)
    return _jpeg(np.round(rgb * 255.0).astype(np.uint8), s.jpeg)


def resample_rows(t: np.ndarray, rows: int) -> np.ndarray:
    """A transmission resampled to ``rows`` rows, in attenuation (what adds up), bilinear."""
    if t.shape[0] == rows:
        return t
    att = Image.fromarray(-np.log(np.maximum(t, 1e-30)).astype(np.float32), "F")
    att = att.resize((t.shape[1], rows), Image.BILINEAR)
    return np.exp(-np.maximum(np.asarray(att, np.float32), 0.0)).astype(np.float32)


def resample_mask(mask: np.ndarray, rows: int) -> np.ndarray:
    """A boolean mask resampled to ``rows`` rows (a pixel is in when it is at least half in)."""
    if mask.shape[0] == rows:
        return mask
    m = Image.fromarray(mask.astype(np.float32), "F").resize((mask.shape[1], rows),
                                                              Image.BILINEAR)
    return np.asarray(m) >= 0.5


__all__ = ["ScanSettings", "add_belt", "detect", "draw_settings", "export", "resample_mask",
           "resample_rows"]
