"""Sequences page: a video frame by frame -- the frame itself with the ground truth, the
estimator's keypoints and the run's refined keypoints on it, the heatmaps as an optional
overlay, step and play, and the per-frame error when there is ground truth.

Two sources: the run's own test videos (its predictions.parquet, heatmaps and frames read
from the run's data folder, never outside it), or a sequence dataset folder, e.g. one
written by ``python -m core estimate`` from your video, which the run refines live; the
folder must lie inside the runs folder, ``data/``, a run's data folder or a folder of
``$POSELAB_DATA_DIRS`` (``ui.readable_folder``), and links out of it are refused. When
a video's frames are gone the keypoints are drawn in heatmap pixels over the heatmaps.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import ui
from core.errors import PoseLabError
from core.keypoints import TEMPORAL25_SKELETON
from core.temporal import report as pr
from core.temporal.refine import read_videos, refine_video
from core.temporal.sequences import READERS, dataset_warnings

LAYERS = {  # name -> (x column, y column, marker): the source by the symbol ...
    "ground truth": ("gt_x", "gt_y", dict(symbol="circle", size=9, line=dict(width=1, color="white"))),
    "estimator": ("input_x", "input_y", dict(symbol="x", size=9)),
    "refined": ("pred_x", "pred_y", dict(symbol="diamond", size=9, line=dict(width=1, color="white"))),
}
# ... the body's side by the colour, so a body read mirrored (left for right) shows at once
SIDES = {"left": "#1f77b4", "right": "#d62728", "centre": "#e0e0e0"}


def side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"
SOURCES = ("Test videos of the run", "A sequence dataset folder")
PLAY_DELAY_S = 0.15          # between frames while playing (plus the time to draw one)


# ------------------------------------------------------------------ cached reads

@st.cache_resource(show_spinner="Reading heatmaps...", max_entries=8)
def _run_video(root: str, video: str):
    """A test video's heatmaps, shared read-only by all sessions (arrays can be large)."""
    return pr.load_run_video(root, video)


@st.cache_data(show_spinner=False, max_entries=32)
def _test_rows(run_id: str, stamp: float, video: str) -> pd.DataFrame:
    run = ui.get_run(run_id)
    preds = pr.check_frame_predictions(ui.predictions(run), run.file("predictions.parquet"))
    return pr.video_rows(preds, video)


@st.cache_resource(show_spinner="Reading the dataset...", max_entries=4)
def _dataset(folder: str, stamp: float):
    return {v.id: v for v in read_videos(folder, confine=True)}


@st.cache_data(show_spinner="Refining every frame...", max_entries=16)
def _refined_rows(run_id: str, weights_stamp: float, folder: str, stamp: float, video: str) -> pd.DataFrame:
    run = ui.get_run(run_id)
    v = _dataset(folder, stamp)[video]
    k = int(run.info.config["model"].get("frames", 5))
    size = tuple(run.info.data.heatmap_size) if run.info.data.heatmap_size else None
    res = refine_video(ui.cached_model(run), v, k=k, size=size)
    return pr.refined_rows(v, res.refined, res.estimator)


@st.cache_data(show_spinner=False, max_entries=64)
def _frame(root: str, video_key: str, frame: int, _video) -> np.ndarray | None:
    return pr.frame_image(_video, frame, root)


# ------------------------------------------------------------------ figures

def frame_figure(background, overlay, pts: pd.DataFrame, layers: list[str], skeleton: bool,
                 size: tuple[int, int], heatmap_canvas: bool) -> go.Figure:
    """The frame (or the heatmaps) with the keypoint layers; ``size`` is (W, H)."""
    fig = go.Figure()
    w, h = size
    if background is not None and not heatmap_canvas:
        fig.add_trace(go.Image(z=background, x0=0.5, y0=0.5, hoverinfo="skip"))   # pixel centres at i + .5
    elif background is not None:
        fig.add_trace(go.Heatmap(z=background, colorscale="Greys_r", showscale=False, hoverinfo="skip",
                                 x0=0, dx=1, y0=0, dy=1))
    if overlay is not None:
        fig.add_trace(go.Image(z=overlay, colormodel="rgba", x0=0.5, y0=0.5, hoverinfo="skip"))
    vis = pts["visible"].astype(bool).to_numpy()
    sides = np.array([side(n) for n in pts["keypoint_name"]])
    if skeleton:
        name = "ground truth" if vis.any() and "ground truth" in layers else "refined"
        xc, yc, _ = LAYERS[name]
        px, py = pts[xc].to_numpy(), pts[yc].to_numpy()
        at = {int(k): i for i, k in enumerate(pts["keypoint"])}
        lines: dict[str, tuple[list, list]] = {s_: ([], []) for s_ in SIDES}
        for a, b in TEMPORAL25_SKELETON:
            ia, ib = at.get(a), at.get(b)
            if ia is not None and ib is not None and (name != "ground truth" or (vis[ia] and vis[ib])):
                s_ = sides[ia] if sides[ia] == sides[ib] else "centre"    # a limb is its side's colour
                lines[s_][0].extend([px[ia], px[ib], None])
                lines[s_][1].extend([py[ia], py[ib], None])
        for s_, (xs, ys) in lines.items():
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=SIDES[s_], width=1.5),
                                     hoverinfo="skip", showlegend=False))
    for name in layers:
        xc, yc, marker = LAYERS[name]
        keep = vis if name == "ground truth" else np.ones(len(pts), bool)
        if pts.loc[keep, xc].isna().all():
            continue
        err = pts["error_px" if name == "refined" else "input_error_px"]
        text = [f"{n}<br>error {e:.1f} px" if name != "ground truth" and pd.notna(e) else n
                for n, e in zip(pts["keypoint_name"], err)]
        colours = [SIDES[s_] for s_ in sides[keep]]
        fig.add_trace(go.Scatter(x=pts.loc[keep, xc], y=pts.loc[keep, yc], mode="markers", name=name,
                                 marker={**marker, "color": colours}, text=np.asarray(text, object)[keep],
                                 hovertemplate="%{text}<extra>" + name + "</extra>"))
    lo = -0.5 if heatmap_canvas else 0
    fig.update_xaxes(range=[lo, w + lo], showgrid=False, zeroline=False, constrain="domain", visible=False)
    fig.update_yaxes(range=[h + lo, lo], showgrid=False, zeroline=False, scaleanchor="x", visible=False)
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=10, b=0), plot_bgcolor="black",
                      legend=dict(orientation="h", y=-0.05))
    return fig


def error_figure(rows: pd.DataFrame, frame: int, name: str, unit: str) -> go.Figure:
    curve = pr.per_frame_error(rows)
    fig = go.Figure()
    fig.add_scatter(x=curve["frame"], y=curve["input_error_px"], name="estimator", line=dict(color="#ff7f0e"))
    fig.add_scatter(x=curve["frame"], y=curve["error_px"], name=f"refined ({name})", line=dict(color="#d62728"))
    fig.add_vline(x=frame, line=dict(color="grey", dash="dot"))
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0), title="Mean keypoint error per frame",
                      xaxis_title="frame", yaxis_title=f"error ({unit})", legend=dict(orientation="h", y=-0.3))
    return fig


# ------------------------------------------------------------------ UI pieces

def source_ui(run) -> tuple[str, str | None]:
    """Where the video comes from: (source, dataset folder for the second source)."""
    source = st.radio("Videos", SOURCES, horizontal=True, key="seq_source")
    if source == SOURCES[0]:
        return source, None
    folder = st.text_input("Sequence dataset folder", value=run.info.data.root, key="seq_folder",
                           help="a sequence dataset, e.g. what `python -m core estimate --video FILE --out DIR` "
                                "writes; inside the runs folder, data/, a run's data folder or "
                                f"${ui.DATA_DIRS_ENV}. Layouts read: "
                                + "; ".join(f"{r.name}: {r.summary}" for r in READERS.values()))
    return source, folder.strip() or None


def step_ui(fkey: str, frames: list[int]):
    """Previous / next / play controls and the frame slider; returns the frame shown.
    While playing, each fragment rerun advances one frame (before the slider exists,
    which is when its value may be set)."""
    current = st.session_state.get(fkey, frames[0])
    if st.session_state.get(f"{fkey}_play") and current in frames:
        st.session_state[fkey] = frames[(frames.index(current) + 1) % len(frames)]
    c = st.columns([1, 1, 1, 9])
    at = frames.index(st.session_state.get(fkey, frames[0])) if st.session_state.get(fkey) in frames else 0
    if c[0].button("◀", key=f"{fkey}_prev", help="previous frame"):
        st.session_state[fkey] = frames[max(0, at - 1)]
    if c[1].button("▶", key=f"{fkey}_next", help="next frame"):
        st.session_state[fkey] = frames[min(len(frames) - 1, at + 1)]
    c[2].toggle("Play", key=f"{fkey}_play")
    return c[3].select_slider("Frame", frames, key=fkey) if len(frames) > 1 else frames[0]


@st.fragment
def player_ui(key: str, rows_img: pd.DataFrame | None, rows_hm: pd.DataFrame | None, video, root: str,
              title: str) -> None:
    """Step and play through the video: the frame figure and the error curve. A
    fragment: stepping or playing redraws only this part of the page. ``rows_img`` are
    in image pixels (None when the video's mapping is unknown), ``rows_hm`` in heatmap
    pixels (None for a dataset refined live)."""
    any_rows = rows_img if rows_img is not None else rows_hm
    frames = sorted(any_rows["frame"].unique().tolist())
    fkey = f"seq_frame_{key}"
    frame = step_ui(fkey, frames)
    c = st.columns([6, 2, 2])
    layers = c[0].multiselect("Show", list(LAYERS), default=list(LAYERS), key="seq_layers")
    skeleton = c[1].toggle("Skeleton", value=True, key="seq_skeleton")
    show_heat = c[2].toggle("Heatmaps", value=False, key="seq_heatmaps", disabled=video is None)

    background, overlay, problem = None, None, None
    if video is not None and rows_img is not None:
        try:
            background = _frame(root, f"{video.path}:{video.id}", int(frame), video)
        except PoseLabError as e:
            problem = str(e)
    canvas = background is None and rows_hm is not None       # heatmap pixels over the heatmaps
    rows = rows_hm if canvas else any_rows
    if canvas:
        background = pr.frame_heatmap(video, int(frame)) if video is not None and frame < video.num_frames else None
        size = (video.heatmap_size[1], video.heatmap_size[0]) if video is not None else _extent(rows)
    elif background is not None:
        size = (background.shape[1], background.shape[0])
        if show_heat:
            overlay = pr.heatmap_overlay(video, int(frame), size)
    else:
        size = tuple(video.image_size) if video is not None else _extent(rows)
    if problem:
        st.warning(f"Frame not shown: {problem}")
    pts = pr.frame_points(rows, frame)
    has_gt = bool(rows["visible"].astype(bool).any())
    left, right = st.columns([3, 2]) if has_gt else (st.container(), None)
    with left:
        st.plotly_chart(frame_figure(background, overlay, pts, layers, skeleton, size, canvas),
                        width="stretch", key=f"seq_fig_{key}")
        st.caption(("Heatmap pixels over the estimator's heatmaps (max over keypoints)." if canvas
                    else "Image pixels.") + " ● ground truth, × the estimator, ◆ the run; blue: the body's "
                   "left, red: its right, grey: the centre line.")
    if right is None:
        st.caption("This video has no ground truth: the estimator's keypoints and the run's refined ones.")
    else:
        with right:
            st.plotly_chart(error_figure(rows, frame, title, "heatmap px" if canvas else "image px"),
                            width="stretch", key=f"seq_curve_{key}")
            vis = pts["visible"].astype(bool)
            m_in = float(pts.loc[vis, "input_error_px"].mean()) if vis.any() else float("nan")
            m_out = float(pts.loc[vis, "error_px"].mean()) if vis.any() else float("nan")
            a, b = st.columns(2)
            a.metric("Estimator error (this frame)", f"{m_in:.1f} px")
            change = m_out - m_in
            b.metric("Refined error (this frame)", f"{m_out:.1f} px",
                     delta=f"{change:+.1f} px" if np.isfinite(change) and abs(change) >= 0.05 else None,
                     delta_color="inverse")
    motion = pr.video_motion(rows)
    unit = "heatmap px" if canvas else "image px"
    m = st.columns(3)
    m[0].metric("Jitter, estimator (this video)", f"{motion['estimator_jitter']:.2f}",
                help=f"mean acceleration of its keypoints, {unit} per frame²")
    m[1].metric("Jitter, refined (this video)", f"{motion['refined_jitter']:.2f}",
                delta=f"{motion['refined_jitter'] - motion['estimator_jitter']:+.2f}", delta_color="inverse")
    if np.isfinite(motion["true_jitter"]):
        m[2].metric("The true motion's jitter", f"{motion['true_jitter']:.2f}",
                    help=f"acceleration error: estimator {motion['estimator_accel_error']:.2f}, "
                         f"refined {motion['refined_accel_error']:.2f} ({unit} per frame²)")
    with st.expander("Keypoints of this frame"):
        st.dataframe(pts, hide_index=True, width="stretch")
    if st.session_state.get(f"{fkey}_play"):
        time.sleep(PLAY_DELAY_S)
        st.rerun(scope="fragment")


def _extent(rows: pd.DataFrame) -> tuple[int, int]:
    return (int(np.nanmax(rows[["gt_x", "input_x", "pred_x"]].to_numpy())) + 2,
            int(np.nanmax(rows[["gt_y", "input_y", "pred_y"]].to_numpy())) + 2)


# ------------------------------------------------------------------ page

st.title("Sequences")
run = ui.need_run("temporal")
st.caption(f"Run **{run.name}** · `{run.id}` · estimator: {run.info.data.estimator or 'unknown'} "
           "(choose another run in the sidebar)")

with ui.guard():
    source, folder = source_ui(run)
    if source == SOURCES[0]:
        preds = pr.check_frame_predictions(ui.predictions(run), run.file("predictions.parquet"))
        videos = pr.list_videos(preds)
        if not videos:
            st.info("This run has no test predictions.")
            st.stop()
        name = st.selectbox("Test video", videos, key=f"seq_video_{run.id}")
        rows_hm = _test_rows(run.id, ui.stamp(run.file("predictions.parquet")), name)
        clip, problem = None, None
        try:
            clip = _run_video(run.info.data.root, name)
        except PoseLabError as e:
            problem = str(e)
        if problem:
            st.warning(f"Frames and heatmaps not shown: {problem}")
        rows_img = pr.rows_in_image(rows_hm, clip) if clip is not None else None
        player_ui(f"{run.id}_{name}", rows_img, rows_hm, clip, run.info.data.root, run.name)
    elif folder:
        root = ui.readable_folder(folder)                  # inside the data and runs folders only
        stamp = ui.stamp(root / "index.json") or ui.stamp(root)
        dataset = _dataset(str(root), stamp)
        for warning in dataset_warnings(root):          # made with --allow-truncated
            st.warning(f"Made from a cut or damaged video: {warning}", icon=":material/warning:")
        name = st.selectbox("Video", sorted(dataset), key=f"seq_dvideo_{root}")
        rows = _refined_rows(run.id, ui.stamp(run.file("weights.safetensors")), str(root), stamp, name)
        player_ui(f"ds_{run.id}_{name}", rows, None, dataset[name], str(root), run.name)
    else:
        st.info("Give a sequence dataset folder, e.g. one `python -m core estimate` wrote.")
