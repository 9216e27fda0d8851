"""Home: what runs exist, their headline metrics, data and backbone; the embedded demo's
build (it starts by itself in an empty runs folder), its progress, a way to stop it, and
a button to build it again."""
from __future__ import annotations

import streamlit as st

from core import ui
from core.classification import report


def start_ui(job) -> None:
    """Nothing built yet: what the demo is, the button, and how to train your own."""
    st.info(
        "No runs yet in this folder. The embedded demo (synthetic images and sequences + "
        "every classifier and temporal run the pages need) builds in a few minutes on a "
        "CPU, from the button below or from a terminal:\n\n"
        f"```\npython -m core demo --runs {job.root}\n```\n"
        "(`make demo` does the same for `checkpoints/`). Train your own with "
        "`python -m core grid classifier --data DIR` / `python -m core grid temporal --data DIR`.")
    if st.button("Build the demo runs", type="primary", icon=":material/play_arrow:"):
        job.clear()
        job.start()
        st.rerun()


def failed_ui(job, state) -> None:
    if "stopped by the user" in state.log_tail:
        st.info("The demo build was stopped; the runs it finished are kept.")
    else:
        st.error(f"Building the demo failed (exit code {state.returncode}); the log is `{job.log}`.")
        st.code(state.log_tail or "(empty log)")
    if st.button("Build the demo runs again", icon=":material/refresh:"):
        job.clear()
        job.start()
        st.rerun()


@st.fragment(run_every=1.0)
def follow_ui(job) -> None:
    # A fragment re-runs only this block every second: the page stays responsive and
    # the bar moves without reloading anything else.
    state = job.state()
    if state is None:
        return
    elapsed = f" · {state.elapsed_s:.0f} s" if state.elapsed_s is not None else ""
    st.progress(state.fraction, text=f"Building the demo: {state.message} ({state.fraction:.0%}{elapsed})")
    c = st.columns([1, 5])
    if c[0].button("Stop", icon=":material/stop:", key="demo_stop"):
        job.stop()
        st.rerun(scope="app")
    c[1].caption(f"Running as a separate process (log: `{job.log}`); closing this tab does not stop it. "
                 "Each page fills in as its runs finish.")
    if not state.running or ui.runs_changed():
        st.rerun(scope="app")


def rebuild_ui(job) -> None:
    with st.expander("Build the demo runs again"):
        st.caption("Renders the demo data (if changed) and trains every demo run that is not "
                   "already finished for the identical settings.")
        if st.button("Build the demo runs", icon=":material/play_arrow:", key="demo_rebuild"):
            job.clear()
            job.start()
            st.rerun()


def runs_ui(runs) -> None:
    table = report.runs_table(runs)
    finished = table[table["status"] == "finished"]
    c = st.columns(4)
    c[0].metric("Runs", len(table))
    c[1].metric("Classifier runs", int((finished["kind"] == "classifier").sum()))
    c[2].metric("Temporal runs", int((finished["kind"] == "temporal").sum()))
    c[3].metric("Unfinished / broken", int((table["status"] != "finished").sum()))

    random = finished[finished["backbone_source"] == "random"]
    if not random.empty:
        names = ", ".join(f"**{n}**" for n in random["name"])
        why = next((w for w in random["backbone_warning"] if w), "")
        st.warning(f"{len(random)} classifier run(s) used a **randomly initialised backbone**: "
                   f"{names}. Their accuracies say little about the paper's setting.",
                   icon=":material/warning:")
        if why:
            st.caption(f"Training said: {why}")

    poselab = finished[finished["backbone_source"] == "poselab"]
    if not poselab.empty:
        st.info(f"{len(poselab)} classifier run(s) use the **PoseLab synthetic pretraining** backbone: a "
                "ResNet-50 trained from scratch on PoseLab's own renders (shipped in checkpoints/_poselab/), "
                "not ImageNet. Its accuracies are on synthetic people; put ImageNet weights in torch's cache "
                "for the paper's setting.", icon=":material/info:")

    for kind, title in (("classifier", "Classifier runs"), ("temporal", "Temporal runs")):
        part = finished[finished["kind"] == kind]
        if part.empty:
            continue
        st.subheader(title)
        cols = ["name", "headline", "value", "best_epoch", "num_train", "num_test", "data",
                "device", "started_at", "run_id"]
        if kind == "classifier":
            cols[6:6] = ["keypoints", "backbone"]
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
with ui.guard():
    ui.sidebar()
    job = ui.demo_job()
    runs = ui.all_runs()
    state = job.state()
    if state is None and not runs and ui.auto_demo():
        job.start()                     # a fresh clone: build the demo without a click
        state = job.state()
    if state is not None and state.running:
        follow_ui(job)
    elif state is not None and state.returncode not in (0, None):
        failed_ui(job, state)
    elif not runs:
        start_ui(job)
    if runs:
        runs_ui(runs)
        if state is None or not state.running:
            rebuild_ui(job)
