"""AppTest for the Saliency, PCK comparison and Sequences pages.

They run against the session's ``dashboard_runs`` (tests/conftest.py): runs made by the
real training code on tiny synthetic data (classifier baseline/model1/model4 at 64 px
on the shipped PoseLab backbone; temporal conv3d + the grid's identity run, 16 px heatmaps).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.runs import list_runs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def real_runs(dashboard_runs):
    """name -> run id of the fixture runs, plus the runs folder."""
    out = {"runs": dashboard_runs}
    out.update({r.name: r.id for r in list_runs(dashboard_runs) if r.finished})
    for name in ("model1", "model4", "conv3d", "identity"):
        assert name in out, f"fixture run {name} missing"
    return out


def _page(page: str, **state):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=120)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def _frames(at) -> dict[str, object]:
    """The PCK page's tables in page order: summary, smoothness, seeds, per keypoint,
    [difference], [CI]."""
    names = ["summary", "motion", "seeds", "table"]
    if at.selectbox(key="pck_reference").value is not None:
        names.append("diff")
    if at.toggle(key="pck_ci").value:
        names.append("ci")
    frames = [d.value for d in at.dataframe]
    assert len(frames) == len(names), (len(frames), names)
    return dict(zip(names, frames))


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


# ------------------------------------------------------------------------------ PCK page

def test_pck_page_tables_react_to_runs_threshold_merge_and_reference(real_runs):
    at = _page("pages/pck.py")
    assert not _errors(at)
    f = _frames(at)
    # Both runs chosen; the grid's identity run and the baseline row are told apart.
    assert set(f["summary"].index) == {"identity", "conv3d", "identity baseline", "threshold_px"}
    assert len(f["table"]) == 13 + 1                            # merged by default, + 'all'
    # smoothness and left/right: every chosen run and the estimator, from the runs' metrics
    assert set(f["motion"].index) == {"identity", "conv3d", "identity (estimator)"}
    assert {"pck_auc", "accel_error", "jitter", "swapped_frames", "swap_tolerant_pck@0.05"} <= set(f["motion"].columns)
    assert (f["motion"]["swap_tolerant_pck@0.05"] >= 0).all()
    # one seed each: the binomial interval of the test keypoints, labelled as such
    assert set(f["seeds"]["arch"]) == {"identity", "conv3d"}
    assert set(f["seeds"]["interval"]) == {"binomial, test set (1 seed)"}
    assert set(f["table"].columns) == {"identity", "conv3d", "identity baseline", "n_visible"}

    at.toggle(key="pck_merged").set_value(False).run()
    assert len(_frames(at)["table"]) == 25 + 1

    at.multiselect(key="pck_runs").set_value([real_runs["conv3d"]]).run()
    f = _frames(at)
    assert list(f["summary"].index) == ["conv3d", "identity", "threshold_px"]
    assert list(f["table"].columns) == ["conv3d", "identity", "n_visible"]
    t005 = f["table"]

    at.radio(key="pck_threshold").set_value(0.2).run()
    t02 = _frames(at)["table"]
    assert (t02["conv3d"] >= t005["conv3d"] - 1e-9).all()      # a looser threshold never lowers PCK
    assert (t02["conv3d"] != t005["conv3d"]).any()

    at.selectbox(key="pck_reference").set_value("identity").run()
    diff = _frames(at)["diff"]
    assert list(diff.columns) == ["conv3d"]
    np.testing.assert_allclose(diff["conv3d"], t02["conv3d"] - t02["identity"])
    assert not at.exception


def test_pck_page_bootstrap_and_exports(real_runs):
    at = _page("pages/pck.py")
    at.multiselect(key="pck_runs").set_value([real_runs["conv3d"], real_runs["identity"]]).run()
    at.selectbox(key="pck_reference").set_value("identity baseline").run()
    at.toggle(key="pck_ci").set_value(True).run()
    assert not at.exception and not _errors(at)
    ci = _frames(at)["ci"]
    assert set(ci["run"]) == {"conv3d", "identity", "identity baseline"}
    assert {"run", "keypoint", "pck", "lo", "hi", "diff_lo", "diff_hi"} <= set(ci.columns)
    ok = ci.dropna(subset=["pck", "lo", "hi"])
    assert len(ok) and ((ok["lo"] <= ok["pck"] + 1e-9) & (ok["pck"] <= ok["hi"] + 1e-9)).all()
    # The grid's identity run is the baseline itself: a paired difference of exactly 0.
    same = ci[ci["run"] == "identity"].dropna(subset=["diff"])
    assert len(same) and (same["diff"].abs() < 1e-9).all()
    assert len(at.get("download_button")) == 3                 # summary, table, CIs


# ------------------------------------------------------------------------ Sequences page

def test_sequences_page_shows_heatmaps_points_and_curve(real_runs):
    at = _page("pages/sequences.py", selected_run=real_runs["conv3d"])
    assert not _errors(at) and not [w.value for w in at.warning]
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    fig = json.loads(charts[0].proto.spec)
    kinds = [t["type"] for t in fig["data"]]
    assert kinds[0] == "image" and kinds.count("scatter") >= 3      # the frame under the keypoints
    before = [m.value for m in at.metric]
    slider = at.select_slider[0]
    slider.set_value(slider.options[-1]).run()
    assert not at.exception
    assert [m.value for m in at.metric] != before
    at.multiselect(key="seq_layers").set_value(["refined"]).run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t.get("name") for t in fig["data"] if t.get("mode") == "markers"] == ["refined"]
    at.toggle(key="seq_heatmaps").set_value(True).run()              # the heatmaps over the frame
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["type"] for t in fig["data"]][:2] == ["image", "image"]
    prev = at.button(key=f"seq_frame_{real_runs['conv3d']}_{at.selectbox[0].value}_prev")   # at the last frame
    shown = at.select_slider[0].value
    prev.click().run()
    assert not at.exception and at.select_slider[0].value != shown


def test_sequences_page_without_heatmaps_warns_and_still_draws(real_runs, tmp_path, monkeypatch):
    import shutil
    runs = tmp_path / "runs"
    shutil.copytree(real_runs["runs"] / real_runs["conv3d"], runs / real_runs["conv3d"])
    info = json.loads((runs / real_runs["conv3d"] / "run.json").read_text())
    info["data"]["root"] = str(tmp_path / "moved-away")
    (runs / real_runs["conv3d"] / "run.json").write_text(json.dumps(info))
    monkeypatch.setenv("POSELAB_RUNS", str(runs))
    at = _page("pages/sequences.py")
    assert any("Frames and heatmaps not shown" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 2


# ------------------------------------------------------------------------- Saliency page

def _png(size=(90, 70), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format="PNG")
    return buf.getvalue()


def test_saliency_page_sample_methods_and_keypoint_chart(real_runs):
    at = _page("pages/saliency.py", selected_run=real_runs["model4"])
    assert not _errors(at)
    assert len(at.image) == 2                                    # original + overlay
    assert "Vanilla gradient" in at.image[1].proto.imgs[0].caption
    assert any(c.key == "sal_kp_chart" for c in at.get("plotly_chart"))
    inside = [m for m in at.metric if m.label == "Saliency inside the person"]
    assert len(inside) == 1 and inside[0].value.endswith("%")      # the annotation's outline
    at.selectbox(key="sal_method").set_value("gradcam").run()
    assert not at.exception and len(at.image) == 2
    assert "Grad-CAM" in at.image[1].proto.imgs[0].caption
    assert any(c.key == "sal_kp_chart" for c in at.get("plotly_chart"))  # input x gradient
    at.selectbox(key="sal_method").set_value("integrated_gradients").run()
    assert not at.exception and "Integrated Gradients" in at.image[1].proto.imgs[0].caption
    at.slider(key="sal_opacity").set_value(0.9).run()
    assert not at.exception and len(at.image) == 2
    assert [b.key for b in at.get("download_button")] == ["sal_download"]


def test_saliency_request_from_gallery_selects_the_sample(real_runs):
    import pandas as pd
    ids = pd.read_parquet(real_runs["runs"] / real_runs["model1"] / "predictions.parquet")["sample_id"]
    wanted = str(ids.iloc[-1])                                   # not the page's default (first)
    at = _page("pages/saliency.py", selected_run=real_runs["model1"],
               saliency_request={"run_id": real_runs["model1"], "sample_id": wanted})
    assert at.selectbox(key="sal_sample").value == wanted
    assert "saliency_request" not in at.session_state            # consumed once
    assert len(at.image) == 2
    assert not any(c.key == "sal_kp_chart" for c in at.get("plotly_chart"))   # image-only preset


def test_saliency_upload_corrupt_then_good(real_runs):
    at = _page("pages/saliency.py", selected_run=real_runs["model1"])
    at.radio(key="sal_source").set_value("Upload").run()
    at.file_uploader(key="sal_upload").set_value(("broken.png", _png()[:60], "image/png")).run()
    assert not at.exception
    assert any("broken.png" in e for e in _errors(at))
    assert len(at.image) == 0
    at.file_uploader(key="sal_upload").set_value(("ok.png", _png(mode="L"), "image/png")).run()
    assert not at.exception and not _errors(at)
    assert len(at.image) == 3                                    # the picture, the input, the map


def test_saliency_upload_of_nobody_offers_keypoint_free_or_typed_keypoints(real_runs):
    """A keypoint preset and a picture with nobody in it: the picture is shown, the page
    says nobody was found and offers the keypoint-free computation (or typed keypoints)."""
    at = _page("pages/saliency.py", selected_run=real_runs["model4"])
    at.radio(key="sal_source").set_value("Upload").run()
    at.file_uploader(key="sal_upload").set_value(("empty.png", _png(), "image/png")).run()
    assert not at.exception and len(at.image) == 1                  # the picture, shown at once
    assert any("found nobody" in i.value for i in at.info)
    at.checkbox(key="sal_up_kp_missing").check().run()
    assert not at.exception and not _errors(at) and len(at.image) == 3   # picture, input, map
    at.checkbox(key="sal_up_kp_missing").uncheck().run()
    at.text_area(key="sal_up_kp_json").set_value("[[1, 2, 3]]").run()
    assert any("keypoints JSON" in e for e in _errors(at))
    kp = [[0, 0, 0]] * 5 + [[30 + i, 20 + 2 * i, 2] for i in range(12)]
    at.text_area(key="sal_up_kp_json").set_value(json.dumps(kp)).run()
    assert not at.exception and not _errors(at) and len(at.image) == 3
    assert any(c.key == "sal_kp_chart" for c in at.get("plotly_chart"))


def _one_person_png() -> bytes:
    """A rendered picture of one person that BlazePose finds (the first such seed)."""
    from core.classification.saliency import find_people
    from core.estimator.blazepose import BlazePose
    from core.synthetic.images import render_image
    bp = BlazePose()
    for seed in range(20):
        png, _, anns = render_image(7, "test", seed, size=256, people_max=1)
        if len(anns) == 1 and len(find_people(Image.open(io.BytesIO(png)), bp)) == 1:
            return png
    raise AssertionError("no rendered picture in 20 with one person BlazePose finds")


def test_saliency_upload_of_a_person_uses_estimated_keypoints_without_typing(real_runs):
    at = _page("pages/saliency.py", selected_run=real_runs["model4"])
    at.radio(key="sal_source").set_value("Upload").run()
    at.file_uploader(key="sal_upload").set_value(("me.png", _one_person_png(), "image/png")).run()
    assert not at.exception and not _errors(at), _errors(at)
    assert len(at.image) == 3 and "with the keypoints used" in at.image[0].proto.imgs[0].caption
    assert any(c.key == "sal_kp_chart" for c in at.get("plotly_chart"))    # the map and the keypoints' share
    assert not any("found nobody" in i.value for i in at.info)


def test_saliency_non_image_upload_is_one_error_at_once(real_runs):
    at = _page("pages/saliency.py", selected_run=real_runs["model4"])
    at.radio(key="sal_source").set_value("Upload").run()
    at.file_uploader(key="sal_upload").set_value(("notes.png", b"just some text", "image/png")).run()
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "notes.png" in errors[0]
    assert len(at.image) == 0
    assert not any("found nobody" in i.value for i in at.info)       # nothing else is asked


def test_saliency_camera_picture(real_runs):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 140, 200)).save(buf, format="JPEG")
    at = _page("pages/saliency.py", selected_run=real_runs["model1"])
    at.radio(key="sal_source").set_value("Camera").run()
    assert len(at.image) == 0 and not at.exception
    at.camera_input(key="sal_camera").set_value(("shot.jpg", buf.getvalue(), "image/jpeg")).run()
    assert not at.exception and not _errors(at) and len(at.image) == 3


def test_sequences_page_opens_on_the_best_refinement_not_on_identity(real_runs):
    at = _page("pages/sequences.py")                          # nothing chosen in the sidebar
    assert not at.exception
    assert f"`{real_runs['conv3d']}`" in " ".join(c.value for c in at.caption)


def test_sequences_page_refines_your_video_without_ground_truth(real_runs, tmp_path, monkeypatch):
    """A dataset written by `python -m core estimate` (no ground truth), refined live:
    the frame, the estimator's and the run's keypoints, no error curve."""
    monkeypatch.setenv("POSELAB_DATA_DIRS", str(tmp_path))     # outside the runs and data folders
    from core import cli
    from core.synthetic.motion import animate
    from core.synthetic.videos import render_clip
    rng = np.random.default_rng(5)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(render_clip(animate("squat", 7, rng, image_size=(160, 120)), rng)):
        Image.fromarray(f.image).save(frames / f"f{i}.png")
    assert cli.main(["estimate", "--frames", str(frames), "--out", str(tmp_path / "mine"), "--heatmap", "16"]) == 0
    at = _page("pages/sequences.py", selected_run=real_runs["conv3d"])
    at.radio(key="seq_source").set_value("A sequence dataset folder").run()
    at.text_input(key="seq_folder").set_value(str(tmp_path / "mine")).run()
    assert not _errors(at), _errors(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 1                                   # no ground truth: no error curve
    fig = json.loads(charts[0].proto.spec)
    names = [t.get("name") for t in fig["data"] if t.get("mode") == "markers"]
    assert fig["data"][0]["type"] == "image" and names == ["estimator", "refined"]
    assert any("no ground truth" in c.value for c in at.caption)
    assert not at.warning
    index = tmp_path / "mine" / "index.json"                 # as estimate --allow-truncated records it
    index.write_text(json.dumps({**json.loads(index.read_text()), "warnings": ["me.mp4: declares 24 frames"]}))
    at.run()
    assert any("declares 24 frames" in w.value for w in at.warning) and not _errors(at)


def test_sequences_folder_box_stays_inside_the_data_and_runs_folders(real_runs, tmp_path, monkeypatch):
    """A folder elsewhere on the server is refused, naming only what was typed; the
    allow-list opens it; a link out of an allowed folder is refused."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    np.savez(elsewhere / "deep" / "secret.npz", password=np.zeros(1), token=np.ones(1))
    monkeypatch.delenv("POSELAB_DATA_DIRS", raising=False)
    at = _page("pages/sequences.py", selected_run=real_runs["conv3d"])
    at.radio(key="seq_source").set_value("A sequence dataset folder").run()
    for typed in (str(elsewhere), "/", str(real_runs["runs"] / ".." / ".." / "elsewhere")):
        at.text_input(key="seq_folder").set_value(typed).run()
        assert not at.exception
        (err,) = _errors(at)
        assert typed in err and "outside the folders this page reads" in err and "POSELAB_DATA_DIRS" in err
        assert "secret" not in err and "password" not in err

    monkeypatch.setenv("POSELAB_DATA_DIRS", str(tmp_path))
    at.text_input(key="seq_folder").set_value(str(elsewhere) + " ").run()          # now allowed: read
    assert not at.exception and any("secret.npz" in e for e in _errors(at))

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    np.savez(outside / "v.npz", heatmaps=np.zeros((5, 25, 4, 4), np.float16))
    (allowed / "v.npz").symlink_to(outside / "v.npz")
    monkeypatch.setenv("POSELAB_DATA_DIRS", str(allowed))
    at.text_input(key="seq_folder").set_value(str(allowed)).run()
    assert not at.exception
    (err,) = _errors(at)
    assert "v.npz is a link that leads out of this folder" in err
