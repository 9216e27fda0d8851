"""Small file helpers: atomic writes and content fingerprints.

Every file PoseLab writes goes through ``atomic_write`` (temp file in the same folder,
fsync, rename), so a crash or Ctrl-C never leaves a half-written JSON, CSV, parquet or
weights file behind: readers see the old file or the new one, nothing in between.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from core.errors import DataError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Like ``atomic_write`` for libraries that want a filename (parquet, safetensors)."""
    return _atomic_path(Path(path))


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock between processes for a read-modify-write of ``path`` (held on
    ``<path>.lock``, so the file itself can be replaced atomically meanwhile)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def try_lock(path: str | Path) -> int | None:
    """Take an exclusive OS lock on ``path`` (created if missing) without waiting: its file
    descriptor, or None when another process holds it. The kernel releases it when the
    process ends, however it ends; ``unlock`` releases it before."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)           # closing the descriptor releases the flock


def is_locked(path: str | Path) -> bool:
    """Whether another process holds the lock on ``path`` (False when it does not exist)."""
    if not Path(path).exists():
        return False
    fd = try_lock(path)
    unlock(fd)
    return fd is None


def read_json(path: str | Path, *, error: type = DataError) -> Any:
    """Parsed JSON of ``path``; a missing, unreadable or malformed file raises ``error``
    (a ``PoseLabError`` taking (path, problem)) naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(path, "file is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(path, f"cannot be read as text ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(path, f"not valid JSON ({e})") from None


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _json_default(o: Any) -> Any:
    # numpy scalars / arrays and Paths appear in configs and metrics.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(paths: list[Path], root: Path) -> str:
    """Content fingerprint of a set of files: their names relative to ``root`` and the
    sha256 of their bytes.

    It survives copying or moving the folder (a run on the moved data still resumes and
    reuses its caches) and changes whenever a byte of a file changes. Reading every
    byte costs about a second per GB, small beside any training on it.
    """
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{Path(p).relative_to(root).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()[:16]


def resolve_inside(root: str | Path, rel: str | Path) -> Path:
    """``root/rel`` resolved, refusing anything that escapes ``root`` (``..``, absolute
    paths, symlinks out). Raises DataError naming the path."""
    root_r = Path(root).resolve()
    path = (root_r / rel).resolve()
    if not path.is_relative_to(root_r):
        raise DataError(rel, f"image path leaves the run's data folder {root_r}")
    if not path.is_file():
        raise DataError(path, "image file is missing")
    return path
