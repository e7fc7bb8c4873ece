"""Scanner styles: what a scanner makes of a parcel, and what the parcels hold.

The default generator draws one scanner and one kind of bag.  Real scans come from
several scanners (grey or dual-energy pseudo-colour exports, other palettes, noise,
blur, resolution, pixel pitch, belt) and hold other things (laptops, cable bundles,
shoes, tools, whole long guns).  A ``ScannerStyle`` names one of each:

- ``ScannerLook``: the detector and the export (ranges, drawn per scan from its seed);
- ``SceneMix``: containers, clutter family and density, stacking, threat scale.

Presets are looked up by name: a look (``LOOKS``), a scene (``SCENES``), or
``"look+scene"``.  ``"default"`` is today's generator, bit for bit.  Families can be
held out: ``random_style(rng, exclude={"noisy-lowres", "tools"})`` never draws them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from synth.detector import STATION_PALETTE, Palette
from synth.shapes import BENIGN_KINDS, CONFUSER_KINDS, LONG_GUN_KINDS, SCENE_KINDS, THREAT_KINDS

Range = tuple[float, float]
Export = Literal["grey8", "grey16", "colour"]


@dataclass(frozen=True)
class ScannerLook:
    """A scanner's detector and display export; each range is drawn once per scan."""

    name: str
    export: Export = "grey8"
    palette: Palette = STATION_PALETTE  # for "colour" exports
    hue_jitter: float = 0.0  # per-scan shift of the palette's hues (RGB units)
    resolution: Range = (1.0, 1.0)  # export pixels per requested pixel (both axes)
    aspect: Range = (1.0, 1.0)  # along-belt over across-belt pixel pitch
    blur: Range = (0.0, 0.0)  # detector point spread, Gaussian sigma in pixels
    motion_blur: Range = (0.0, 0.0)  # along the belt (x), box width in pixels
    noise: Range = (0.0, 0.0)  # photon noise at full transmission
    line_noise: Range = (0.0, 0.0)  # detector-row gain spread (streaks along the belt)
    gamma: Range = (1.0, 1.0)  # grey display: transmission ** gamma
    edge_enhance: Range = (0.0, 0.0)  # unsharp-mask amount of the display
    jpeg: tuple[int, int] | None = None  # JPEG quality range of the export (None: lossless)
    bits: int = 12  # significant bits of a grey16 export
    belt: bool = False  # belt weave, side rails and a lacing seam


@dataclass(frozen=True)
class SceneMix:
    """What the parcels hold and how crowded they are."""

    name: str
    clutter: tuple[str, ...] = BENIGN_KINDS
    n_clutter: tuple[int, int] = (5, 13)  # inclusive
    overlap_prob: float = 0.5  # items laid over the threat
    stack: tuple[int, int] = (1, 2)  # how many, when they are
    containers: tuple[str, ...] = ("suitcase", "carton", "soft_bag")
    bag_mm: Range = (480.0, 720.0)  # inside width of the bag
    clothes_prob: float = 1.0
    # Fan-beam magnification: an object high above the belt is imaged larger.
    magnification: Range = (1.0, 1.2)


@dataclass(frozen=True)
class ScannerStyle:
    """One scanner look and one scene mix; ``name`` is ``"look+scene"`` (or ``"default"``)."""

    look: ScannerLook
    scene: SceneMix

    @property
    def name(self) -> str:
        """Preset name: ``"default"``, or ``"look+scene"``."""
        return "default" if self.is_default else f"{self.look.name}+{self.scene.name}"

    @property
    def families(self) -> tuple[str, str]:
        """The two names a benchmark can hold out: the look's and the scene's."""
        return (self.look.name, self.scene.name)

    @property
    def is_default(self) -> bool:
        """True for today's generator (default look, classic scene)."""
        return self.look == LOOKS["default"] and self.scene == SCENES["classic"]


_VIVID = Palette(
    organic=(1.00, 0.72, 0.05), inorganic=(0.15, 0.85, 0.30), metal=(0.30, 0.20, 0.95),
    r_organic=1.20, r_inorganic=1.42, r_metal=1.75, sat_attenuation=0.35, lum_floor=0.02,
    lum_scale=0.98, lum_gamma=0.8, lum_gain=1.05,
)
_LOOKS = (
    ScannerLook("default"),
    ScannerLook("grey-highres", export="grey16", resolution=(1.1, 1.25), blur=(0.3, 0.6),
                noise=(0.003, 0.008), line_noise=(0.0, 0.002), bits=14, belt=True),
    ScannerLook("grey-enhanced", export="grey8", resolution=(0.8, 1.0), aspect=(0.92, 1.08),
                blur=(0.5, 0.9), noise=(0.006, 0.014), line_noise=(0.001, 0.004),
                gamma=(0.5, 0.75), edge_enhance=(0.4, 1.0), jpeg=(75, 92), belt=True),
    ScannerLook("dual-energy-orange", export="colour", hue_jitter=0.05, resolution=(0.85, 1.0),
                blur=(0.5, 1.0), noise=(0.004, 0.012), line_noise=(0.0, 0.003),
                edge_enhance=(0.0, 0.4), jpeg=(80, 95), belt=True),
    ScannerLook("dual-energy-vivid", export="colour", palette=_VIVID, hue_jitter=0.06,
                resolution=(0.9, 1.1), aspect=(0.95, 1.05), blur=(0.4, 0.8),
                noise=(0.004, 0.01), edge_enhance=(0.5, 1.2), jpeg=(85, 95), belt=True),
    ScannerLook("noisy-lowres", export="grey8", resolution=(0.45, 0.65), aspect=(0.85, 1.15),
                blur=(0.8, 1.4), motion_blur=(1.0, 2.5), noise=(0.02, 0.04),
                line_noise=(0.004, 0.012), gamma=(0.8, 1.1), jpeg=(60, 85), belt=True),
)
LOOKS: dict[str, ScannerLook] = {look.name: look for look in _LOOKS}

ELECTRONICS = ("laptop", "power_bank", "cable_bundle", "charger_bundle", "headphones",
               "hair_dryer", "phone", "laptop_charger", "battery", "cable")
HOUSEHOLD = ("plastic_bottle", "bottle", "shoes", "umbrella", "umbrella_rod", "can", "book",
             "coins", "key", "belt_buckle", "pen", "scissors")
TOOLS = ("hammer", "pliers", "drill", "tape_measure", "wrench", "screwdriver", "scissors",
         "battery", "key", "coins")
_SCENES = (
    SceneMix("classic"),
    SceneMix("electronics", clutter=ELECTRONICS, n_clutter=(6, 14), overlap_prob=0.6,
             containers=("suitcase", "soft_bag", "carton")),
    SceneMix("household", clutter=HOUSEHOLD, n_clutter=(6, 14), overlap_prob=0.5,
             containers=("suitcase", "soft_bag", "carton")),
    SceneMix("tools", clutter=TOOLS, n_clutter=(5, 12), overlap_prob=0.6,
             containers=("carton", "soft_bag"), clothes_prob=0.4),
    SceneMix("dense", clutter=tuple(dict.fromkeys(ELECTRONICS + HOUSEHOLD + TOOLS)),
             n_clutter=(14, 26), overlap_prob=0.85, stack=(1, 3)),
)
SCENES: dict[str, SceneMix] = {scene.name: scene for scene in _SCENES}
# Threats a styled parcel may hold: every part kind, whole handguns and long guns.
STYLED_THREAT_KINDS: tuple[str, ...] = THREAT_KINDS + LONG_GUN_KINDS
DEFAULT = "default"


def _check() -> None:
    for scene in _SCENES:
        unknown = [k for k in scene.clutter if k not in BENIGN_KINDS and k not in SCENE_KINDS]
        if unknown:
            raise ValueError(f"scene {scene.name!r}: unknown clutter {unknown}")
    clash = set(LOOKS) & set(SCENES)
    if clash:
        raise ValueError(f"look and scene names must differ: {sorted(clash)}")


_check()


def get_style(name: str | ScannerStyle) -> ScannerStyle:
    """A preset by name: ``"default"``, a look (classic scene), a scene (default look),
    or ``"look+scene"``; a ``ScannerStyle`` is returned as it is."""
    if isinstance(name, ScannerStyle):
        return name
    look, _, scene = name.partition("+")
    if not scene and look in SCENES:
        look, scene = DEFAULT, look
    scene = scene or "classic"
    if look not in LOOKS or scene not in SCENES:
        raise ValueError(
            f"unknown scanner style {name!r}; looks: {sorted(LOOKS)}, scenes: {sorted(SCENES)}"
        )
    return ScannerStyle(LOOKS[look], SCENES[scene])


def style_names() -> list[str]:
    """Every preset as ``"look+scene"`` (``"default"`` first)."""
    return [DEFAULT] + [f"{a}+{b}" for a in LOOKS for b in SCENES if (a, b) != (DEFAULT, "classic")]


@dataclass(frozen=True)
class StyleSampler:
    """Draws a style per parcel for training: looks and scenes, minus the held-out ones.

    ``include_default`` keeps today's look and scene in the draw (so a model trained on
    a mix still sees its in-domain data); ``exclude`` names looks or scenes to hold out.
    Plain fields, so a training config holding one stays JSON-ready.
    """

    exclude: tuple[str, ...] = ()
    include_default: bool = True
    # Share of threat parcels outside the classic scene whose threat becomes a whole long
    # gun (``threat_for``); 0 keeps every planned kind.
    long_guns: float = 0.0
    # Share of parcels rendered exactly as without a sampler (today's generator and its own
    # image, ``plain``): a mixed model keeps seeing its in-domain data at this rate.
    default_share: float = 0.0
    # Share of clean parcels (any scene) that hold a shuriken or a razor blade
    # (``threat_for``): prohibited, but not firearm parts, so a firearm map learns them as
    # hard negatives; 0 keeps clean parcels clean.
    confusers: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.exclude) - set(LOOKS) - set(SCENES)
        if unknown:
            raise ValueError(f"unknown style families {sorted(unknown)}; "
                             f"looks: {sorted(LOOKS)}, scenes: {sorted(SCENES)}")
        if not 0.0 <= self.long_guns <= 1.0:
            raise ValueError("long_guns must be a share in [0, 1]")
        if not 0.0 <= self.default_share < 1.0:
            raise ValueError("default_share must be a share in [0, 1)")
        if not 0.0 <= self.confusers <= 1.0:
            raise ValueError("confusers must be a share in [0, 1]")
        object.__setattr__(self, "exclude", tuple(sorted(set(self.exclude))))

    @classmethod
    def today(cls, confusers: float = 0.0) -> StyleSampler:
        """A sampler of today's parcels only (every other look and scene held out), with
        ``confusers`` in that share of the clean ones."""
        others = [n for n in (*LOOKS, *SCENES) if n not in (DEFAULT, "classic")]
        return cls(tuple(others), confusers=confusers)

    def threat_for(self, seed: int, kind: str | None, style: ScannerStyle) -> str | None:
        """The item placed in the parcel of ``seed``: the planned kind, a long gun instead of
        a planned threat, or a confuser (``CONFUSER_KINDS``) in a planned clean parcel (see
        the shares above). The classic scene never holds a long gun."""
        if kind is None:
            return _swap(seed, 11, self.confusers, CONFUSER_KINDS)
        if style.scene.name == "classic":
            return kind
        return _swap(seed, 5, self.long_guns, LONG_GUN_KINDS) or kind

    def plain(self, seed: int) -> bool:
        """Whether the parcel of ``seed`` is today's default render (``default_share``)."""
        if self.default_share <= 0:
            return False
        return bool(np.random.default_rng([int(seed), 7]).random() < self.default_share)

    def for_seed(self, seed: int) -> ScannerStyle:
        """The style of the parcel rendered from ``seed`` (deterministic, own stream)."""
        return self(np.random.default_rng([int(seed), 3]))

    def looks(self) -> list[str]:
        """Look names this sampler draws from."""
        return [n for n in LOOKS if n not in self.exclude
                and (self.include_default or n != DEFAULT)]

    def scenes(self) -> list[str]:
        """Scene names this sampler draws from."""
        return [n for n in SCENES if n not in self.exclude
                and (self.include_default or n != "classic")]

    def __call__(self, rng: np.random.Generator) -> ScannerStyle:
        """One style, drawn from ``rng``."""
        looks, scenes = self.looks(), self.scenes()
        if not looks or not scenes:
            raise ValueError(f"nothing left to draw after excluding {sorted(self.exclude)}")
        return ScannerStyle(LOOKS[looks[int(rng.integers(len(looks)))]],
                            SCENES[scenes[int(rng.integers(len(scenes)))]])


def _swap(seed: int, stream: int, share: float, kinds: tuple[str, ...]) -> str | None:
    """One of ``kinds`` for ``share`` of seeds (its own random stream), else None."""
    if share <= 0:
        return None
    rng = np.random.default_rng([int(seed), stream])
    if rng.random() >= share:
        return None
    return kinds[int(rng.integers(len(kinds)))]


def random_style(rng: np.random.Generator, exclude: Iterable[str] = (), *,
                 include_default: bool = True) -> ScannerStyle:
    """A random preset look and scene, never one named in ``exclude``."""
    return StyleSampler(tuple(exclude), include_default)(rng)


def with_look(style: ScannerStyle, **changes) -> ScannerStyle:
    """The style with some of its look's fields changed (a custom scanner)."""
    return replace(style, look=replace(style.look, **changes))


__all__ = [
    "DEFAULT", "ELECTRONICS", "HOUSEHOLD", "LOOKS", "SCENES", "STYLED_THREAT_KINDS", "TOOLS",
    "ScannerLook", "ScannerStyle", "SceneMix", "StyleSampler", "get_style", "random_style",
    "style_names", "with_look",
]
