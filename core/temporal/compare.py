"""Comparing temporal runs across seeds: one row per variant (an arch on one dataset with
one config, ``core.runs.seed_groups``), the mean over its seeds and a 95 % interval of
each headline (``core.stats.estimate``: across seeds, or with one seed the binomial
interval of the test keypoints PCK counts), beside the motion metrics' means.

The identity baseline of a variant's seeds is averaged the same way, so a model and the
estimator it refines are read off one row.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from core.metrics import PCK_THRESHOLDS
from core.runs import seed_groups
from core.stats import estimate

MOTION = ("pck_auc", "accel_error", "velocity_error", "jitter", "swapped_frames")


def _values(group, key: str) -> np.ndarray:
    return np.array([float(v) if isinstance(v := (r.metrics or {}).get(key), (int, float)) else math.nan
                     for r in group])


def seed_table(runs: Sequence) -> pd.DataFrame:
    """One row per temporal variant, newest first: arch, seeds, per threshold the test PCK
    (mean, low, high) and the identity's mean, the interval's method, and the motion
    metrics' means for the run and for identity (PCK in fractions; motion in heatmap px
    per frame (squared))."""
    rows = []
    for group in seed_groups([r for r in runs if r.kind == "temporal"]):
        r0 = group[0]
        row = {"arch": r0.name, "seeds": len(group), "data": r0.info.data.root,
               "init_from": r0.info.init_from or "", "run_ids": [r.id for r in group]}
        counted = _values(group, "num_test_keypoints")
        for a in PCK_THRESHOLDS:
            e = estimate(_values(group, f"test_pck@{a:g}"), counted=float(counted[0]) if np.isfinite(counted[0]) else None)
            row.update({f"pck@{a:g}": e.mean, f"pck@{a:g}_low": e.low, f"pck@{a:g}_high": e.high,
                        f"identity_pck@{a:g}": float(np.nanmean(_values(group, f"identity_pck@{a:g}")))})
            row["interval"] = e.method
        for m in MOTION:
            for prefix in ("test", "identity"):
                v = _values(group, f"{prefix}_{m}")
                row[f"{'' if prefix == 'test' else 'identity_'}{m}"] = float(np.nanmean(v)) if np.isfinite(v).any() \
                    else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def motion_table(runs: Sequence, labels: dict[str, str]) -> pd.DataFrame:
    """What PCK cannot see, one row per run (``labels``: run id -> row label) and one for
    the identity baseline of the first run's test windows: PCK-AUC over 0..0.2, velocity
    and acceleration error, jitter (the output's mean acceleration; ``gt`` the true
    motion's), the share of frames whose left and right are swapped, and the PCK with
    those swaps forgiven. Runs written before these metrics existed give NaN."""
    def row(m: dict, prefix: str) -> dict:
        out = {"pck_auc": m.get(f"{prefix}_pck_auc"), "velocity_error": m.get(f"{prefix}_velocity_error"),
               "accel_error": m.get(f"{prefix}_accel_error"), "jitter": m.get(f"{prefix}_jitter"),
               "gt_jitter": m.get("gt_jitter"), "swapped_frames": m.get(f"{prefix}_swapped_frames")}
        out.update({f"swap_tolerant_pck@{a:g}": m.get(f"{prefix}_swap_tolerant_pck@{a:g}") for a in PCK_THRESHOLDS})
        return {k: float(v) if isinstance(v, (int, float)) else math.nan for k, v in out.items()}
    rows = {labels.get(r.id, r.id): row(r.metrics or {}, "test") for r in runs}
    if runs:
        rows["identity (estimator)"] = row(runs[0].metrics or {}, "identity")
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "run"
    return out
