"""A finished run's model, rebuilt from its folder alone: ``load_model(run)``, for any kind.

run.json's ``config.model`` rebuilds the architecture and ``weights.safetensors`` holds
what the run trained; each task knows its own (``core.classification.backbones.
classifier_from_run``, whose frozen backbone comes from the source its run.json records,
and ``core.temporal.models.model_from_run``). Models come back in eval mode on the device
asked for; nothing here unpickles anything.
"""
from __future__ import annotations

import torch
from torch import nn

from core.classification.backbones import classifier_from_run
from core.errors import RunError
from core.runs import Run, load_run
from core.temporal.models import model_from_run

_FROM_RUN = {"classifier": classifier_from_run, "temporal": model_from_run}


def load_model(run: Run | str, device: str | torch.device = "cpu") -> nn.Module:
    """The run's model with its trained weights, in eval mode, on ``device``."""
    if not isinstance(run, Run):
        run = load_run(run, require_finished=True)
    if run.kind not in _FROM_RUN:
        raise RunError(run.path, f"unknown run kind {run.kind!r}")
    return _FROM_RUN[run.kind](run).to(device).eval()
