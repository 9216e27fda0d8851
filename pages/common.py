"""Shared UI helpers for every dashboard page: where runs live, cached loaders, the
sidebar run picker, error display, the sample gallery, and the demo-building job.

Pages import this module (``from pages import common``). Compute lives in ``core/``;
here are only Streamlit calls and the caching around core functions.

Caching (DESIGN.md §8): tables with ``st.cache_data`` keyed by the run folder and the
file's mtime (a re-trained run folder invalidates itself); models with
``st.cache_resource`` keyed by run id, shared by every session (models are read-only
in eval mode and write no state in forward, so sharing is safe).

Session-state keys other pages rely on:
    "selected_run"      run id chosen in the sidebar (or set before ``st.switch_page``)
    "saliency_request"  {"run_id": ..., "sample_id": ...} set by the gallery/confusion
                        page before switching to pages/saliency.py
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import streamlit as st

from core.classification import report
from core.errors import DataError, PoseLabError
from core.runs import Run, default_runs_dir, list_runs, load_run

REPO = Path(__file__).resolve().parent.parent
SIDEBAR_DRAWN = "_sidebar_drawn"   # set by dashboard.py while it runs a page


# ------------------------------------------------------------------ runs folder


def runs_dir() -> Path:
    """$POSELAB_RUNS when set, else checkpoints/ (read every rerun, so tests can set it)."""
    return default_runs_dir()


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _runs_stamp(root: Path) -> tuple:
    """Cheap fingerprint of the runs folder: every run's folder, run.json and
    metrics.json mtimes. A finished or new run changes it and so refreshes the cache."""
    if not root.is_dir():
        return ()
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name[:1] not in "._":
            out.append((p.name, _stamp(p / "run.json"), _stamp(p / "metrics.json")))
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=8)
def _cached_runs(root: str, stamp: tuple) -> list[Run]:
    return list_runs(root)


def ensure_navigation() -> None:
    """Route a page file that Streamlit ran on its own back through dashboard.py.

    Streamlit treats a ``pages/`` folder beside the main script as a v1 multipage app
    until the first run calls ``st.navigation``. When a server's very first request is
    a deep link (``/confusion``), it runs pages/confusion.py alone, with a navigation
    that lists every file (common.py too) and without the page config. Flipping the
    flag that ``st.navigation`` itself flips and rerunning sends that request through
    dashboard.py. AppTest resets the flag before every run and runs page files on
    their own by design, so nothing is done there.
    """
    from streamlit import config   # AppTest patches config.get_option, not st.get_option
    from streamlit.runtime.pages_manager import PagesManager
    if (PagesManager.uses_pages_directory and not st.session_state.get(SIDEBAR_DRAWN)
            and not config.get_option("global.appTest")):
        PagesManager.uses_pages_directory = False
        st.rerun()


def all_runs(kind: str | None = None) -> list[Run]:
    """Every run (finished, unfinished, broken), newest first; cached."""
    ensure_navigation()
    root = runs_dir()
    runs = _cached_runs(str(root), _runs_stamp(root))
    return [r for r in runs if kind is None or r.kind == kind]


def finished_runs(kind: str | None = None) -> list[Run]:
    return [r for r in all_runs(kind) if r.finished]


def get_run(run_id: str) -> Run:
    """A finished run by id (raises RunError when it is missing or unfinished)."""
    for r in all_runs():
        if r.id == run_id and r.finished:
            return r
    return load_run(runs_dir() / run_id, require_finished=True)


def run_label(r: Run) -> str:
    head = r.headline
    score = f" · {head[0]}={head[1]:.3f}" if head and isinstance(head[1], (int, float)) else ""
    return f"{r.name} ({r.kind}){score} · {r.id}"


# ------------------------------------------------------------------ cached tables


@st.cache_data(show_spinner="Reading predictions...", max_entries=16)
def _read_predictions(path: str, mtime: float) -> pd.DataFrame:
    return load_run(path).predictions()


@st.cache_data(show_spinner=False, max_entries=64)
def _read_history(path: str, mtime: float) -> pd.DataFrame:
    return load_run(path).history()


@st.cache_data(show_spinner=False, max_entries=64)
def _read_pck(path: str, mtime: float) -> pd.DataFrame:
    return load_run(path).pck()


def predictions(run: Run) -> pd.DataFrame:
    """predictions.parquet of a run (cached per file mtime; st.cache_data hands out a copy)."""
    return _read_predictions(str(run.path), _stamp(run.file("predictions.parquet")))


def classifier_predictions(run: Run) -> tuple[pd.DataFrame, list[str]]:
    """Validated predictions and class names of a classifier run."""
    classes = report.run_classes(run)
    preds = predictions(run)
    return report.check_predictions(preds, classes, run.file("predictions.parquet")), classes


def history(run: Run) -> pd.DataFrame:
    return _read_history(str(run.path), _stamp(run.file("history.csv")))


def pck(run: Run) -> pd.DataFrame:
    return _read_pck(str(run.path), _stamp(run.file("pck.csv")))


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def _load_model(path: str, mtime: float, device: str):
    from core.runs import load_model
    return load_model(path, device=device)


def cached_model(run: Run, device: str = "cpu"):
    """The run's model in eval mode, shared by all sessions (keyed by run + weights mtime)."""
    return _load_model(str(run.path), _stamp(run.file("weights.safetensors")), device)


@st.cache_resource(show_spinner=False, max_entries=8)
def _image_cache(path: str, stamp: float):
    from core.classification.image_cache import image_cache_of_run
    return image_cache_of_run(path, load_run(Path(path)).info)


def image_cache(run: Run):
    """The run's image cache (``core.classification.image_cache.image_cache_of_run``: the model's input
    crops, memory-mapped) or None; shared by all sessions, keyed by run + run.json mtime."""
    if run.kind != "classifier":
        return None
    return _image_cache(str(run.path), _stamp(run.file("run.json")))


# ------------------------------------------------------------------ sidebar / errors


def sidebar(kind: str | None = None) -> Run | None:
    """Runs folder + run picker in the sidebar. ``kind`` narrows the list to the runs
    the current page can show. Returns the chosen run (also in
    ``st.session_state["selected_run"]``), or None when there is none.

    Every page calls it first. dashboard.py draws it before running the page and sets
    SIDEBAR_DRAWN, so the page's call only returns the run; when a page file runs on
    its own (AppTest treats pages/ as a v1 multipage folder) the page draws it.
    """
    ensure_navigation()
    if st.session_state.get(SIDEBAR_DRAWN):
        return selected_run(kind)
    root = runs_dir()
    st.sidebar.caption(f"Runs folder: `{root}`")
    if st.sidebar.button("Reload runs", help="read the runs folder again"):
        _cached_runs.clear()
    runs = finished_runs(kind)
    if not runs:
        st.sidebar.info(f"No finished {kind or ''} runs yet.".replace("  ", " "))
        return None
    ids = [r.id for r in runs]
    chosen = st.session_state.get("selected_run")
    index = ids.index(chosen) if chosen in ids else 0
    labels = {r.id: run_label(r) for r in runs}
    key = f"_run_picker_{kind or 'any'}"
    if st.session_state.get(key) not in ids or chosen in ids:
        # keep the widget in step with "selected_run" (set by other pages' buttons)
        st.session_state[key] = ids[index]
    picked = st.sidebar.selectbox("Run", ids, format_func=labels.get, key=key,
                                  on_change=_picked, args=(key,))
    st.session_state["selected_run"] = picked
    return runs[ids.index(picked)]


def _picked(key: str) -> None:
    # Callbacks run before the script: every page of this rerun sees the new choice.
    st.session_state["selected_run"] = st.session_state[key]


def selected_run(kind: str | None = None) -> Run | None:
    """The run chosen in the sidebar if it is of ``kind``, else the newest of that kind."""
    runs = finished_runs(kind)
    chosen = st.session_state.get("selected_run")
    for r in runs:
        if r.id == chosen:
            return r
    return runs[0] if runs else None


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show a PoseLabError (bad file, broken run) as one st.error line; the rest of the
    page keeps working. Other exceptions are bugs and propagate."""
    try:
        yield
    except PoseLabError as e:
        st.error(str(e), icon=":material/error:")


def need_run(kind: str) -> Run:
    """Draw the sidebar; return the page's run, or stop with a how-to when there is none."""
    run = sidebar(kind)
    if run is None:
        st.info(f"No finished {kind} run in `{runs_dir()}`. Go to **Home** to build the "
                "demo runs, or train one with `python -m core train ...`.")
        st.stop()
    return run


# ------------------------------------------------------------------ pictures + gallery

GALLERY_COLUMNS = 6


@st.cache_data(show_spinner=False, max_entries=2048)
def _picture(root: str, image_path: str, bbox: tuple | None, keypoints: tuple | None,
             skeleton: bool, size: int, sample_id: str, cache_path: str, _cache=None):
    # cache_path stands for _cache in the key (the memmap itself is not hashed)
    row = {"image_path": image_path, "bbox": bbox, "keypoints": keypoints, "sample_id": sample_id}
    try:
        return report.sample_picture(root, row, skeleton=skeleton, size=size, cache=_cache), None
    except DataError as e:
        return report.placeholder_picture(size), str(e)


def picture(run: Run, row: pd.Series, *, skeleton: bool, size: int = 192):
    """(PIL image, problem or None) for one prediction row; never raises for a bad image.
    Crops come from the run's image cache when it is there (no scene decode)."""
    root = ((run.info.get("data") or {}).get("root")) or ""
    bbox = row.get("bbox")
    kps = row.get("keypoints")
    cache = image_cache(run)
    return _picture(str(root), str(row.get("image_path", "")),
                    None if bbox is None else tuple(float(v) for v in bbox),
                    None if kps is None else tuple(float(v) for v in kps), skeleton, size,
                    str(row.get("sample_id", "")), str(cache.path) if cache is not None else "", cache)


def open_saliency(run_id: str, sample_id) -> None:
    """Hand a sample over to the saliency page and go there."""
    st.session_state["selected_run"] = run_id
    st.session_state["saliency_request"] = {"run_id": run_id, "sample_id": sample_id}
    st.switch_page("pages/saliency.py")


def sample_detail(run: Run, row: pd.Series, classes: list[str], key: str) -> None:
    """Detail view of one sample: image with keypoints, class probabilities, metadata."""
    import plotly.express as px
    with st.container(border=True):
        top = st.columns([6, 1, 1])
        top[0].subheader(f"Sample {row['sample_id']}")
        if top[1].button("Saliency", key=f"{key}_sal", type="primary",
                         help="compute a saliency map of this sample"):
            open_saliency(run.id, row["sample_id"])
        if top[2].button("Close", key=f"{key}_close"):
            st.session_state.pop(f"{key}_detail", None)
            st.rerun()
        left, mid, right = st.columns([2, 3, 2])
        img, problem = picture(run, row, skeleton=True, size=320)
        left.image(img, caption="crop with keypoints (red visible, yellow occluded)")
        if problem:
            left.warning(problem)
        probs = report.class_probabilities(row, classes)
        fig = px.bar(probs, x="probability", y="class", orientation="h", range_x=[0, 1])
        fig.update_layout(height=max(260, 22 * len(classes)), margin=dict(l=0, r=0, t=10, b=0),
                          yaxis=dict(autorange="reversed", title=None))
        colours = ["#2ca02c" if i == int(row["label"]) else
                   ("#d62728" if i == int(row["pred"]) else "#7f7f7f") for i in range(len(classes))]
        fig.update_traces(marker_color=colours)
        mid.plotly_chart(fig, width="stretch", key=f"{key}_probs")
        mid.caption("green = true class, red = wrong prediction")
        meta = {k: row[k] for k in ("sample_id", "image_path", "image_id", "person_index",
                                    "label_name", "pred_name", "confidence", "correct")
                if k in row.index}
        meta["confidence"] = round(float(meta.get("confidence", float("nan"))), 4)
        right.dataframe(pd.DataFrame({"field": list(meta), "value": [str(v) for v in meta.values()]}),
                        hide_index=True, width="stretch")
        kps = row.get("keypoints")
        if kps is not None and len(kps) == 51:
            from core.keypoints import COCO17
            kp = pd.DataFrame([list(kps[i:i + 3]) for i in range(0, 51, 3)], columns=["x", "y", "v"])
            kp.insert(0, "keypoint", COCO17)
            with right.expander("keypoints (scene pixels)"):
                st.dataframe(kp, hide_index=True, width="stretch")


def gallery(run: Run, rows: pd.DataFrame, classes: list[str], *, key: str,
            skeleton: bool = True, per_page: int = 24) -> None:
    """Paged grid of samples; 'Open' shows the detail view above the grid."""
    detail_id = st.session_state.get(f"{key}_detail")
    if detail_id is not None:
        match = rows[rows["sample_id"].astype(str) == str(detail_id)]
        if len(match):
            sample_detail(run, match.iloc[0], classes, key)
    if rows.empty:
        st.info("No sample matches.")
        return
    page_key = f"{key}_page"
    page_rows, n_pages = report.paginate(rows, st.session_state.get(page_key, 1), per_page)
    if n_pages > 1:
        # a narrower filter can leave fewer pages than the one shown: clamp, don't fail
        st.session_state[page_key] = min(max(1, int(st.session_state.get(page_key, 1))), n_pages)
        st.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, step=1,
                        key=page_key)
    cols = st.columns(GALLERY_COLUMNS)
    problems = 0
    for i, (_, row) in enumerate(page_rows.iterrows()):
        col = cols[i % GALLERY_COLUMNS]
        img, problem = picture(run, row, skeleton=skeleton)
        problems += problem is not None
        mark = "✓" if bool(row["correct"]) else "✗"
        col.image(img, caption=f"{mark} {row.get('label_name', row['label'])} → "
                               f"{row.get('pred_name', row['pred'])} ({float(row['confidence']):.2f})",
                  width="stretch")
        if col.button("Open", key=f"{key}_open_{row['sample_id']}", width="stretch"):
            st.session_state[f"{key}_detail"] = row["sample_id"]
            st.rerun()
    if problems:
        st.warning(f"{problems} image(s) on this page could not be read (shown as grey "
                   "placeholders); is the run's data folder still there?")


# ------------------------------------------------------------------ demo job
# The demo trains models, so it runs as a separate `python -m core demo` process
# (DESIGN.md §2): a closed tab or a rerun cannot leave half-written runs, and the page
# only follows the `progress <fraction> <message>` lines it prints to its log.

DEMO_LOG = "_demo.log"
DEMO_PID = "_demo.pid"
_PROCS: dict[str, subprocess.Popen] = {}   # runs_dir -> live Popen of this server process


def demo_command(root: Path) -> list[str]:
    return [sys.executable, "-m", "core", "demo", "--runs", str(root),
            "--data-dir", str(root / "_demo_data")]


def start_demo(root: Path) -> int:
    """Start the demo build in the background; returns its pid."""
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / DEMO_LOG, "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "POSELAB_RUNS": str(root)}
    proc = subprocess.Popen(demo_command(root), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    log.close()   # the child holds its own descriptor
    _PROCS[str(root)] = proc
    from core.io import write_json
    write_json(root / DEMO_PID, {"pid": proc.pid, "started_at": time.time()})
    return proc.pid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:   # a reused pid that is not our demo does not count
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return b"core" in cmd and b"demo" in cmd
    except OSError:
        return True


def demo_state(root: Path) -> dict | None:
    """None when no demo was started here; else {running, returncode, fraction,
    message, elapsed_s, log_tail}. Works across reruns and sessions (pid file + log),
    and reaps the child when this server process started it."""
    pid_file = root / DEMO_PID
    if not pid_file.exists():
        return None
    try:
        meta = json.loads(pid_file.read_text())
        pid, started = int(meta["pid"]), float(meta.get("started_at", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    proc = _PROCS.get(str(root))
    if proc is not None and proc.pid == pid:
        rc = proc.poll()
        running = rc is None
    else:
        running, rc = _pid_alive(pid), None
    fraction, message, lines = 0.0, "starting...", []
    with contextlib.suppress(OSError):
        lines = (root / DEMO_LOG).read_text(errors="replace").splitlines()
    for line in reversed(lines):
        parts = line.split(maxsplit=2)
        if len(parts) >= 2 and parts[0] == "progress":
            with contextlib.suppress(ValueError):
                fraction = min(1.0, max(0.0, float(parts[1])))
                message = parts[2] if len(parts) > 2 else ""
                break
    if not running and rc is None:   # started by another server process: judge by the log
        rc = 1 if any(line.startswith(("error", "Traceback")) for line in lines) else 0
    return {"running": running, "returncode": rc, "fraction": fraction, "message": message,
            "elapsed_s": max(0.0, time.time() - started) if started else None,
            "log_tail": "\n".join(l for l in lines[-15:] if not l.startswith("progress "))}


def clear_demo_state(root: Path) -> None:
    for name in (DEMO_PID,):
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()
    _PROCS.pop(str(root), None)
