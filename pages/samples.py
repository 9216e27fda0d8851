"""Samples: a filterable, sortable gallery of a classifier run's test samples."""
from __future__ import annotations

import streamlit as st

from core import ui
from core.classification import report

SCORE_HELP = {
    "mistakenness": "Mistakenness (FiftyOne Brain): (±exp(-entropy) + 1) / 2, + for a wrong prediction: "
                    "near 1 = confident and wrong, near 0 = confident and right.",
    "hardness": "Hardness (FiftyOne Brain): the entropy of the predicted probabilities in nats "
                "(0 = certain, ln C = uniform), right or wrong.",
    "margin": "Margin: top-1 minus top-2 probability; near 0 = a near tie between two classes.",
}


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
    f = filters_ui(classes)
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
