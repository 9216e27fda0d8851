"""Sequences page: one test video of a temporal run, frame by frame.

The estimator's heatmaps (max over the 25 keypoints, preprocessed as the models see
them) with the ground truth, the estimator's decoded keypoints and the run's refined
keypoints on top, a frame slider, and the per-frame mean error of both. Coordinates
are heatmap pixels throughout (predictions.parquet). Heatmaps are read from the run's
data folder (``core.temporal.report.load_run_video``: never outside it); when they are gone
the keypoints are still drawn on an empty canvas.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import ui
from core.errors import PoseLabError
from core.keypoints import TEMPORAL25_SKELETON
from core.temporal import report as pr

LAYERS = {  # name -> (x column, y column, marker)
    "ground truth": ("gt_x", "gt_y", dict(symbol="circle", size=9, color="#2ca02c",
                                         line=dict(width=1, color="white"))),
    "estimator": ("input_x", "input_y", dict(symbol="x", size=9, color="#ff7f0e")),
    "refined": ("pred_x", "pred_y", dict(symbol="diamond", size=9, color="#d62728",
                                        line=dict(width=1, color="white"))),
}


@st.cache_resource(show_spinner="Reading heatmaps...", max_entries=8)
def _video(root: str, video: str):
    """The video's heatmaps, shared read-only by all sessions (arrays can be large)."""
    return pr.load_run_video(root, video)


@st.cache_data(show_spinner=False, max_entries=32)
def _rows(run_id: str, mtime: float, video: str) -> pd.DataFrame:
    run = ui.get_run(run_id)
    preds = pr.check_frame_predictions(ui.predictions(run), run.file("predictions.parquet"))
    return pr.video_rows(preds, video)




def _frame_figure(hm: np.ndarray | None, pts: pd.DataFrame, layers: list[str], skeleton: bool,
                  size: tuple[int, int]) -> go.Figure:
    fig = go.Figure()
    h, w = size
    if hm is not None:
        fig.add_trace(go.Heatmap(z=hm, colorscale="Greys_r", showscale=False, hoverinfo="skip",
                                 x0=0, dx=1, y0=0, dy=1))
    vis = pts["visible"].astype(bool).to_numpy()
    if skeleton and "ground truth" in layers:
        xs, ys = [], []
        gx, gy = pts["gt_x"].to_numpy(), pts["gt_y"].to_numpy()
        kp_index = {int(k): i for i, k in enumerate(pts["keypoint"])}
        for a, b in TEMPORAL25_SKELETON:
            ia, ib = kp_index.get(a), kp_index.get(b)
            if ia is not None and ib is not None and vis[ia] and vis[ib]:
                xs += [gx[ia], gx[ib], None]
                ys += [gy[ia], gy[ib], None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#2ca02c", width=1.5),
                                 hoverinfo="skip", showlegend=False))
    for name in layers:
        xc, yc, marker = LAYERS[name]
        sub = pts if name != "ground truth" else pts[vis]
        err = sub.get("error_px" if name == "refined" else "input_error_px")
        text = [f"{n}<br>error {e:.2f} px" if name != "ground truth" and pd.notna(e) else n
                for n, e in zip(sub["keypoint_name"], err if err is not None else [np.nan] * len(sub))]
        fig.add_trace(go.Scatter(x=sub[xc], y=sub[yc], mode="markers", name=name, marker=marker,
                                 text=text, hovertemplate="%{text}<extra>" + name + "</extra>"))
    fig.update_xaxes(range=[-0.5, w - 0.5], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x")
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=10, b=0), plot_bgcolor="black",
                      legend=dict(orientation="h", y=-0.05))
    return fig


st.title("Sequences")
run = ui.need_run("temporal")
st.caption(f"Run **{run.name}** · `{run.id}` (choose another in the sidebar)")

with ui.guard():
    preds = pr.check_frame_predictions(ui.predictions(run), run.file("predictions.parquet"))
    videos = pr.list_videos(preds)
    if not videos:
        st.info("This run has no test predictions.")
        st.stop()
    video = st.selectbox("Test video", videos, key=f"seq_video_{run.id}")
    rows = _rows(run.id, ui.stamp(run.file("predictions.parquet")), video)
    frames = sorted(rows["frame"].unique().tolist())

    clip, problem = None, None
    root = run.info.data.root
    try:
        if not root:
            raise PoseLabError("run.json has no data.root: heatmaps cannot be found")
        clip = _video(str(root), video)
    except PoseLabError as e:
        problem = str(e)

    c1, c2 = st.columns([3, 2])
    frame = c1.select_slider("Frame", frames, value=frames[0], key=f"seq_frame_{run.id}_{video}") \
        if len(frames) > 1 else frames[0]
    layers = c2.multiselect("Show", list(LAYERS), default=list(LAYERS), key="seq_layers")
    skeleton = c2.toggle("Ground-truth skeleton", value=True, key="seq_skeleton")

    pts = pr.frame_points(rows, frame)
    if clip is not None and frame < clip.heatmaps.shape[0]:
        hm = pr.frame_heatmap(clip, frame)
        size = hm.shape
    else:
        hm = None
        size = clip.heatmap_size if clip is not None else (
            int(np.ceil(np.nanmax(rows[["gt_y", "input_y", "pred_y"]].to_numpy()))) + 2,
            int(np.ceil(np.nanmax(rows[["gt_x", "input_x", "pred_x"]].to_numpy()))) + 2)
    if problem:
        st.warning(f"Heatmaps not shown: {problem}")

    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(_frame_figure(hm, pts, layers, skeleton, size), width="stretch",
                        key="seq_frame_fig")
        st.caption("Heatmap pixels. Background: the estimator's heatmaps (max over keypoints). "
                   "Green: ground truth; orange ×: the estimator's peaks; red ◆: this run.")
    with right:
        curve = pr.per_frame_error(rows)
        fig = go.Figure()
        fig.add_scatter(x=curve["frame"], y=curve["input_error_px"], name="estimator",
                        line=dict(color="#ff7f0e"))
        fig.add_scatter(x=curve["frame"], y=curve["error_px"], name=f"refined ({run.name})",
                        line=dict(color="#d62728"))
        fig.add_vline(x=frame, line=dict(color="grey", dash="dot"))
        fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0),
                          title="Mean keypoint error per frame", xaxis_title="frame",
                          yaxis_title="error (heatmap px)", legend=dict(orientation="h", y=-0.3))
        st.plotly_chart(fig, width="stretch", key="seq_curve")
        vis = pts["visible"].astype(bool)
        m_in = float(pts.loc[vis, "input_error_px"].mean()) if vis.any() else float("nan")
        m_out = float(pts.loc[vis, "error_px"].mean()) if vis.any() else float("nan")
        a, b = st.columns(2)
        a.metric("Estimator error (this frame)", f"{m_in:.2f} px")
        change = m_out - m_in
        b.metric("Refined error (this frame)", f"{m_out:.2f} px",
                 delta=f"{change:+.2f} px" if np.isfinite(change) and abs(change) >= 0.005 else None,
                 delta_color="inverse")
    with st.expander("Keypoints of this frame"):
        st.dataframe(pts, hide_index=True, width="stretch")
