"""A finished run's model, rebuilt from its folder alone: ``load_model(run)``.

run.json's ``config.model`` rebuilds the architecture (``ClassifierConfig`` or a temporal
config); ``weights.safetensors`` holds what the run trained; a classifier's frozen backbone
comes from the source its run.json records (``core.classification.backbones``). Models
come back in eval mode on the device asked for; nothing here unpickles anything.
"""
from __future__ import annotations

import torch
from torch import nn

from core.classification.backbones import load_backbone
from core.classification.model import ClassifierConfig, PoseClassifier, build_classifier, load_trained_weights
from core.errors import RunError
from core.runs import RUN_JSON, WEIGHTS, Run, load_run, load_weights
from core.temporal.models import build_temporal, config_from_dict, load_state


def classifier_from_run(run: Run) -> PoseClassifier:
    try:
        cfg = ClassifierConfig.from_dict(run.info.config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(run.path / RUN_JSON, f"no usable classifier config ({e})") from None
    if run.info.backbone is None:
        raise RunError(run.path / RUN_JSON, "records no backbone")
    backbone = load_backbone(run.info.backbone.to_dict(), runs_dir=run.path.parent, where=run.path / RUN_JSON)
    model = build_classifier(cfg, backbone)
    load_trained_weights(model, load_weights(run.path / WEIGHTS), run.path / WEIGHTS)
    return model


def temporal_from_run(run: Run) -> nn.Module:
    try:
        cfg = config_from_dict(run.info.config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(run.path / RUN_JSON, f"no usable temporal model config ({e})") from None
    model = build_temporal(cfg)
    if any(p.numel() for p in model.parameters()):   # identity has nothing to load
        load_state(model, load_weights(run.path / WEIGHTS), run.path / WEIGHTS)
    return model


def load_model(run: Run | str, device: str | torch.device = "cpu") -> nn.Module:
    """The run's model with its trained weights, in eval mode, on ``device``."""
    if not isinstance(run, Run):
        run = load_run(run, require_finished=True)
    if run.kind == "classifier":
        model = classifier_from_run(run)
    elif run.kind == "temporal":
        model = temporal_from_run(run)
    else:
        raise RunError(run.path, f"unknown run kind {run.kind!r}")
    return model.to(device).eval()
