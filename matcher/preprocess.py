"""Preprocessing that travels with the model: one config, two modalities (photo, xray)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps

Modality = Literal["photo", "xray"]
MODALITIES: tuple[str, ...] = ("photo", "xray")


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything needed to turn a decoded image into the model's input tensor."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    photo_resize: Literal["letterbox", "center_crop", "stretch"] = "letterbox"
    photo_fill: tuple[int, int, int] = (127, 127, 127)
    # Empty X-ray is full transmission, so X-ray letterboxing pads with white.
    xray_fill: float = 1.0
    # Flat-field: the brightest `xray_white_percentile` of the scan is taken as empty belt.
    xray_white_percentile: float = 99.5

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        """Inverse of to_dict; tuples are restored from JSON lists."""
        d = dict(d)
        for key in ("mean", "std", "photo_fill"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def check_modality(modality: str) -> Modality:
    """Validate a modality name."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return modality  # type: ignore[return-value]


def _to_float_grey_raw(img: Image.Image) -> np.ndarray:
    """Grey values in [0, 1] from any PIL mode, before flat-fielding."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float32)
        return np.clip(arr / 65535.0, 0.0, 1.0)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        peak = float(arr.max()) if arr.size else 1.0
        return np.clip(arr / (peak if peak > 1.0 else 1.0), 0.0, 1.0)
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    rgb = _rgb_on_white(img)
    return pseudo_colour_to_grey(np.asarray(rgb, dtype=np.float32) / 255.0)


def _rgb_on_white(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def pseudo_colour_to_grey(rgb: np.ndarray) -> np.ndarray:
    """Map an (h, w, 3) float image in [0, 1] to transmission-like grey.

    Station software paints organic material orange, inorganic green and metal blue, darker
    where denser. Luma weights blue least, so metal (blue) comes out darkest and organics
    lightest, which keeps the density ordering of a single-energy grey scan.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) array, got {rgb.shape}")
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def flat_field(grey: np.ndarray, white_percentile: float = 99.5) -> np.ndarray:
    """Rescale so the empty belt (brightest pixels) becomes transmission 1.0."""
    if grey.size == 0:
        return grey
    white = float(np.percentile(grey, white_percentile))
    if white <= 1e-6:
        return np.zeros_like(grey)
    return np.clip(grey / white, 0.0, 1.0).astype(np.float32)


def xray_to_transmission(img: Image.Image, white_percentile: float = 99.5) -> np.ndarray:
    """Any X-ray export (8/16-bit grey, palette, pseudo-colour RGB) -> float32 transmission."""
    return flat_field(_to_float_grey_raw(img), white_percentile)


def photo_to_rgb(img: Image.Image) -> Image.Image:
    """A phone photo -> upright 8-bit RGB (EXIF orientation applied)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _to_float_grey_raw(img)
        img = Image.fromarray((grey * 255.0 + 0.5).astype(np.uint8), "L")
    return _rgb_on_white(img)


def letterbox_box(w: int, h: int, size: int) -> tuple[int, int, int, int]:
    """(new_w, new_h, left, top) to fit a w x h image inside a size x size square."""
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return nw, nh, (size - nw) // 2, (size - nh) // 2


def _resize_photo(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    size = cfg.input_size
    if cfg.photo_resize == "stretch":
        return img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    if cfg.photo_resize == "center_crop":
        return ImageOps.fit(img, (size, size), Image.BILINEAR)
    nw, nh, left, top = letterbox_box(img.width, img.height, size)
    canvas = Image.new("RGB", (size, size), cfg.photo_fill)
    canvas.paste(img.resize((nw, nh), Image.BILINEAR, reducing_gap=2.0), (left, top))
    return canvas


def letterbox_grey(grey: np.ndarray, size: int, fill: float = 1.0) -> np.ndarray:
    """Fit a float grey image into a size x size square padded with ``fill``."""
    h, w = grey.shape
    nw, nh, left, top = letterbox_box(w, h, size)
    resized = np.asarray(
        Image.fromarray(grey.astype(np.float32), "F").resize((nw, nh), Image.BILINEAR),
        dtype=np.float32,
    )
    out = np.full((size, size), fill, dtype=np.float32)
    out[top : top + nh, left : left + nw] = resized
    return out


def _normalise(chw: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    return torch.from_numpy((chw - mean) / std)


def grey_to_tensor(grey_square: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """A square float transmission image -> normalised (3, s, s) tensor."""
    chw = np.broadcast_to(grey_square[None, :, :], (3, *grey_square.shape)).astype(np.float32)
    return _normalise(chw, cfg)


def preprocess(img: Image.Image, modality: Modality, cfg: PreprocessConfig) -> torch.Tensor:
    """Decoded image -> normalised (3, s, s) float tensor for the given modality."""
    if modality == "xray":
        grey = xray_to_transmission(img, cfg.xray_white_percentile)
        return grey_to_tensor(letterbox_grey(grey, cfg.input_size, cfg.xray_fill), cfg)
    if modality == "photo":
        rgb = _resize_photo(photo_to_rgb(img), cfg)
        chw = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return _normalise(chw, cfg)
    raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
