"""python -m core study temporal at tiny sizes: every stage runs, the tables have the
thesis's layout with intervals, and a second call resumes (reuses everything)."""
from __future__ import annotations

import json
import time
from dataclasses import replace

from core.temporal.models import BASELINES, LEARNED
from core.temporal.study import THESIS, StudyConfig, quick, run_study


def test_the_study_runs_every_stage_writes_its_tables_and_resumes(tmp_path):
    cfg = replace(quick(StudyConfig(out=tmp_path / "study", device="cpu")), noises=(1.0,))
    result = run_study(cfg, progress=False)
    assert set(result["stages"]) == {"pretrain-noise1", "finetune-from-noise1", "scratch"}
    finetune = {r["model"]: r for r in result["stages"]["finetune-from-noise1"]}
    assert set(finetune) == set(LEARNED) | set(BASELINES)        # every baseline beside the models
    for r in finetune.values():
        for a in ("0.05", "0.1", "0.2"):
            lo, hi = r[f"pck@{a}_ci"]
            assert 0 <= lo <= r[f"pck@{a}"] <= hi <= 1
    # the fine-tuned models started from stage 1's, at the fine-tuning rate
    run = json.loads((tmp_path / "study" / "runs-finetune-noise1").joinpath(
        next(p.name for p in (tmp_path / "study" / "runs-finetune-noise1").iterdir() if "conv3d" in p.name),
        "run.json").read_text())
    assert run["init_from"] and "runs-pretrain-noise1" in run["init_from"] and run["config"]["train"]["lr"] == 1e-4
    # DeciWatch gets its multiple of the stage's epochs, the heatmap models the stage's own
    epochs = {r["model"]: r["epochs_run"] for r in result["stages"]["scratch"]}
    assert epochs["conv3d"] == cfg.finetune_epochs
    assert epochs["deciwatch"] == cfg.finetune_epochs * cfg.epoch_multiplier["deciwatch"] > epochs["conv3d"]
    assert {o["verdict"] for o in result["orderings"]} <= {"holds", "does not hold", "inconclusive"}
    md = (tmp_path / "study" / "study.md").read_text()
    assert "| identity |" in md and " / ".join(f"{v:g}" for v in THESIS["conv3d"]) in md
    # started again: every dataset and run is reused, nothing trains
    t0 = time.perf_counter()
    again = run_study(cfg, progress=False)
    assert again["stages"] == result["stages"] and time.perf_counter() - t0 < result["seconds_this_call"]
