"""Saliency page: which pixels (and keypoints) drove a classifier's decision, live.

Pick a test sample of the run chosen in the sidebar (or arrive from the gallery /
confusion matrix via ``st.session_state["saliency_request"]``), upload a picture, or
take one with the camera; choose a method; see the map over the image, the keypoint
contributions for keypoint presets, and download the picture. Below the map, on request:
whether the map can be trusted (deletion / insertion curves, the randomisation sanity
check; ``core.classification.trust``), what the keypoints contribute (the Integrated
Gradients completeness split and keypoint counterfactuals;
``core.classification.attribution``), and the same sample's map from up to four runs on
one colour scale. Compute lives in ``core``; results are cached per (run, input, method,
options, target).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from core import ui
from core.classification import attribution as attr
from core.classification import embedding, report, trust
from core.classification import saliency as sal
from core.errors import DataError
from core.estimator.blazepose import BlazePose
from core.images import open_image
from core.keypoints import COCO17

SOURCES = ("Test sample", "Upload", "Camera")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp"]
UPLOAD_MB = 20               # .streamlit/config.toml's server.maxUploadSize
MAX_COMPARED = 4             # runs side by side


# ------------------------------------------------------------------ cached compute
# Inputs and results are cached by strings that identify them; the model and the input
# tensors travel as underscore arguments (not hashed).

@st.cache_data(show_spinner=False, max_entries=64)
def _sample_input(run_id: str, stamp: float, sample_id: str, use_kp: bool) -> sal.SaliencyInput:
    run = ui.get_run(run_id)
    preds, _ = ui.classifier_predictions(run)
    row = preds[preds["sample_id"].astype(str) == sample_id]
    if row.empty:
        raise DataError(run.file("predictions.parquet"), f"no test sample {sample_id!r}")
    return sal.sample_input(run.info, row.iloc[0], use_keypoints=use_kp, cache=ui.image_cache(run))


@st.cache_data(show_spinner=False, max_entries=16)
def _picture(digest: str, name: str, _data: bytes):
    """The uploaded picture, decoded and checked (DataError at once for a bad file)."""
    return open_image(_data, name=name)


@st.cache_resource(show_spinner="Loading BlazePose...")
def _estimator() -> BlazePose:
    return BlazePose()


@st.cache_data(show_spinner="Finding people (BlazePose)...", max_entries=16)
def _people(digest: str, _picture) -> list[sal.FoundPerson]:
    return sal.find_people(_picture, _estimator())


@st.cache_data(show_spinner=False, max_entries=16)
def _upload_input(digest: str, name: str, image_size: int, margin: float, kp_key: str, _data: bytes,
                  _keypoints: np.ndarray | None) -> sal.SaliencyInput:
    return sal.upload_input(_data, name=name, image_size=image_size, keypoints=_keypoints, margin=margin)


@st.cache_data(show_spinner=False, max_entries=128)
def _saliency(run_id: str, stamp: float, input_key: str, method: str, target: int,
              options: tuple, _model, _inp: sal.SaliencyInput) -> sal.SaliencyResult:
    return sal.compute_saliency(_model, _inp.image, _inp.keypoints, target, method, **dict(options))


@st.cache_data(show_spinner=False, max_entries=128)
def _probabilities(run_id: str, stamp: float, input_key: str, _model,
                   _inp: sal.SaliencyInput) -> np.ndarray:
    return sal.predict(_model, _inp.image, _inp.keypoints)


@st.cache_data(show_spinner=False, max_entries=64)
def _curves(run_id: str, stamp: float, input_key: str, method: str, target: int, options: tuple,
            steps: int, _model, _inp: sal.SaliencyInput, _map: np.ndarray) -> trust.Curves:
    return trust.deletion_insertion(_model, _inp.image, _inp.keypoints, target, _map, steps=steps)


@st.cache_data(show_spinner=False, max_entries=192)
def _randomised(run_id: str, stamp: float, input_key: str, method: str, target: int, options: tuple,
                stage: str, _model, _inp: sal.SaliencyInput) -> np.ndarray:
    return trust.randomised_map(_model, _inp.image, _inp.keypoints, target, method, stage, **dict(options))


@st.cache_data(show_spinner=False, max_entries=64)
def _pixel_split(run_id: str, stamp: float, input_key: str, target: int, steps: int, _model,
                 _inp: sal.SaliencyInput) -> attr.Split:
    return attr.pixel_split(_model, _inp.image, _inp.keypoints, target, steps=steps)


@st.cache_data(show_spinner=False, max_entries=16)
def _run_split(run_id: str, stamp: float, _run, _model):
    """Per-sample head-level splits of the run's test samples (features cached on disk)."""
    preds, classes = ui.classifier_predictions(_run)
    attr.need_keypoints(_model)
    feats = embedding.run_features(_run, _model, preds, image_cache=ui.image_cache(_run))
    size, _ = sal.run_image_settings(_run.info)
    split = attr.head_split(_model, feats.image, feats.keypoints, preds["pred"].to_numpy(),
                            attr.baseline_features(_model, size))
    return attr.class_split(split, preds["label"].to_numpy(), classes), split


@st.cache_data(show_spinner=False, max_entries=32)
def _blazepose_kp(run_id: str, sample_id: str, _info, _row) -> np.ndarray | None:
    return attr.blazepose_keypoints(_info, _row, _estimator())


# ------------------------------------------------------------------ UI pieces


def _take_request(run) -> str | None:
    """Consume a hand-over from the gallery / confusion page: its sample id or None."""
    req = st.session_state.pop("saliency_request", None)
    if not req:
        return None
    if req.get("run_id") != run.id:
        st.warning(f"Requested run {req.get('run_id')} is not the selected one; showing {run.id}.")
        return None
    st.session_state["sal_source"] = SOURCES[0]
    st.session_state["sal_sample"] = str(req.get("sample_id"))
    return str(req.get("sample_id"))


def _sample_ui(run, use_kp: bool):
    preds, classes = ui.classifier_predictions(run)
    if preds.empty:
        st.info("This run has no test predictions.")
        return None, None
    ids = preds["sample_id"].astype(str).tolist()
    wrong_only = st.toggle("Only misclassified samples", key="sal_wrong_only")
    if wrong_only:
        ids_wrong = preds.loc[~preds["correct"].astype(bool), "sample_id"].astype(str).tolist()
        current = st.session_state.get("sal_sample")
        ids = ids_wrong + ([current] if current in ids and current not in ids_wrong else [])
        if not ids:
            st.info("No misclassified sample in this run.")
            return None, None
    if st.session_state.get("sal_sample") not in ids:
        st.session_state["sal_sample"] = ids[0]
    lookup = preds.assign(sample_id=preds["sample_id"].astype(str)).set_index("sample_id")

    def label(i: str) -> str:
        return (f"{i} · {lookup.at[i, 'label_name']} → {lookup.at[i, 'pred_name']} "
                f"({float(lookup.at[i, 'confidence']):.2f})")
    sid = st.selectbox("Test sample", ids, format_func=label, key="sal_sample")
    inp = _sample_input(run.id, ui.stamp(run.file("predictions.parquet")), sid, use_kp)
    return inp, f"sample:{sid}"


def _keypoints_ui(digest: str, picture, key: str) -> np.ndarray | None:
    """For a keypoint preset: the keypoints to use for this picture -- BlazePose's (the
    largest person, or the one picked), editable, or replaced by typed JSON; all missing
    when nobody is found and the keypoint-free computation is chosen; None to wait."""
    people = _people(digest, picture)
    kp, free = None, False
    if not people:
        st.info("BlazePose found nobody in this picture. Compute without keypoints, or type "
                "the person's 17 keypoints as JSON below.")
        free = st.checkbox("Compute without keypoints (every keypoint marked missing)", key=f"{key}_kp_missing",
                           help="The model then sees 'no keypoint', which it rarely saw in training: "
                                "its prediction may be poor.")
    else:
        pick = 0
        if len(people) > 1:
            pick = st.selectbox("Person", range(len(people)), key=f"{key}_person_{digest}",
                                format_func=lambda i: f"person {i + 1}" + (" (the largest)" if i == 0 else ""))
            st.caption(f"BlazePose found {len(people)} people; the largest is used unless you pick another.")
        found = people[pick]
        if found.view != "as is":
            st.caption(f"Found by the still-picture fallback (**{found.view}**; detector score "
                       f"{found.detection_score:.2f}, pose presence {found.score:.3f}): BlazePose's standard "
                       "pass found nobody.")
        with st.expander("Edit the keypoints"):
            table = pd.DataFrame(people[pick].keypoints, columns=["x", "y", "v"])
            table.insert(0, "keypoint", list(COCO17))
            edited = st.data_editor(table, key=f"{key}_kp_edit_{digest}_{pick}", hide_index=True,
                                    disabled=["keypoint"], column_config={
                                        "v": st.column_config.NumberColumn("v", min_value=0, max_value=2, step=1)})
            kp = edited[["x", "y", "v"]].to_numpy(np.float64)
    with st.expander("Type the keypoints as JSON instead", expanded=not people):
        typed = st.text_area("Keypoints (JSON): 17 [x, y, v] in the picture's pixels, in the order "
                             + ", ".join(COCO17), key=f"{key}_kp_json", height=110,
                             placeholder=sal.KEYPOINTS_JSON_EXAMPLE)
    if typed.strip():
        return sal.read_keypoints_json(typed)       # DataError -> one st.error line; the text stays
    if free:
        return np.zeros((17, 3))
    return kp


def _file_ui(run, use_kp: bool, camera: bool):
    if camera:
        f = st.camera_input("Take a picture", key="sal_camera")
    else:
        f = st.file_uploader(f"Upload an image (JPEG, PNG, WebP, TIFF, BMP; up to {UPLOAD_MB} MB)",
                             type=UPLOAD_TYPES, key="sal_upload")
    if f is None:
        st.info("Take a picture to start." if camera else "Upload a picture to start.")
        return None, None
    data = f.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    picture = _picture(digest, f.name, data)                  # a bad file: one error, at once
    key = "sal_cam" if camera else "sal_up"
    kp = _keypoints_ui(digest, picture, key) if use_kp else None
    shown = report.draw_skeleton(picture, kp, colours=report.ESTIMATED_COLOURS) if kp is not None else picture
    st.image(shown, caption=f"{f.name}" + (" with the keypoints used" if kp is not None and kp[:, 2].any() else ""),
             width="stretch")
    if use_kp and kp is None:
        return None, None
    size, margin = sal.run_image_settings(run.info)
    kp_key = hashlib.sha256(np.ascontiguousarray(kp).tobytes()).hexdigest()[:12] if kp is not None else "none"
    inp = _upload_input(digest, f.name, size, margin, kp_key, data, kp)
    return inp, f"upload:{digest}:{kp_key}"


def _options_ui(method: str) -> dict:
    """A slider per option the registry shows (``sal.METHODS[method].options``)."""
    spec = sal.METHODS[method].options
    o = sal.METHODS[method].defaults
    shown = {k: opt for k, opt in spec.items() if opt.label}
    if not shown:
        return o
    with st.expander("Method options"):
        for k, opt in shown.items():
            if isinstance(opt.default, int):
                o[k] = st.slider(opt.label, int(opt.low), int(opt.high), int(opt.default), int(opt.step),
                                 key=f"sal_{method}_{k}")
            else:
                o[k] = st.slider(opt.label, float(opt.low), float(opt.high), float(opt.default),
                                 float(opt.step), key=f"sal_{method}_{k}")
    return o


def _keypoint_chart(values: np.ndarray, inp: sal.SaliencyInput) -> None:
    mask = inp.keypoints[:, 2].numpy() > 0 if inp.keypoints is not None else np.ones(17, bool)
    names = [n if m else f"{n} (missing)" for n, m in zip(COCO17, mask)]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h",
                           marker_color=np.where(values >= 0, "#d62728", "#1f77b4")))
    fig.update_layout(height=430, margin=dict(l=0, r=0, t=30, b=0),
                      title="Keypoint contribution to the target's logit",
                      yaxis=dict(autorange="reversed"), xaxis_title="attribution (logit units)")
    st.plotly_chart(fig, width="stretch", key="sal_kp_chart")
    st.caption("Red pushes towards the target class, blue away from it.")


# ------------------------------------------------------------------ trust, keypoints, runs


def _curve_chart(curves: trust.Curves, kind: str, key: str) -> None:
    auc = curves.auc
    fig = go.Figure([go.Scatter(x=curves.fractions, y=getattr(curves, kind), name="map order", mode="lines+markers"),
                     go.Scatter(x=curves.fractions, y=getattr(curves, f"{kind}_random"), name="random order",
                                mode="lines", line=dict(dash="dot"))])
    better = "lower" if kind == "deletion" else "higher"
    fig.update_layout(height=220, margin=dict(l=0, r=0, t=30, b=0), legend=dict(orientation="h", y=-0.3),
                      title=f"{kind.title()}: AUC {auc[kind]:.3f} vs random {auc[kind + '_random']:.3f} "
                            f"({better} is better)", title_font_size=13,
                      xaxis_title=f"share of pixels {'deleted' if kind == 'deletion' else 'inserted'}",
                      yaxis=dict(title="p(class)", range=[0, 1]))
    st.plotly_chart(fig, width="stretch", key=key)


def trust_ui(run, stamp, key, method, target, options, model, inp, res) -> None:
    """Deletion / insertion curves and the randomisation check of the map shown, on request."""
    st.subheader("Can this map be trusted?")
    request = (key, method, int(target), options)
    c = st.columns([2, 3])
    steps = c[0].slider("Curve points (shares of pixels)", 4, 20, trust.DEFAULT_STEPS, key="sal_trust_steps")
    if c[1].button("Compute trust scores", key="sal_trust_go", type="primary",
                   help="Deletion / insertion AUC (Petsiuk et al. 2018) and the model-randomisation sanity "
                        "check (Adebayo et al. 2018) of this map"):
        st.session_state["sal_trust_for"] = request
    if st.session_state.get("sal_trust_for") != request:
        st.caption("Deletion / insertion curves and the randomisation check are computed on request "
                   "(a few seconds for the vanilla gradient; a slow method costs three more maps).")
        return
    bar = st.progress(0.0, text="deletion and insertion curves...")
    curves = _curves(run.id, stamp, key, method, int(target), options, steps, model, inp, res.map)
    maps = {}
    for i, stage in enumerate(trust.STAGES):
        bar.progress((i + 1) / (len(trust.STAGES) + 1), text=f"sanity check: {trust.STAGES[stage]}...")
        maps[stage] = _randomised(run.id, stamp, key, method, int(target), options, stage, model, inp)
    bar.empty()
    check = trust.sanity_check(res.raw, maps)
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        _curve_chart(curves, "deletion", "sal_trust_deletion")
    with c2:
        _curve_chart(curves, "insertion", "sal_trust_insertion")
    with c3:
        table = pd.DataFrame({"randomised": [trust.STAGES[s] for s in check.rank_correlation],
                              "rank correlation": list(check.rank_correlation.values()),
                              "map changed": ["no" if u else "yes" for u in check.unchanged.values()]})
        st.dataframe(table, hide_index=True, width="stretch", key="sal_trust_table",
                     column_config={"rank correlation": st.column_config.NumberColumn(format="%.2f")})
    (st.error if not check.passed else st.warning if check.unchanged.get("head") else st.success)(check.verdict)
    auc = curves.auc
    beats = auc["deletion"] < auc["deletion_random"] and auc["insertion"] > auc["insertion_random"]
    st.caption(("The map's order beats a random one in both curves. " if beats else
                "The map's order does not beat a random one in both curves: it ranks the pixels no better than "
                "chance for this class. ") + "Deletion fills with the mean colour, insertion starts from a blurred "
                "copy; keypoints stay as they are.")


def keypoints_ui(run, stamp, key, target, model, inp, names, row) -> None:
    """The IG completeness split of this prediction and of the run per class, and
    counterfactual keypoints."""
    st.subheader("What the keypoints contribute")
    tab_sample, tab_run, tab_cf = st.tabs(["This sample", "Per class on the run", "Counterfactual keypoints"])
    with tab_sample, ui.guard():
        if st.button("Split this prediction (Integrated Gradients)", key="sal_split_go"):
            st.session_state["sal_split_for"] = (key, int(target))
        if st.session_state.get("sal_split_for") == (key, int(target)):
            if inp.keypoints is None:
                attr.need_keypoints(model)
            with st.spinner("Integrated Gradients over pixels and keypoints..."):
                split = _pixel_split(run.id, stamp, key, int(target), 32, model, inp)
            m = st.columns(4)
            m[0].metric("Image's share", f"{split.image_share:.0%}", help=f"I = {split.image:+.3f} logits")
            m[1].metric("Keypoints' share", f"{split.keypoint_share:.0%}", help=f"K = {split.keypoints:+.3f} logits")
            m[2].metric("f(x) − f(baseline)", f"{split.gap:+.3f}")
            m[3].metric("Completeness error δ", f"{split.delta:+.3f}")
            st.caption(f"Integrated Gradients (32 steps) for '{names[int(target)]}', from the mean-colour image with "
                       "every keypoint missing: f(x) − f(x0) = I + K + δ (Sundararajan et al. 2017). Shares are "
                       "|I| / (|I| + |K|) and |K| / (|I| + |K|).")
        else:
            st.caption("Splits this prediction's logit between the image and the 17 keypoints (a few seconds).")
    with tab_run, ui.guard():
        if st.button("Split every test sample (at the head's input)", key="sal_runsplit_go"):
            st.session_state["sal_runsplit_for"] = run.id
        if st.session_state.get("sal_runsplit_for") == run.id:
            with st.spinner("Features of every test sample (once per run), then the split..."):
                per_class, split = _run_split(run.id, ui.stamp(run.file("predictions.parquet")), run, model)
            fig = go.Figure([go.Bar(y=per_class["class"], x=per_class["image_share"], name="image", orientation="h"),
                             go.Bar(y=per_class["class"], x=per_class["keypoint_share"], name="keypoints",
                                    orientation="h")])
            fig.update_layout(barmode="stack", height=max(240, 24 * len(per_class)), margin=dict(l=0, r=0, t=30, b=0),
                              title=f"Share of the predicted class's logit, mean over {len(split)} test samples",
                              xaxis=dict(range=[0, 1]), yaxis=dict(autorange="reversed"))
            st.plotly_chart(fig, width="stretch", key="sal_runsplit_chart")
            st.dataframe(per_class, hide_index=True, width="stretch", key="sal_runsplit_table")
            st.caption("IG at the head's input (pooled image features + keypoints): exact for linear heads "
                       f"(model3, model4); mean |δ| here {split['delta'].abs().mean():.2g} logits.")
    with tab_cf, ui.guard():
        _counterfactual_ui(run, model, inp, names, row)


def _counterfactual_ui(run, model, inp, names, row) -> None:
    # nothing was asked for yet: what cannot be done is said as information, not an error
    present = [] if inp.keypoints is None else [i for i in range(17) if float(inp.keypoints[i, 2]) > 0]
    if not sal.run_uses_keypoints(run.info) or len(present) < 2:
        st.info("This preset does not use keypoints: its head sees the image alone, so changing them changes "
                "nothing." if not sal.run_uses_keypoints(run.info) else
                "Fewer than two keypoints of this input are present: there is nothing to move.")
        return
    c = st.columns(3)
    j = c[0].selectbox("Keypoint", present, format_func=COCO17.__getitem__, key="sal_cf_kp")
    direction = c[1].selectbox("Direction", list(attr.DIRECTIONS), key="sal_cf_dir")
    radius = attr.pck_radius(inp.keypoints)
    results = [attr.counterfactual(model, inp.image, inp.keypoints,
                                   attr.moved_keypoint(inp.keypoints, j, direction, radius),
                                   f"{COCO17[j]} moved {direction} by the PCK@0.1 radius")]
    if row is not None:
        estimated = run.info.data.keypoint_source == "estimated"
        other = (attr.annotation_keypoints(run.info, row) if estimated
                 else _blazepose_kp(run.id, inp.name, run.info, row))
        if other is None:
            st.info("BlazePose found nobody in this crop: no BlazePose counterfactual.")
        else:
            results.append(attr.counterfactual(model, inp.image, inp.keypoints, torch.from_numpy(np.asarray(other, np.float32)),
                                               "the annotation's keypoints" if estimated else "BlazePose's keypoints"))
    rows = []
    for cf in results:
        b, a = int(np.argmax(cf.before)), int(np.argmax(cf.after))
        rows.append({"keypoints": cf.what, "prediction before": f"{names[b]} ({cf.before[b]:.2f})",
                     "prediction after": f"{names[a]} ({cf.after[a]:.2f})",
                     f"p({names[b]}) change": float(cf.after[b] - cf.before[b]),
                     "class changed": "yes" if cf.changed_class else "no"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="sal_cf_table")
    st.caption(f"PCK@0.1 radius: {radius:.3f} of the crop's side (a tenth of the longer side of the keypoints' box); "
               "the image is unchanged.")


def compare_ui(run, sid: str | None, method: str, options: tuple) -> None:
    """The same test sample's map from up to four runs, side by side, one colour scale."""
    st.subheader("Several runs on this sample")
    if sid is None:
        st.caption("Pick a test sample to compare runs on it.")
        return
    others = [r for r in ui.finished_runs("classifier") if r.id != run.id]
    labels = {r.id: ui.run_label(r) for r in others}
    chosen = st.multiselect(f"Runs beside this one (up to {MAX_COMPARED - 1})", list(labels),
                            format_func=labels.get, max_selections=MAX_COMPARED - 1, key="sal_compare_runs")
    if not chosen:
        st.caption(f"Choose runs to see their {sal.METHODS[method].label} map of sample {sid} beside this one, "
                   "each for its own predicted class, on one colour scale.")
        return
    results, captions, displays, skipped = [], [], [], []
    for r in [run] + [o for o in others if o.id in chosen]:
        preds, classes = ui.classifier_predictions(r)
        if sid not in set(preds["sample_id"].astype(str)):
            skipped.append(r.name)
            continue
        use_kp = sal.run_uses_keypoints(r.info)
        inp = _sample_input(r.id, ui.stamp(r.file("predictions.parquet")), sid, use_kp)
        model = ui.cached_model(r)
        stamp = ui.stamp(r.file("weights.safetensors"))
        p = _probabilities(r.id, stamp, f"sample:{sid}", model, inp)
        t = int(np.argmax(p))
        with st.spinner(f"{r.name}: {sal.METHODS[method].label}..."):
            results.append(_saliency(r.id, stamp, f"sample:{sid}", method, t, options, model, inp))
        displays.append(inp.display)
        captions.append(f"{r.name} → {classes[t] if t < len(classes) else t} ({p[t]:.2f})")
    if skipped:
        st.warning(f"Sample {sid} is not among the test samples of {', '.join(skipped)}; left out.")
    maps, top = sal.common_scale(results)
    cols = st.columns(max(len(maps), 1))
    for col, disp, m, cap in zip(cols, displays, maps, captions):
        col.image(sal.overlay(disp, m, opacity=0.6, colormap="inferno"), caption=cap, width="stretch")
    st.caption(f"One colour scale for all: 1 = {top:.3g} (raw {sal.METHODS[method].label} units, the largest of "
               "the maps' scaling values); a dimmer map has weaker attributions, not a different shape.")


# ------------------------------------------------------------------ page

st.title("Saliency")
run = ui.need_run("classifier")
requested = _take_request(run)
classes = list(run.info.data.classes or [])
use_kp = sal.run_uses_keypoints(run.info)
st.caption(f"Run **{run.name}** · `{run.id}` · "
           + ("keypoint preset: the head also sees the 17 keypoints" if use_kp else "image only"))
ui.backbone_note(run)
if run.info.backbone is not None and run.info.backbone.source == "random":
    st.caption("With a random backbone the maps show what an untrained feature extractor attends to.")

left, right = st.columns([1, 2])
with left:
    source = st.radio("Image", SOURCES, horizontal=True, key="sal_source")
    inp = key = None
    with ui.guard():
        if source == SOURCES[0]:
            inp, key = _sample_ui(run, use_kp)
        else:
            inp, key = _file_ui(run, use_kp, camera=(source == SOURCES[2]))
    method = st.selectbox("Method", list(sal.METHODS), format_func=lambda m: sal.METHODS[m].label,
                          key="sal_method")
    options = _options_ui(method)
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="sal_opacity")
    cmap = st.selectbox("Colour map", sal.COLORMAPS, key="sal_cmap")

if inp is None:
    st.stop()

stamp = ui.stamp(run.file("weights.safetensors"))
res = None
with right, ui.guard():
    model = ui.cached_model(run)
    probs = _probabilities(run.id, stamp, key, model, inp)
    if classes and len(classes) != len(probs):
        classes = []
    names = classes or [str(i) for i in range(len(probs))]
    pred = int(np.argmax(probs))
    top = np.argsort(probs)[::-1][:3]
    st.markdown("Prediction: " + " · ".join(f"**{names[i]}** {probs[i]:.2f}" for i in top)
                + (f"  —  true class: **{names[inp.label]}**" if inp.label is not None
                   and 0 <= inp.label < len(names) else ""))
    target = st.selectbox("Explain class", range(len(names)), index=pred,
                          format_func=lambda i: f"{names[i]} ({probs[i]:.2f})"
                          + (" · predicted" if i == pred else ""), key=f"sal_target_{key}")
    with st.spinner(f"Computing {sal.METHODS[method].label}..."):
        res = _saliency(run.id, stamp, key, method, int(target), tuple(sorted(options.items())),
                        model, inp)
    over = sal.overlay(inp.display, res.map, opacity=opacity, colormap=cmap)
    c1, c2 = st.columns(2)
    c1.image(inp.display, caption=f"input ({inp.display.shape[1]} px, as the model sees it)",
             width="stretch")
    c2.image(over, caption=f"{sal.METHODS[method].label} for '{names[int(target)]}' · "
                           f"{res.seconds * 1000:.0f} ms", width="stretch")
    if inp.person is not None:
        inside = sal.mass_inside(res.map, inp.person)
        st.metric("Saliency inside the person", f"{inside:.0%}",
                  help="Share of the map's mass inside the person's outline (the annotation's segmentation polygons); "
                       f"the person covers {inp.person.mean():.0%} of the input, the share a map "
                       "blind to the person would get.")
    fname = f"saliency_{run.name}_{inp.name}_{method}_{names[int(target)]}.png".replace("/", "_")
    st.download_button("Download PNG", data=sal.to_png(over), file_name=fname, mime="image/png",
                       key="sal_download")
    if res.keypoint_attribution is not None:
        _keypoint_chart(res.keypoint_attribution, inp)
        with st.expander("Keypoint attribution table"):
            st.dataframe(pd.DataFrame({"keypoint": COCO17, "attribution": res.keypoint_attribution}),
                         hide_index=True, width="stretch")

if res is None:
    st.stop()
sid = key.split(":", 1)[1] if key.startswith("sample:") else None
row = None
if sid is not None:            # the test sample's row (read without error above, in _sample_ui)
    preds_all, _ = ui.classifier_predictions(run)
    match = preds_all[preds_all["sample_id"].astype(str) == sid]
    row = match.iloc[0] if len(match) else None
option_key = tuple(sorted(options.items()))
with ui.guard():
    trust_ui(run, stamp, key, method, int(target), option_key, model, inp, res)
keypoints_ui(run, stamp, key, int(target), model, inp, names, row)
with ui.guard():
    compare_ui(run, sid, method, option_key)
