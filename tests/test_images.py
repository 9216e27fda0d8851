"""core.images: every colour mode, EXIF orientation, and every way a file can be bad.

Images are made here with PIL; pixel values are checked, not only modes.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from core.errors import DataError
from core.images import (
    IMAGENET_MEAN,
    IMAGENET_MEAN_RGB8,
    IMAGENET_STD,
    image_to_tensor,
    open_image,
    read_image_size,
    tensor_to_image,
    to_rgb8,
)


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# ----------------------------------------------------------------------------- modes

def test_rgb_png_and_webp_round_trip_exactly():
    img = _noise(23, 17)
    for fmt, kw in (("PNG", {}), ("WEBP", {"lossless": True})):
        out = open_image(_bytes(img, fmt, **kw))
        assert out.mode == "RGB" and out.size == (23, 17)
        assert np.array_equal(np.asarray(out), np.asarray(img)), fmt


def test_grayscale_is_copied_to_three_channels():
    gray = np.array([[0, 50], [128, 255]], np.uint8)
    out = np.asarray(open_image(_bytes(Image.fromarray(gray, "L"), "PNG")))
    assert out.shape == (2, 2, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], gray)


def test_one_bit_image():
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    out = np.asarray(open_image(_bytes(img, "PNG")))
    assert out[0, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]


def test_rgba_is_composited_on_white():
    a = np.zeros((1, 3, 4), np.uint8)
    a[0, 0] = (0, 0, 0, 0)        # fully transparent black -> white
    a[0, 1] = (255, 0, 0, 255)    # opaque red -> red
    a[0, 2] = (0, 0, 255, 128)    # half blue over white
    out = np.asarray(open_image(_bytes(Image.fromarray(a, "RGBA"), "PNG"))).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]
    # 128/255 blue over white: r = g = 255 * (1 - 128/255) = 127, b = 255
    assert np.abs(out[0, 2] - [127, 127, 255]).max() <= 1


def test_la_and_palette_with_transparency_composite_on_white():
    la = Image.fromarray(np.array([[[10, 255], [10, 0]]], np.uint8), "LA")
    out = np.asarray(open_image(_bytes(la, "PNG")))
    assert out[0, 0].tolist() == [10, 10, 10] and out[0, 1].tolist() == [255, 255, 255]

    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 200, 0] + [9, 9, 9] * 255)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    data = _bytes(pal, "PNG", transparency=1)        # palette index 1 is transparent
    out = np.asarray(open_image(data))
    assert out[0, 0].tolist() == [0, 200, 0] and out[0, 1].tolist() == [255, 255, 255]


def test_16bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 1000, 32896, 65535]], np.uint16)   # 32896 = 128 * 257
    img = Image.fromarray(values)                             # mode I;16
    assert img.mode == "I;16"
    out = np.asarray(open_image(_bytes(img, "PNG")))
    # PIL's convert("L") would give [0, 255, 255, 255]
    assert out[0, :, 0].tolist() == [0, 4, 128, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16bit_big_endian_and_32bit_int_modes():
    values = np.array([[0, 257 * 10, 65535]], np.uint16)
    # (PIL's own convert("I;16B") clips too, so build the big-endian image from bytes)
    big = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    assert np.asarray(to_rgb8(big))[0, :, 0].tolist() == [0, 10, 255]
    # 'I' (32-bit) holding 16-bit data, as older PIL opened 16-bit PNGs
    as_i = Image.fromarray(values.astype(np.int32), "I")
    assert np.asarray(to_rgb8(as_i))[0, :, 0].tolist() == [0, 10, 255]
    # 32-bit data beyond 16 bit is stretched, not clipped
    wide = Image.fromarray(np.array([[-100, 0, 100_000]], np.int32), "I")
    assert np.asarray(to_rgb8(wide))[0, :, 0].tolist() == [0, 0, 255]


def test_16bit_tiff_file():
    values = np.array([[0, 65535], [257 * 3, 257 * 200]], np.uint16)
    out = np.asarray(open_image(_bytes(Image.fromarray(values), "TIFF")))
    assert out[..., 0].tolist() == [[0, 255], [3, 200]]


def test_float_image_in_unit_range():
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert np.asarray(to_rgb8(f))[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_and_tiff_convert_to_rgb():
    cmyk = Image.new("CMYK", (16, 8), (0, 0, 0, 0))               # paper white
    cmyk.paste((0, 255, 255, 0), (8, 0, 16, 8))                   # magenta + yellow = red
    tiff = np.asarray(open_image(_bytes(cmyk, "TIFF")))
    assert tiff[4, 2].tolist() == [255, 255, 255] and tiff[4, 12].tolist() == [255, 0, 0]
    jpeg = np.asarray(open_image(_bytes(cmyk, "JPEG", quality=95))).astype(int)
    assert np.abs(jpeg[4, 2] - [255, 255, 255]).max() <= 8
    assert np.abs(jpeg[4, 12] - [255, 0, 0]).max() <= 12


def _two_halves(w: int = 40, h: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (w, h), (255, 0, 0))
    img.paste((0, 0, 255), (w // 2, 0, w, h))
    return img


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                       # "rotate 90 degrees clockwise to display"
    path = tmp_path / f"phone.{fmt.lower()}"
    _two_halves().save(path, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    out = open_image(path)
    assert out.size == (20, 40)            # portrait after rotation
    a = np.asarray(out).astype(int)
    # turning clockwise brings the left (red) half to the top
    assert np.abs(a[5, 10] - [255, 0, 0]).max() < 40
    assert np.abs(a[34, 10] - [0, 0, 255]).max() < 40
    assert read_image_size(path) == (20, 40)


def test_palette_gif_and_bmp():
    img = _noise(8, 8).convert("P")
    for fmt in ("GIF", "BMP"):
        out = open_image(_bytes(img, fmt))
        assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(img.convert("RGB")))


# ----------------------------------------------------------------------------- bad input

def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"nope\.png: image file is missing"):
        open_image(tmp_path / "nope.png")


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"^selfie\.jpg: empty"):
        open_image(b"", name="selfie.jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero\.png: empty"):
        open_image(tmp_path / "zero.png")


def test_not_an_image(tmp_path):
    with pytest.raises(DataError, match=r"^notes\.png: not an image"):
        open_image(b"hello, this is text\n" * 10, name="notes.png")
    p = tmp_path / "data.json"
    p.write_text('{"a": 1}')
    with pytest.raises(DataError, match=r"data\.json: not an image"):
        open_image(p)
    # A format we deliberately do not decode (PDF) is refused the same way.
    with pytest.raises(DataError, match="not an image"):
        open_image(_bytes(_noise(8, 8), "PDF"), name="doc.pdf")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_fails_on_full_decode(fmt, tmp_path):
    data = _bytes(_noise(64, 64), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(DataError, match=rf"cut\.{fmt.lower()}: (truncated or corrupt|cannot read)"):
        open_image(path)


def test_corrupt_png_crc(tmp_path):
    data = bytearray(_bytes(_noise(16, 16), "PNG"))
    i = data.index(b"IDAT") + 10
    data[i] ^= 0xFF                          # flip bits inside the compressed pixels
    with pytest.raises(DataError, match="bad.png"):
        open_image(bytes(data), name="bad.png")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGB pixels but carries one tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: decoded.append(self) or (_ for _ in ()).throw(AssertionError))
    # 8000 x 8000 = 64 M pixels: over our 40 M default, under PIL's own warning level
    with pytest.raises(DataError, match=r"^bomb\.png: refused: 8000x8000"):
        open_image(_png_header_only(8000, 8000), name="bomb.png")
    # far over PIL's own hard limit: still our DataError, not PIL's exception
    with pytest.raises(DataError, match=r"^huge\.png: refused"):
        open_image(_png_header_only(30000, 30000), name="huge.png")
    # the limit is a parameter
    with pytest.raises(DataError, match="refused: 100x100 = 10,000 pixels"):
        open_image(_bytes(_noise(100, 100), "PNG"), max_pixels=5_000, name="x.png")
    assert decoded == []


def test_header_only_png_within_limit_is_truncated_not_refused():
    with pytest.raises(DataError, match="truncated or corrupt"):
        open_image(_png_header_only(300, 300), name="short.png")


# ----------------------------------------------------------------------------- tensors

def test_image_to_tensor_normalises_with_imagenet_stats():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    t = image_to_tensor(Image.new("RGB", (50, 30), (255, 255, 255)), size=16)
    assert t.shape == (3, 16, 16) and t.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(t[:, 0, 0], expected, atol=1e-6)
    mean = image_to_tensor(Image.new("RGB", (8, 8), IMAGENET_MEAN_RGB8), size=8)
    assert mean.abs().max() < 0.01                # the padding colour is ~0 after normalisation


def test_image_to_tensor_channel_order_and_layout():
    img = Image.new("RGB", (4, 4), (0, 0, 0))
    img.putpixel((3, 0), (255, 0, 0))            # top-right red
    t = image_to_tensor(img, size=4)
    red_hi = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert t[0, 0, 3] == pytest.approx(red_hi, abs=1e-5)
    assert t[1, 0, 3] == pytest.approx(-IMAGENET_MEAN[1] / IMAGENET_STD[1], abs=1e-5)
    assert t[0, 3, 0] == pytest.approx(-IMAGENET_MEAN[0] / IMAGENET_STD[0], abs=1e-5)


def test_tensor_to_image_inverts_image_to_tensor():
    img = _noise(32, 32, seed=3)
    t = image_to_tensor(img, size=32)
    assert np.array_equal(tensor_to_image(t), np.asarray(img))
    assert np.array_equal(tensor_to_image(t[None]), np.asarray(img))      # batch of one
    assert np.array_equal(tensor_to_image(t.numpy()), np.asarray(img))
    with pytest.raises(ValueError, match="expected a"):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_open_image_from_path_returns_usable_detached_image(tmp_path):
    p = tmp_path / "a.tiff"
    _noise(10, 6).save(p)                        # RGB TIFF keeps its file open after load()
    out = open_image(p)
    assert np.asarray(out).shape == (6, 10, 3)
    assert isinstance(out, Image.Image) and Path(p).exists()
