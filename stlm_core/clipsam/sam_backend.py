"""Frozen SAM for PPG features and CPS, built through segment-anything.

Real checkpoints at 1024 px go through ``segment_anything.sam_model_registry[arch](checkpoint=...)``. Other sizes
and the tiny ``smoke`` architecture are constructed from ``Sam`` / ``ImageEncoderViT`` / ``PromptEncoder`` /
``MaskDecoder`` / ``TwoWayTransformer`` directly (``_build_sam`` fixes 1024 px and a 64x64 embedding); a
checkpoint is then loaded with ``torch.load(weights_only=True)`` after resizing the absolute and relative
position embeddings to the new grid (bicubic / linear, as SAM's own ``get_rel_pos`` interpolates).

Prompts to the predictor are in original-image pixels (x, y); SAM rescales them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.modeling.sam import construct_sam, load_sam_checkpoint
from stlm_core.weights import AUTO, resolve_weights, weights_identity


@dataclass
class SamBackend:
    """A frozen ``Sam`` with its ``SamPredictor`` and the identity of the loaded weights."""

    model: torch.nn.Module
    predictor: object
    weights: str

    @torch.no_grad()
    def set_image(self, image) -> torch.Tensor:
        """Encode one uint8 (H, W, 3) RGB image; returns the embedding (1, C, h, w)."""
        self.predictor.set_image(image, image_format="RGB")
        return self.predictor.features

    @torch.no_grad()
    def features_to_image(self, maps: torch.Tensor) -> torch.Tensor:
        """Upsample maps on the embedding grid (B, C, h, w) to the current image's original size (B, C, H, W),
        removing SAM's padding (``Sam.postprocess_masks``)."""
        p = self.predictor
        return self.model.postprocess_masks(maps, p.input_size, p.original_size)

    @torch.no_grad()
    def mask_to_grid(self, mask: torch.Tensor) -> torch.Tensor:
        """A {0,1} mask (H, W) of the current image -> (h, w) fraction of each embedding cell it covers (bilinear
        after SAM's resize + pad, as PerSAM does for its target mask)."""
        p = self.predictor
        size = self.model.image_encoder.img_size
        h, w = p.input_size
        m = F.interpolate(mask[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)
        m = F.pad(m, (0, size - w, 0, size - h))
        grid = p.features.shape[-2:]
        return F.interpolate(m, size=grid, mode="bilinear", align_corners=False)[0, 0]


def build_sam(
    config: ClipSamConfig, checkpoint: str | Path | None = AUTO, device: str | torch.device = "cpu"
) -> SamBackend:
    """Build the frozen SAM of ``config`` and its predictor.

    ``checkpoint``: ``"auto"`` = registry lookup (``config.sam_weights``; ``paper`` requires it), a file, or
    ``None`` for random weights (recorded as ``random-init``).
    """
    from segment_anything import SamPredictor, sam_model_registry

    path = resolve_weights(config.sam_weights, required=config.profile == "paper", path=checkpoint,
                           purpose=f"the SAM stage ({config.profile} profile)")
    arch, size = config.sam_arch, config.sam_image_size
    if arch in sam_model_registry and size == 1024:
        model = sam_model_registry[arch](checkpoint=None)
    else:
        model = construct_sam(arch, size)
    if path is not None:
        load_sam_checkpoint(model, path)
    model = model.to(device).eval().requires_grad_(False)
    return SamBackend(model, SamPredictor(model), weights_identity(config.sam_weights or f"sam-{arch}", path))
