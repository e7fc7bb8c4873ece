"""Decoding untrusted image bytes into PIL images, with clear errors and size limits."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

ImageSource = str | Path | bytes | BinaryIO | Image.Image

DEFAULT_MAX_PIXELS = 50_000_000
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "MPO")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class ImageError(ValueError):
    """Base class for images we cannot use; the message is safe to show a user."""


class NotAnImageError(ImageError):
    """The bytes are not an image in a format we read."""


class CorruptImageError(ImageError):
    """The file looks like an image but is truncated or damaged."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed (decompression bombs included)."""


def _open_bytes(source: ImageSource) -> tuple[BinaryIO, str]:
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source), "<bytes>"
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            return io.BytesIO(path.read_bytes()), str(path)
        except IsADirectoryError:
            raise NotAnImageError(f"{path} is a directory, not an image") from None
        except FileNotFoundError:
            raise NotAnImageError(f"{path} does not exist") from None
        except PermissionError:
            raise NotAnImageError(f"{path} cannot be read (permission denied)") from None
    return source, getattr(source, "name", "<stream>")


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image; raise an ImageError subclass with a readable reason."""
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "<image>")
        return source
    stream, name = _open_bytes(source)
    # We enforce our own pixel limit before decoding; PIL's global bomb check would use
    # a process-wide setting we do not want to mutate.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(stream)
        except UnidentifiedImageError:
            raise NotAnImageError(
                f"{name}: not a supported image (JPEG, PNG, BMP, TIFF, WebP)"
            ) from None
        except Image.DecompressionBombError:
            raise ImageTooLargeError(f"{name}: image is too large to decode safely") from None
        except OSError as exc:
            raise CorruptImageError(f"{name}: cannot read image header ({exc})") from None
        if img.format not in SUPPORTED_FORMATS:
            raise NotAnImageError(f"{name}: unsupported image format {img.format}")
        _check_pixels(img.size, max_pixels, name)
        try:
            img.load()
        except Image.DecompressionBombError:
            raise ImageTooLargeError(f"{name}: image is too large to decode safely") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptImageError(f"{name}: image data is truncated or corrupt ({exc})") from None
    return img


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise CorruptImageError(f"{name}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {w}x{h} = {w * h / 1e6:.1f} MP exceeds the limit of {max_pixels / 1e6:.0f} MP"
        )


def is_image_path(path: Path) -> bool:
    """True if the file name has an image suffix we read."""
    return path.suffix.lower() in IMAGE_SUFFIXES
