"""Intervals and verdicts for comparing runs: pure numpy/scipy, shapes documented here once.

What a table of runs shows for one variant (a preset, a temporal model) is an ``Estimate``:
the mean over its seeds and a 95 % interval,

* across seeds (two or more): the t interval of the per-seed values, ``mean +- t * sd /
  sqrt(n)``; it says how much the result moves when only the seed changes (the head's
  init, the batch order, the validation split);
* with one seed: the Wilson interval of the test set's binomial proportion (``k`` correct
  of ``n``), i.e. how much the number would move on another test set of the same size.
  It ignores the seed's spread, so the tables label it as such.

Whether variant A beats variant B (``compare``) is read from the difference of their
means and its standard error, which adds the two parts of the noise:

* the test samples, paired: both were scored on the same samples, so the standard error
  of the mean of the per-sample differences ``mean_s(correct_A) - mean_s(correct_B)``
  (each sample's correctness averaged over seeds) removes what the two share;
* the seeds: the per-seed values' variance over their count, for each variant (0 with
  one seed).

A difference larger than ``z = 2`` standard errors in the claimed direction *holds*, in the
other direction it *does not hold*, anything between is *inconclusive*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

LEVEL = 0.95
Z_VERDICT = 2.0
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Estimate:
    """A variant's mean over its seeds and a 95 % interval (see the module docstring)."""
    mean: float
    low: float
    high: float
    seeds: int
    method: str          # "across 3 seeds" | "binomial, test set (1 seed)" | "one seed"

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        """``"89.2 [87.1, 91.0]"`` (times ``scale``)."""
        if not math.isfinite(self.mean):
            return "n/a"
        f = f"{{:.{digits}f}}"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f.format(self.mean * scale)
        return f"{f.format(self.mean * scale)} [{f.format(self.low * scale)}, {f.format(self.high * scale)}]"


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of the t interval over ``values`` (n,); NaN bounds for n < 2."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(_st.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def wilson_interval(correct: float, n: float, level: float = LEVEL) -> tuple[float, float, float]:
    """(proportion, low, high): the Wilson score interval of ``correct`` of ``n``."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    p = correct / n
    z = float(_st.norm.ppf(0.5 + level / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def estimate(per_seed, *, counted: float | None = None, proportion: bool = True) -> Estimate:
    """An ``Estimate`` from the per-seed values (S,); with one seed and ``counted`` (the
    test samples behind a proportion) the binomial interval. A proportion's interval is
    clipped to [0, 1]."""
    v = np.asarray(per_seed, np.float64)
    v = v[np.isfinite(v)]
    if len(v) >= 2:
        mean, lo, hi = t_interval(v)
        if proportion:
            lo, hi = max(0.0, lo), min(1.0, hi)
        return Estimate(mean, lo, hi, len(v), f"across {len(v)} seeds")
    if len(v) == 1 and counted:
        p, lo, hi = wilson_interval(v[0] * counted, counted)
        return Estimate(p, lo, hi, 1, "binomial, test set (1 seed)")
    return Estimate(float(v[0]) if len(v) else math.nan, math.nan, math.nan, len(v), "one seed")


@dataclass(frozen=True)
class Comparison:
    """``compare``'s result: A - B, its standard error and the verdict on "A > B"."""
    difference: float
    se: float
    verdict: str

    @property
    def z(self) -> float:
        return self.difference / self.se if self.se > 0 else math.copysign(math.inf, self.difference)


def compare(correct_a, correct_b, *, z: float = Z_VERDICT) -> Comparison:
    """Does A beat B? ``correct_a`` (S_a, N) and ``correct_b`` (S_b, N): per seed, the
    per-sample correctness (0/1 or a fraction) on the SAME N test samples, in the same
    order. The difference of the seed-mean accuracies, its standard error (paired over the
    samples, plus each side's seed variance) and the verdict (module docstring)."""
    a, b = np.atleast_2d(np.asarray(correct_a, np.float64)), np.atleast_2d(np.asarray(correct_b, np.float64))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"both need the same test samples: got {a.shape[1]} and {b.shape[1]}")
    per_sample = a.mean(0) - b.mean(0)                                # (N,)
    n = len(per_sample)
    se_test2 = per_sample.var(ddof=1) / n if n > 1 else 0.0
    se_seed2 = sum(x.mean(1).var(ddof=1) / len(x) for x in (a, b) if len(x) > 1)
    diff, se = float(per_sample.mean()), math.sqrt(se_test2 + se_seed2)
    if diff > z * se:
        verdict = HOLDS
    elif diff < -z * se:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    return Comparison(diff, se, verdict)


def combine(verdicts) -> str:
    """A finding made of several comparisons: holds when all hold, does not hold when any
    is reversed, else inconclusive."""
    verdicts = list(verdicts)
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == DOES_NOT_HOLD for v in verdicts):
        return DOES_NOT_HOLD
    return INCONCLUSIVE
