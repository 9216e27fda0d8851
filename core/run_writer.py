"""Writing a run folder (docs/ARCHITECTURE.md, "A run on disk"): ``RunWriter``, and who may.

``RunWriter`` is the one way a trainer writes a run (through ``core.engine.RunLifecycle``):
it resumes the unfinished run of the identical call or makes a new folder, writes history
and best weights after every epoch and ``metrics.json`` last. Under torchrun only rank 0
writes into the runs folder; the other ranks write into a private scratch folder and
follow rank 0's choice.

A live run is owned: the process writing a folder holds an OS lock on its ``.lock`` file
(``core.io.try_lock``, released by the kernel when the process dies, so a killed run can
be resumed at once). An unfinished run whose lock is held is *live*: no other call
resumes it or writes into it (``RunWriter.open`` starts a new folder instead, and says
so); ``wait_for_live`` lets a caller that wants the finished result wait for it.
"""
from __future__ import annotations

import datetime as _dt
import re
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from core import distributed as D
from core.errors import RunError
from core.io import try_lock, unlock, write_json
from core.runs import (
    HISTORY_CSV,
    LAST,
    LOCK,
    METRICS_JSON,
    RUN_JSON,
    WEIGHTS,
    RunInfo,
    _comparable,
    _identical,
    git_commit,
    is_live,
    library_versions,
    list_runs,
    now_iso,
    read_info,
    save_weights,
    write_table,
)


def make_run_id(name: str, when: _dt.datetime | None = None) -> str:
    """``20261123-141502-model4-annotation-poselab-d7f077-s0``: sorts by time, readable,
    filesystem-safe (``name`` is ``RunInfo.slug``)."""
    when = when or _dt.datetime.now()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    return f"{when:%Y%m%d-%H%M%S}-{safe}"


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """A new, empty, uniquely named run folder (suffix -2, -3 ... on a clash)."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = make_run_id(name)
    for i in range(1, 1000):
        path = runs_dir / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(runs_dir, f"could not create a unique run folder for {name!r}")



# ----------------------------------------------------------------------------- ownership


def lock_run(folder: Path) -> int | None:
    """Take the run folder's lock: its file descriptor, or None when the run is live."""
    return try_lock(folder / LOCK)


def live_identical(runs_dir: str | Path, identity: dict[str, Any]) -> Path | None:
    """The newest unfinished run with this identity that another process is writing."""
    for run in list_runs(runs_dir, kind=identity["kind"]):
        if not run.finished and run.info is not None and \
                _comparable(run.info.identity()) == _comparable(identity) and is_live(run.path):
            return run.path
    return None


def wait_for_live(runs_dir: str | Path, identity: dict[str, Any], *, poll: float = 2.0) -> None:
    """Block while another process writes a run with this identity (one message, then
    quiet): afterwards it is finished (reuse it) or was stopped (resume it)."""
    told = False
    while (live := live_identical(runs_dir, identity)) is not None:
        if not told:
            print(f"waiting for {live.name}: the same run is being written by another process", file=sys.stderr,
                  flush=True)
            told = True
        time.sleep(poll)


def _claim_resumable(runs_dir: str | Path, identity: dict[str, Any]) -> tuple[Path, int] | None:
    """An unfinished identical run with a resume checkpoint, locked for this process (a
    live one is skipped), or None."""
    for path in _identical(runs_dir, identity, finished=False):
        fd = lock_run(path)
        if fd is None:
            continue                 # live: another process writes it
        if (path / METRICS_JSON).exists() or not (path / LAST).is_file():
            unlock(fd)           # finished (or reset) between the listing and the lock
            continue
        return path, fd
    return None


# ----------------------------------------------------------------------------- writing

class RunWriter:
    """Writes one run folder: ``open`` -> ``epoch_done`` per epoch -> ``finish``.

    Rank 0 writes into the runs folder. Other ranks (torchrun) write the same files into
    a private scratch folder, which is removed at exit, and return rank 0's folder.
    """

    def __init__(self, path: Path, info: RunInfo, resumed: bool, lock: int | None = None):
        self.path, self.info, self.resumed = path, info, resumed
        self._lock = lock

    @classmethod
    def open(cls, runs_dir: str | Path, info: RunInfo) -> "RunWriter":
        """Resume the unfinished run of this exact call that no other process is writing,
        or create a new run folder; either way this process holds its lock until
        ``finish`` or ``close``.

        A resumed run keeps its folder, start time and id; ``resumed`` (on every rank)
        tells the trainer to continue from ``last.safetensors`` (``core.engine.resume``,
        which rank 0 reads and broadcasts)."""
        claimed = _claim_resumable(runs_dir, info.identity()) if D.is_main_process() else None
        resume_from = D.broadcast_object(claimed[0] if claimed else None)
        lock = claimed[1] if claimed else None
        if not D.is_main_process():
            path = create_run_dir(D.scratch_dir(), info.slug)
        elif resume_from is not None:
            path = resume_from
        else:
            path = create_run_dir(runs_dir, info.slug)
            lock = lock_run(path)    # before run.json: until then nothing could resume it
            live = live_identical(runs_dir, info.identity())
            if live is not None and live != path:
                print(f"{live.name} is the same run, being written by another process; "
                      f"this one writes {path.name}", file=sys.stderr, flush=True)
        if resume_from is not None and D.is_main_process():
            old = read_info(resume_from)
            info.started_at = old.started_at or info.started_at
            info.resumed_after_epoch = list(old.resumed_after_epoch)
            info.phase_seconds = {**old.phase_seconds, **info.phase_seconds}
        info.run_id = path.name if D.is_main_process() else (resume_from or path).name
        info.started_at = info.started_at or now_iso()
        info.git_commit = info.git_commit or git_commit()
        info.versions = info.versions or library_versions()
        writer = cls(path, info, resumed=resume_from is not None, lock=lock)
        writer.write_info()
        return writer

    def close(self) -> None:
        """Give up the run folder (finished or not): another call may resume it now."""
        unlock(self._lock)
        self._lock = None

    @property
    def last(self) -> Path:
        return self.path / LAST

    def write_info(self) -> None:
        write_json(self.path / RUN_JSON, self.info.to_dict())

    def write_history(self, rows: list[dict], columns: list[str]) -> None:
        write_table(self.path / HISTORY_CSV, pd.DataFrame(rows, columns=columns))

    def write_weights(self, state: dict, metadata: dict[str, str] | None = None) -> None:
        save_weights(self.path / WEIGHTS, state, metadata)

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        write_table(self.path / name, df)

    def finish(self, metrics: dict[str, Any]) -> Path:
        """run.json (end time), then metrics.json LAST: from here on the run is finished.
        ``metrics`` must name its headline: ``{"headline": "test_acc", "test_acc": ...}``."""
        if "headline" not in metrics or metrics["headline"] not in metrics:
            raise ValueError("metrics.json needs 'headline' naming one of its keys")
        self.info.ended_at = now_iso()
        self.write_info()
        write_json(self.path / METRICS_JSON, metrics)
        self.last.unlink(missing_ok=True)      # finished: the resume state has no use left
        self.close()
        path = D.broadcast_object(self.path)   # every rank returns rank 0's folder
        if D.is_distributed():
            D.remove_scratch()
        return path
