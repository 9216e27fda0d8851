"""A cut or damaged video is refused (or, asked to, used as far as it is whole, with a
warning recorded in the dataset), never taken for a short video.

The tests write their own videos with PyAV (MP4 / MOV with the index at the front, as
a web download is, MPEG-TS, Matroska) and cut their bytes the way a stopped download
does. Before these checks, a cut faststart MP4 decoded "cleanly" to half its frames.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from core import cli
from core.errors import DataError
from core.estimator.video import open_frames

SIZE = (96, 64)


def _noise_frames(n: int, size=SIZE) -> list[np.ndarray]:
    """Frames that compress poorly, so that every frame takes a fair share of the bytes."""
    rng = np.random.default_rng(0)
    w, h = size
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _write(path: Path, frames: list[np.ndarray], *, faststart: bool = True, audio_s: float = 0.0) -> Path:
    """H.264 in the container the suffix names; MP4 / MOV with the index first (faststart)."""
    opts = {"movflags": "faststart"} if faststart and path.suffix in (".mp4", ".mov") else {}
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio_s else None
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
        if a is not None:                      # audio that runs on after the last frame
            for i in range(int(audio_s * 16000) // 1024):
                fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                fr.sample_rate, fr.pts = 16000, i * 1024
                for pkt in a.encode(fr):
                    c.mux(pkt)
            for pkt in a.encode():
                c.mux(pkt)
    return path


def _cut(path: Path, fraction: float, name: str | None = None) -> Path:
    data = path.read_bytes()
    out = path.with_name(name or f"cut-{path.name}")
    out.write_bytes(data[:int(len(data) * fraction)])
    return out


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


# ----------------------------------------------------------------------------- refused

@pytest.mark.parametrize("suffix,frames,said", [
    (".mp4", 120, "declares 120 frames but its data holds"),
    (".mov", 120, "declares 120 frames but its data holds"),
    (".ts", 60, "ends inside a transport-stream packet"),
    (".mkv", 60, "declares 2.40 s"),
])
def test_a_cut_video_is_refused_with_what_it_declares_and_holds(tmp_path, capsys, suffix, frames, said):
    whole = _write(tmp_path / f"clip{suffix}", _noise_frames(frames))
    cut = _cut(whole, 0.5)
    rc = cli.main(["estimate", "--video", str(cut), "--out", str(tmp_path / "out")])
    err = _error_lines(capsys)
    assert rc == 2 and len(err) == 1, err
    assert cut.name in err[0] and said in err[0] and "--allow-truncated" in err[0]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # no staging left
    src = open_frames(whole)                                   # the whole file: no complaint
    assert sum(1 for _ in src) == frames and not src.warnings


def test_the_count_a_cut_mp4_holds_is_named(tmp_path):
    """The message gives the declared count and the frames the data holds."""
    cut = _cut(_write(tmp_path / "clip.mp4", _noise_frames(120)), 0.5)
    with pytest.raises(DataError) as e:
        open_frames(cut)
    held = int(e.value.problem.split("its data holds ")[1].split()[0])
    assert 50 <= held <= 70 and e.value.path == cut and "\n" not in str(e.value)


def test_a_60_frame_cut_names_the_cut_not_the_window_length(tmp_path, capsys):
    cut = _cut(_write(tmp_path / "clip.mp4", _noise_frames(60)), 0.08)
    assert cli.main(["estimate", "--video", str(cut), "--out", str(tmp_path / "out")]) == 2
    (err,) = _error_lines(capsys)
    assert "declares 60 frames" in err and "at least 5" not in err


def test_a_cut_mp4_with_its_index_at_the_end_says_the_index_is_missing(tmp_path):
    cut = _cut(_write(tmp_path / "clip.mp4", _noise_frames(60), faststart=False), 0.5)
    with pytest.raises(DataError, match="'mdat' box runs to byte"):
        open_frames(cut)


def test_audio_running_past_the_last_frame_is_not_a_cut(tmp_path):
    """A container's duration spans its audio: a video whose sound runs on is whole."""
    for suffix in (".mkv", ".mp4"):
        path = _write(tmp_path / f"sound{suffix}", _noise_frames(40), audio_s=2.0)
        src = open_frames(path)
        assert sum(1 for _ in src) == 40 and not src.warnings, suffix
        with pytest.raises(DataError, match="cut short"):
            open_frames(_cut(path, 0.6))


def test_damage_in_the_middle_is_an_error_not_a_short_video(tmp_path):
    path = _write(tmp_path / "clip.mp4", _noise_frames(60))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = bytes(2000)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        list(open_frames(bad))
    assert "damaged" in str(e.value) and "--allow-truncated" in str(e.value)
    src = open_frames(bad, allow_truncated=True)
    kept = sum(1 for _ in src)
    assert 10 < kept < 60 and len(src.warnings) == 1 and "damaged.mp4" in src.warnings[0]


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".ts"])
def test_allow_truncated_keeps_the_whole_frames_of_a_cut_file(tmp_path, suffix):
    cut = _cut(_write(tmp_path / f"clip{suffix}", _noise_frames(60)), 0.5)
    src = open_frames(cut, allow_truncated=True)
    got = list(src)
    assert 20 <= len(got) <= 40 and src.warnings and all(cut.name in w for w in src.warnings)
    assert len(list(src)) == len(got) and len(src.warnings) == len(set(src.warnings))   # again, same


# ----------------------------------------------------------------------------- --allow-truncated

def test_estimate_with_allow_truncated_records_the_warning_in_the_dataset(tmp_path, capsys):
    from core.synthetic.motion import animate
    from core.synthetic.videos import render_clip
    from core.temporal.videos import load_video
    rng = np.random.default_rng(5)
    frames = [f.image for f in render_clip(animate("squat", 24, rng, image_size=(160, 120)), rng)]
    cut = _cut(_write(tmp_path / "me.mp4", frames), 0.6)
    assert cli.main(["estimate", "--video", str(cut), "--out", str(tmp_path / "mine"), "--heatmap", "16"]) == 2
    capsys.readouterr()
    assert cli.main(["estimate", "--video", str(cut), "--out", str(tmp_path / "mine"), "--heatmap", "16",
                     "--allow-truncated"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warned and all(cut.name in w for w in warned)
    index = json.loads((tmp_path / "mine" / "index.json").read_text())
    (npz,) = (tmp_path / "mine" / "videos").glob("*.npz")
    kept = load_video(npz).num_frames
    assert 5 <= kept < 24 and index["declared_frames"] == 24
    assert index["warnings"] and all(cut.name in w and f"kept the {kept} frames" in w for w in index["warnings"])
    assert any("declares 24 frames" in w for w in index["warnings"])
    assert len(list((npz.parent / npz.stem).glob("*.jpg"))) == kept


def test_a_folder_of_frames_is_unchanged(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 12, 3), 40 * i, np.uint8)).save(tmp_path / f"f{i}.png")
    src = open_frames(tmp_path, allow_truncated=True)
    assert len(list(src)) == 3 and not src.warnings
