"""AppTest of the views that find failures and check the maps: the embedding map and the
mistakenness sort (Samples), the cell's sample list (Confusion matrix), trust scores, the
keypoints' share, counterfactuals and several runs on one sample (Saliency), and a
real-looking photo whose person only the still-picture fallback finds. Against the
session's fixture runs (tests/conftest.py: baseline, model1, model4 trained for real on
tiny synthetic data)."""
from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_dirs
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.classification import embedding, mistakes
from core.runs import list_runs, load_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ids(dashboard_runs):
    return {r.name: r.id for r in list_runs(dashboard_runs) if r.finished}


def page(path: str, **state) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=180)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def charts(at) -> dict:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def preds_of(runs_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(run_dirs(runs_dir, "classifier")[name] / "predictions.parquet")


def gallery_count(at) -> int:
    text = "\n".join(m.value for m in at.markdown)
    return int(re.search(r"\*\*(\d+) of \d+ test samples match", text).group(1))


# ------------------------------------------------------------------ Samples: the embedding map


def test_embedding_map_draws_every_test_sample_and_its_selection_fills_the_gallery(dashboard_runs, ids):
    preds = preds_of(dashboard_runs, "model4")
    at = page("pages/samples.py", selected_run=ids["model4"])
    assert "s_map_chart" not in charts(at)                       # off until asked for
    at.toggle(key="s_map").set_value(True).run()
    assert not at.exception and not errors(at), errors(at)
    fig = charts(at)["s_map_chart"]
    shown = [cd[0] for t in fig["data"] for cd in t["customdata"]]
    assert sorted(shown) == sorted(preds["sample_id"].astype(str))              # every test sample, once
    assert {t["name"] for t in fig["data"]} <= set(preds["label_name"])        # coloured by true class
    assert fig["layout"]["dragmode"] == "lasso"
    assert any("t-SNE of image features" in c.value for c in at.caption)
    cache = dashboard_runs / "_cache" / "embeddings"
    assert (cache / f"{ids['model4']}-features.safetensors").is_file()
    assert (cache / f"{ids['model4']}-image-tsne-s0.safetensors").is_file()
    for features in ("keypoints", "head_input"):
        at.selectbox(key="s_map_features").set_value(features).run()
        assert not at.exception and not errors(at)
    at.radio(key="s_map_method").set_value("pca").run()
    at.radio(key="s_map_colour").set_value("correctness").run()
    assert not at.exception
    assert {t["name"] for t in charts(at)["s_map_chart"]["data"]} <= {"correct", "wrong"}
    # what a lasso selection stores (the browser test draws the lasso itself)
    chosen = preds["sample_id"].astype(str).tolist()[:3]
    at.session_state["s_map_selected"] = chosen
    at.run()
    assert gallery_count(at) == 3 and len(at.image) == 3
    assert any("3 samples selected in the map" in m.value for m in at.markdown)
    next(b for b in at.button if b.key == "s_map_clear").click().run()
    assert gallery_count(at) == len(preds)


def test_embedding_map_of_a_run_whose_images_are_gone_is_one_error_line(dashboard_runs, tmp_path, monkeypatch):
    d = tmp_path / "runs"
    shutil.copytree(dashboard_runs, d, ignore=shutil.ignore_patterns("_*"))   # no caches: crops from the scenes
    run = run_dirs(d, "classifier")["model4"]
    info = json.loads((run / "run.json").read_text())
    info["data"]["root"] = str(tmp_path / "moved-away")
    (run / "run.json").write_text(json.dumps(info))
    monkeypatch.setenv("POSELAB_RUNS", str(d))
    at = page("pages/samples.py", selected_run=run.name)
    at.toggle(key="s_map").set_value(True).run()
    assert not at.exception
    assert len(errors(at)) == 1 and "moved-away" in errors(at)[0]
    assert gallery_count(at) == len(preds_of(d, "model4"))                    # the gallery is still there
    assert not (d / "_cache" / "embeddings" / f"{run.name}-features.safetensors").exists()


def test_features_and_projections_are_computed_once_per_run(dashboard_runs, ids, monkeypatch):
    from core.models import load_model
    run = load_run(dashboard_runs / ids["model1"])
    preds = run.predictions()
    model = load_model(run.path)
    first = embedding.run_features(run, model, preds)
    assert first.image.shape == (len(preds), 2048) and first.keypoints.shape == (len(preds), 17, 3)
    assert first.head_input.shape == (len(preds), model.cfg.fc_dim)         # image-only preset: fc alone

    def fail(*a, **k):
        raise AssertionError("features computed again")
    monkeypatch.setattr(embedding, "compute_features", fail)
    again = embedding.run_features(run, model, preds)
    np.testing.assert_array_equal(again.image, first.image)
    p1 = embedding.run_projection(run, again, "keypoints", "pca")
    p2 = embedding.run_projection(run, again, "keypoints", "pca")
    assert p2.seconds == 0.0 and np.array_equal(p1.xy, p2.xy)


# ------------------------------------------------------------------ mistakenness


def test_gallery_sorts_by_mistakenness(dashboard_runs, ids):
    preds = preds_of(dashboard_runs, "model4")
    classes = json.loads((run_dirs(dashboard_runs)["model4"] / "run.json").read_text())["data"]["classes"]
    scored = mistakes.prediction_scores(preds, classes)
    top = scored.sort_values("mistakenness", ascending=False, kind="stable").iloc[0]
    at = page("pages/samples.py", selected_run=ids["model4"])
    at.selectbox(key="s_sort").set_value("most mistaken").run()
    assert not at.exception and not errors(at)
    caption = at.image[0].proto.imgs[0].caption
    assert f"mistakenness {top['mistakenness']:.2f}" in caption and top["label_name"] in caption
    assert any("FiftyOne Brain" in c.value for c in at.caption)


def test_a_run_without_stored_probabilities_says_so_and_keeps_its_gallery(dashboard_runs, tmp_path, monkeypatch):
    d = tmp_path / "runs"
    shutil.copytree(dashboard_runs, d, ignore=shutil.ignore_patterns("_*"))
    run = run_dirs(d, "classifier")["model4"]
    preds = pd.read_parquet(run / "predictions.parquet")
    preds.drop(columns=[c for c in preds.columns if c.startswith("prob_")]).to_parquet(run / "predictions.parquet")
    monkeypatch.setenv("POSELAB_RUNS", str(d))
    at = page("pages/samples.py", selected_run=run.name)
    at.selectbox(key="s_sort").set_value("most mistaken").run()
    assert not at.exception
    assert len(errors(at)) == 1 and "no stored class probabilities" in errors(at)[0]
    assert gallery_count(at) == len(preds) and len(at.image) == min(len(preds), 24)


def test_confusion_cell_lists_its_samples_by_mistakenness(dashboard_runs, ids):
    at = page("pages/confusion.py", selected_run=ids["model4"])
    counts = at.dataframe[0].value
    best = max(((t, p) for t in counts.index for p in counts.columns),
               key=lambda tp: (tp[0] != tp[1], counts.loc[tp]))
    at.selectbox(key="cm_true").set_value(best[0]).run()
    at.selectbox(key="cm_pred").set_value(best[1]).run()
    table = next(d.value for d in at.dataframe if "mistakenness" in d.value.columns)
    assert len(table) == int(counts.loc[best])
    assert {"hardness", "margin", "confidence"} <= set(table.columns)
    assert table["mistakenness"].is_monotonic_decreasing
    assert ((table["mistakenness"] > 0.5) == (best[0] != best[1])).all()    # wrong cells score above 1/2


# ------------------------------------------------------------------ Saliency: trust, keypoints, runs


def test_trust_scores_on_request(ids):
    at = page("pages/saliency.py", selected_run=ids["model4"])
    assert "sal_trust_deletion" not in charts(at)
    next(b for b in at.button if b.key == "sal_trust_go").click().run()
    assert not at.exception and not any("randomisation" not in e for e in errors(at)), errors(at)
    c = charts(at)
    assert "AUC" in c["sal_trust_deletion"]["layout"]["title"]["text"]
    assert [t["name"] for t in c["sal_trust_insertion"]["data"]] == ["map order", "random order"]
    stages = next(d.value for d in at.dataframe if "rank correlation" in d.value.columns)
    assert len(stages) == 3 and stages["rank correlation"].between(-1, 1).all()
    verdicts = [e.value for e in at.error] + [w.value for w in at.warning] + [s.value for s in at.success]
    assert any(v.startswith(("Passes", "Fails")) for v in verdicts)
    at.selectbox(key="sal_method").set_value("gradcam").run()      # another map: asked for again
    assert "sal_trust_deletion" not in charts(at)


def test_keypoint_share_counterfactuals_and_the_run_per_class(dashboard_runs, ids):
    at = page("pages/saliency.py", selected_run=ids["model4"])
    next(b for b in at.button if b.key == "sal_split_go").click().run()
    assert not at.exception and not errors(at), errors(at)
    m = {x.label: x.value for x in at.metric}
    shares = [int(m[k].rstrip("%")) for k in ("Image's share", "Keypoints' share")]
    assert abs(sum(shares) - 100) <= 1
    next(b for b in at.button if b.key == "sal_runsplit_go").click().run()
    assert not at.exception and not errors(at), errors(at)
    per_class = next(d.value for d in at.dataframe if "keypoint_share" in d.value.columns)
    assert per_class["samples"].sum() == len(preds_of(dashboard_runs, "model4"))
    cf = next(d.value for d in at.dataframe if "prediction after" in d.value.columns)
    assert "moved right by the PCK@0.1 radius" in cf["keypoints"].iloc[0]
    at.selectbox(key="sal_cf_dir").set_value("up").run()
    cf = next(d.value for d in at.dataframe if "prediction after" in d.value.columns)
    assert "moved up" in cf["keypoints"].iloc[0] and not at.exception


def test_keypoint_share_of_a_keypoint_free_preset_is_one_readable_line(ids):
    at = page("pages/saliency.py", selected_run=ids["model1"])
    next(b for b in at.button if b.key == "sal_split_go").click().run()
    assert not at.exception
    assert any("does not use keypoints" in e for e in errors(at))
    assert len(at.image) == 2                                           # the map is still there


def test_several_runs_on_one_sample_share_a_colour_scale(ids):
    at = page("pages/saliency.py", selected_run=ids["model4"])
    at.multiselect(key="sal_compare_runs").set_value([ids["model1"], ids["baseline"]]).run()
    assert not at.exception and not errors(at), errors(at)
    assert len(at.image) == 2 + 3
    assert any("One colour scale for all" in c.value for c in at.caption)
    names = [i.proto.imgs[0].caption.split(" → ")[0] for i in at.image[2:]]
    assert names == ["model4", "model1", "baseline"]


def test_a_real_looking_photo_finds_its_person(ids):
    from test_still import composite
    picture, _ = composite(0, grey_photo=False)          # the standard pass finds nobody here
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    at = page("pages/saliency.py", selected_run=ids["model4"])
    at.radio(key="sal_source").set_value("Upload").run()
    at.file_uploader(key="sal_upload").set_value(("photo.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not errors(at), errors(at)
    assert not any("found nobody" in i.value for i in at.info)
    assert any("still-picture fallback" in c.value and "weak detection" in c.value for c in at.caption)
    assert len(at.image) == 3 and "with the keypoints used" in at.image[0].proto.imgs[0].caption
