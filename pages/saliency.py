"""Saliency page: which pixels (and keypoints) drove a classifier's decision, live.

Pick a test sample of the run chosen in the sidebar (or arrive from the gallery /
confusion matrix via ``st.session_state["saliency_request"]``), upload a picture, or
take one with the camera; choose a method; see the map over the image, the keypoint
contributions for keypoint presets, and download the picture. Compute lives in
``core.classification.saliency``; results are cached per (run, input, method, options, target).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import ui
from core.classification import report
from core.classification import saliency as sal
from core.errors import DataError
from core.estimator.blazepose import BlazePose
from core.images import open_image
from core.keypoints import COCO17

SOURCES = ("Test sample", "Upload", "Camera")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp"]
UPLOAD_MB = 20               # .streamlit/config.toml's server.maxUploadSize


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


def _keypoint_chart(attr: np.ndarray, inp: sal.SaliencyInput) -> None:
    mask = inp.keypoints[:, 2].numpy() > 0 if inp.keypoints is not None else np.ones(17, bool)
    names = [n if m else f"{n} (missing)" for n, m in zip(COCO17, mask)]
    fig = go.Figure(go.Bar(x=attr, y=names, orientation="h",
                           marker_color=np.where(attr >= 0, "#d62728", "#1f77b4")))
    fig.update_layout(height=430, margin=dict(l=0, r=0, t=30, b=0),
                      title="Keypoint contribution to the target's logit",
                      yaxis=dict(autorange="reversed"), xaxis_title="attribution (logit units)")
    st.plotly_chart(fig, width="stretch", key="sal_kp_chart")
    st.caption("Red pushes towards the target class, blue away from it.")


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
