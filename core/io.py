"""Small file helpers: atomic writes, content fingerprints, leftovers of dead writers.

Every file PoseLab writes goes through ``atomic_write`` (temp file in the same folder,
fsync, rename), so a crash or Ctrl-C never leaves a half-written JSON, CSV, parquet or
weights file behind: readers see the old file or the new one, nothing in between.

Files and folders get the user's umask (``mkstemp`` / ``mkdtemp`` would make them 0600 /
0700, so a teammate could not read a shared runs folder). A ``kill -9`` can still leave a
temp file (``.<name>.XXXXXXXX.tmp``) or a staging folder (``staging_dir``) behind, so the
writer holds an ``flock`` on it while it lives: the kernel drops the lock when the process
dies, and ``find_leftovers`` tells a dead writer's leftover (unlocked, untouched for
``STALE_AFTER_S``) from a live one's. Each atomic write removes its own target's stale
temp files; ``python -m core runs`` reports the rest and ``--clean`` removes them.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from core.errors import DataError

STALE_AFTER_S = 600         # a leftover untouched this long, and unlocked, has no live writer


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, which races
    with threads creating files meanwhile)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)          # no /proc (macOS): the only other way to read it
    os.umask(mask)
    return mask


def _temp_file(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``: open fd (locked, umask permissions) and name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        fcntl.flock(fd, fcntl.LOCK_EX)   # held until the fd closes: its writer is alive
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` atomically."""
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)        # before the close: the lock covers its whole life
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Like ``atomic_write`` for libraries that want a filename (parquet, safetensors)."""
    return _atomic_path(Path(path))


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    fd, tmp = _temp_file(path)           # the fd only holds the lock; the library writes by name
    try:
        yield Path(tmp)
        # a library may write a new file under the name (safetensors does, as 0600)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


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


# --------------------------------------------------------------------------- leftovers

_STAGING_LOCKS: dict[str, int] = {}      # staging folder -> the fd holding its lock


def staging_dir(beside: str | Path) -> Path:
    """A new folder ``.<name>.staging-XXXXXXXX`` beside ``beside`` to build into and
    rename into place, locked (as a temp file is) until ``release_staging`` or exit;
    umask permissions."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    for old in find_leftovers(beside.parent, recursive=False):
        if old.name_of == beside.name and old.kind == STAGING:
            remove_leftover(old)                 # a dead build of this very folder
    path = Path(tempfile.mkdtemp(prefix=f".{beside.name}.staging-", dir=beside.parent))
    os.chmod(path, 0o777 & ~umask())
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _STAGING_LOCKS[str(path)] = fd
    return path


def release_staging(path: str | Path) -> None:
    """Drop a staging folder's lock (after renaming it into place, or removing it)."""
    fd = _STAGING_LOCKS.pop(str(path), None)
    if fd is not None:
        os.close(fd)


TEMP, STAGING, REPLACED = "temp file", "staging folder", "replaced folder"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:[A-Za-z0-9_]{6,}\.tmp|(?P<pid>\d+)\.tmp\.npy)$")
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?:staging-)?[a-z0-9_]{8}$")
_REPLACED = re.compile(r"^\.(?P<name>.+)\.old-(?P<ns>\d+)$")
_STAGED_CONTENT = {"videos", "index.json"}          # what a sequence dataset is built from


@dataclass
class Leftover:
    """A temp file or folder that a dead process left behind."""
    path: Path
    kind: str              # TEMP, STAGING or REPLACED
    name_of: str           # the file or folder it was to become (or was)
    size: int              # bytes
    age_s: float           # since it was last written

    @property
    def restores(self) -> bool:
        """A replaced folder whose replacement never arrived: removing it puts it back."""
        return self.kind == REPLACED and not (self.path.parent / self.name_of).exists()

    def describe(self) -> str:
        what = (f"the previous {self.name_of}, which is missing (--clean puts it back)" if self.restores
                else f"{self.kind} of {self.name_of}")
        return f"{self.path} ({what}, {_size(self.size)}, untouched for {_age(self.age_s)})"


def find_leftovers(root: str | Path, *, recursive: bool = True) -> list[Leftover]:
    """Leftovers of dead writers in ``root`` (and its subfolders): atomic writes' temp
    files, the image cache's ``.<stem>.<pid>.tmp.npy``, staging folders and folders
    replaced but not yet removed. A leftover counts when nothing has touched it for
    ``STALE_AFTER_S`` and no process holds its lock (or, with a pid in its name, that
    process is gone); a live writer's files are never listed."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in sorted(dirs):
            hit = _leftover_dir(here / name)
            if hit is not None:
                found.append(hit)
        dirs[:] = [] if not recursive else [d for d in sorted(dirs) if not d.startswith(".")]
        for name in sorted(files):
            m = _TEMP.match(name)
            if m and _stale(here / name, pid=m["pid"]):
                st = (here / name).stat()
                found.append(Leftover(here / name, TEMP, m["name"], st.st_size, time.time() - st.st_mtime))
    return found


def remove_leftover(item: Leftover) -> None:
    """Remove a leftover (a replaced folder whose replacement is missing is renamed back)."""
    if item.restores:
        item.path.rename(item.path.parent / item.name_of)
    elif item.path.is_dir():
        shutil.rmtree(item.path, ignore_errors=True)
    else:
        item.path.unlink(missing_ok=True)


def _sweep(path: Path) -> None:
    """Remove stale temp files of ``path`` itself (a dead process's write of it)."""
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if _TEMP.match(p.name) and _stale(p):
            p.unlink(missing_ok=True)


def _leftover_dir(path: Path) -> Leftover | None:
    m = _REPLACED.match(path.name)
    if m is not None:
        # Renamed from the dataset it was, so its files' times are the old dataset's:
        # its age is the time in its name.
        age, kind = time.time() - int(m["ns"]) / 1e9, REPLACED
        if age < STALE_AFTER_S:
            return None
    else:
        m = _STAGING.match(path.name)
        # An older build's staging folder has no "staging-" in its name: it must hold
        # what a dataset is built from and nothing else, so a user's folder is never taken.
        if m is None or ("staging-" not in path.name
                         and not set() < {p.name for p in path.iterdir()} <= _STAGED_CONTENT):
            return None
        if not _stale(path):
            return None
        age, kind = time.time() - _newest_mtime(path), STAGING
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return Leftover(path, kind, m["name"], size, age)


def _newest_mtime(path: Path) -> float:
    times = [path.stat().st_mtime]
    if path.is_dir():                        # a build writes deep inside: videos/<id>/*.jpg
        times += [p.stat().st_mtime for p in path.rglob("*")]
    return max(times)


def _stale(path: Path, pid: str | None = None) -> bool:
    """No live writer: untouched for STALE_AFTER_S, its lock free, its pid (if any) gone."""
    try:
        if time.time() - _newest_mtime(path) < STALE_AFTER_S:
            return False
        if pid is not None and _alive(int(pid)):
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:                          # held: its writer is alive
        return False
    finally:
        os.close(fd)                         # closing drops the lock we just took
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                  # someone else's process: alive
        return True
    return True


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _age(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"
