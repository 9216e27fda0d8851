"""A live run is owned: two identical trainings at once never write into one folder, a
call that reuses finished runs waits for the live one, and a killed run is resumable at
once (its lock died with it). Real processes, tiny simulated data, CPU."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.io import is_locked
from core.runs import LAST, LOCK, list_runs, load_run

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "POSELAB_OFFLINE": "1"}
EPOCHS = 24


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from core.temporal.synth import SequenceSpec, write_sequence_dataset
    out = tmp_path_factory.mktemp("seq") / "data"
    write_sequence_dataset(out, SequenceSpec(videos=6, frames=12, seed=0, heatmap=16,
                                             estimator="simulated"), progress=False)
    return out


TRAIN = """
import sys
from pathlib import Path
from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal
# no early stop: the run stays live for all its epochs
plan = ModelPlan("conv3d", {"hidden": 4}, default_recipe("conv3d", epochs=int(sys.argv[3]), early_stop_patience=10**6))
print(train_temporal(TemporalJob(data=Path(sys.argv[1]), runs_dir=Path(sys.argv[2]), plans=(plan,), device="cpu",
                                 reuse_finished=sys.argv[4] == "reuse", progress=False)))
"""


def _train(data: Path, runs: Path, mode: str = "train") -> subprocess.Popen:
    """One small conv3d trained for many epochs (tens of seconds) in its own process;
    ``mode`` "reuse" returns a finished identical run instead of training (the demo's way)."""
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(data), str(runs), str(EPOCHS), mode], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _live_run(runs: Path, epochs: int = 1, timeout: float = 120) -> Path:
    """Wait until a run in ``runs`` has finished ``epochs`` epochs (its resume checkpoint written)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for r in list_runs(runs):
            if (r.path / LAST).is_file() and (r.path / "history.csv").is_file():
                hist = pd.read_csv(r.path / "history.csv")
                if len(hist) and hist["epoch"].max() >= epochs:
                    return r.path
        time.sleep(0.2)
    raise AssertionError("the first training never finished an epoch")


def test_a_second_identical_training_writes_its_own_run_while_the_first_is_live(data, tmp_path):
    runs = tmp_path / "runs"
    first = _train(data, runs)
    live = _live_run(runs)
    first.send_signal(signal.SIGSTOP)          # live (it holds the lock) for as long as the test needs
    try:
        assert is_locked(live / LOCK)                           # owned by the first process
        second = _train(data, runs)
        out2, err2 = second.communicate(timeout=600)
    finally:
        first.send_signal(signal.SIGCONT)
    out1, _ = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err2[-2000:]
    assert f"{live.name} is the same run, being written by another process" in err2
    assert "resuming" not in out2
    done = [r for r in list_runs(runs) if r.finished]
    assert len(done) == 2 and live in {r.path for r in done}
    for r in done:                                              # each folder holds one unbroken training
        assert r.history()["epoch"].tolist() == list(range(EPOCHS + 1)) and r.metrics["epochs_run"] == EPOCHS
        assert not (r.path / LAST).exists() and not r.info.resumed_after_epoch
    assert not is_locked(live / LOCK)                           # released at the end


def test_a_call_that_reuses_finished_runs_waits_for_the_live_one(data, tmp_path):
    runs = tmp_path / "runs"
    first = _train(data, runs)
    live = _live_run(runs)
    first.send_signal(signal.SIGSTOP)          # so the waiter surely finds it live
    try:
        waiter = _train(data, runs, "reuse")
        told = ""
        while "waiting for" not in told and (line := waiter.stderr.readline()):
            told += line                       # up to its one message, or all of it if it never waits
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = waiter.communicate(timeout=600)
    first.wait(timeout=600)
    assert waiter.returncode == 0, err[-2000:]
    assert f"waiting for {live.name}" in told, told + err[-2000:]
    assert Path(out.strip().splitlines()[-1]) == live           # the first's finished run, reused
    assert [r.path for r in list_runs(runs)] == [live] and load_run(live).finished


def test_a_killed_run_is_resumed_at_once_by_the_next_identical_call(data, tmp_path):
    runs = tmp_path / "runs"
    first = _train(data, runs)
    live = _live_run(runs, epochs=2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert not is_locked(live / LOCK)                           # the kernel released it
    again = _train(data, runs)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert f"resuming {live.name} after epoch" in out
    run = load_run(live, require_finished=True)
    assert run.info.resumed_after_epoch and len(list_runs(runs)) == 1
