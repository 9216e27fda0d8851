"""Frames in: a video file, or a folder of images, as RGB uint8 arrays (H, W, 3).

``open_frames(path)`` returns a ``FrameSource`` -- checked up front (the file opens, has
a video stream, its data is whole, and its first frame decodes; a folder holds images
of one size), then iterable any number of times without holding the video in memory::

    src = open_frames("climb.mp4")          # or open_frames("frames/", fps=30)
    src.fps, src.size, src.frame_count      # 29.97, (1280, 720), 312 (container's count)
    for rgb in src: ...                     # (720, 1280, 3) uint8

Video is decoded with PyAV (``av``): FFmpeg's libraries inside a PyPI wheel (no system
FFmpeg, no network), frames handed over in-process, FFmpeg's own error messages.
(imageio-ffmpeg pipes frames out of an ``ffmpeg`` executable in a subprocess; OpenCV's
``VideoCapture`` is a larger dependency whose failures are a bare ``False``.) Frames are
turned upright when the stream carries a display rotation (phone videos), as EXIF
orientation is applied to photos.

**A video is checked, not trusted** (docs/RELIABILITY.md). A stopped download or an
unfinished recording is still a file FFmpeg plays, shorter; decoding it gives fewer
frames without an error. So before the first frame, one demux-only pass (no decoding,
about a second per GB) compares what the container declares with what its data holds:

- MP4 / MOV: a top-level box that runs past the end of the file (``mdat`` of a cut
  faststart file), or no index (``moov``) at all (a cut file with its index at the end);
- a packet the demuxer marks corrupt (its bytes end early: the last frame of a cut MP4);
- fewer packets than the declared frame count (``stream.frames``, MP4 / MOV);
- data ending a frame or more before the declared duration: the video stream's, else
  the container's (Matroska / WebM), then against the end of every stream's packets,
  as that duration spans the audio too (with two audio frames of slack: priming);
- MPEG-TS: a size that is not a whole number of 188 / 192 / 204-byte packets.

While decoding, an error from the decoder, a frame the decoder had to patch up
(``is_corrupt``), or fewer decoded frames than declared are errors too. Any of these is
a ``DataError`` naming the file, what it declares and what it holds; with
``allow_truncated=True`` (the CLI's ``--allow-truncated``) the frames before the damage
are kept instead, and the problem is in ``FrameSource.warnings`` for the caller to
record. (A cut exactly on a frame boundary of a format that declares nothing, MPEG-TS
at a packet boundary or a raw ``.h264``, is indistinguishable from a shorter video.)

Decoding uses slice threads (FFmpeg's default in PyAV), not frame threads
(``thread_type="AUTO"``): under frame threads the decoder's errors and corrupt-frame
flags are lost (a cut MP4 decodes "cleanly" to half its frames), and in this demux loop
an MP4 with 2 kB zeroed in the middle hung 4 runs of 6. Measured on the shared 2-core
CPU (720p H.264, 2026-12-03), frame threads were no faster (6-8 ms a frame either way,
within the noise of a loaded machine), beside BlazePose's ~70 ms a frame (640x360).

A folder: every file with an image suffix, in natural order (``frame2`` before
``frame10``), read with ``core.images.open_image`` (EXIF, 16-bit, alpha handled);
its frame rate is whatever the caller says (``fps``), None when unknown.

Errors mean bad input and are ``DataError(path, problem)`` with one line: a missing
path, a file that is not a video, one without a video stream, one without a single
decodable frame, a cut or damaged one (above), more than ``max_frames`` frames (default
10,000: 5.5 minutes at 30 fps) or frames over ``max_pixels`` (default 4096 x 2304, a
little over 4K UHD), images of different sizes in a folder.
"""
from __future__ import annotations

import re
import struct
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
TS_PACKET_SIZES = (188, 192, 204)     # MPEG-TS, M2TS (Blu-ray / AVCHD), TS with FEC
CUT_HINT = "the file looks cut short or damaged"


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
    allow_truncated: bool = False     # keep the frames before damage instead of raising
    warnings: list[str] = field(default_factory=list)       # what allow_truncated let through

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
        for frame in _decode(self.path, problem=self._problem):
            if n >= self.max_frames:
                raise DataError(self.path, f"more than {self.max_frames:,} frames "
                                           "(the limit; trim the video or raise max_frames)")
            a = _to_rgb(frame)
            if (a.shape[1], a.shape[0]) != self.size:
                raise DataError(self.path, f"frame {n} is {a.shape[1]}x{a.shape[0]}, not "
                                           f"{self.size[0]}x{self.size[1]} like the first")
            n += 1
            yield a

    def _problem(self, problem: str) -> None:
        """A cut or damaged video: an error, or with allow_truncated a warning (decoding
        then stops there, keeping the frames before the damage)."""
        if not self.allow_truncated:
            raise DataError(self.path, f"{problem}; {CUT_HINT} (--allow-truncated keeps the frames "
                                       "before the damage)")
        text = f"{self.path}: {problem}"
        if text not in self.warnings:       # the source may be iterated more than once
            self.warnings.append(text)


def open_frames(path: str | Path, *, fps: float | None = None,
                max_frames: int = DEFAULT_MAX_FRAMES,
                max_pixels: int = DEFAULT_MAX_PIXELS, allow_truncated: bool = False) -> FrameSource:
    """Check ``path`` (a video file, or a folder of images) and return its ``FrameSource``.

    ``fps`` is the frame rate of a folder (a video's own rate wins; passing one for a
    video overrides it). ``allow_truncated``: a video whose data ends before what its
    container declares (or is damaged part-way) gives the frames before the damage, and
    says so in ``warnings``, instead of raising."""
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
    boxes = _mp4_box_problem(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            count = int(stream.frames) or None
            container_problem = _container_problem(path, container, stream, rate)
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        if boxes:                           # what FFmpeg cannot say: the MP4's index is missing
            raise DataError(path, f"{boxes}; {CUT_HINT}, and nothing of it can be decoded") from None
        raise DataError(path, f"not a video file FFmpeg can read ({_reason(e)})") from None
    if count is not None and count > max_frames:
        raise DataError(path, f"{count:,} frames is more than the limit of {max_frames:,} "
                              "(trim the video or raise max_frames)")
    video_fps = float(Fraction(rate)) if rate else None
    src = FrameSource(path, "video", (0, 0), fps if fps is not None else video_fps, count,
                      max_frames, max_pixels, allow_truncated=allow_truncated)
    problem = container_problem or boxes    # counts first: they say what is missing
    if problem:                             # before any decoding: fails at once, not after BlazePose
        src._problem(problem)
    first = next(iter(_decode(path, problem=src._problem)), None)
    if first is None:
        raise DataError(path, "has no frames")
    a = _to_rgb(first)
    h, w = a.shape[:2]
    if w * h > max_pixels:
        raise DataError(path, f"frames of {w}x{h} = {w * h:,} pixels are more than the limit of "
                              f"{max_pixels:,}")
    src.size = (w, h)
    return src


def read_frames(path: str | Path, **kwargs) -> tuple[np.ndarray, float | None]:
    """All frames at once -> ((T, H, W, 3) uint8, fps). For short clips; see ``open_frames``."""
    src = open_frames(path, **kwargs)
    return np.stack(list(src)), src.fps


# --------------------------------------------------------------------------- checks

def _mp4_box_problem(path: Path) -> str | None:
    """For an MP4 / MOV file (it starts with an ``ftyp`` box): its ``mdat`` (the frames)
    or ``moov`` (the index) box running past the end of the file, or no ``moov`` at all.
    None otherwise, and for every other format."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return None
        offset, names = 0, set()
        for _ in range(100_000):            # top-level boxes are few; this bounds a garbage file
            if offset >= size:
                break
            f.seek(offset)
            h = f.read(16)
            if len(h) < 8:
                break
            box_size, name = struct.unpack(">I", h[:4])[0], h[4:8].decode("latin-1")
            if box_size == 1 and len(h) == 16:
                box_size = struct.unpack(">Q", h[8:16])[0]
            elif box_size == 0:             # "to the end of the file": legal for the last box
                box_size = size - offset
            if box_size < 8 or offset + box_size > size:
                # The frames or the index cut short. A cut trailing box of another kind
                # ('free', 'udta') loses no frame, and junk after the last box is no cut.
                if box_size >= 8 and name in ("mdat", "moov"):
                    return (f"is {size:,} bytes but its {name!r} box runs to byte {offset + box_size:,} "
                            f"({offset + box_size - size:,} bytes missing)")
                break
            names.add(name)
            offset += box_size
    if "moov" not in names:
        return "has no index (MP4 'moov' box): it ends before its recording or download finished"
    return None


def _container_problem(path: Path, container, stream, rate) -> str | None:
    """What the container declares against what its packets hold (one demux-only pass)."""
    declared = int(stream.frames) or None
    interval = 1 / float(rate) if rate else None
    packets, corrupt, other_frame = 0, None, 0.0
    ends: dict[bool, float] = {}              # is the video stream -> where its packets end, s
    try:
        for pkt in container.demux():         # every stream: the container's duration spans audio
            if not pkt.size:
                continue
            video = pkt.stream.index == stream.index
            if not video and pkt.duration and pkt.time_base is not None:
                other_frame = max(other_frame, float(pkt.duration * pkt.time_base))
            if pkt.pts is not None and pkt.time_base is not None:
                stop = float(pkt.pts * pkt.time_base) + (float(pkt.duration * pkt.time_base) if pkt.duration
                                                         else interval or 0.0)
                ends[video] = max(ends.get(video, stop), stop)
            if video:
                if pkt.is_corrupt and corrupt is None:
                    corrupt = packets
                packets += 1
    except (av.FFmpegError, OSError) as e:    # it opened: the damage is part-way through
        return f"its data is damaged after frame {packets} ({_reason(e)})"
    whole = packets if corrupt is None else corrupt
    if declared is not None and packets < declared:
        return (f"declares {declared} frames but its data holds {whole}"
                + (f" whole ones (it stops inside frame {corrupt})" if corrupt is not None else ""))
    if corrupt is not None:
        return f"the data of frame {corrupt} ends early or is damaged (FFmpeg marks it corrupt)"
    if container.format.name == "mpegts":
        size = path.stat().st_size
        if all(size % p for p in TS_PACKET_SIZES):
            return (f"ends inside a transport-stream packet ({size:,} bytes is not a whole number of "
                    f"188-byte packets) after data for {packets} frames")
    declared_end, whose = _declared_end(container, stream)
    end = ends.get(True) if whose == "video stream" else max(ends.values(), default=None)
    # Durations are rounded (Matroska: to the millisecond) and a lost frame is an
    # interval; a container's duration also holds the audio encoder's priming and
    # padding, up to about two audio frames.
    slack = 0.75 * (interval or 0) + (2 * other_frame if whose == "container" else 0)
    if declared_end is not None and end is not None and interval and end < declared_end - slack:
        return (f"declares {declared_end:.2f} s ({whose} duration, about {round(declared_end / interval)} "
                f"frames) but its data ends at {end:.2f} s ({packets} frames)")
    return None


def _declared_end(container, stream) -> tuple[float | None, str]:
    """(end time in seconds that the container declares, whose duration it is)."""
    if stream.duration and stream.time_base:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base), "video stream"
    if container.duration:
        return ((container.start_time or 0) + container.duration) / av.time_base, "container"
    return None, ""


# --------------------------------------------------------------------------- PyAV

def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    # FFmpeg's messages name the file; it is already at the start of the line.
    text = re.sub(r":\s*'[^']*'", "", text)
    return re.sub(r";\s*last error log:\s*\[[^\]]*\]\s*", ": ", text)


def _decode(path: Path, *, problem) -> Iterator:
    """Decoded video frames of ``path`` (PyAV VideoFrame). A damaged file -- a packet
    marked corrupt, a decoder error, a frame the decoder patched up, fewer frames than
    declared -- calls ``problem(text)``, which raises, or returns to let decoding stop
    there with the frames before the damage. No frame at all is a DataError."""
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"      # not frame threads: they lose errors (module docstring)
            declared, packets, discarded, damaged = int(stream.frames) or None, 0, 0, None
            for pkt in container.demux(stream):
                cut = bool(pkt.size and pkt.is_corrupt)
                if cut:                       # not decoded: flush out the frames before it
                    damaged = f"the data of frame {packets} ends early or is damaged (FFmpeg marks it corrupt)"
                packets += bool(pkt.size)
                discarded += bool(pkt.size and pkt.is_discard)   # edit lists: frames cut on purpose
                for frame in stream.codec_context.decode(None) if cut else pkt.decode():
                    if frame.is_corrupt:
                        damaged = f"frame {n} is damaged (the decoder had to conceal errors)"
                        break
                    n += 1
                    yield frame
                if damaged:
                    break
            if damaged is None and declared is not None and n < declared - discarded:
                damaged = f"declares {declared - discarded} frames but {n} decode"
    except (av.FFmpegError, OSError, ValueError) as e:
        if n == 0:
            raise DataError(path, f"not a video file FFmpeg can read ({_reason(e)})") from None
        damaged = f"corrupt video data after frame {n - 1} ({_reason(e)})"
    if damaged:
        if n == 0:
            raise DataError(path, f"{damaged}; {CUT_HINT}, and no frame before it decodes")
        problem(damaged)


def _to_rgb(frame) -> np.ndarray:
    """PyAV frame -> upright (H, W, 3) uint8 RGB."""
    a = frame.to_ndarray(format="rgb24")
    # The display matrix's rotation, counter-clockwise degrees (PyAV / FFmpeg's sign).
    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
    if turns:
        a = np.ascontiguousarray(np.rot90(a, k=turns))
    return a
