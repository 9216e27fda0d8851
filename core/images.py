"""Safe image loading and the image <-> tensor conversions every part of PoseLab shares.

``open_image`` is the only way PoseLab reads a picture: dataset samples, the dashboard's
uploads and its camera input all go through it. It returns an 8-bit RGB ``PIL.Image``
whatever came in, or raises ``core.errors.DataError`` with one line naming the file
(or the upload's ``name``):

==================  ==========================================================
input               what happens
==================  ==========================================================
RGB                 kept as is
L, 1 (grayscale)    the grey value copied to R, G and B
LA, RGBA, PA, P+tr  alpha-composited on **white** (see below)
P (palette)         palette looked up
CMYK                PIL's conversion (Adobe-inverted JPEGs are handled by PIL)
I;16, I;16B, I      16-bit grey scaled to 8 bit as ``round(v * 255 / 65535)``
                    (PIL's own ``convert("L")`` *clips* at 255, which turns almost
                    every 16-bit image white)
F (32-bit float)    [0, 1] data scaled by 255; other ranges min-max stretched
EXIF orientation    applied (``ImageOps.exif_transpose``), so a phone photo shot in
                    portrait is upright, and width/height are the upright ones
missing file, empty bytes, not an image, unsupported format, truncated or corrupt
data, more than ``max_pixels`` pixels (decompression bomb): ``DataError``
==================  ==========================================================

Why white for transparency: the pixels under alpha = 0 are arbitrary (often black or
left-over colour) and a viewer never sees them; compositing on white shows the model
what a person sees on a light page. InfiniteForm's RGBA renders are fully opaque, so
for them compositing equals dropping the alpha channel.

The pixel-count limit is checked on the header, *before* any pixel is decoded, so a
tiny PNG that claims 50,000 x 50,000 pixels costs nothing. PIL's own global guard
(``Image.MAX_IMAGE_PIXELS``) is left alone: changing it would affect every thread.

``image_to_tensor`` / ``tensor_to_image`` convert to and from the network's input
(ImageNet mean/std normalisation, as torchvision's pretrained ResNet-50 expects).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import DataError

# torchvision's ImageNet statistics (RGB, on [0, 1] pixel values).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The ImageNet mean as an 8-bit colour: padding with it gives 0 after normalisation,
# the most neutral value the network can see.
IMAGENET_MEAN_RGB8: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)

DEFAULT_MAX_PIXELS = 40_000_000

# Formats we decode. Restricting PIL's plugins keeps exotic, rarely-audited decoders
# (e.g. PSD, EPS via Ghostscript) away from uploaded bytes. "JPEG" also opens the
# multi-picture JPEGs many phones write (PIL calls them MPO); TIFF/BMP/GIF cover lab
# exports.
FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")

# Everything PIL may raise while parsing or decoding a damaged file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                  KeyError, MemoryError, Image.DecompressionBombError)


def open_image(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """Decode ``source`` (a path, or the bytes of an upload) into an 8-bit RGB image.

    ``name`` is what error messages call the image (an upload's file name); by default
    the path, or ``"<uploaded image>"`` for bytes. The pixels are fully decoded here
    (``Image.load``), so a truncated file fails now, not later inside a DataLoader.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<uploaded image>"
        if len(source) == 0:
            raise DataError(label, "empty file (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise DataError(label, "image file is missing")
        if not path.is_file():
            raise DataError(label, "is not a file")
        if path.stat().st_size == 0:
            raise DataError(label, "empty file (0 bytes)")
        fp = path

    try:
        im = Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise DataError(label, f"not an image (or a format other than {', '.join(FORMATS)})"
                        ) from None
    except Image.DecompressionBombError as e:
        raise DataError(label, f"refused: too many pixels ({e})") from None
    except _DECODE_ERRORS as e:
        raise DataError(label, f"cannot read the image header ({_reason(e)})") from None

    out: Image.Image | None = None
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise DataError(label, f"image has no pixels ({w}x{h})")
        if w * h > max_pixels:
            raise DataError(label, f"refused: {w}x{h} = {w * h:,} pixels is more than the "
                                   f"limit of {max_pixels:,} (decompression bomb?)")
        try:
            im.load()  # full decode: truncated/corrupt data fails here
        except _DECODE_ERRORS as e:
            raise DataError(label, f"truncated or corrupt image data ({_reason(e)})") from None
        try:
            out = to_rgb8(_upright(im))
        except ValueError as e:
            raise DataError(label, str(e)) from None
        if out is im and getattr(im, "fp", None) is not None:
            # Multi-frame formats (MPO, TIFF) keep their file open after load(); hand
            # back a detached copy so closing the original below cannot break it.
            out = im.copy()
    finally:
        if out is not im:
            im.close()
    return out


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header only, EXIF orientation applied.

    Used when an annotation file does not give the size; decodes no pixels.
    """
    path = Path(path)
    try:
        with Image.open(path, formats=FORMATS) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except _DECODE_ERRORS:
                orientation = 1
    except FileNotFoundError:
        raise DataError(path, "image file is missing") from None
    except UnidentifiedImageError:
        raise DataError(path, "not an image") from None
    except _DECODE_ERRORS as e:
        raise DataError(path, f"cannot read the image header ({_reason(e)})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag. A malformed EXIF block is treated as no tag,
    as browsers do: the pixels are fine, only the metadata is broken."""
    try:
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS:
        return im


def to_rgb8(im: Image.Image) -> Image.Image:
    """Convert any decoded PIL image to 8-bit RGB (rules in the module docstring)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("L", "1"):
        return im.convert("L").convert("RGB")
    if mode == "P":
        # A palette image may carry a transparent index ("transparency" info key).
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        return im if im.mode == "RGB" else _on_white(im)
    if mode in ("RGBA", "LA", "PA", "RGBa"):
        return _on_white(im.convert("RGBA"))
    if mode.startswith("I;16") or mode == "I":
        return _gray_array_to_rgb(_scale_16bit(np.asarray(im)))
    if mode == "F":
        return _gray_array_to_rgb(_scale_float(np.asarray(im, dtype=np.float64)))
    try:  # CMYK, YCbCr, HSV, ... : PIL knows the conversion
        return im.convert("RGB")
    except ValueError:
        raise ValueError(f"unsupported colour mode {mode!r}") from None


def _on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _scale_16bit(a: np.ndarray) -> np.ndarray:
    """16-bit grey (unsigned, or 32-bit 'I' holding 16-bit data) -> uint8, by v*255/65535.

    'I' images whose values do not fit 0..65535 (rare: real 32-bit data) are
    min-max stretched instead, so they are not clipped either.
    """
    a = a.astype(np.int64)
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi <= 65535:
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    return _stretch(a.astype(np.float64))


def _scale_float(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if a.min() >= 0.0 and a.max() <= 1.0:
        return np.rint(a * 255).astype(np.uint8)
    return _stretch(a)


def _stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _gray_array_to_rgb(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(a[..., None], 3, axis=-1), "RGB")


# ----------------------------------------------------------------------------- tensors

def image_to_tensor(img: Image.Image, size: int = 224):
    """RGB PIL image -> float32 tensor (3, size, size), ImageNet-normalised.

    The whole image is resized to size x size (bilinear, antialiased when shrinking):
    no centre crop, so nothing is cut off. Callers that care about aspect ratio pass a
    square crop (``PoseDataset`` does). A non-square image is stretched, and keypoints
    given as fractions (x/W, y/H) of that image stay exactly right after stretching.
    """

    if img.mode != "RGB":
        img = to_rgb8(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    a = np.asarray(img, dtype=np.float32) / 255.0                       # (S, S, 3)
    a = (a - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # (3, S, S)


def tensor_to_image(t) -> np.ndarray:
    """ImageNet-normalised (3, H, W) tensor or array (a leading batch dim of 1 is
    allowed) -> uint8 (H, W, 3) array for display."""
    if hasattr(t, "detach"):
        t = t.detach().to("cpu").float().numpy()
    a = np.asarray(t, dtype=np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(a.shape)}")
    a = a.transpose(1, 2, 0) * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
