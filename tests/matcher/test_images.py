"""Decoding untrusted images: clear errors, limits, modalities."""

import io

import numpy as np
import pytest
from PIL import Image

from matcher.images import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    load_image,
)
from matcher.preprocess import (
    PreprocessConfig,
    flat_field,
    letterbox_grey,
    photo_to_rgb,
    preprocess,
    pseudo_colour_to_grey,
    xray_to_transmission,
)


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_not_an_image():
    with pytest.raises(NotAnImageError, match="not a supported image"):
        load_image(b"%PDF-1.4 definitely not an image")


def test_truncated_png_is_corrupt():
    data = _png(Image.new("RGB", (200, 200), (10, 200, 30)))
    with pytest.raises(CorruptImageError):
        load_image(data[: len(data) // 2])


def test_pixel_limit_before_decoding():
    data = _png(Image.new("L", (400, 300)))
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        load_image(data, max_pixels=100_000)
    assert load_image(data, max_pixels=120_000).size == (400, 300)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(NotAnImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(NotAnImageError, match="directory"):
        load_image(tmp_path)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    loaded = load_image(_png(img, "JPEG", exif=exif.tobytes()))
    assert photo_to_rgb(loaded).size == (20, 40)


def test_16bit_and_8bit_xray_agree():
    rng = np.random.default_rng(0)
    t = rng.uniform(0.05, 1.0, (64, 64)).astype(np.float32)
    t[:4, :] = 1.0  # empty belt
    img8 = Image.fromarray((t * 255).round().astype(np.uint8), "L")
    # 12 significant bits in a 16-bit container, as many detectors export
    img16 = Image.fromarray((t * 4095).round().astype(np.uint16))
    a = xray_to_transmission(load_image(_png(img8)))
    b = xray_to_transmission(load_image(_png(img16)))
    assert a.dtype == np.float32 and a.max() == pytest.approx(1.0)
    np.testing.assert_allclose(a, b, atol=0.01)


def test_pseudo_colour_orders_metal_darkest():
    orange, green, blue = (1.0, 0.65, 0.0), (0.2, 0.8, 0.2), (0.1, 0.2, 0.9)
    grey = pseudo_colour_to_grey(np.array([[orange, green, blue]], dtype=np.float32))[0]
    assert grey[0] > grey[1] > grey[2]


def test_flat_field_maps_belt_to_one():
    grey = np.full((10, 10), 0.8, np.float32)
    grey[5:, 5:] = 0.2
    out = flat_field(grey)
    assert out.max() == pytest.approx(1.0) and out[6, 6] == pytest.approx(0.25)


def test_xray_letterbox_pads_with_white():
    out = letterbox_grey(np.zeros((10, 40), np.float32), 32)
    assert out.shape == (32, 32)
    assert out[0, 0] == 1.0 and out[16, 16] == 0.0


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "RGB"])
def test_preprocess_any_mode(mode):
    cfg = PreprocessConfig(input_size=48)
    base = Image.new("RGB", (60, 30), (200, 120, 40))
    img = (
        base.convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.full((30, 60), 3000, np.uint16))
    )
    for modality in ("photo", "xray"):
        t = preprocess(img, modality, cfg)
        assert t.shape == (3, 48, 48) and np.isfinite(t.numpy()).all()


def test_unknown_modality():
    with pytest.raises(ValueError, match="modality"):
        preprocess(Image.new("RGB", (8, 8)), "thermal", PreprocessConfig())  # type: ignore[arg-type]
