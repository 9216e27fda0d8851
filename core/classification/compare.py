"""Comparing classifier runs as the paper does, with seeds: variants, the paper's tables
beside this dataset's, and the paper's three findings judged from intervals.

A *variant* is every finished run of one call but for its seed: the same preset, config,
data, backbone and keypoint source (``RunInfo.identity`` without the seed). Its runs'
test accuracies give an ``core.stats.Estimate`` (mean and 95 % interval across seeds, or the
binomial interval of one seed's test set). A *setting* is the data and backbone the
variants were trained on: the paper's tables compare the presets of one setting.

The paper's findings, each judged by ``core.stats.compare`` on the presets' per-sample
correctness (every variant of a setting is scored on the same test samples):

1. keypoints help: model3 > model1 and model4 > model2;
2. a trainable final layer helps: model2 > model1 and model4 > model3;
3. the linear head beats the deeper ones: model4 > model5 and model4 > model6.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.classification.model import PAPER_TEST_ACC, PRESETS
from core.classification.report import preset_description
from core.runs import seed_groups
from core.stats import Estimate, combine, compare, estimate

FINDINGS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("keypoints help", (("model3", "model1"), ("model4", "model2"))),
    ("a trainable final layer helps", (("model2", "model1"), ("model4", "model3"))),
    ("the linear head beats the deeper ones", (("model4", "model5"), ("model4", "model6"))),
)


@dataclass
class Variant:
    """The finished runs of one call but for the seed, newest first."""
    name: str
    runs: list
    setting: str                 # data fingerprint and backbone: which variants are comparable
    keypoint_source: str         # "annotation" | "estimated" | "-" (a keypoint-free preset)

    @property
    def seeds(self) -> list[int]:
        return [r.info.seed for r in self.runs]

    def metric(self, key: str) -> np.ndarray:
        """(S,) the runs' ``metrics.json`` value ``key`` (NaN where missing)."""
        return np.array([_num((r.metrics or {}).get(key)) for r in self.runs])

    def accuracy(self) -> Estimate:
        return estimate(self.metric("test_acc"), counted=_num(self.runs[0].metrics.get("num_test")))


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def setting_of(run) -> str:
    """The data and backbone a classifier run was trained on, as one key."""
    b = run.info.backbone
    return f"{run.info.data.fingerprint}/{b.sha256 if b else '?'}"


def setting_label(run) -> str:
    b = run.info.backbone
    backbone = f"{b.label} {b.sha256[:6]}" if b and b.sha256 else (b.label if b else "?")
    return f"{run.info.data.root} · {backbone}"


def variants(runs: Sequence) -> list[Variant]:
    """The finished classifier runs grouped into variants (``core.runs.seed_groups``),
    newest first (``runs`` as ``list_runs`` returns them)."""
    out = []
    for group in seed_groups([r for r in runs if r.kind == "classifier"]):
        r = group[0]
        source = r.info.data.keypoint_source or ("annotation" if PRESETS.get(r.name) and
                                                  PRESETS[r.name].use_keypoints else "-")
        out.append(Variant(r.name, group, setting_of(r), source))
    return out


def settings(runs: Sequence) -> dict[str, str]:
    """setting key -> label, of the settings that hold a paper preset, newest first."""
    out: dict[str, str] = {}
    for v in variants(runs):
        if v.name in PAPER_TEST_ACC:
            out.setdefault(v.setting, setting_label(v.runs[0]))
    return out


def _paper_variants(runs: Sequence, setting: str | None) -> dict[tuple[str, str], Variant]:
    """(preset, keypoint source) -> the newest variant of that setting (default: the newest)."""
    vs = [v for v in variants(runs) if v.name in PAPER_TEST_ACC]
    if setting is None and vs:
        setting = vs[0].setting
    out: dict[tuple[str, str], Variant] = {}
    for v in vs:
        if v.setting == setting:
            out.setdefault((v.name, v.keypoint_source), v)
    return out


def paper_table(runs: Sequence, setting: str | None = None) -> pd.DataFrame:
    """The paper's Tables 1-2 in its rows: per preset, the paper's test accuracy, then this
    setting's test accuracy and loss as mean and 95 % interval over seeds (percent for
    accuracy). Keypoint presets with runs on estimated keypoints get a second row beside
    the same paper figure. Missing runs give NaN. The paper's losses are not known here:
    its Table 1 is shown with this dataset's losses only."""
    found = _paper_variants(runs, setting)
    rows = []
    for preset, paper_acc in PAPER_TEST_ACC.items():
        kp = "annotation" if PRESETS[preset].use_keypoints else "-"
        for source in [kp] + (["estimated"] if (preset, "estimated") in found else []):
            v = found.get((preset, source))
            acc = v.accuracy() if v else Estimate(math.nan, math.nan, math.nan, 0, "")
            loss = estimate(v.metric("test_loss"), proportion=False) if v else Estimate(math.nan, math.nan, math.nan, 0, "")
            desc = preset_description(preset)
            rows.append({
                "table": desc["table"], "preset": preset, "fc": desc["fc"], "keypoints": desc["keypoints"],
                "head": desc["head"], "keypoint_source": source,
                "paper_test_acc_%": paper_acc,
                "test_acc_%": acc.mean * 100, "acc_low_%": acc.low * 100, "acc_high_%": acc.high * 100,
                "test_loss": loss.mean, "loss_low": loss.low, "loss_high": loss.high,
                "seeds": acc.seeds, "interval": acc.method,
                "difference_pp": acc.mean * 100 - paper_acc,
                "backbone": (v.runs[0].info.backbone.label if v and v.runs[0].info.backbone else None),
                "run_ids": [r.id for r in v.runs] if v else [],
            })
    return pd.DataFrame(rows)


def correctness(variant: Variant, predictions: Callable) -> pd.DataFrame:
    """(N samples x S seeds) 0/1 correctness of a variant's runs, indexed by sample id
    (``predictions(run)`` reads a run's predictions.parquet)."""
    cols = {}
    for r in variant.runs:
        p = predictions(r)
        cols[r.info.seed] = pd.Series(p["correct"].to_numpy(np.float64), index=p["sample_id"].astype(str))
    return pd.DataFrame(cols)


def paper_findings(runs: Sequence, predictions: Callable, setting: str | None = None) -> pd.DataFrame:
    """One row per finding and comparison: A - B in points, its standard error, the
    comparison's verdict, and the finding's verdict over its comparisons (module docstring).
    Uses the annotation-keypoint variants of the setting, as the paper does."""
    found = {k[0]: v for k, v in _paper_variants(runs, setting).items() if k[1] in ("annotation", "-")}
    table = {name: correctness(v, predictions) for name, v in found.items()}
    rows = []
    for finding, pairs in FINDINGS:
        results = []
        for a, b in pairs:
            if a not in table or b not in table:
                results.append((a, b, None))
                continue
            both = table[a].index.intersection(table[b].index)
            results.append((a, b, compare(table[a].loc[both].to_numpy().T, table[b].loc[both].to_numpy().T)))
        verdict = combine(c.verdict for _, _, c in results if c is not None) if all(c for *_, c in results) \
            else "missing runs"
        for a, b, c in results:
            rows.append({"finding": finding, "comparison": f"{a} > {b}",
                         "difference_pp": c.difference * 100 if c else math.nan,
                         "se_pp": c.se * 100 if c else math.nan,
                         "z": c.z if c else math.nan,
                         "comparison_verdict": c.verdict if c else "missing runs",
                         "finding_verdict": verdict})
    return pd.DataFrame(rows)


def finding_lines(findings: pd.DataFrame) -> list[str]:
    """One sentence per finding: "keypoints help: holds (model3 > model1 by 12.3 +- 2.1 pp, ...)"."""
    lines = []
    for finding, part in findings.groupby("finding", sort=False):
        detail = ", ".join(f"{r.comparison} by {r.difference_pp:+.1f} ± {r.se_pp:.1f} pp"
                           if math.isfinite(r.difference_pp) else f"{r.comparison}: missing runs"
                           for r in part.itertuples())
        lines.append(f"{finding}: **{part['finding_verdict'].iloc[0]}** ({detail})")
    return lines
