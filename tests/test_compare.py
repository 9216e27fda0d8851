"""Seeds and intervals: core.stats against hand-computed cases, and the paper's tables and
findings (core.classification.compare) on run records made here."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from core import stats
from core.classification import compare
from core.runs import Run, RunInfo

SAMPLES = [f"s{i}" for i in range(200)]


def test_t_interval_and_wilson_by_hand():
    mean, lo, hi = stats.t_interval([0.8, 0.9, 1.0])
    half = st.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)            # sd of (0.8, 0.9, 1.0) is 0.1
    assert mean == pytest.approx(0.9) and lo == pytest.approx(0.9 - half) and hi == pytest.approx(0.9 + half)
    p, lo, hi = stats.wilson_interval(45, 50)
    z = st.norm.ppf(0.975)
    centre = (0.9 + z * z / 100) / (1 + z * z / 50)
    half = z * math.sqrt(0.9 * 0.1 / 50 + z * z / 10_000) / (1 + z * z / 50)
    assert (p, lo, hi) == pytest.approx((0.9, centre - half, centre + half))
    one = stats.estimate([0.9], counted=50)
    assert one.method == "binomial, test set (1 seed)" and one.low == pytest.approx(lo)
    three = stats.estimate([0.8, 0.9, 1.0])
    assert three.method == "across 3 seeds" and three.text(100) == f"90.0 [{(0.9 - st.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)) * 100:.1f}, {min(1.0, 0.9 + st.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)) * 100:.1f}]"


def test_compare_is_paired_over_samples_and_adds_seed_variance():
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.7).astype(float)              # B right on 70 %
    better = base.copy()
    better[np.flatnonzero(base == 0)[:40]] = 1                 # A also right on 40 more samples
    c = stats.compare(better[None], base[None])
    assert c.difference == pytest.approx(40 / 400)
    d = better - base                                          # paired: the sd of the differences
    assert c.se == pytest.approx(d.std(ddof=1) / math.sqrt(400)) and c.verdict == stats.HOLDS
    assert stats.compare(base[None], better[None]).verdict == stats.DOES_NOT_HOLD
    assert stats.compare(base[None], base[None]).verdict == stats.INCONCLUSIVE
    # seeds that disagree widen the error: per-seed accuracies 0.6 and 0.9 for A
    a = np.stack([np.r_[np.ones(240), np.zeros(160)], np.r_[np.ones(360), np.zeros(40)]])
    b = np.ones((1, 400)) * 0.7
    wide = stats.compare(a, b)
    assert wide.se ** 2 == pytest.approx(a.mean(0).var(ddof=1) / 400 + np.var([0.6, 0.9], ddof=1) / 2)
    assert stats.combine([stats.HOLDS, stats.HOLDS]) == stats.HOLDS
    assert stats.combine([stats.HOLDS, stats.INCONCLUSIVE]) == stats.INCONCLUSIVE
    assert stats.combine([stats.HOLDS, stats.DOES_NOT_HOLD]) == stats.DOES_NOT_HOLD


def _run(name, seed, acc_on, *, kp="annotation", backbone="b" * 64, data="d1", started="2026-12-03T10:00:00"):
    """A finished classifier run record whose predictions are right on ``acc_on`` samples."""
    info = RunInfo.from_dict({"kind": "classifier", "name": name, "seed": seed, "started_at": started,
                              "config": {"model": {"p": name}}, "backbone": {"source": "poselab", "sha256": backbone},
                              "data": {"fingerprint": data, "root": "/data",
                                       "keypoint_source": kp if name not in ("baseline", "model1", "model2") else None}})
    correct = np.zeros(len(SAMPLES), bool)
    correct[:acc_on] = True
    r = Run(path=Path("/runs") / f"{name}-{seed}-{kp}-{data}", info=info,
            metrics={"headline": "test_acc", "test_acc": acc_on / len(SAMPLES), "test_loss": 1.0 - acc_on / 400,
                     "num_test": len(SAMPLES)})
    r._correct = pd.DataFrame({"sample_id": SAMPLES, "correct": correct})
    return r


def _predictions(run):
    return run._correct


def test_paper_table_and_findings_from_seeded_runs():
    accs = {"baseline": [14, 16, 15], "model1": [80, 84, 82], "model2": [120, 124, 118], "model3": [150, 151, 149],
            "model4": [180, 178, 181], "model5": [178, 181, 179], "model6": [160, 162, 158]}
    runs = [_run(n, s, a) for n, v in accs.items() for s, a in enumerate(v)]
    runs += [_run("model4", 0, 100, kp="estimated")]                       # a second row beside model4
    runs += [_run("model4", 0, 10, data="other", started="2026-12-01T00:00:00")]   # another setting
    table = compare.paper_table(runs).set_index(["preset", "keypoint_source"])
    m4 = table.loc[("model4", "annotation")]
    assert m4["seeds"] == 3 and m4["interval"] == "across 3 seeds"
    assert m4["test_acc_%"] == pytest.approx(np.mean([180, 178, 181]) / 2)
    assert m4["acc_low_%"] < m4["test_acc_%"] < m4["acc_high_%"] and m4["paper_test_acc_%"] == 96.55
    est = table.loc[("model4", "estimated")]
    assert est["seeds"] == 1 and est["interval"] == "binomial, test set (1 seed)" and est["test_acc_%"] == 50.0
    assert table.loc[("model1", "-"), "table"] == "1" and table.loc[("model6", "annotation"), "table"] == "2"
    findings = compare.paper_findings(runs, _predictions).set_index("comparison")
    assert findings.loc["model3 > model1", "comparison_verdict"] == stats.HOLDS
    assert findings.loc["model4 > model5", "comparison_verdict"] == stats.INCONCLUSIVE
    assert findings.loc["model4 > model6", "comparison_verdict"] == stats.HOLDS
    verdicts = dict(zip(findings["finding"], findings["finding_verdict"]))
    assert verdicts == {"keypoints help": stats.HOLDS, "a trainable final layer helps": stats.HOLDS,
                        "the linear head beats the deeper ones": stats.INCONCLUSIVE}
    lines = compare.finding_lines(compare.paper_findings(runs, _predictions))
    assert lines[0].startswith("keypoints help: **holds** (model3 > model1 by +")
    # the other setting is there to choose, and alone it has runs for model4 only
    assert list(compare.settings(runs))[0] == "d1/" + "b" * 64 and len(compare.settings(runs)) == 2
    other = compare.paper_findings(runs, _predictions, setting="other/" + "b" * 64)
    assert set(other["finding_verdict"]) == {"missing runs"}
