"""The fixed vocabulary of part categories, with Chinese and English names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One part category: a stable key plus display names."""

    key: str
    zh: str
    en: str


CATEGORIES: tuple[Category, ...] = (
    Category("barrel", "枪管", "Barrel"),
    Category("slide", "套筒", "Slide"),
    Category("frame", "机匣/枪身", "Frame / receiver"),
    Category("bolt", "枪机", "Bolt"),
    Category("trigger_group", "击发机构", "Trigger group"),
    Category("firing_pin", "击针", "Firing pin"),
    Category("magazine", "弹匣", "Magazine"),
    Category("spring", "弹簧", "Spring"),
    Category("cylinder", "转轮", "Cylinder"),
    Category("suppressor", "消音器", "Suppressor"),
    Category("cartridge", "枪弹/弹药", "Cartridge / ammunition"),
    Category("whole_firearm", "整枪", "Whole firearm"),
    Category("replica", "仿真枪/玩具枪", "Replica / toy"),
    Category("benign", "非危险相似物", "Benign look-alike"),
    Category("other", "其他", "Other"),
)

CATEGORY_KEYS: tuple[str, ...] = tuple(c.key for c in CATEGORIES)
_BY_KEY = {c.key: c for c in CATEGORIES}
# Accept a few natural spellings on input; store only the canonical key.
_ALIASES = {
    "frame/receiver": "frame",
    "receiver": "frame",
    "trigger group": "trigger_group",
    "firing pin": "firing_pin",
    "cartridge/ammunition": "cartridge",
    "ammunition": "cartridge",
    "ammo": "cartridge",
    "whole firearm": "whole_firearm",
    "firearm": "whole_firearm",
    "replica/toy": "replica",
    "toy": "replica",
    "benign look-alike": "benign",
}


def normalize_category(value: str | None) -> str:
    """Canonical category key for a user-given value; raises ValueError listing valid keys."""
    if value is None or value.strip() == "":
        return "other"
    v = value.strip().lower()
    v = _ALIASES.get(v, v).replace("-", "_")
    if v in _BY_KEY:
        return v
    for c in CATEGORIES:
        if value.strip() in (c.zh, c.en):
            return c.key
    raise ValueError(f"unknown category {value!r}; valid categories: {', '.join(CATEGORY_KEYS)}")


def category(key: str) -> Category:
    """The Category for a canonical key."""
    return _BY_KEY[normalize_category(key)]
