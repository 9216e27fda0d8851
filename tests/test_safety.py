"""Nothing lost: outputs never replace inputs, killed writers' leftovers are found and
removed, files get the user's umask, and error lines are clean single lines.

Each test makes its own tiny data (a simulated sequence dataset, a conv3d run trained
for one epoch: about 10 s on 2 CPU cores, once for the module).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core import cli
from core.errors import DataError
from core.io import REPLACED, STAGING, TEMP, find_leftovers, remove_leftover, write_json
from core.runs import save_weights
from core.temporal.sequences import load_sequences, staging_folder, write_dataset
from core.temporal.videos import K, Video

REPO = Path(__file__).resolve().parent.parent
HOUR_AGO = time.time() - 3600


def _video(vid: str, t: int = 8, size: int = 16, seed: int = 0) -> Video:
    rng = np.random.default_rng(seed)
    kp = np.concatenate([rng.uniform(5, 40, (t, K, 2)), np.full((t, K, 1), 2.0)], -1).astype(np.float32)
    return Video(id=vid, heatmaps=rng.random((t, K, size, size)).astype(np.float16),
                 boxes=np.tile(np.array([0.0, 0.0, 48.0, 48.0], np.float32), (t, 1)), keypoints=kp,
                 joint_mask=np.ones(K, bool), image_size=(64, 64))


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def temporal_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, the dataset it was trained on): simulated 16-px sequences, conv3d."""
    root = tmp_path_factory.mktemp("refine")
    data = root / "ds"
    assert cli.main(["synth", "sequences", "--out", str(data), "--videos", "5", "--frames", "12",
                     "--heatmap", "16", "--estimator", "simulated"]) == 0
    assert cli.main(["train", "temporal", "--data", str(data), "--arch", "conv3d", "--epochs", "1",
                     "--runs", str(root / "runs"), "--device", "cpu"]) == 0
    (run,) = [p for p in (root / "runs").iterdir() if p.is_dir() and not p.name.startswith("_")]
    return run, data


# ----------------------------------------------------------------------------- refine --out

def test_refine_refuses_an_out_whose_npz_is_a_file_of_the_dataset(temporal_run, capsys):
    run, data = temporal_run
    video = data / "videos" / "0000_climb.npz"
    before = video.read_bytes()
    out = data / "videos" / "0000_climb.csv"
    assert cli.main(["refine", "--run", str(run), "--data", str(data), "--out", str(out)]) == 2
    (err,) = _errors(capsys)
    assert "0000_climb.npz" in err and "input" in err
    assert video.read_bytes() == before and not out.exists()
    assert len(load_sequences(data).splits["train"]) >= 1                  # still readable


def test_refine_refuses_to_overwrite_another_datasets_video_or_a_users_file(temporal_run, tmp_path, capsys):
    run, data = temporal_run
    other = write_dataset(tmp_path / "other", [_video("a"), _video("b", seed=1)]).parent
    target = other / "videos" / "a.npz"
    before = target.read_bytes()
    assert cli.main(["refine", "--run", str(run), "--data", str(data), "--out", str(target.with_suffix(".csv"))]) == 2
    assert "a.npz" in _errors(capsys)[0] and target.read_bytes() == before
    mine = tmp_path / "notes.csv"
    mine.write_text("my,own,table\n1,2,3\n")
    assert cli.main(["refine", "--run", str(run), "--data", str(data), "--out", str(mine)]) == 2
    assert "not an output of refine" in _errors(capsys)[0] and mine.read_text().startswith("my,own")


def test_refine_writes_again_over_its_own_output_and_its_npz_is_not_read_as_a_video(temporal_run, tmp_path):
    run, data = temporal_run
    out = tmp_path / "videos" / "refined.csv"
    write_dataset(tmp_path / "single", [_video("v", t=12)])
    single = tmp_path / "single" / "videos" / "v.npz"
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v.npz").write_bytes(single.read_bytes())      # a folder of one's own videos
    for _ in range(2):                                                     # the second run replaces the first
        assert cli.main(["refine", "--run", str(run), "--data", str(tmp_path / "videos"), "--out", str(out)]) == 0
    assert out.with_suffix(".npz").is_file()
    index = load_sequences(tmp_path / "videos")          # the refine .npz beside the video is skipped
    assert sum(len(v) for v in index.splits.values()) == 1 and index.skipped == {"refine output (not data)": 1}


def test_refine_error_starts_its_own_line_after_the_progress_bar(temporal_run, tmp_path, capsys):
    run, _ = temporal_run
    write_dataset(tmp_path / "wide", [_video("w", size=24)])       # 24 px: not a multiple of the run's 16
    assert cli.main(["refine", "--run", str(run), "--data", str(tmp_path / "wide")]) == 2
    err = capsys.readouterr().err
    assert "refine:" in err                                          # the bar was drawn
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert line.startswith("error:") and "24x24" in line


# ----------------------------------------------------------------------------- re-estimating a folder

def test_estimate_refuses_to_replace_a_dataset_beside_its_refined_results(temporal_run, tmp_path, capsys):
    run, data = temporal_run
    ds = write_dataset(tmp_path / "mine", [_video("me", t=12)]).parent
    assert cli.main(["refine", "--run", str(run), "--data", str(ds)]) == 0
    refined = sorted(p.name for p in ds.glob("refined-*"))
    assert len(refined) == 2
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image
    for i in range(6):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(frames / f"{i}.png")
    capsys.readouterr()
    assert cli.main(["estimate", "--frames", str(frames), "--out", str(ds)]) == 2
    (err,) = _errors(capsys)
    assert refined[0] in err and "move them away" in err
    assert sorted(p.name for p in ds.glob("refined-*")) == refined
    assert (ds / "videos" / "me.npz").is_file()


def test_rewriting_a_dataset_keeps_the_files_it_did_not_write(tmp_path):
    ds = write_dataset(tmp_path / "ds", [_video("a")]).parent
    (ds / "notes.txt").write_text("keep me")
    (ds / "extra").mkdir()
    (ds / "extra" / "plot.png").write_bytes(b"\x89PNG...")
    write_dataset(ds, [_video("b", seed=1)])
    assert (ds / "notes.txt").read_text() == "keep me" and (ds / "extra" / "plot.png").read_bytes() == b"\x89PNG..."
    assert (ds / "videos" / "b.npz").is_file() and not (ds / "videos" / "a.npz").exists()
    (ds / "videos" / "c.npz").write_bytes(b"not mine")               # a name the new dataset writes
    with pytest.raises(DataError, match="move it away"):
        write_dataset(ds, [_video("c", seed=2)])
    assert (ds / "videos" / "c.npz").read_bytes() == b"not mine" and (ds / "videos" / "b.npz").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- leftovers

_KILLED_WRITE = """
import os, signal, sys
from core.io import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"x" * 100_000)
    f.flush()
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("writing", flush=True)
    sys.stdin.readline()
"""


def _writer(target: Path, how: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _KILLED_WRITE, str(target), how], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _age(path: Path) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (HOUR_AGO, HOUR_AGO))


def test_a_killed_writers_temp_file_is_reported_and_cleaned_a_live_ones_is_not(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "20260101-000000-conv3d").mkdir(parents=True)
    dead = _writer(runs / "20260101-000000-conv3d" / "weights.safetensors", "kill")
    assert dead.wait(60) == -signal.SIGKILL
    live = _writer(runs / "20260101-000000-conv3d" / "last.safetensors", "live")
    try:
        assert live.stdout.readline().strip() == "writing"
        temps = sorted(runs.rglob(".*.tmp"))
        assert len(temps) == 2
        for p in temps:
            _age(p)
        found = find_leftovers(runs)
        assert [(x.kind, x.name_of) for x in found] == [(TEMP, "weights.safetensors")]
        assert cli.main(["runs", "--runs", str(runs)]) == 0
        out = capsys.readouterr().out
        assert "1 leftover(s)" in out and "weights.safetensors" in out and "--clean" in out
        assert cli.main(["runs", "--runs", str(runs), "--clean"]) == 0
        assert "removed" in capsys.readouterr().out
        assert [p.name.split(".")[1] for p in runs.rglob(".*.tmp")] == ["last"]   # the live one stays
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode == 0 and (runs / "20260101-000000-conv3d" / "last.safetensors").stat().st_size == 100_000
    assert not list(runs.rglob(".*.tmp"))


def test_the_next_write_of_a_file_removes_its_dead_temp_files(tmp_path):
    stale, fresh = tmp_path / ".a.json.abc12345.tmp", tmp_path / ".a.json.def67890.tmp"
    stale.write_text("old")
    fresh.write_text("new")
    _age(stale)
    write_json(tmp_path / "a.json", {"x": 1})
    assert not stale.exists() and fresh.exists()             # fresh: its writer may be alive


_KILLED_BUILD = """
import os, signal, sys
from core.temporal.sequences import staging_folder
tmp = staging_folder(sys.argv[1])
(tmp / "videos").mkdir()
(tmp / "videos" / "000001.jpg").write_bytes(b"x" * 1000)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_builds_staging_folder_is_found_and_removed_by_the_next_build(tmp_path):
    out = tmp_path / "mine"
    p = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(out)], cwd=REPO)
    assert p.returncode == -signal.SIGKILL
    (left,) = [d for d in tmp_path.iterdir() if d.name.startswith(".mine.")]
    assert find_leftovers(tmp_path) == []                     # too recent to call dead
    _age(left)
    (item,) = find_leftovers(tmp_path)
    assert item.kind == STAGING and item.name_of == "mine" and item.size == 1000
    live = staging_folder(out)                               # a new build of the same folder
    assert not left.exists() and live.is_dir()
    _age(live)
    assert find_leftovers(tmp_path) == []                     # locked by this live process


def test_a_replaced_dataset_left_behind_is_removed_or_put_back(tmp_path):
    ns = time.time_ns() - 3600 * 10**9
    old = tmp_path / f".ds.old-{ns}"
    old.mkdir()
    (old / "index.json").write_text("{}")
    (item,) = find_leftovers(tmp_path)
    assert item.kind == REPLACED and item.restores                # "ds" is missing: it is the dataset
    remove_leftover(item)
    assert (tmp_path / "ds" / "index.json").is_file() and not old.exists()
    old.mkdir()
    (item,) = find_leftovers(tmp_path)
    assert not item.restores
    remove_leftover(item)
    assert not old.exists() and (tmp_path / "ds").is_dir()


def test_a_users_hidden_folder_is_not_a_leftover(tmp_path):
    mine = tmp_path / ".photos.holidays"                  # ".<name>.<8 letters>", like an old staging folder
    mine.mkdir()
    (mine / "beach.jpg").write_bytes(b"x")
    _age(mine)
    assert find_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- umask

@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                      (0o002, 0o664, 0o775)])
def test_files_and_folders_get_the_users_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "run.json", {"a": 1})
        index = write_dataset(tmp_path / "ds", [_video("v")])
        save_weights(tmp_path / "weights.safetensors", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "weights.safetensors").stat().st_mode & 0o777 == file_mode
    assert (index.parent / "videos" / "v.npz").stat().st_mode & 0o777 == file_mode
    assert index.parent.stat().st_mode & 0o777 == dir_mode


# ----------------------------------------------------------------------------- clean error lines

def test_a_pickled_weights_file_is_refused_in_one_plain_line(tmp_path):
    import torch

    from core.classification.backbones import resolve_backbone
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"conv1.weight": Payload()}, tmp_path / "weights.pt")
    with pytest.raises(DataError) as e:
        resolve_backbone(tmp_path / "weights.pt", runs_dir=tmp_path / "runs")
    text = str(e.value)
    assert "weights.pt" in text and "never unpickles" in text and "safetensors" in text
    assert "\x1b" not in text and "\n" not in text and "weights_only" not in text
    assert not marker.exists()


def test_cli_error_lines_carry_no_escape_codes_or_line_breaks(monkeypatch, capsys):
    def bad(args, runs_dir):
        raise DataError("thing.bin", "\x1b[1mbold\x1b[0m part\n\tand a second line")
    monkeypatch.setitem(cli.HANDLERS, ("runs", None), bad)
    assert cli.main(["runs"]) == 2
    assert capsys.readouterr().err == "error: thing.bin: bold part and a second line\n"


def test_run_json_stays_readable_by_others(tmp_path):
    """A runs folder shared with a teammate: what the CLI writes follows the umask."""
    old = os.umask(0o022)
    try:
        assert cli.main(["synth", "sequences", "--out", str(tmp_path / "ds"), "--videos", "1", "--frames", "6",
                         "--heatmap", "16", "--estimator", "simulated"]) == 0
    finally:
        os.umask(old)
    for p in [tmp_path / "ds", *(tmp_path / "ds").rglob("*")]:
        assert p.stat().st_mode & 0o044 == 0o044, p
    assert json.loads((tmp_path / "ds" / "index.json").read_text())["videos"]


def test_runs_reports_a_dead_staging_folder_beside_a_runs_dataset(temporal_run, capsys):
    run, data = temporal_run
    left = data.parent / f".{data.name}.staging-abcd1234"
    (left / "videos").mkdir(parents=True)
    (left / "videos" / "0000_climb.npz").write_bytes(b"x" * 2000)
    _age(left)
    assert cli.main(["runs", "--runs", str(run.parent)]) == 0
    out = capsys.readouterr().out
    assert str(left) in out and "staging folder of ds" in out and left.is_dir()
    assert cli.main(["runs", "--runs", str(run.parent), "--clean"]) == 0
    assert not left.exists() and (data / "index.json").is_file()
