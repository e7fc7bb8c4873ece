"""Registry of parametric part kinds and rendering of one part to thickness maps.

``PART_KINDS`` maps a kind key (``"slide"``, ``"pen"``...) to its project
category, threat flag, names and sketch function.  ``render_part`` draws a
random instance of a kind as float32 thickness maps (mm of material along the
beam, per pixel), one map per material.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from synth import parts_benign as pb
from synth import parts_clutter as pc
from synth import parts_edged as pe
from synth import parts_firearm as pf
from synth import parts_longgun as pl
from synth import parts_threat as pt
from synth.sketch import Sketch, rasterize

CATEGORIES: tuple[str, ...] = (
    "barrel", "slide", "frame", "bolt", "trigger_group", "firing_pin", "magazine", "spring",
    "cylinder", "suppressor", "cartridge", "whole_firearm", "replica", "benign", "other",
)

DrawFn = Callable[[Sketch, np.random.Generator], object]


@dataclass(frozen=True)
class Part:
    """A rendered part: thickness map (mm) of its main material plus any other layers."""

    kind: str
    thickness: np.ndarray  # float32 (H, W), mm of ``material``
    material: str
    mm_per_px: float
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def layers(self) -> dict[str, np.ndarray]:
        """All materials with their thickness maps, main material first."""
        return {self.material: self.thickness, **self.extra}

    @property
    def total_thickness(self) -> np.ndarray:
        """Sum of the thickness maps of all materials (mm)."""
        return sum(self.layers.values())  # type: ignore[return-value]


@dataclass(frozen=True)
class PartKind:
    """Metadata and sketch function of one kind of part."""

    key: str
    category: str
    threat: bool
    name_zh: str
    name_en: str
    draw: DrawFn

    def sketch(self, rng: np.random.Generator) -> Sketch:
        """Record a random instance of this kind."""
        sk = Sketch()
        self.draw(sk, rng)
        return sk

    def render(self, rng: np.random.Generator, size_px: int = 256, **kwargs) -> Part:
        """Render a random instance; see ``render_part``."""
        return render_part(self.key, rng, size_px=size_px, **kwargs)


_KINDS = (
    ("barrel", "barrel", True, "枪管", "barrel", pt.draw_barrel),
    ("slide", "slide", True, "套筒", "slide", pt.draw_slide),
    ("frame", "frame", True, "套筒座", "pistol frame", pt.draw_frame),
    ("bolt", "bolt", True, "枪机", "rifle bolt", pt.draw_bolt),
    ("magazine", "magazine", True, "弹匣", "magazine", pt.draw_magazine),
    ("spring", "spring", True, "弹簧", "coil spring", pt.draw_spring),
    ("cylinder", "cylinder", True, "转轮", "revolver cylinder", pt.draw_cylinder),
    ("cartridge", "cartridge", True, "枪弹", "cartridge",
     lambda sk, rng: pt.draw_cartridge(sk, pt.sample_cartridge(rng))),
    ("firing_pin", "firing_pin", True, "击针", "firing pin", pt.draw_firing_pin),
    ("trigger_group", "trigger_group", True, "击发机构", "trigger group", pt.draw_trigger_group),
    ("suppressor", "suppressor", True, "消声器", "suppressor", pt.draw_suppressor),
    ("pistol", "whole_firearm", True, "手枪", "pistol", pf.draw_pistol),
    ("revolver", "whole_firearm", True, "左轮手枪", "revolver", pf.draw_revolver),
    ("replica_pistol", "replica", True, "仿真枪", "replica pistol", pf.draw_replica),
    ("pen", "benign", False, "笔", "pen", pb.draw_pen),
    ("key", "benign", False, "钥匙", "key", pb.draw_key),
    ("wrench", "benign", False, "扳手", "wrench", pb.draw_wrench),
    ("screwdriver", "benign", False, "螺丝刀", "screwdriver", pb.draw_screwdriver),
    ("cable", "benign", False, "数据线", "cable", pb.draw_cable),
    ("battery", "benign", False, "电池", "battery", pb.draw_battery),
    ("phone", "benign", False, "手机", "phone", pb.draw_phone),
    ("laptop_charger", "benign", False, "笔记本电源适配器", "laptop charger",
     pb.draw_laptop_charger),
    ("umbrella_rod", "benign", False, "伞杆", "umbrella rod", pb.draw_umbrella_rod),
    ("coins", "benign", False, "硬币", "coins", pb.draw_coins),
    ("scissors", "benign", False, "剪刀", "scissors", pb.draw_scissors),
    ("belt_buckle", "benign", False, "皮带扣", "belt buckle", pb.draw_belt_buckle),
    ("bottle", "benign", False, "玻璃瓶", "glass bottle", pb.draw_bottle),
)

PART_KINDS: dict[str, PartKind] = {
    key: PartKind(key, cat, threat, zh, en, fn) for key, cat, threat, zh, en, fn in _KINDS
}
THREAT_KINDS: tuple[str, ...] = tuple(k for k, v in PART_KINDS.items() if v.threat)
BENIGN_KINDS: tuple[str, ...] = tuple(k for k, v in PART_KINDS.items() if not v.threat)


# Kinds only styled scenes draw (synth.styles): long guns and dense everyday clutter. They
# stay out of PART_KINDS so the default generator, galleries and trainers that iterate over
# PART_KINDS / THREAT_KINDS / BENIGN_KINDS are unchanged.
_SCENE_KINDS = (
    ("rifle", "whole_firearm", True, "步枪", "rifle", pl.draw_rifle),
    ("shotgun", "whole_firearm", True, "霰弹枪", "shotgun", pl.draw_shotgun),
    ("laptop", "benign", False, "笔记本电脑", "laptop", pc.draw_laptop),
    ("power_bank", "benign", False, "充电宝", "power bank", pc.draw_power_bank),
    ("cable_bundle", "benign", False, "线缆束", "cable bundle", pc.draw_cable_bundle),
    ("charger_bundle", "benign", False, "带线充电器", "charger with cable",
     pc.draw_charger_bundle),
    ("headphones", "benign", False, "耳机", "headphones", pc.draw_headphones),
    ("hair_dryer", "benign", False, "吹风机", "hair dryer", pc.draw_hair_dryer),
    ("plastic_bottle", "benign", False, "塑料瓶", "plastic bottle", pc.draw_plastic_bottle),
    ("shoes", "benign", False, "鞋", "pair of shoes", pc.draw_shoes),
    ("umbrella", "benign", False, "折叠伞", "folding umbrella", pc.draw_umbrella_compact),
    ("can", "benign", False, "罐头", "can or aerosol", pc.draw_can),
    ("book", "benign", False, "书", "book", pc.draw_book),
    ("hammer", "benign", False, "锤子", "hammer", pc.draw_hammer),
    ("pliers", "benign", False, "钳子", "pliers", pc.draw_pliers),
    ("drill", "benign", False, "电钻", "cordless drill", pc.draw_drill),
    ("tape_measure", "benign", False, "卷尺", "tape measure", pc.draw_tape_measure),
    # Prohibited, but not firearm parts: negatives for a firearm screen, drawn by name only.
    ("shuriken", "other", False, "手里剑", "throwing star", pe.draw_shuriken),
    ("razor_blade", "other", False, "刀片", "razor blade", pe.draw_razor_blade),
)
SCENE_KINDS: dict[str, PartKind] = {
    key: PartKind(key, cat, threat, zh, en, fn) for key, cat, threat, zh, en, fn in _SCENE_KINDS
}
LONG_GUN_KINDS: tuple[str, ...] = ("rifle", "shotgun")
CONFUSER_KINDS: tuple[str, ...] = ("shuriken", "razor_blade")


def part_kind(kind: str) -> PartKind:
    """Look up a kind, raising a ValueError that lists the known kinds."""
    try:
        return PART_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown part kind {kind!r}; known: {sorted(PART_KINDS)}") from None


def any_kind(kind: str) -> PartKind:
    """Look up a kind of PART_KINDS or SCENE_KINDS, raising a ValueError listing both."""
    spec = PART_KINDS.get(kind) or SCENE_KINDS.get(kind)
    if spec is None:
        known = sorted(PART_KINDS) + sorted(SCENE_KINDS)
        raise ValueError(f"unknown part kind {kind!r}; known: {known}")
    return spec


def render_part(kind: str, rng: np.random.Generator, *, size_px: int = 256,
                mm_per_px: float | None = None, angle_deg: float = 0.0,
                flip: bool = False) -> Part:
    """Render a random instance of ``kind`` as thickness maps.

    The longer side of the result is ``size_px`` pixels unless ``mm_per_px`` fixes
    the physical scale; ``angle_deg`` rotates the part exactly (no resampling).
    """
    return render_sketch(kind, any_kind(kind).sketch(rng), size_px=size_px, mm_per_px=mm_per_px,
                         angle_deg=angle_deg, flip=flip)


def render_sketch(kind: str, sk: Sketch, *, size_px: int = 256, mm_per_px: float | None = None,
                  angle_deg: float = 0.0, flip: bool = False) -> Part:
    """Rasterise an already drawn sketch of ``kind`` (see ``render_part``)."""
    layers, px = rasterize(sk, size_px=size_px, mm_per_px=mm_per_px, angle_deg=angle_deg,
                           flip=flip)
    main = next(op.material for op in sk.ops if not op.cut)
    extra = {m: t for m, t in layers.items() if m != main}
    return Part(kind, layers[main], main, px, extra)
