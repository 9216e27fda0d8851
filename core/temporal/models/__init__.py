"""Temporal refinement models: a window (B, T=5, K=25, H, W) of the estimator's
heatmaps in, refined heatmaps (B, T, K, H, W) out -- or, for DeciWatch, refined
coordinates (B, T, K, 2) in heatmap pixels. ``model.output_kind`` says which
("heatmaps" | "coords").

One small config dataclass per model (in its file); ``ARCHS`` maps the names used on the
command line to their default config. A run stores ``config_to_dict(cfg)`` under
run.json ``config.model`` and the weights in weights.safetensors, which is all
``core.models.load_model`` needs.
"""
from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any, Callable

from torch import nn

from core.errors import RunError
from core.temporal.models.conv3d import Conv3DConfig, Conv3DRefiner
from core.temporal.models.convlstm import BiConvLSTMRefiner, ConvLSTMConfig
from core.temporal.models.deciwatch import DeciWatch, DeciWatchConfig, deciwatch_loss, deciwatch_loss_terms
from core.temporal.models.identity import Identity, IdentityConfig

TemporalConfig = Conv3DConfig | DeciWatchConfig | ConvLSTMConfig | IdentityConfig

# Command-line name -> default config. The four trainable models first, identity last.
ARCHS: dict[str, Callable[[], TemporalConfig]] = {
    "conv3d": Conv3DConfig,
    "deciwatch": DeciWatchConfig,
    "convlstm-sum": lambda: ConvLSTMConfig(merge="sum"),
    "convlstm-concat": lambda: ConvLSTMConfig(merge="concat"),
    "identity": IdentityConfig,
}
TRAINABLE_ARCHS: tuple[str, ...] = ("conv3d", "deciwatch", "convlstm-sum", "convlstm-concat")

_MODELS: dict[type, Callable[[Any], nn.Module]] = {
    Conv3DConfig: Conv3DRefiner,
    DeciWatchConfig: DeciWatch,
    ConvLSTMConfig: BiConvLSTMRefiner,
    IdentityConfig: Identity,
}


def make_config(arch: str, **overrides: Any) -> TemporalConfig:
    """The default config of ``arch`` with ``overrides`` (unknown names raise ValueError)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown temporal arch {arch!r}; choose from {', '.join(ARCHS)}")
    cfg = ARCHS[arch]()
    known = {f.name for f in fields(cfg)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"{arch} has no config field(s) {sorted(bad)}")
    return replace(cfg, **overrides)


def config_to_dict(cfg: TemporalConfig) -> dict[str, Any]:
    return {"arch": cfg.arch, **asdict(cfg)}


def config_from_dict(d: dict[str, Any]) -> TemporalConfig:
    d = dict(d)
    arch = d.pop("arch", None)
    if arch not in ARCHS:
        raise ValueError(f"unknown temporal arch {arch!r}")
    cfg = make_config(arch, **d)
    if cfg.arch != arch:
        raise ValueError(f"config says arch {arch!r} but its fields make {cfg.arch!r}")
    return cfg


def build_temporal(cfg: TemporalConfig) -> nn.Module:
    """A fresh model for ``cfg`` (on CPU; move it with ``.to(device)``)."""
    return _MODELS[type(cfg)](cfg)




def load_state(model: nn.Module, state: dict, source) -> None:
    """Strict load that reports a mismatch as a RunError naming ``source``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise RunError(source, f"weights do not fit this {model.cfg.arch} model ({first})") from None


__all__ = ["Identity", "ARCHS", "TRAINABLE_ARCHS", "TemporalConfig", "Conv3DConfig", "DeciWatchConfig",
           "ConvLSTMConfig", "IdentityConfig", "make_config", "config_to_dict", "config_from_dict",
           "build_temporal", "load_state", "deciwatch_loss",
           "deciwatch_loss_terms"]
