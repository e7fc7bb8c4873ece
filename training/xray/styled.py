"""Styled training parcels (``synth.styles``), seen the way the service sees a scan.

A styled parcel arrives as its scanner's export (8/16-bit grey or dual-energy pseudo-colour);
the service decodes every export with ``matcher.preprocess.xray_to_transmission``, so the
trainers learn from that decoded transmission, not from the generator's clean physics. The
threat mask and boxes are already in the export's pixels. Without a sampler a parcel is
today's default render and its own image, unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from matcher.preprocess import xray_to_transmission
from synth.parcel import Parcel, render_parcel
from synth.shapes import CONFUSER_KINDS
from synth.styles import StyleSampler


def observed(parcel: Parcel) -> np.ndarray:
    """The transmission the service decodes from ``parcel``'s export (default: its image)."""
    if parcel.export is None:
        return parcel.image
    return xray_to_transmission(Image.fromarray(parcel.export))


def training_parcel(
    seed: int, size: tuple[int, int], threat_kind: str | None, styles: StyleSampler | None
) -> tuple[Parcel, np.ndarray]:
    """The parcel of ``seed`` (in the sampler's style for that seed) and its decoded scan.

    The sampler may swap a planned threat for a whole long gun (``StyleSampler.long_guns``);
    the parcel's box names the kind it holds. A clean parcel the sampler gives a confuser
    (``StyleSampler.confusers``) holds it as clutter: no threat box, no threat mask. A seed
    the sampler keeps ``plain`` is rendered as without one.
    """
    if styles is None or styles.plain(seed):
        parcel = render_parcel(seed, size=size, threat_kind=threat_kind)
        return parcel, parcel.image
    style = styles.for_seed(seed)
    kind = styles.threat_for(seed, threat_kind, style)
    parcel = render_parcel(seed, size=size, threat_kind=kind, style=style)
    if kind in CONFUSER_KINDS:
        parcel = replace(parcel, boxes=[], clutter=parcel.clutter + parcel.boxes, threat_mask=None)
    return parcel, observed(parcel)


__all__ = ["observed", "training_parcel"]
