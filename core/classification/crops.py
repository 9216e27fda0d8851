"""Crops of InfiniteForm-layout samples (``core.classification.dataset``) as model input.

``crop_box``: a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the person's
bbox (default margin 0.15: 15 % of the bbox's longer side added on each side). Where the
square fits in the image it is shifted inside it (the whole person stays in the crop, no
padding needed); where it does not fit it stays centred and the outside is padded with
the ImageNet mean colour (0 after normalisation). The crop is never stretched, so body
proportions are kept. Keypoints enter the model in the same crop: x/W, y/H plus a mask.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import ColorJitter

from core.classification.dataset import DEFAULT_MARGIN, Sample
from core.errors import DataError
from core.images import IMAGENET_MEAN_RGB8, image_to_tensor, open_image


def crop_box(bbox: Sequence[float], image_size: Sequence[int],
             margin: float = DEFAULT_MARGIN) -> tuple[int, int, int, int]:
    """Square pixel box (x0, y0, x1, y1) around a COCO bbox (x, y, w, h).

    Side = ceil(max(w, h) * (1 + 2 * margin)). Shifted inside the image when it fits,
    otherwise centred on the bbox and running past the borders (``load_crop`` pads).
    """
    x, y, w, h = (float(v) for v in bbox)
    width, height = (int(v) for v in image_size)
    side = max(1, math.ceil(max(w, h) * (1 + 2 * margin) - 1e-9))
    x0 = _place(x + w / 2, side, width)
    y0 = _place(y + h / 2, side, height)
    return (x0, y0, x0 + side, y0 + side)


def _place(centre: float, side: int, extent: int) -> int:
    start = math.floor(centre - side / 2 + 0.5)
    if side <= extent:
        start = min(max(start, 0), extent - side)
    return start


def load_crop(sample: Sample, margin: float = DEFAULT_MARGIN,
              image: Image.Image | None = None) -> Image.Image:
    """The sample's square crop (``crop_box``) as an RGB image at source resolution.

    ``image``: the already decoded scene, to avoid decoding it again. Raises
    ``DataError`` naming the file when it cannot be decoded or its size is not the
    annotation's.
    """
    img = image if image is not None else open_image(sample.image_path)
    if img.size != tuple(sample.image_size):
        raise DataError(sample.image_path, f"image is {img.size[0]}x{img.size[1]} pixels but "
                                           f"the annotation says {sample.image_size[0]}x"
                                           f"{sample.image_size[1]}")
    return crop_padded(img, crop_box(sample.bbox, img.size, margin))


def crop_padded(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """``img.crop(box)``, but the part of ``box`` outside the image is filled with the
    ImageNet mean colour (what the normalised model input reads as zero), not black."""
    x0, y0, x1, y1 = box
    width, height = img.size
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return img.crop(box)
    canvas = Image.new("RGB", (x1 - x0, y1 - y0), IMAGENET_MEAN_RGB8)
    inner = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    if inner[2] > inner[0] and inner[3] > inner[1]:
        canvas.paste(img.crop(inner), (inner[0] - x0, inner[1] - y0))
    return canvas


def keypoints_in_crop(sample: Sample, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(17, 3) float32: x, y as fractions of the crop's side (0 = left/top edge,
    1 = right/bottom edge; multiply by the displayed size to draw), and the COCO
    visibility 0/1/2. Keypoints with visibility 0 have x = y = 0."""
    return keypoints_in_box(sample.keypoints, crop_box(sample.bbox, sample.image_size, margin))


def keypoints_in_box(keypoints, box: tuple[int, int, int, int]) -> np.ndarray:
    """``keypoints_in_crop`` for any (17, 3) keypoints in image pixels and a square crop
    ``box`` (x0, y0, x1, y1) of that image (an upload's, for instance)."""
    x0, y0, x1, _ = box
    side = float(x1 - x0)
    kp = np.array(keypoints, dtype=np.float32)            # (17, 3) copy
    present = kp[:, 2] > 0
    kp[:, 0] = np.where(present, (kp[:, 0] - x0) / side, 0.0)
    kp[:, 1] = np.where(present, (kp[:, 1] - y0) / side, 0.0)
    return kp


def scene_keypoints(sample: Sample, kp: np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The inverse of ``keypoints_in_crop``: (17, 3) crop-convention keypoints -> scene
    pixels (visibility kept; x = y = 0 where it is 0)."""
    x0, y0, x1, _ = crop_box(sample.bbox, sample.image_size, margin)
    side = float(x1 - x0)
    out = np.array(kp, dtype=np.float32)
    present = out[:, 2] > 0
    out[:, 0] = np.where(present, x0 + out[:, 0] * side, 0.0)
    out[:, 1] = np.where(present, y0 + out[:, 1] * side, 0.0)
    return out


def model_keypoints(sample: Sample, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The classifier's keypoint input, (17, 3) float32: x/W, y/H in the crop, and a
    mask (1.0 when visibility > 0, i.e. in frame, occluded or not; else 0.0 with
    x = y = 0). Occluded keypoints count as present: their location is known."""
    return model_input(keypoints_in_crop(sample, margin))


def model_input(keypoints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) crop-convention keypoints (``keypoints_in_crop``) -> the model's input:
    x, y, and the mask (1 where the visibility is > 0); a float32 copy."""
    out = np.array(keypoints, np.float32)
    out[..., 2] = (out[..., 2] > 0).astype(np.float32)
    return out


# ----------------------------------------------------------------------------- dataset

class PoseDataset(torch.utils.data.Dataset):
    """Crops of samples as network input.

    Item: ``dict(image=FloatTensor (3, S, S) ImageNet-normalised, label=int64 tensor,
    keypoints=FloatTensor (17, 3) [x/W, y/H, mask] in the crop, index=int)``.

    ``augment`` adds a small colour jitter only. No horizontal flip: it would turn
    "sideplank_right" into a left side plank while the label (and pose_variation)
    stayed "right". No geometric jitter either: keypoints are a model input too.

    The last decoded scene is kept (one image per worker process): the people of a
    scene are neighbours in a PoseIndex split, so a sequential pass (the feature
    cache's) decodes each multi-person scene once instead of once per person.
    """

    def __init__(self, samples: Iterable[Sample], *, image_size: int = 224,
                 margin: float = DEFAULT_MARGIN, augment: bool = False):
        self.samples = list(samples)
        self.image_size = image_size
        self.margin = margin
        self.augment = augment
        self._jitter = None
        self._last: tuple[Path, Image.Image] | None = None   # (path, decoded scene)
        if augment:
            self._jitter = ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        last = self._last
        if last is not None and last[0] == sample.image_path:
            scene = last[1]
        else:
            scene = open_image(sample.image_path)
            self._last = (sample.image_path, scene)
        crop = load_crop(sample, self.margin, image=scene)
        if self._jitter is not None:
            crop = self._jitter(crop)
        return {
            "image": image_to_tensor(crop, self.image_size),                  # (3, S, S)
            "label": torch.tensor(sample.label, dtype=torch.int64),
            "keypoints": torch.from_numpy(model_keypoints(sample, self.margin)),  # (17, 3)
            "index": index,
        }
