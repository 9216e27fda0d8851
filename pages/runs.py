"""Runs: table of runs, overlaid training curves, and the paper's Tables 1-2 layout."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import ui
from core.classification import compare, report


def curves_ui(runs) -> None:
    st.subheader("Training curves")
    finished = [r for r in runs if r.finished]
    if not finished:
        st.info("No finished run to plot.")
        return
    kind = st.radio("Kind", ["classifier", "temporal"], horizontal=True, key="curves_kind",
                    disabled=len({r.kind for r in finished}) < 2,
                    index=0 if any(r.kind == "classifier" for r in finished) else 1)
    of_kind = [r for r in finished if r.kind == kind]
    labels = {r.id: ui.run_label(r) for r in of_kind}
    default = [r.id for r in of_kind][:7]
    chosen = st.multiselect("Runs", list(labels), default=default, format_func=labels.get,
                            key=f"curves_runs_{kind}")
    if not chosen:
        st.info("Choose one or more runs.")
        return
    histories = {}
    for rid in chosen:
        with ui.guard():
            histories[labels[rid]] = ui.history(next(r for r in of_kind if r.id == rid))
    long = report.history_long(histories)
    score = "acc" if kind == "classifier" else "pck"
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "loss", "accuracy" if score == "acc" else "PCK@0.05"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    for i, (run, part) in enumerate(long.groupby("run", sort=False)):
        colour = palette[i % len(palette)]
        for col, metric in ((1, "loss"), (2, score)):
            for split, dash in (("train", "dot"), ("val", "solid")):
                d = part[(part["metric"] == metric) & (part["split"] == split)]
                if d.empty:
                    continue
                fig.add_trace(go.Scatter(
                    x=d["epoch"], y=d["value"], mode="lines+markers", name=f"{run} ({split})",
                    legendgroup=run, showlegend=(col == 1),
                    line=dict(color=colour, dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, width="stretch", key="curves")
    st.caption("solid = validation, dotted = training")


def paper_ui(runs) -> None:
    st.subheader("The paper's tables beside this dataset's")
    settings = compare.settings(runs)
    if not settings:
        st.info("No finished run of the paper's presets (baseline, model1 ... model6) yet.")
        return
    setting = st.selectbox("Data and backbone", list(settings), format_func=settings.get, key="paper_setting",
                           help="The presets are compared on one dataset with one backbone; newest first.")
    table = compare.paper_table(runs, setting)
    st.caption("Paper: InfiniteForm, ImageNet weights (its test accuracies; its losses are not known here). "
               "Ours: every seed of each preset on the chosen data and backbone, the mean and a 95 % "
               "interval: across seeds when there are several, else the binomial interval of the one "
               "seed's test set (column *interval*). Table 1 holds the presets without keypoints, "
               "Table 2 those with.")
    if (table["backbone"] == "random init").any():
        st.warning("These runs used a random backbone: compare shapes, not numbers.")
    records = table.to_dict("records")
    shown = table.assign(test_acc=[_interval(r, "test_acc_%", "acc_low_%", "acc_high_%", 1) for r in records],
                         loss=[_interval(r, "test_loss", "loss_low", "loss_high", 3) for r in records])
    st.dataframe(shown[["table", "preset", "fc", "keypoints", "head", "keypoint_source", "paper_test_acc_%",
                        "test_acc", "difference_pp", "loss", "seeds", "interval"]],
                 hide_index=True, width="stretch", column_config={
                     "paper_test_acc_%": st.column_config.NumberColumn("paper test acc %", format="%.2f"),
                     "test_acc": st.column_config.TextColumn("test acc % [95 % interval]"),
                     "difference_pp": st.column_config.NumberColumn("ours - paper (pp)", format="%+.1f"),
                     "loss": st.column_config.TextColumn("test loss [95 % interval]"),
                 })
    label = table["preset"] + np.where(table["keypoint_source"] == "estimated", " (estimated kp)", "")
    err = dict(type="data", symmetric=False, array=(table["acc_high_%"] - table["test_acc_%"]).fillna(0),
               arrayminus=(table["test_acc_%"] - table["acc_low_%"]).fillna(0))
    fig = go.Figure([
        go.Bar(name="paper", x=label, y=table["paper_test_acc_%"], marker_color="#9e9e9e"),
        go.Bar(name="this dataset", x=label, y=table["test_acc_%"], marker_color="#1f77b4", error_y=err),
    ])
    fig.update_layout(barmode="group", height=320, yaxis_title="test accuracy %",
                      margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, width="stretch", key="paper_bars")
    st.markdown("**The paper's findings on this dataset** (a comparison holds when it is ahead by more "
                "than two standard errors of the difference: paired over the test samples, plus the "
                "seed-to-seed spread)")
    findings = compare.paper_findings(runs, ui.predictions, setting)
    for line in compare.finding_lines(findings):
        st.markdown(f"- {line}")


def _interval(row: dict, mean: str, low: str, high: str, digits: int) -> str:
    m, lo, hi = row[mean], row[low], row[high]
    if not np.isfinite(m):
        return ""
    return f"{m:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) else "")


st.title("Runs")
with ui.guard():
    ui.sidebar()
    runs = ui.all_runs()
    if not runs:
        st.info(f"No runs in `{ui.runs_dir()}`; see **Home**.")
        st.stop()
    table = report.runs_table(runs)
    st.dataframe(table.drop(columns=["backbone_warning"]), hide_index=True, width="stretch",
                 column_config={
                     "value": st.column_config.NumberColumn("headline value", format="%.4f"),
                     "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
                 })
    curves_ui(runs)
    paper_ui(runs)
