"""The command line's own checks: numeric flags out of range are one line and exit 2,
before anything runs or is written; --help answers without importing torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv, flag", [
    (["train", "temporal", "--arch", "conv3d", "--epochs", "-1"], "--epochs"),
    (["grid", "temporal", "--lr", "0"], "--lr"),
    (["train", "classifier", "--preset", "model4", "--batch-size", "0"], "--batch-size"),
    (["grid", "classifier", "--seeds", "0"], "--seeds"),
    (["grid", "classifier", "--image-size", "8"], "--image-size"),
    (["train", "temporal", "--arch", "conv3d", "--model", "hidden"], "--model"),
])
def test_a_flag_out_of_range_is_one_line_and_exit_2_with_nothing_written(argv, flag, tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = cli.main([*argv, "--data", str(tmp_path), "--runs", str(runs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: python -m core") and flag in err[0]
    assert not runs.exists()


@pytest.mark.parametrize("argv, flag", [
    (["pretrain", "--pixel-noise", "2"], "--pixel-noise"),
    (["synth", "sequences", "--out", "x", "--frames", "3"], "--frames"),
    (["synth", "images", "--out", "x", "--people-max", "0"], "--people-max"),
    (["estimate", "--video", "v.mp4", "--out", "x", "--fps", "-5"], "--fps"),
])
def test_other_commands_check_their_numbers_too(argv, flag, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]


def test_help_answers_without_importing_torch():
    code = ("import sys; from core import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "False"


def test_archs_lists_every_registered_model(capsys):
    from core.temporal.models import ARCHS
    assert cli.main(["archs"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ARCHS) and "baseline" in out and "learned" in out
