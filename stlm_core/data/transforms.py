"""Resize / normalise transforms and the torch ``Dataset`` adapter.

Images become float32 tensors (3, S, S) normalised with a named mean/std; masks become float32 (1, S, S) in {0, 1}
(bilinear resize, then a pixel is anomalous when the resized value is >= 0.5, as STLM's and DeSTSeg's readers do;
APRIL-GAN's reader keeps > 0.5 instead, see :func:`resize_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stlm_core.data.sample import Sample

# Mean / std on the 0-1 scale. SAM's are [123.675, 116.28, 103.53] / [58.395, 57.12, 57.375] on 0-255 (= ImageNet).
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "sam": ((123.675 / 255, 116.28 / 255, 103.53 / 255), (58.395 / 255, 57.12 / 255, 57.375 / 255)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def resize_image(image: np.ndarray, size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """Resize uint8 (H, W, 3) to (size, size, 3) with PIL (bilinear by default; aspect ratio not kept)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), resample))


def resize_mask(mask: np.ndarray, size: int, *, include_half: bool = True) -> np.ndarray:
    """Resize a {0,1} mask (H, W) to (size, size): bilinear, then binarise at 0.5.

    ``include_half``: a pixel whose resized value is exactly 0.5 (a 2x2 block half inside the defect, common at
    a boundary when the size halves) counts as anomalous (``>= 0.5``, the official STLM and DeSTSeg readers:
    ``where(mask < 0.5, 0, 1)``); ``False`` gives ``> 0.5`` (APRIL-GAN's reader, used for CLIP-SAM).
    """
    if mask.shape == (size, size):
        return mask.astype(np.uint8)
    resized = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.BILINEAR))
    return (resized >= 0.5 if include_half else resized > 0.5).astype(np.uint8)


def to_tensor(image: np.ndarray, normalisation: str = "imagenet", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (H, W, 3) -> (3, H, W) of ``dtype`` (float32 by default), scaled to [0, 1] then normalised."""
    mean, std = NORMALISATIONS[normalisation]
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).to(dtype) / 255.0
    return (x - torch.tensor(mean, dtype=dtype).view(3, 1, 1)) / torch.tensor(std, dtype=dtype).view(3, 1, 1)


@dataclass
class ResizeNormalise:
    """Resize image and mask to ``size`` x ``size`` and normalise the image."""

    size: int
    normalisation: str = "imagenet"

    def __call__(self, sample: Sample) -> dict:
        image = resize_image(sample.image, self.size)
        mask = resize_mask(sample.mask, self.size)
        return {
            "image": to_tensor(image, self.normalisation),
            "mask": torch.from_numpy(mask).float().unsqueeze(0),
            "label": int(sample.label),
            "defect": sample.defect,
            "path": str(sample.path),
        }


class TorchAnomalyDataset(Dataset):
    """Adapts a sequence of samples (e.g. :class:`AnomalyDataset`) to ``torch.utils.data.Dataset``."""

    def __init__(self, samples: Sequence[Sample], transform: ResizeNormalise):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.samples[index])
