"""Samples: a filterable, sortable gallery of a classifier run's test samples, and the
embedding map above it: a 2-D projection of every test sample's features
(``core.classification.embedding``) where a lasso or box selection fills the gallery."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import ui
from core.classification import embedding, report

COLOUR_BY = {"true class": "label_name", "predicted class": "pred_name", "correctness": "correctness"}
SELECTED = "s_map_selected"       # sample ids chosen in the map (kept across reruns and redraws)

SCORE_HELP = {
    "mistakenness": "Mistakenness (FiftyOne Brain): (±exp(-entropy) + 1) / 2, + for a wrong prediction: "
                    "near 1 = confident and wrong, near 0 = confident and right.",
    "hardness": "Hardness (FiftyOne Brain): the entropy of the predicted probabilities in nats "
                "(0 = certain, ln C = uniform), right or wrong.",
    "margin": "Margin: top-1 minus top-2 probability; near 0 = a near tie between two classes.",
}


@st.cache_data(show_spinner=False, max_entries=16)
def _map_frame(run_id: str, path: str, stamp: float, feature_set: str, method: str) -> tuple[pd.DataFrame, float]:
    """The run's projection joined to its predictions (features and projection are cached
    on disk per run by core.classification.embedding; this caches the join). ``path``: the
    run folder, so a copy of a run in another runs folder is its own entry."""
    run = ui.get_run(run_id)
    preds, _, _ = ui.scored_predictions(run)
    feats = embedding.run_features(run, ui.cached_model(run), preds, image_cache=ui.image_cache(run))
    proj = embedding.run_projection(run, feats, feature_set, method)
    return embedding.map_frame(proj, preds), proj.seconds


def _keep_selection(frame: pd.DataFrame) -> None:
    # on_select runs before the rerun: store the chosen ids, so the gallery stays filtered
    # when the figure is redrawn (another colouring resets Plotly's own selection)
    ids = embedding.selected_ids(st.session_state.get("s_map_chart"), frame)
    if ids:
        st.session_state[SELECTED] = ids


def map_figure(frame: pd.DataFrame, colour: str, selected: set[str]) -> go.Figure:
    column = COLOUR_BY[colour]
    fig = go.Figure()
    hover = "%{customdata[0]}<br>%{customdata[1]} → %{customdata[2]}<br>confidence %{customdata[3]:.2f}<extra></extra>"
    fields = ["sample_id", "label_name", "pred_name", "confidence"]
    for name, part in frame.groupby(column, sort=True):
        fig.add_trace(go.Scatter(x=part["x"], y=part["y"], mode="markers", name=str(name), marker=dict(size=8),
                                 customdata=part[fields].to_numpy(), hovertemplate=hover))
    chosen = frame[frame["sample_id"].isin(selected)]
    if len(chosen):       # rings around the selection (its ids ride along, so a re-selection counts them once)
        fig.add_trace(go.Scatter(x=chosen["x"], y=chosen["y"], mode="markers", name="selected in the map",
                                 marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(width=1.5, color="black")),
                                 customdata=chosen[fields].to_numpy(), hovertemplate=hover))
    fig.update_layout(height=460, margin=dict(l=0, r=0, t=10, b=0), dragmode="lasso",
                      legend=dict(title=colour, itemsizing="constant"), plot_bgcolor="white",
                      xaxis=dict(showticklabels=False, title=None, zeroline=False),
                      yaxis=dict(showticklabels=False, title=None, zeroline=False))
    return fig


def embedding_ui(run) -> list[str] | None:
    """The map (when switched on); returns the sample ids selected in it, or None."""
    if not st.toggle("Embedding map (lasso or box-select points to see them below)", key="s_map"):
        return None
    c = st.columns([3, 2, 3])
    feature_set = c[0].selectbox("Features", list(embedding.FEATURE_SETS), format_func=embedding.FEATURE_SETS.get,
                                 key="s_map_features")
    method = c[1].radio("Projection", list(embedding.PROJECTIONS), format_func=embedding.PROJECTIONS.get,
                        horizontal=True, key="s_map_method")
    colour = c[2].radio("Colour by", list(COLOUR_BY), horizontal=True, key="s_map_colour")
    with st.spinner("Features of every test sample (computed once per run, then cached) and their projection..."):
        frame, seconds = _map_frame(run.id, str(run.path), ui.stamp(run.file("predictions.parquet")),
                                    feature_set, method)
    chosen = [i for i in st.session_state.get(SELECTED, []) if i in set(frame["sample_id"])]
    st.plotly_chart(map_figure(frame, colour, set(chosen)), width="stretch", key="s_map_chart",
                    on_select=lambda: _keep_selection(frame), selection_mode=("lasso", "box"))
    st.caption(f"{embedding.PROJECTIONS[method]} of {embedding.FEATURE_SETS[feature_set]}, {len(frame)} test samples"
               + (f" (projected in {seconds:.1f} s)" if seconds else " (from the run's cache)")
               + ". Near points look alike to the model; t-SNE keeps neighbours, not distances.")
    if chosen:
        b = st.columns([3, 2])
        b[0].markdown(f"**{len(chosen)} samples selected in the map**")
        if b[1].button("Clear the map selection", key="s_map_clear"):
            st.session_state.pop(SELECTED, None)
            st.rerun()
        return chosen
    return None


def filters_ui(classes: list[str]) -> dict:
    """Only widgets; returns the chosen filter values."""
    c = st.columns([3, 3, 2, 3])
    idx = list(range(len(classes)))
    true_c = c[0].multiselect("True class", idx, format_func=classes.__getitem__, key="s_true",
                              placeholder="any")
    pred_c = c[1].multiselect("Predicted class", idx, format_func=classes.__getitem__, key="s_pred",
                              placeholder="any")
    correctness = c[2].radio("Prediction", ["all", "correct", "wrong"], horizontal=True,
                             key="s_correct")
    conf = c[3].slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key="s_conf")
    d = st.columns([3, 2, 2, 5])
    order = d[0].selectbox("Sort", report.SORT_ORDERS, key="s_sort")
    per_page = d[1].selectbox("Per page", [12, 24, 48, 96], index=1, key="s_per_page")
    skeleton = d[2].toggle("Skeleton", value=True, key="s_skeleton")
    return dict(true_classes=true_c, pred_classes=pred_c, correctness=correctness,
                confidence=conf, order=order, per_page=per_page, skeleton=skeleton)


st.title("Samples")
with ui.guard():
    run = ui.need_run("classifier")
    preds, classes, no_scores = ui.scored_predictions(run)
    st.caption(f"Run **{run.name}** · `{run.id}` · data `{run.info.data.root}`")
    ui.backbone_note(run)
    in_map = None
    with ui.guard():
        in_map = embedding_ui(run)
    f = filters_ui(classes)
    if in_map:
        preds = preds[preds["sample_id"].astype(str).isin(in_map)]
    rows = report.filter_predictions(preds, true_classes=f["true_classes"],
                                     pred_classes=f["pred_classes"],
                                     correctness=f["correctness"], confidence=f["confidence"])
    order, score = f["order"], report.SCORE_ORDERS.get(f["order"], (None,))[0]
    if score and no_scores:
        st.error(f"{no_scores}; sorted by 'most confidently wrong' instead.", icon=":material/error:")
        order, score = "most confidently wrong", None
    elif score:
        st.caption(SCORE_HELP[score])
    rows = report.sort_predictions(rows, order)
    wrong = int((~rows["correct"].astype(bool)).sum())
    st.markdown(f"**{len(rows)} of {len(preds)} test samples match** · {wrong} wrong")
    if f["skeleton"]:
        st.caption(ui.keypoints_legend(run))
    ui.gallery(run, rows, classes, key="samples", skeleton=f["skeleton"], per_page=f["per_page"], score=score)
