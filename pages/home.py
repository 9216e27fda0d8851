"""Home: what runs exist, their headline metrics, data and backbone weights; with no
runs at all, how to make them and a button that builds the embedded demo."""
from __future__ import annotations

import streamlit as st

from core.classification import report
from pages import common


def demo_ui(root) -> None:
    """How-to + the demo button; follows a running build with a progress bar."""
    state = common.demo_state(root)
    if state is None or (not state["running"] and state["returncode"] == 0 and not common.all_runs()):
        st.info(
            "No runs yet in this folder. Build the embedded demo (synthetic images and "
            "sequences + every classifier and temporal run the pages need, a few minutes "
            "on a CPU) with the button below, or from a terminal:\n\n"
            f"```\npython -m core demo --runs {root}\n```\n"
            "(`make demo` does the same for `checkpoints/`). Train your own with "
            "`python -m core grid classifier --data DIR` / `python -m core grid temporal --data DIR`.")
        if st.button("Build the demo runs", type="primary", icon=":material/play_arrow:"):
            common.start_demo(root)
            st.rerun()
        return
    if state["running"]:
        _follow(root)
        return
    if state["returncode"] != 0:
        st.error(f"Building the demo failed (exit code {state['returncode']}); "
                 f"the log is `{root / common.DEMO_LOG}`.")
        st.code(state["log_tail"] or "(empty log)")
        if st.button("Try again", icon=":material/refresh:"):
            common.clear_demo_state(root)
            common.start_demo(root)
            st.rerun()


@st.fragment(run_every=1.0)
def _follow(root) -> None:
    # A fragment re-runs only this block every second: the page stays responsive and
    # the bar moves without reloading anything else.
    state = common.demo_state(root)
    if state is None:
        return
    elapsed = f" · {state['elapsed_s']:.0f} s" if state.get("elapsed_s") is not None else ""
    st.progress(state["fraction"],
                text=f"Building the demo: {state['message']} ({state['fraction']:.0%}{elapsed})")
    st.caption(f"Running as a separate process (log: `{root / common.DEMO_LOG}`); "
               "closing this tab does not stop it.")
    if not state["running"]:
        common._cached_runs.clear()
        st.rerun(scope="app")


def runs_ui(runs) -> None:
    table = report.runs_table(runs)
    finished = table[table["status"] == "finished"]
    c = st.columns(4)
    c[0].metric("Runs", len(table))
    c[1].metric("Classifier runs", int((finished["kind"] == "classifier").sum()))
    c[2].metric("Temporal runs", int((finished["kind"] == "temporal").sum()))
    c[3].metric("Unfinished / broken", int((table["status"] != "finished").sum()))

    random = finished[finished["backbone"] == "random"]
    if not random.empty:
        names = ", ".join(f"**{n}**" for n in random["name"])
        why = next((w for w in random["backbone_warning"] if w), "")
        st.warning(f"{len(random)} classifier run(s) used a **randomly initialised backbone**, "
                   f"not pretrained ImageNet weights: {names}. Their accuracies say little "
                   "about the paper's setting.", icon=":material/warning:")
        if why:
            st.caption(f"Training said: {why}")

    for kind, title, fmt in (("classifier", "Classifier runs", "{:.1%}"),
                             ("temporal", "Temporal runs", "{:.1%}")):
        part = finished[finished["kind"] == kind]
        if part.empty:
            continue
        st.subheader(title)
        cols = ["name", "headline", "value", "best_epoch", "num_train", "num_test", "data",
                "device", "started_at", "run_id"]
        if kind == "classifier":
            cols.insert(6, "backbone")
        st.dataframe(part[cols], hide_index=True, width="stretch",
                     column_config={"value": st.column_config.NumberColumn("headline value", format="%.4f")})

    bad = table[table["status"] != "finished"]
    if not bad.empty:
        st.subheader("Unfinished or broken runs")
        st.caption("Listed for information; the other pages skip them.")
        st.dataframe(bad[["run_id", "status", "kind", "name", "problem"]], hide_index=True,
                     width="stretch")


st.title("PoseLab")
st.caption("Fitness-pose classification (ResNet-50 + keypoints) and temporal refinement "
           "of pose heatmaps: runs, samples, confusion, saliency, per-keypoint PCK.")
root = common.runs_dir()
with common.guard():
    common.sidebar()
    runs = common.all_runs()
    state = common.demo_state(root)
    if state is not None and state["running"]:
        _follow(root)
    elif not runs:
        demo_ui(root)
    else:
        if state is not None and state["returncode"] not in (0, None):
            demo_ui(root)
        runs_ui(runs)
