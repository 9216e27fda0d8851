"""DistributedDataParallel for the temporal models (torchrun; see ``core.distributed``).

DeciWatch trains through ``forward_train`` (both of its stages' outputs) and predicts
through ``forward``; ``_Dispatch`` routes DDP's single entry to either, so both
synchronise gradients. The losses are weighted by ``core.distributed.global_mean``, so
DDP's plain average is the single-process gradient.
"""
from __future__ import annotations

import torch
from torch import nn

from core import distributed as D


class _Dispatch(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, train_entry: bool, x: torch.Tensor):
        return self.model.forward_train(x) if train_entry else self.model(x)


class DDPTemporal(nn.parallel.DistributedDataParallel):
    """DDP over a temporal model with its call interface (``model(x)``,
    ``model.forward_train(x)``)."""

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__(_Dispatch(model), device_ids=[device] if device.type == "cuda" else None,
                         forward_sync_buffers=False)   # only constant buffers (positions, interp)

    def forward_train(self, x: torch.Tensor):
        return super().forward(True, x)

    def forward(self, x: torch.Tensor):
        return super().forward(False, x)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DDPTemporal under torchrun when it trains anything, else itself."""
    if not D.is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    return DDPTemporal(model, device)
