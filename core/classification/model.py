"""ResNet-50 + keypoint head: the seven variants of "An Exploration of ResNet Fine-tuning
for Fitness Pose Classification", plus "beyond the paper" presets.

    image (B,3,S,S) -> backbone (ResNet-50 up to the pool) -> (B,2048)   forward_features
    (B,2048) -> fc (the backbone's own 2048->F) -> (B,F)
             [+ keypoints (B,17,3) flattened -> (B,F+51)] -> head -> (B,C)  forward_head

F is the width of the backbone's own final layer: 1000 for ImageNet's (its classes), one
logit per pretraining class for the PoseLab backbone (``ClassifierConfig.fc_dim``, read
from the weights with ``fc_width``).

Everything a paper preset trains sits after the pooled 2048-d features, so those can be
computed once per image and cached (``core.classification.features``); ``forward_head`` is exactly what
training on cached features runs.

The model never moves itself to a device and writes no state in ``forward``: a loaded
model is shared by every dashboard session.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import torch
from torch import nn
from torchvision.models import resnet50

from core.errors import RunError

FEATURE_DIM = 2048      # ResNet-50 pooled features
FC_DIM = 1000           # ImageNet ResNet-50's own fc outputs (its classes)
NUM_KEYPOINTS = 17      # COCO-17, each (x/W, y/H, visible)


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 15                 # set from the dataset's classes at train time
    train_fc: bool = False                # the backbone's own fc (2048->fc_dim) trainable ("final layer")
    use_keypoints: bool = False           # concatenate the 17x3 keypoints to the fc's outputs
    fc_dim: int = FC_DIM                  # the backbone fc's outputs (fc_width of its weights)
    # how keypoints enter the head: "crop" = x, y as fractions of the crop (runs before
    # "centred" existed); "centred" = (x - 0.5) * 4, i.e. about -2..2 around the crop's centre
    keypoint_input: Literal["crop", "centred"] = "crop"
    hidden: tuple[int, ...] = ()          # head hidden widths; () = one Linear to num_classes
    dropout: float = 0.5                  # after each hidden ReLU (paper: 0.5)
    unfreeze: Literal["none", "layer4", "all"] = "none"  # backbone part trained too (beyond paper)
    trained: bool = True                  # False = baseline: random head, evaluated only (chance)

    @property
    def feature_cacheable(self) -> bool:
        """True when nothing before the pooled features trains: cached features are exact."""
        return self.unfreeze == "none"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown classifier config fields {sorted(unknown)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(int(h) for h in d["hidden"])
        return cls(**d)


# Keypoints enter centred: as fractions of the crop (0..1, std ~0.15) they are small
# beside the fc's outputs, and a linear head needs many more Adam steps to weigh them
# (on the demo's data, keypoints alone through one linear layer: 37 % test accuracy after
# 60 epochs as fractions, 71 % centred; 2026-12-03). A fixed affine map: the same model class.
_KP = dict(use_keypoints=True, keypoint_input="centred")
_M5 = dict(train_fc=True, **_KP, hidden=(512,))
_M6 = dict(train_fc=True, **_KP, hidden=(512, 256))

# The paper's seven, in its order, then its "future work" (unfrozen backbone).
PRESETS: dict[str, ClassifierConfig] = {
    "baseline": ClassifierConfig(trained=False),
    "model1": ClassifierConfig(),
    "model2": ClassifierConfig(train_fc=True),
    "model3": ClassifierConfig(**_KP),
    "model4": ClassifierConfig(train_fc=True, **_KP),
    "model5": ClassifierConfig(**_M5),
    "model6": ClassifierConfig(**_M6),
    "model4-layer4": ClassifierConfig(train_fc=True, **_KP, unfreeze="layer4"),
    "model4-full": ClassifierConfig(train_fc=True, **_KP, unfreeze="all"),
    "model6-layer4": ClassifierConfig(**_M6, unfreeze="layer4"),
    "model6-full": ClassifierConfig(**_M6, unfreeze="all"),
}
PAPER_PRESETS: tuple[str, ...] = ("baseline", "model1", "model2", "model3", "model4", "model5", "model6")
# Test accuracy (%) the paper reports on InfiniteForm with ImageNet weights.
PAPER_TEST_ACC: dict[str, float] = {
    "baseline": 6.90, "model1": 19.30, "model2": 31.98, "model3": 59.00,
    "model4": 96.55, "model5": 64.50, "model6": 79.31,
}


def get_preset(name: str, num_classes: int, fc_dim: int = FC_DIM) -> ClassifierConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], num_classes=num_classes, fc_dim=fc_dim)


def fc_width(state: dict[str, torch.Tensor]) -> int:
    """Outputs of a torchvision ResNet-50 state dict's own fc (1000 for ImageNet's)."""
    return int(state["fc.weight"].shape[0])


def _make_head(in_dim: int, hidden: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, num_classes))
    return nn.Sequential(*layers)


class PoseClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig, *, init_backbone: bool = True):
        """``init_backbone=False`` leaves backbone + fc on the meta device (no memory, no
        init time) for a caller that loads real weights next (``build_classifier``)."""
        super().__init__()
        self.cfg = cfg
        if init_backbone:
            resnet = resnet50(weights=None)
        else:
            with torch.device("meta"):
                resnet = resnet50(weights=None)
        self.fc = resnet.fc                  # the backbone's own fc, kept (frozen or trained)
        if cfg.fc_dim != self.fc.out_features:
            with torch.device(self.fc.weight.device):
                self.fc = nn.Linear(FEATURE_DIM, cfg.fc_dim)
        resnet.fc = nn.Identity()
        self.backbone = resnet               # up to the pooled features: (B,3,S,S) -> (B,2048)
        in_dim = cfg.fc_dim + (NUM_KEYPOINTS * 3 if cfg.use_keypoints else 0)
        self.head = _make_head(in_dim, cfg.hidden, cfg.num_classes, cfg.dropout)
        set_trainable(self, cfg)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)                                   # (B, 2048)

    def forward_head(self, features: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        x = self.fc(features)                                          # (B, F)
        if self.cfg.use_keypoints:
            if keypoints is None:
                raise ValueError("this preset uses keypoints: pass keypoints (B,17,3)")
            x = torch.cat([x, head_keypoints(keypoints, self.cfg.keypoint_input).flatten(1).to(x.dtype)],
                          dim=1)                                       # (B, F + 51)
        return self.head(x)                                            # (B, C)

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(images), keypoints)

    def train(self, mode: bool = True) -> "PoseClassifier":
        # A frozen BatchNorm must keep using its running statistics: in train mode it would
        # normalise by batch statistics (and update the running ones), so "frozen" features
        # would drift and differ from the cached, eval-mode ones.
        super().train(mode)
        if mode:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.weight.requires_grad:
                    m.eval()
        return self

    def trainable_prefixes(self) -> tuple[str, ...]:
        """state_dict key prefixes of the parts this preset trains (what a run saves)."""
        return trainable_prefixes(self.cfg)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters *and buffers* (BN statistics of an unfrozen layer4) that training changes."""
        prefixes = self.trainable_prefixes()
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}


def head_keypoints(keypoints: torch.Tensor, how: str) -> torch.Tensor:
    """(B, 17, 3) model-input keypoints (x, y in the crop, mask) as the head takes them
    (``ClassifierConfig.keypoint_input``); missing keypoints stay 0 either way."""
    if how == "crop":
        return keypoints
    if how != "centred":
        raise ValueError(f"unknown keypoint input {how!r}")
    mask = keypoints[..., 2:3]
    return torch.cat([(keypoints[..., :2] - 0.5) * 4 * mask, mask], dim=-1)


def trainable_prefixes(cfg: ClassifierConfig) -> tuple[str, ...]:
    prefixes = ["head."]
    if cfg.train_fc:
        prefixes.append("fc.")
    if cfg.unfreeze == "layer4":
        prefixes.append("backbone.layer4.")
    elif cfg.unfreeze == "all":
        prefixes.append("backbone.")
    return tuple(prefixes)


def set_trainable(model: PoseClassifier, cfg: ClassifierConfig) -> None:
    """The one place freezing happens: requires_grad from the config's trainable parts."""
    prefixes = trainable_prefixes(cfg)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefixes))


def build_classifier(cfg: ClassifierConfig, backbone_weights: dict[str, torch.Tensor] | None = None,
                     ) -> PoseClassifier:
    """A PoseClassifier on CPU. ``backbone_weights``: a torchvision ResNet-50 state dict
    (``fc.*`` included) as returned by ``core.classification.backbones.resolve_backbone``; None keeps
    torchvision's random init (tests)."""
    # Skipping ResNet-50's random init when real weights follow saves ~0.5 s per model
    # (a grid builds one per preset).
    model = PoseClassifier(cfg, init_backbone=backbone_weights is None)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model


def load_backbone_weights(model: PoseClassifier, state: dict[str, torch.Tensor]) -> None:
    """Load a torchvision ResNet-50 state dict into ``backbone`` + ``fc`` (strict).

    Tensors are copied: models built from one shared state (a grid) must not share
    storage, since presets that unfreeze layers update them in place."""
    fc = {k[3:]: v.clone() for k, v in state.items() if k.startswith("fc.")}
    body = {k: v.clone() for k, v in state.items() if not k.startswith("fc.")}
    if fc_width(state) != model.cfg.fc_dim:
        raise RunError(None, f"the backbone's fc has {fc_width(state)} outputs, the preset's config "
                             f"{model.cfg.fc_dim} (build it with get_preset(..., fc_dim=fc_width(weights)))")
    model.backbone.load_state_dict(body, strict=True, assign=True)
    model.fc.load_state_dict(fc, strict=True, assign=True)
    set_trainable(model, model.cfg)      # assign=True replaced the parameters


def load_trained_weights(model: PoseClassifier, state: dict[str, torch.Tensor], path) -> None:
    """Load a run's trained parts; any key or shape mismatch is one RunError naming the file."""
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = (f"missing {missing[:3]}" if missing else "") + \
               (f"{' and ' if missing else ''}unexpected {extra[:3]}" if extra else "")
        raise RunError(path, f"weights do not match the preset ({what})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise RunError(path, f"weights do not match the preset: {k} has shape "
                                 f"{tuple(v.shape)}, the model needs {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)
