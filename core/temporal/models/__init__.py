"""Temporal refinement models, registered in one place: ``ARCHS``.

A model takes a window (B, T=5, K=25, H, W) of the estimator's heatmaps and returns refined
heatmaps (B, T, K, H, W) or, for coordinate models (DeciWatch, the classical filters),
refined coordinates (B, T, K, 2) in heatmap pixels; ``model.output_kind`` says which
("heatmaps" | "coords"). Each model has a small config dataclass in its file (with an
``arch`` name); an ``Arch`` record says how to build it, its loss, and whether it is a
learned model or a baseline (identity and the filters, which are evaluated, not trained;
the filters' parameters are chosen on the validation split from ``candidates``).

Adding a model is one new file (config, module, an ``Arch``) and one line in ``ARCHS``;
the command line, the demo and the pages read the names from here. A run stores
``config_to_dict(cfg)`` under run.json ``config.model`` and the weights in
weights.safetensors, which is all ``model_from_run`` needs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable

from torch import nn

from core.errors import RunError
from core.runs import RUN_JSON, WEIGHTS, Run, load_weights
from core.temporal.models import filters
from core.temporal.models.conv3d import Conv3DConfig, Conv3DRefiner
from core.temporal.models.convlstm import BiConvLSTMRefiner, ConvLSTMConfig
from core.temporal.models.deciwatch import DeciWatch, DeciWatchConfig, deciwatch_loss
from core.temporal.models.identity import Identity, IdentityConfig, identity_loss
from core.temporal.models.losses import LossFn, coordinate_l1, heatmap_mse


@dataclass(frozen=True)
class Arch:
    """One temporal model as the rest of PoseLab knows it."""
    name: str                                   # --arch, the run's name
    config: Callable[[], Any]                   # its default config (a dataclass with ``arch``)
    build: Callable[[Any], nn.Module]           # config -> a fresh model on the CPU
    loss: LossFn                                # training loss (and the evaluation loss of baselines)
    summary: str                                # one line for --help and the pages
    baseline: bool = False                      # identity and the filters: evaluated, never trained
    candidates: Callable[[int], list[dict]] | None = None   # frames -> config overrides tried on validation
    recipe: dict[str, Any] = field(default_factory=dict)    # its own training defaults (TrainConfig fields)


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("conv3d", Conv3DConfig, Conv3DRefiner, heatmap_mse,
         "3-D convolutions over time and the heatmap, a residual correction of the input"),
    # DeciWatch regresses coordinates with two transformers from scratch: it needs many more
    # (smaller) steps than the residual heatmap models, and its validation PCK wanders
    # before it climbs, so an early stop after 6 flat epochs ended it before it learned.
    Arch("deciwatch", DeciWatchConfig, DeciWatch, deciwatch_loss,
         "DeciWatch: sampled frames denoised by a transformer, interpolated, recovered by another",
         recipe={"epochs": 100, "early_stop_patience": 25, "plateau_patience": 5}),
    Arch("convlstm-sum", lambda: ConvLSTMConfig(merge="sum"), BiConvLSTMRefiner, heatmap_mse,
         "bidirectional ConvLSTM, the two directions' states summed"),
    Arch("convlstm-concat", lambda: ConvLSTMConfig(merge="concat"), BiConvLSTMRefiner, heatmap_mse,
         "bidirectional ConvLSTM, the two directions' states concatenated"),
    Arch("identity", IdentityConfig, Identity, identity_loss,
         "the estimator's own heatmaps: the baseline every table compares to", baseline=True),
    Arch("one-euro", filters.OneEuroConfig, filters.OneEuro, coordinate_l1,
         "One-Euro filter (speed-adaptive low-pass, causal), tuned on validation", True,
         filters.one_euro_candidates),
    Arch("savgol", filters.SavGolConfig, filters.build_savgol, coordinate_l1,
         "Savitzky-Golay polynomial smoothing, tuned on validation", True, filters.savgol_candidates),
    Arch("gaussian", filters.GaussianConfig, filters.build_gaussian, coordinate_l1,
         "Gaussian smoothing over time, tuned on validation", True, filters.gaussian_candidates),
    Arch("interp", filters.InterpConfig, filters.build_interp, coordinate_l1,
         "linear interpolation between every interval-th frame, tuned on validation", True,
         filters.interp_candidates),
)}
LEARNED: tuple[str, ...] = tuple(n for n, a in ARCHS.items() if not a.baseline)
BASELINES: tuple[str, ...] = tuple(n for n, a in ARCHS.items() if a.baseline)


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise RunError(None, f"unknown temporal arch {name!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[name]


def make_config(arch: str, **overrides: Any):
    """The default config of ``arch`` with ``overrides`` (unknown names raise ValueError)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown temporal arch {arch!r}; choose from {', '.join(ARCHS)}")
    cfg = ARCHS[arch].config()
    known = {f.name for f in fields(cfg)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"{arch} has no config field(s) {sorted(bad)}")
    return replace(cfg, **overrides)


def config_fields(arch: str) -> set[str]:
    """The names of ``arch``'s config fields (what ``--model KEY=VALUE`` may set)."""
    return {f.name for f in fields(get_arch(arch).config())}


def config_to_dict(cfg) -> dict[str, Any]:
    return {"arch": cfg.arch, **asdict(cfg)}


# Config fields added after runs were written, with the value those runs were trained with.
_ADDED_FIELDS: dict[str, dict[str, Any]] = {"deciwatch": {"recover_weight": 1.0, "augment": False, "keep_sides": False}}


def config_from_dict(d: dict[str, Any]):
    d = dict(d)
    arch = d.pop("arch", None)
    if arch not in ARCHS:
        raise ValueError(f"unknown temporal arch {arch!r}")
    cfg = make_config(arch, **{**_ADDED_FIELDS.get(arch, {}), **d})
    if cfg.arch != arch:
        raise ValueError(f"config says arch {arch!r} but its fields make {cfg.arch!r}")
    return cfg


def build_temporal(cfg) -> nn.Module:
    """A fresh model for ``cfg`` (on CPU; move it with ``.to(device)``)."""
    return ARCHS[cfg.arch].build(cfg)


def load_state(model: nn.Module, state: dict, source) -> None:
    """Strict load that reports a mismatch as a RunError naming ``source``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise RunError(source, f"weights do not fit this {model.cfg.arch} model ({first})") from None


def model_from_run(run: Run) -> nn.Module:
    """A finished temporal run's model, rebuilt from its folder alone (CPU, train mode)."""
    try:
        cfg = config_from_dict(run.info.config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(run.path / RUN_JSON, f"no usable temporal model config ({e})") from None
    model = build_temporal(cfg)
    if any(p.numel() for p in model.parameters()):   # the baselines have nothing to load
        load_state(model, load_weights(run.path / WEIGHTS), run.path / WEIGHTS)
    return model


__all__ = ["ARCHS", "Arch", "LEARNED", "BASELINES", "get_arch", "make_config", "config_fields", "config_to_dict",
           "config_from_dict", "build_temporal", "load_state", "model_from_run", "Identity", "DeciWatch"]
