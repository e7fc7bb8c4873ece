"""Deterministic synthetic images of firearm components and clutter (numpy + Pillow only).

- ``shapes``: parametric part kinds rendered to per-material thickness maps.
- ``xray``: Beer-Lambert isolated scans and parcel scans, grey and dual-energy.
- ``projection``: threat image projection on transmission images.
- ``photo``: photo-like renderings for the demo gallery.
- ``dataset``: reference sets (folder per label) and labelled parcel sets on disk.
- ``styles``: scanner styles (looks x scene mixes) for domain randomisation; ``scene`` and
  ``scanner`` render them (``render_parcel(..., style=...)``).
"""

from synth.dataset import write_parcel_set, write_reference_set
from synth.detector import pseudo_colour, to_uint8, to_uint16
from synth.parcel import Parcel, render_parcel
from synth.photo import render_photo
from synth.projection import (
    Box,
    from_transmission,
    project,
    random_projection,
    to_transmission,
)
from synth.shapes import CATEGORIES, PART_KINDS, SCENE_KINDS, Part, PartKind, render_part
from synth.styles import (
    LOOKS,
    SCENES,
    ScannerLook,
    ScannerStyle,
    SceneMix,
    StyleSampler,
    get_style,
    random_style,
)
from synth.xray import XrayImage, render_isolated, transmission

__all__ = [
    "CATEGORIES", "LOOKS", "PART_KINDS", "SCENES", "SCENE_KINDS", "Box", "Parcel", "Part",
    "PartKind", "ScannerLook", "ScannerStyle", "SceneMix", "StyleSampler", "XrayImage",
    "from_transmission", "get_style", "project", "pseudo_colour", "random_projection",
    "random_style", "render_isolated", "render_parcel", "render_part", "render_photo",
    "to_transmission", "to_uint8", "to_uint16", "transmission", "write_parcel_set",
    "write_reference_set",
]
