"""Run folders written before the layout change still read, show and resume.

``tests/fixtures/legacy`` holds runs and data made by the code as it was before ``core/``
was split into classification / temporal / synthetic (see its README): finished classifier
and temporal runs, and one killed run of each kind with its resume checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from core import engine
from core.runs import LAST, RunInfo, find_run, list_runs, load_run, load_weights
from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


@pytest.fixture
def legacy(tmp_path) -> Path:
    shutil.copytree(LEGACY, tmp_path / "legacy")
    return tmp_path / "legacy"


def _runs(root: Path) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for r in list_runs(root / "runs"):
        out.setdefault((r.name, r.status), []).append(r)
    return out


def test_every_legacy_run_reads_into_the_typed_record(legacy):
    runs = _runs(legacy)
    assert {k: len(v) for k, v in runs.items()} == {
        ("baseline", "finished"): 1, ("model3", "finished"): 1, ("model3", "unfinished"): 1,
        ("conv3d", "finished"): 1, ("conv3d", "unfinished"): 1, ("identity", "finished"): 1}
    (m3,) = runs[("model3", "finished")]
    info = m3.info
    assert isinstance(info, RunInfo) and info.kind == "classifier"
    assert info.data.classes and len(info.data.classes) == 14 and info.data.fingerprint
    assert info.backbone.source == "random" and info.backbone.sha256 and info.backbone.label == "random init"
    assert info.config["train"]["image_size"] == 32 and info.feature_cache is True
    assert info.world_size == 1 and info.data.keypoint_source is None   # written before keypoint sources
    # written back unchanged: every key of the old run.json survives a round trip
    raw = __import__("json").loads((m3.path / "run.json").read_text())
    assert RunInfo.from_dict(raw).to_dict() == raw
    (c3,) = runs[("conv3d", "finished")]
    assert c3.info.data.keypoints and c3.info.data.videos == {"train": 4, "val": 1, "test": 1}
    assert len(c3.pck()) == 26 and c3.metrics["headline"] == "test_pck@0.05"


def test_legacy_resume_checkpoints_of_both_trainers_read(legacy):
    runs = _runs(legacy)
    (clf,) = runs[("model3", "unfinished")]
    got = engine.load_resume(clf.path / LAST)
    assert got.state.epoch == 1 and len(got.state.history) == 1 and got.state.best_epoch == 1
    assert set(got.model) == set(load_weights(clf.path / "weights.safetensors"))   # head.* only
    assert got.state.optimizer["param_groups"] and got.state.optimizer["state"]
    assert got.state.best_weights is not None
    (tmp,) = runs[("conv3d", "unfinished")]
    got = engine.load_resume(tmp.path / LAST)
    assert got.state.epoch == 1 and got.state.history[0]["epoch"] == 1
    assert got.state.best_score == pytest.approx(got.state.history[0]["val_pck"])
    assert any(k.startswith("net.") for k in got.model)
    steps = [st["step"] for st in got.state.optimizer["state"].values()]
    assert steps and all(float(s) > 0 for s in steps)


def test_a_killed_legacy_temporal_run_resumes_to_the_unbroken_result(legacy, tmp_path):
    """The current trainer finds the old unfinished run (same identity), continues it
    from its checkpoint in the same folder, and ends where an unbroken run of the same
    call ends."""
    (killed,) = _runs(legacy)[("conv3d", "unfinished")]
    def job(runs_dir):
        plan = ModelPlan("conv3d", {"hidden": 4}, default_recipe("conv3d", epochs=3, batch_size=4))
        return TemporalJob(data=legacy / "data" / "sequences", runs_dir=runs_dir, plans=(plan,), device="cpu",
                           progress=False)
    resumed = train_temporal(job(legacy / "runs"))
    assert resumed == killed.path and not (resumed / LAST).exists()
    run = load_run(resumed, require_finished=True)
    assert run.info.resumed_after_epoch == [1] and list(run.history()["epoch"]) == [1, 2, 3]
    unbroken = load_run(train_temporal(job(tmp_path / "fresh")), require_finished=True)
    a, b = load_weights(unbroken.path / "weights.safetensors"), load_weights(resumed / "weights.safetensors")
    # the fixture's first epoch was computed on another CPU, whose kernels may round the
    # last bits differently (1e-8 measured between two x86_64 machines): equal up to that
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
    assert run.metrics["test_pck@0.05"] == pytest.approx(unbroken.metrics["test_pck@0.05"], abs=1e-3)


def test_a_legacy_classifier_run_is_found_by_its_identity(legacy):
    """The classifier's unfinished run is matched by the current identity (same preset,
    config, seed, data fingerprint, backbone), so the next identical call resumes it."""
    (killed,) = _runs(legacy)[("model3", "unfinished")]
    assert find_run(legacy / "runs", killed.info.identity(), finished=False) == killed.path
    (done,) = _runs(legacy)[("model3", "finished")]
    ident = {**done.info.identity(), "data.keypoint_source": "annotation"}   # what a new call says
    assert find_run(legacy / "runs", ident, finished=True) == done.path


def test_legacy_runs_show_in_every_dashboard_page(legacy, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("POSELAB_RUNS", str(legacy / "runs"))
    for page in ("home", "runs", "samples", "confusion", "pck", "sequences"):
        at = AppTest.from_file(str(Path(__file__).parent.parent / "pages" / f"{page}.py"), default_timeout=60).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        errors = [e.value for e in at.error]
        # the data folders recorded in the old run.json files are gone: pages say so, nothing crashes
        assert all("does not exist" in e or "missing" in e or "could not be read" in e for e in errors), (page, errors)
        if page == "home":   # the old runs had a random backbone: said on the Home page
            assert any("randomly initialised backbone" in w.value for w in at.warning)
