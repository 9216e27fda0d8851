"""Confusion matrix: counts or row-normalised, clickable cells that open their samples,
per-class precision / recall / F1, most confused pairs, and the difference of two runs.

Plotly heatmaps send Streamlit no selection events, so the matrix is drawn as a scatter
of square markers (one point per cell); a selectbox pair is the keyboard fallback.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import ui
from core.classification import report
from core.errors import RunError

MAX_WIDTH_PX = 720     # fits the left column of a wide layout; cells shrink for many classes
NONE = "(choose)"


def matrix_figure(cm: np.ndarray, classes: list[str], counts: np.ndarray, *, diverging=False,
                  title: str = "") -> go.Figure:
    pts = report.confusion_points(cm, classes, counts)
    C = len(classes)
    vmax = float(np.nanmax(np.abs(pts["value"]))) if len(pts) else 1.0
    vmax = vmax or 1.0
    dark = np.abs(np.nan_to_num(pts["value"].to_numpy())) > 0.55 * vmax
    fig = go.Figure(go.Scatter(
        x=pts["pred"], y=pts["true"], mode="markers+text", text=pts["text"],
        textfont=dict(size=11, color=np.where(dark, "white", "#222").tolist()),
        customdata=pts["count"].tolist(),
        hovertemplate="true %{y}<br>predicted %{x}<br>value %{marker.color:.3f}"
                      "<br>samples %{customdata}<extra></extra>",
        marker=dict(symbol="square", color=pts["value"].fillna(0),
                    colorscale="RdBu_r" if diverging else "Blues",
                    cmin=-vmax if diverging else 0, cmax=vmax, showscale=True,
                    line=dict(width=1, color="#ddd"), colorbar=dict(thickness=12)),
    ))
    cell = int(max(12, min(36, (MAX_WIDTH_PX - 230) / max(C, 1))))
    fig.update_traces(marker_size=cell - 2)
    side = cell * C
    fig.update_layout(
        title=title or None, width=side + 230, height=side + 190, dragmode=False,
        margin=dict(l=130, r=10, t=40 if title else 10, b=140), plot_bgcolor="white",
        clickmode="event+select",
        xaxis=dict(title="predicted class", type="category", categoryorder="array",
                   categoryarray=classes, tickangle=-45, showgrid=False, fixedrange=True,
                   tickmode="array", tickvals=classes, range=[-0.5, C - 0.5]),
        yaxis=dict(title="true class", type="category", categoryorder="array",
                   categoryarray=classes, showgrid=False, fixedrange=True,
                   tickmode="array", tickvals=classes, range=[C - 0.5, -0.5]),
    )
    return fig


def _on_select(classes: list[str]) -> None:
    # Runs before the rerun: copy the clicked cell into the fallback selectboxes, so
    # one state drives the gallery whichever way the cell was chosen. Points come in
    # confusion_points order (row-major over true x predicted), so the point index is
    # the cell; the axis names are the fallback.
    event = st.session_state.get("cm_chart") or {}
    points = (event.get("selection") or {}).get("points") or []
    if not points:
        return
    point, C = points[0], len(classes)
    index = point.get("point_index", point.get("point_number"))
    if isinstance(index, int) and 0 <= index < C * C:
        true_name, pred_name = classes[index // C], classes[index % C]
    else:
        true_name, pred_name = point.get("y"), point.get("x")
    if true_name in classes and pred_name in classes:
        st.session_state["cm_true"], st.session_state["cm_pred"] = true_name, pred_name


def difference_ui(run, preds, classes, normalize: bool) -> None:
    others = [r for r in ui.finished_runs("classifier") if r.id != run.id]
    if not others:
        st.info("Only one classifier run: nothing to compare with.")
        return
    labels = {r.id: ui.run_label(r) for r in others}
    other_id = st.selectbox("Compare with run", list(labels), format_func=labels.get, key="cm_other")
    other = next(r for r in others if r.id == other_id)
    try:
        preds_o, classes_o = ui.classifier_predictions(other)
        diff = report.confusion_difference(preds, classes, preds_o, classes_o, normalize=normalize,
                                           names=(run.name, other.name))
    except RunError as e:
        st.warning(str(e), icon=":material/compare_arrows:")
        return
    counts = report.confusion(preds_o, len(classes)) - report.confusion(preds, len(classes))
    if not normalize:
        diff = diff.astype(np.int64)
    st.caption(f"**{other.name}** minus **{run.name}** "
               f"({'row-normalised' if normalize else 'counts'}): red = more in {other.name}, "
               f"blue = fewer. A better run has red on the diagonal and blue off it.")
    st.plotly_chart(matrix_figure(diff, classes, counts, diverging=True), width="content",
                    key="cm_diff_chart")


st.title("Confusion matrix")
with ui.guard():
    run = ui.need_run("classifier")
    preds, classes, no_scores = ui.scored_predictions(run)
    C = len(classes)
    st.caption(f"Run **{run.name}** · `{run.id}` · {len(preds)} test samples · "
               "rows = true class, columns = predicted class")
    ui.backbone_note(run)
    normalize = st.toggle("Row-normalise (each row sums to 1: recall on the diagonal)",
                          key="cm_norm")
    counts = report.confusion(preds, C)
    cm = report.normalize_rows(counts) if normalize else counts

    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(matrix_figure(cm, classes, counts), width="content", key="cm_chart",
                        on_select=lambda: _on_select(classes), selection_mode="points")
        st.caption("Click a cell to see its samples below.")
        with st.expander("Matrix as a table"):
            st.dataframe(pd.DataFrame(cm, index=classes, columns=classes).round(4), width="stretch")
    with right:
        st.subheader("Per class")
        st.dataframe(report.per_class_table(preds, classes), hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(k, format="%.3f")
                                    for k in ("precision", "recall", "f1")})
        st.subheader("Most confused pairs")
        pairs = report.most_confused_pairs(counts, classes)
        if pairs.empty:
            st.success("No confusion at all.")
        else:
            st.dataframe(pairs, hide_index=True, width="stretch", column_config={
                "share_of_true": st.column_config.ProgressColumn("share of true class",
                                                                 min_value=0.0, max_value=1.0,
                                                                 format="%.2f")})

    st.subheader("Samples of a cell")
    for k in ("cm_true", "cm_pred"):          # another run may not know the old class
        if st.session_state.get(k, NONE) not in classes:
            st.session_state[k] = NONE
    s = st.columns([2, 2, 3])
    t_name = s[0].selectbox("True class", [NONE] + classes, key="cm_true")
    p_name = s[1].selectbox("Predicted class", [NONE] + classes, key="cm_pred")
    if t_name != NONE and p_name != NONE:
        ti, pi = classes.index(t_name), classes.index(p_name)
        rows = report.sort_predictions(report.cell_samples(preds, ti, pi),
                                       "most confident" if no_scores else "most mistaken")
        noun = "sample" if len(rows) == 1 else "samples"
        st.markdown(f"**{len(rows)} {noun}** of true **{t_name}** predicted as **{p_name}**")
        ui.gallery(run, rows, classes, key="cm_gallery", per_page=12,
                   score=None if no_scores else "mistakenness")
        with st.expander("The cell's samples as a list", expanded=False):
            if no_scores:
                st.error(f"{no_scores}.", icon=":material/error:")
            cols = [c for c in ("sample_id", "label_name", "pred_name", "confidence", "mistakenness",
                                "hardness", "margin") if c in rows.columns]
            st.dataframe(rows[cols], hide_index=True, width="stretch", key="cm_cell_list",
                         column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                        for c in ("confidence", "mistakenness", "hardness", "margin")})
    else:
        st.caption("Choose a cell in the matrix, or a true and a predicted class here.")

    st.subheader("Difference between two runs")
    difference_ui(run, preds, classes, normalize)
