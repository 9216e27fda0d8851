"""PCK comparison page: temporal runs side by side, as the study's tables.

Summary (runs x PCK@0.05/0.1/0.2, identity baseline, mean threshold distance), the
per-keypoint table for one threshold with left/right merged or apart, the difference to
a reference run, bootstrap confidence intervals from the runs' predictions, a bar chart
per keypoint, and CSV exports. Tables come from ``core.temporal.report``; this file draws.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import ui
from core.errors import PoseLabError
from core.metrics import PCK_THRESHOLDS
from core.temporal import compare as tc
from core.temporal import report as pr


def _labels(runs) -> dict[str, str]:
    """run id -> short unique label (the arch name, plus the id when two share it)."""
    names = [r.name or r.id for r in runs]
    return {r.id: (n if names.count(n) == 1 else f"{n} · {r.id}") for r, n in zip(runs, names)}




@st.cache_data(show_spinner=False, max_entries=32)
def _bootstrap(keys: tuple, labels: tuple, merged: bool, unit: str, n_boot: int,
               seed: int) -> pr.Bootstrap:
    """Replicates (every threshold) for the runs in ``keys`` ((run id, predictions
    mtime) pairs); the threshold and the reference only pick from them."""
    preds = {}
    for (run_id, _), label in zip(keys, labels):
        run = ui.get_run(run_id)
        preds[label] = pr.check_frame_predictions(ui.predictions(run), run.file("predictions.parquet"))
    return pr.bootstrap_pck(preds, merged=merged, unit=unit, n_boot=n_boot, seed=seed)


def _styled(df: pd.DataFrame, *, diverging: bool = False, skip_rows=(), pct: bool = True):
    """Colour scale on the PCK cells (pandas Styler; matplotlib comes with captum). With
    no matplotlib the numbers are shown plain rather than failing the page."""
    num = [c for c in df.columns if c != "n_visible"]
    fmt = "{:+.1f}" if diverging else ("{:.1f}" if pct else "{:.3f}")
    styler = df.style.format(fmt, subset=num, na_rep="–")
    rows = [r for r in df.index if r not in skip_rows]
    try:
        import matplotlib  # noqa: F401
        if diverging:
            lim = float(df[num].abs().max().max() or 1.0)
            styler = styler.background_gradient(cmap="RdBu", vmin=-lim, vmax=lim,
                                                subset=pd.IndexSlice[rows, num], axis=None)
        else:
            styler = styler.background_gradient(cmap="viridis", vmin=0, vmax=100,
                                                subset=pd.IndexSlice[rows, num], axis=None)
    except ImportError:
        pass
    return styler


st.title("PCK comparison")
ui.sidebar("temporal")            # draws it when this page runs on its own
runs = ui.finished_runs("temporal")
if not runs:
    st.info(f"No finished temporal run in `{ui.runs_dir()}`. Build the demo on **Home**, "
            "or train with `python -m core grid temporal --data DIR`.")
    st.stop()

labels = _labels(runs)
ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
chosen = st.multiselect("Temporal runs", ids, default=ids[: min(len(ids), 6)],
                        format_func=labels.get, key="pck_runs")
if not chosen:
    st.info("Choose at least one run.")
    st.stop()

tables: dict[str, pd.DataFrame] = {}
for rid in chosen:
    run = by_id[rid]
    try:
        tables[labels[rid]] = pr.check_pck_table(ui.pck(run), run.file("pck.csv"))
    except PoseLabError as e:
        st.error(str(e), icon=":material/error:")
if not tables:
    st.stop()

# ---------------------------------------------------------------- summary
st.subheader("Summary")
summary = pr.summary_table(tables)
shown = summary * 100
if pr.THRESHOLD_ROW in shown.index:
    shown.loc[pr.THRESHOLD_ROW] = summary.loc[pr.THRESHOLD_ROW]
st.dataframe(_styled(shown, skip_rows=(pr.THRESHOLD_ROW,)), width="stretch", key="pck_summary")
st.caption("PCK in %, pooled over every visible (frame, keypoint) of the test set. "
           "`identity` = the estimator's own output. Last row: mean threshold distance a·s "
           "in heatmap pixels.")

# ---------------------------------------------------------------- what PCK cannot see
st.subheader("Smoothness and left/right")
motion = tc.motion_table([by_id[r] for r in chosen], labels)
st.dataframe(motion, width="stretch", key="pck_motion", column_config={
    "pck_auc": st.column_config.NumberColumn("PCK-AUC 0..0.2", format="%.3f"),
    "velocity_error": st.column_config.NumberColumn("velocity error", format="%.3f"),
    "accel_error": st.column_config.NumberColumn("accel error", format="%.3f"),
    "jitter": st.column_config.NumberColumn("jitter", format="%.3f"),
    "gt_jitter": st.column_config.NumberColumn("true motion's jitter", format="%.3f"),
    "swapped_frames": st.column_config.NumberColumn("swapped frames", format="percent"),
    **{f"swap_tolerant_pck@{a:g}": st.column_config.NumberColumn(f"swap-tolerant PCK@{a:g}", format="percent")
       for a in PCK_THRESHOLDS}})
st.caption("Heatmap pixels per frame (velocity) and per frame² (acceleration, jitter) over the test windows. "
           "Velocity and acceleration error compare with the ground truth's motion; jitter is the output's own "
           "mean acceleration (no ground truth needed: compare it with the true motion's). Swapped frames fit the "
           "ground truth better with left and right exchanged; the swap-tolerant PCK forgives them, a "
           "diagnostic beside the strict PCK above, which stays the headline.")

seeded = tc.seed_table([by_id[r] for r in chosen])
if len(seeded):
    st.subheader("Mean and 95 % interval over seeds")
    show = seeded[["arch", "seeds", "interval"]].copy()
    for a in PCK_THRESHOLDS:
        show[f"PCK@{a:g} %"] = [f"{100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" if pd.notna(lo) else f"{100 * m:.1f}"
                               for m, lo, hi in zip(seeded[f"pck@{a:g}"], seeded[f"pck@{a:g}_low"],
                                                    seeded[f"pck@{a:g}_high"])]
        show[f"identity PCK@{a:g} %"] = 100 * seeded[f"identity_pck@{a:g}"]
    st.dataframe(show, hide_index=True, width="stretch", key="pck_seeds")
    st.caption("The chosen runs grouped by everything but their seed: the mean and a 95 % interval across "
               "seeds (with one seed, the binomial interval of the test keypoints; column *interval*).")

# ---------------------------------------------------------------- per keypoint
st.subheader("Per keypoint")
c1, c2, c3 = st.columns([2, 2, 3])
threshold = c1.radio("Threshold", PCK_THRESHOLDS, index=0, horizontal=True,
                     format_func=lambda a: f"PCK@{a:g}", key="pck_threshold")
merged = c2.toggle("Merge left/right", value=True, key="pck_merged")
ref_options = [None] + list(tables) + [pr.baseline_label(tables)]
reference = c3.selectbox("Difference to", ref_options, format_func=lambda x: "— none —" if x is None else x,
                         key="pck_reference")

table = pr.keypoint_table(tables, threshold, merged=merged)
pct = table.copy()
pct[[c for c in pct.columns if c != "n_visible"]] *= 100
st.dataframe(_styled(pct), width="stretch", height=min(38 + 35 * len(pct), 940), key="pck_table")
if reference is not None:
    st.markdown(f"**Difference to {reference}** (percentage points)")
    diff = pr.difference_table(pct, reference)
    st.dataframe(_styled(diff, diverging=True), width="stretch",
                 height=min(38 + 35 * len(diff), 940), key="pck_diff")

# ---------------------------------------------------------------- bootstrap
ci = None
with st.expander("Bootstrap 95% confidence intervals"):
    b1, b2, b3 = st.columns(3)
    want_ci = b1.toggle("Compute", key="pck_ci")
    unit = b2.selectbox("Resample", ("window", "frame", "video"), key="pck_ci_unit",
                        help="Frames of a video are correlated: windows (k=5 test frames) or "
                             "whole videos give more honest intervals than single frames.")
    n_boot = b3.select_slider("Replicates", (200, 500, 1000, 2000), value=1000, key="pck_ci_n")
    if want_ci:
        keys = tuple((rid, ui.stamp(by_id[rid].file("predictions.parquet"))) for rid in chosen
                     if labels[rid] in tables)
        try:
            with st.spinner("Bootstrapping..."):
                boot = _bootstrap(keys, tuple(labels[k] for k, _ in keys), merged, unit,
                                  int(n_boot), 0)
            ci = pr.ci_table(boot, float(threshold), reference=reference)
        except PoseLabError as e:
            st.error(str(e), icon=":material/error:")
        if ci is not None:
            show = ci.copy()
            for c in [c for c in show.columns if c not in ("run", "keypoint")]:
                show[c] = show[c] * 100
            st.dataframe(show, hide_index=True, width="stretch", key="pck_ci_table",
                         column_config={c: st.column_config.NumberColumn(format="%.1f")
                                        for c in show.columns if c not in ("run", "keypoint")})
            st.caption(f"Percentile intervals over {n_boot} resamplings of test {unit}s (seed 0); "
                       "the identity baseline is the first run's. `diff` columns: paired "
                       "difference to the reference on the same resampled test sets.")
            st.download_button("Download CIs (CSV)", pr.to_csv_bytes(ci), "pck_ci.csv",
                               "text/csv", key="pck_dl_ci")

# ---------------------------------------------------------------- chart + export
import plotly.graph_objects as go  # noqa: E402

fig = go.Figure()
rows = [k for k in table.index if k != pr.ALL]
for col in [c for c in table.columns if c != "n_visible"]:
    err = None
    if ci is not None and col in set(ci["run"]):
        part = ci[ci["run"] == col].set_index("keypoint").reindex(rows)
        err = dict(type="data", symmetric=False, array=(part["hi"] - part["pck"]) * 100,
                   arrayminus=(part["pck"] - part["lo"]) * 100)
    fig.add_bar(x=rows, y=table.loc[rows, col] * 100, name=col, error_y=err)
fig.update_layout(barmode="group", height=420, margin=dict(l=0, r=0, t=30, b=0),
                  yaxis=dict(title=f"PCK@{threshold:g} (%)", range=[0, 105]),
                  legend=dict(orientation="h", y=1.12))
st.plotly_chart(fig, width="stretch", key="pck_chart")

e1, e2 = st.columns(2)
e1.download_button("Download summary (CSV)", pr.to_csv_bytes(summary), "pck_summary.csv",
                   "text/csv", key="pck_dl_summary")
e2.download_button(f"Download per-keypoint PCK@{threshold:g} (CSV)", pr.to_csv_bytes(table),
                   f"pck_{threshold:g}_{'merged' if merged else 'apart'}.csv", "text/csv",
                   key="pck_dl_table")
