"""DistributedDataParallel for the classifier (torchrun; see ``core.distributed``).

DDP has one entry, ``forward``; the classifier trains through two: ``forward`` (images
through the backbone) and ``forward_head`` (cached features). ``_Dispatch`` routes DDP's
call to either, so both synchronise gradients. The losses are already weighted by
``core.distributed.global_mean``, so DDP's plain average is the single-process gradient.
"""
from __future__ import annotations

import torch
from torch import nn

from core import distributed as D


class _Dispatch(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, head: bool, x: torch.Tensor, keypoints: torch.Tensor | None) -> torch.Tensor:
        return self.model.forward_head(x, keypoints) if head else self.model(x, keypoints)


class DDPClassifier(nn.parallel.DistributedDataParallel):
    """DDP over a PoseClassifier with the classifier's own interface (``cfg``,
    ``forward``, ``forward_head``, ``trainable_state_dict``), so the trainer takes it
    unchanged. Frozen parameters are not synchronised (DDP skips parameters without grad)."""

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__(_Dispatch(model), device_ids=[device] if device.type == "cuda" else None,
                         forward_sync_buffers=False)  # BN buffers of a frozen backbone never change

    @property
    def cfg(self):
        return self.module.model.cfg

    def forward_head(self, features: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(True, features, keypoints)

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(False, images, keypoints)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.model.trainable_state_dict()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DDPClassifier under torchrun when it trains anything, else itself."""
    if not D.is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    return DDPClassifier(model, device)
