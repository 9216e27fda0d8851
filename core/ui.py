"""Shared UI helpers for every dashboard page: where runs live, cached loaders, the
sidebar run picker, error display and the sample gallery.

Pages import this module (``from core import ui``); nothing else in ``core`` does, so the
library stays usable without Streamlit. Here are only Streamlit calls and the caching
around core functions; compute lives in the rest of ``core``.

Caching: tables with ``st.cache_data`` keyed by the run folder and the
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
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.classification import report
from core.classification.image_cache import image_cache_of_run
from core.classification.mistakes import prediction_scores
from core.demo import DemoJob
from core.errors import DataError, PoseLabError
from core.keypoints import COCO17
from core.models import load_model
from core.runs import Run, default_runs_dir, list_runs, load_run

SIDEBAR_DRAWN = "_sidebar_drawn"   # set by dashboard.py while it runs a page


# ------------------------------------------------------------------ runs folder


def runs_dir() -> Path:
    """$POSELAB_RUNS when set, else checkpoints/ (read every rerun, so tests can set it)."""
    return default_runs_dir()


def stamp(path: Path) -> float:
    """Part of cache keys: a file's mtime (0 when it is missing), so a re-written file
    invalidates whatever was computed from it."""
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
            out.append((p.name, stamp(p / "run.json"), stamp(p / "metrics.json")))
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=8)
def _cached_runs(root: str, stamp: tuple) -> list[Run]:
    return list_runs(root)


def all_runs(kind: str | None = None) -> list[Run]:
    """Every run (finished, unfinished, broken), newest first; cached."""
    root = runs_dir()
    runs = _cached_runs(str(root), _runs_stamp(root))
    st.session_state[_DRAWN_WITH] = _finished_stamp(runs)
    return [r for r in runs if kind is None or r.kind == kind]


_DRAWN_WITH = "_finished_runs_drawn"


def _finished_stamp(runs: list[Run]) -> tuple:
    return tuple(sorted(r.id for r in runs if r.finished))


def runs_changed() -> bool:
    """Whether a run finished since this page last read the runs: a fragment following
    the demo build reruns the whole page then, so each page fills in as runs finish."""
    root = runs_dir()
    return st.session_state.get(_DRAWN_WITH) != _finished_stamp(_cached_runs(str(root), _runs_stamp(root)))


def auto_demo() -> bool:
    """Whether an empty runs folder starts the demo build by itself (``$POSELAB_AUTO_DEMO``,
    default on; the tests turn it off)."""
    return os.environ.get("POSELAB_AUTO_DEMO", "1") != "0"


def finished_runs(kind: str | None = None) -> list[Run]:
    return [r for r in all_runs(kind) if r.finished]


def get_run(run_id: str) -> Run:
    """A finished run by id (raises RunError when it is missing or unfinished)."""
    for r in all_runs():
        if r.id == run_id and r.finished:
            return r
    return load_run(runs_dir() / run_id, require_finished=True)


def run_label(r: Run) -> str:
    """How a picker names a run: what it is (preset, keypoints, backbone, seed), its
    headline and when it started."""
    head = r.headline
    score = f" · {head[0]}={head[1]:.3f}" if head and isinstance(head[1], (int, float)) else ""
    what = r.info.label if r.info else r.name
    return f"{what} ({r.kind}){score} · {r.id[:15]}"


DATA_DIRS_ENV = "POSELAB_DATA_DIRS"


def readable_folders() -> list[Path]:
    """Where a folder typed into a page may lie (resolved): the runs folder, the
    project's ``data/`` (of the working directory), every run's data folder, and the
    folders listed in ``$POSELAB_DATA_DIRS`` (separated by ``os.pathsep``, ':')."""
    roots = [runs_dir(), Path("data")]
    roots += [Path(r.info.data.root) for r in all_runs() if r.info is not None and r.info.data.root]
    roots += [Path(p) for p in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    return sorted({p.expanduser().resolve() for p in roots})


def readable_folder(text: str) -> Path:
    """The folder (or file) typed into a page, resolved, when it lies inside
    ``readable_folders()``; else a DataError naming what was typed and only that. The
    dashboard may listen beyond 127.0.0.1, so a text box never opens the rest of the
    server's files."""
    chosen = Path(text.strip()).expanduser()
    path = chosen.resolve()
    if not any(path.is_relative_to(root) for root in readable_folders()):
        raise DataError(chosen, "is outside the folders this page reads (the runs folder, data/, the runs' "
                                f"data folders); add it to ${DATA_DIRS_ENV} ({os.pathsep}-separated) where the "
                                "dashboard is started to allow it")
    if not path.exists():
        raise DataError(chosen, "no such folder")
    return path


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
    return _read_predictions(str(run.path), stamp(run.file("predictions.parquet")))


def classifier_predictions(run: Run) -> tuple[pd.DataFrame, list[str]]:
    """Validated predictions and class names of a classifier run."""
    classes = report.run_classes(run)
    preds = predictions(run)
    return report.check_predictions(preds, classes, run.file("predictions.parquet")), classes


@st.cache_data(show_spinner=False, max_entries=16)
def _scored(path: str, mtime: float, classes: tuple[str, ...]) -> pd.DataFrame:
    run = load_run(path)
    return prediction_scores(run.predictions(), list(classes), run.file("predictions.parquet"))


def scored_predictions(run: Run) -> tuple[pd.DataFrame, list[str], str | None]:
    """``classifier_predictions`` with mistakenness, hardness and margin
    (``core.classification.mistakes``), and None; or, for a run without stored
    probabilities, the plain predictions and the problem in one line."""
    preds, classes = classifier_predictions(run)
    try:
        return _scored(str(run.path), stamp(run.file("predictions.parquet")), tuple(classes)), classes, None
    except PoseLabError as e:
        return preds, classes, str(e)


def history(run: Run) -> pd.DataFrame:
    return _read_history(str(run.path), stamp(run.file("history.csv")))


def pck(run: Run) -> pd.DataFrame:
    return _read_pck(str(run.path), stamp(run.file("pck.csv")))


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def _load_model(path: str, mtime: float, device: str):
    return load_model(path, device=device)


def cached_model(run: Run, device: str = "cpu"):
    """The run's model in eval mode, shared by all sessions (keyed by run + weights mtime)."""
    return _load_model(str(run.path), stamp(run.file("weights.safetensors")), device)


@st.cache_resource(show_spinner=False, max_entries=8)
def _image_cache(path: str, stamp: float):
    return image_cache_of_run(path, load_run(Path(path)).info)


def image_cache(run: Run):
    """The run's image cache (``core.classification.image_cache.image_cache_of_run``: the model's input
    crops, memory-mapped) or None; shared by all sessions, keyed by run + run.json mtime."""
    if run.kind != "classifier":
        return None
    return _image_cache(str(run.path), stamp(run.file("run.json")))


# ------------------------------------------------------------------ sidebar / errors


def sidebar(kind: str | None = None) -> Run | None:
    """Runs folder + run picker in the sidebar. ``kind`` narrows the list to the runs
    the current page can show. Returns the chosen run (also in
    ``st.session_state["selected_run"]``), or None when there is none.

    Every page calls it first. dashboard.py draws it before running the page and sets
    SIDEBAR_DRAWN, so the page's call only returns the run; when a page file runs on
    its own (AppTest treats pages/ as a v1 multipage folder) the page draws it.
    """
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
    index = ids.index(chosen) if chosen in ids else ids.index(default_run(runs).id)
    labels = {r.id: run_label(r) for r in runs}
    key = f"_run_picker_{kind or 'any'}"
    if st.session_state.get(key) not in ids or chosen in ids:
        # keep the widget in step with "selected_run" (set by other pages' buttons)
        st.session_state[key] = ids[index]
    picked = st.sidebar.selectbox("Run", ids, format_func=labels.get, key=key,
                                  on_change=_picked, args=(key,))
    # "selected_run" changes only by a pick (_picked) or another page's hand-over, so a
    # page that merely showed its default does not decide what the next page opens on
    return runs[ids.index(picked)]


def _picked(key: str) -> None:
    # Callbacks run before the script: every page of this rerun sees the new choice.
    st.session_state["selected_run"] = st.session_state[key]


def default_run(runs: list[Run]) -> Run:
    """The run a page opens on when none is chosen: the newest, except among temporal runs,
    where it is the best refinement (highest headline) that is not the identity baseline."""
    temporal = [r for r in runs if r.kind == "temporal" and r.name != "identity"
                and isinstance((r.headline or (None, None))[1], (int, float))]
    if temporal and len(temporal) == len([r for r in runs if r.name != "identity"]):
        return max(temporal, key=lambda r: r.headline[1])
    return runs[0]


def selected_run(kind: str | None = None) -> Run | None:
    """The run chosen in the sidebar if it is of ``kind``, else ``default_run``."""
    runs = finished_runs(kind)
    chosen = st.session_state.get("selected_run")
    for r in runs:
        if r.id == chosen:
            return r
    return default_run(runs) if runs else None


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show a PoseLabError (bad file, broken run) as one st.error line; the rest of the
    page keeps working. Other exceptions are bugs and propagate."""
    try:
        yield
    except PoseLabError as e:
        st.error(str(e), icon=":material/error:")


def need_run(kind: str) -> Run:
    """Draw the sidebar; return the page's run, or stop with a how-to when there is none
    (while the demo builds: its progress, and the page fills in when a run finishes)."""
    run = sidebar(kind)
    if run is None:
        state = demo_job().state()
        if state is not None and state.running:
            st.info(f"The demo is building ({state.fraction:.0%}: {state.message}); this page "
                    f"fills in when its first {kind} run finishes.", icon=":material/hourglass_top:")
            _wait_for_runs()
        else:
            st.info(f"No finished {kind} run in `{runs_dir()}`. Go to **Home** to build the "
                    "demo runs, or train one with `python -m core train ...`.")
        st.stop()
    return run


@st.fragment(run_every=2.0)
def _wait_for_runs() -> None:
    if runs_changed():
        st.rerun(scope="app")


# ------------------------------------------------------------------ pictures + gallery

GALLERY_COLUMNS = 6


@st.cache_data(show_spinner=False, max_entries=2048)
def _picture(root: str, image_path: str, bbox: tuple | None, keypoints: tuple | None,
             skeleton: bool, size: int, sample_id: str, cache_path: str, estimated: tuple | None = None,
             _cache=None):
    # cache_path stands for _cache in the key (the memmap itself is not hashed)
    row = {"image_path": image_path, "bbox": bbox, "keypoints": keypoints, "sample_id": sample_id,
           "estimated_keypoints": estimated}
    try:
        return report.sample_picture(root, row, skeleton=skeleton, size=size, cache=_cache), None
    except DataError as e:
        return report.placeholder_picture(size), str(e)


def picture(run: Run, row: pd.Series, *, skeleton: bool, size: int = 192):
    """(PIL image, problem or None) for one prediction row; never raises for a bad image.
    Crops come from the run's image cache when it is there (no scene decode)."""
    root = run.info.data.root
    bbox = row.get("bbox")
    kps = row.get("keypoints")
    est = row.get("estimated_keypoints")
    cache = image_cache(run)
    as_tuple = lambda v: None if v is None else tuple(float(x) for x in v)   # noqa: E731
    return _picture(str(root), str(row.get("image_path", "")), as_tuple(bbox), as_tuple(kps), skeleton, size,
                    str(row.get("sample_id", "")), str(cache.path) if cache is not None else "", as_tuple(est),
                    _cache=cache)


def keypoints_legend(run: Run) -> str:
    """What the drawn keypoints are, for captions."""
    if run.info.data.keypoint_source == "estimated":
        return ("annotation: red visible, yellow occluded (cyan bones); "
                "estimated by BlazePose, what the model saw: purple (green bones)")
    return "keypoints: red visible, yellow occluded"


def open_saliency(run_id: str, sample_id) -> None:
    """Hand a sample over to the saliency page and go there."""
    st.session_state["selected_run"] = run_id
    st.session_state["saliency_request"] = {"run_id": run_id, "sample_id": sample_id}
    st.switch_page("pages/saliency.py")


def sample_detail(run: Run, row: pd.Series, classes: list[str], key: str) -> None:
    """Detail view of one sample: image with keypoints, class probabilities, metadata."""
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
        left.image(img, caption=f"crop with keypoints ({keypoints_legend(run)})")
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
        est = row.get("estimated_keypoints")
        if kps is not None and len(kps) == 51:
            kp = pd.DataFrame([list(kps[i:i + 3]) for i in range(0, 51, 3)], columns=["x", "y", "v"])
            kp.insert(0, "keypoint", COCO17)
            if est is not None and len(est) == 51:        # the run saw the estimator's, not these
                e = np.asarray(est, dtype=float).reshape(17, 3)
                kp[["est_x", "est_y", "est_v"]] = e
                kp["distance_px"] = np.where((kp["v"] > 0) & (kp["est_v"] > 0),
                                             np.hypot(kp["x"] - kp["est_x"], kp["y"] - kp["est_y"]), np.nan)
            with right.expander("keypoints (scene pixels)"):
                st.dataframe(kp, hide_index=True, width="stretch")


def gallery(run: Run, rows: pd.DataFrame, classes: list[str], *, key: str,
            skeleton: bool = True, per_page: int = 24, score: str | None = None) -> None:
    """Paged grid of samples; 'Open' shows the detail view above the grid. ``score``: a
    column of ``rows`` (e.g. mistakenness) shown in each caption."""
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
        extra = f" · {score} {float(row[score]):.2f}" if score and score in row.index else ""
        col.image(img, caption=f"{mark} {row.get('label_name', row['label'])} → "
                               f"{row.get('pred_name', row['pred'])} ({float(row['confidence']):.2f}){extra}",
                  width="stretch")
        if col.button("Open", key=f"{key}_open_{row['sample_id']}", width="stretch"):
            st.session_state[f"{key}_detail"] = row["sample_id"]
            st.rerun()
    if problems:
        st.warning(f"{problems} image(s) on this page could not be read (shown as grey "
                   "placeholders); is the run's data folder still there?")


def demo_job(root: Path | None = None) -> DemoJob:
    """The demo build of the runs folder (``core.demo.DemoJob``)."""
    return DemoJob(root or runs_dir())


def backbone_note(run: Run) -> None:
    """One line under a classifier run's title: which backbone it had; a warning for a
    random one, whose accuracies and saliency maps mean little."""
    b = run.info.backbone
    if b is None:
        return
    if b.source == "random":
        st.warning(f"Backbone: **{b.label}** ({b.weights}). {b.warning or ''}", icon=":material/warning:")
    else:
        st.caption(f"Backbone: **{b.label}** · `{b.weights}`" + (f" · {b.made}" if b.made else ""))
