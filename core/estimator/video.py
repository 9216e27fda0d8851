"""Frames in: a video file, or a folder of images, as RGB uint8 arrays (H, W, 3).

``open_frames(path)`` returns a ``FrameSource`` -- checked up front (the file opens, has
a video stream, and its first frame decodes; a folder holds images of one size), then
iterable any number of times without holding the video in memory::

    src = open_frames("climb.mp4")          # or open_frames("frames/", fps=30)
    src.fps, src.size, src.frame_count      # 29.97, (1280, 720), 312 (container's count)
    for rgb in src: ...                     # (720, 1280, 3) uint8

Video is decoded with PyAV (``av``): FFmpeg's libraries inside a PyPI wheel (no system
FFmpeg, no network), frames handed over in-process, FFmpeg's own error messages.
(imageio-ffmpeg pipes frames out of an ``ffmpeg`` executable in a subprocess; OpenCV's
``VideoCapture`` is a larger dependency whose failures are a bare ``False``.) Frames are
turned upright when the stream carries a display rotation (phone videos), as EXIF
orientation is applied to photos.

A folder: every file with an image suffix, in natural order (``frame2`` before
``frame10``), read with ``core.images.open_image`` (EXIF, 16-bit, alpha handled);
its frame rate is whatever the caller says (``fps``), None when unknown.

Errors mean bad input and are ``DataError(path, problem)`` with one line: a missing
path, a file that is not a video, one without a video stream, one without a single
decodable frame, corrupt data part-way through (the frame number is named), more than
``max_frames`` frames (default 10,000: 5.5 minutes at 30 fps) or frames over
``max_pixels`` (default 4096 x 2304, a little over 4K UHD), images of different sizes
in a folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from core.errors import DataError
from core.images import open_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_FRAMES = 10_000
DEFAULT_MAX_PIXELS = 4096 * 2304


def natural_key(name: str) -> tuple:
    """Sort key: digit runs compare as numbers ('f2' < 'f10'), the rest case-blind."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


@dataclass
class FrameSource:
    """A checked video file or image folder; iterate it for (H, W, 3) uint8 frames."""
    path: Path
    kind: str                         # "video" or "frames"
    size: tuple[int, int]             # (width, height) of every frame, upright
    fps: float | None                 # frames per second; None when unknown
    frame_count: int | None           # exact for a folder; a video's container count (None, or off)
    max_frames: int = DEFAULT_MAX_FRAMES
    max_pixels: int = DEFAULT_MAX_PIXELS
    frame_paths: list[Path] = field(default_factory=list)   # a folder's images, in order

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kind == "frames":
            return self._iter_images()
        return self._iter_video()

    def __len__(self) -> int:
        if self.frame_count is None:
            raise TypeError("frame count unknown for this video")
        return self.frame_count

    def _iter_images(self) -> Iterator[np.ndarray]:

        for p in self.frame_paths:
            a = np.asarray(open_image(p, max_pixels=self.max_pixels))
            if (a.shape[1], a.shape[0]) != self.size:
                raise DataError(p, f"is {a.shape[1]}x{a.shape[0]}, the first frame of "
                                   f"{self.path} is {self.size[0]}x{self.size[1]}: "
                                   "all frames must have one size")
            yield a

    def _iter_video(self) -> Iterator[np.ndarray]:
        n = 0
        for frame in _decode(self.path):
            if n >= self.max_frames:
                raise DataError(self.path, f"more than {self.max_frames:,} frames "
                                           "(the limit; trim the video or raise max_frames)")
            a = _to_rgb(frame)
            if (a.shape[1], a.shape[0]) != self.size:
                raise DataError(self.path, f"frame {n} is {a.shape[1]}x{a.shape[0]}, not "
                                           f"{self.size[0]}x{self.size[1]} like the first")
            n += 1
            yield a


def open_frames(path: str | Path, *, fps: float | None = None,
                max_frames: int = DEFAULT_MAX_FRAMES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """Check ``path`` (a video file, or a folder of images) and return its ``FrameSource``.

    ``fps`` is the frame rate of a folder (a video's own rate wins; passing one for a
    video overrides it)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if path.is_dir():
        files = sorted((p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                       key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(path, f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if len(files) > max_frames:
            raise DataError(path, f"{len(files):,} images is more than the limit of {max_frames:,} frames")

        first = open_image(files[0], max_pixels=max_pixels)
        return FrameSource(path, "frames", first.size, fps, len(files), max_frames, max_pixels, files)
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            count = int(stream.frames) or None
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a video file FFmpeg can read ({_reason(e)})") from None
    if count is not None and count > max_frames:
        raise DataError(path, f"{count:,} frames is more than the limit of {max_frames:,} "
                              "(trim the video or raise max_frames)")
    first = next(iter(_decode(path)), None)
    if first is None:
        raise DataError(path, "has no frames")
    a = _to_rgb(first)
    h, w = a.shape[:2]
    if w * h > max_pixels:
        raise DataError(path, f"frames of {w}x{h} = {w * h:,} pixels are more than the limit of "
                              f"{max_pixels:,}")
    video_fps = float(Fraction(rate)) if rate else None
    return FrameSource(path, "video", (w, h), fps if fps is not None else video_fps, count,
                       max_frames, max_pixels)


def read_frames(path: str | Path, **kwargs) -> tuple[np.ndarray, float | None]:
    """All frames at once -> ((T, H, W, 3) uint8, fps). For short clips; see ``open_frames``."""
    src = open_frames(path, **kwargs)
    return np.stack(list(src)), src.fps


# --------------------------------------------------------------------------- PyAV

def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    # FFmpeg's messages end with the file name; it is already at the start of the line.
    return re.sub(r":\s*'[^']*'$", "", text)


def _decode(path: Path) -> Iterator:
    """Decoded video frames of ``path`` (PyAV VideoFrame), errors as DataError."""
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"       # frame + slice threads: ~2x on 2 cores
            for frame in container.decode(stream):
                n += 1
                yield frame
    except (av.FFmpegError, OSError, ValueError) as e:
        if n == 0:
            raise DataError(path, f"not a video file FFmpeg can read ({_reason(e)})") from None
        raise DataError(path, f"corrupt video data after frame {n - 1} ({_reason(e)})") from None


def _to_rgb(frame) -> np.ndarray:
    """PyAV frame -> upright (H, W, 3) uint8 RGB."""
    a = frame.to_ndarray(format="rgb24")
    # The display matrix's rotation, counter-clockwise degrees (PyAV / FFmpeg's sign).
    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
    if turns:
        a = np.ascontiguousarray(np.rot90(a, k=turns))
    return a
