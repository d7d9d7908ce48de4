"""Frozen SAM for PPG features and CPS (spec 1.2-1.3), built through segment-anything.

Real checkpoints at 1024 px go through ``segment_anything.sam_model_registry[arch](checkpoint=...)``. Other sizes
and the tiny ``smoke`` architecture are constructed from ``Sam`` / ``ImageEncoderViT`` / ``PromptEncoder`` /
``MaskDecoder`` / ``TwoWayTransformer`` directly (``_build_sam`` fixes 1024 px and a 64x64 embedding); a
checkpoint is then loaded with ``torch.load(weights_only=True)`` after resizing the absolute and relative
position embeddings to the new grid (bicubic / linear, as SAM's own ``get_rel_pos`` interpolates).

Prompts to the predictor are in original-image pixels (x, y); SAM rescales them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from stlm_core.clipsam.clip_localiser import AUTO, identity, resolve_checkpoint
from stlm_core.clipsam.config import SAM_ARCHS, ClipSamConfig
from stlm_core.errors import WeightsError


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


def construct_sam(arch: str, image_size: int) -> torch.nn.Module:
    """A randomly initialised ``Sam`` of a named encoder architecture at ``image_size`` (multiple of 16)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    spec = dict(SAM_ARCHS[arch])
    prompt_dim = spec.pop("prompt_dim", 256)
    mlp_dim = spec.pop("decoder_mlp_dim", 2048)
    heads = spec.pop("decoder_heads", 8)
    grid = image_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=16, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            qkv_bias=True, use_rel_pos=True, out_chans=prompt_dim,
            embed_dim=spec["embed_dim"], depth=spec["depth"], num_heads=spec["num_heads"],
            global_attn_indexes=tuple(spec["global_attn_indexes"]), window_size=spec["window_size"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid), input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=mlp_dim, num_heads=heads),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _resize_state_dict(state: dict, model: torch.nn.Module) -> dict:
    """Resize position embeddings of a checkpoint to ``model``'s grid (other shapes must match)."""
    target = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        if key not in target or target[key].shape == value.shape:
            continue
        if key.endswith("pos_embed"):                            # (1, g, g, C)
            g = target[key].shape[1:3]
            out[key] = F.interpolate(value.permute(0, 3, 1, 2), size=tuple(g), mode="bicubic",
                                     align_corners=False).permute(0, 2, 3, 1)
        elif "rel_pos" in key:                                   # (2g-1, head_dim)
            out[key] = F.interpolate(value.T[None], size=target[key].shape[0], mode="linear")[0].T
        elif "positional_encoding_gaussian_matrix" not in key:
            raise WeightsError(f"checkpoint tensor {key} has shape {tuple(value.shape)}, model expects "
                               f"{tuple(target[key].shape)}: wrong SAM architecture for this file.")
    return out


def build_sam(
    config: ClipSamConfig, checkpoint: str | Path | None = AUTO, device: str | torch.device = "cpu"
) -> SamBackend:
    """Build the frozen SAM of ``config`` and its predictor.

    ``checkpoint``: ``"auto"`` = registry lookup (``config.sam_weights``; ``paper`` requires it), a file, or
    ``None`` for random weights (recorded as ``random-init``).
    """
    from segment_anything import SamPredictor, sam_model_registry

    path = resolve_checkpoint(config.sam_weights, config.profile, checkpoint)
    arch, size = config.sam_arch, config.sam_image_size
    if arch in sam_model_registry and size == 1024:
        model = sam_model_registry[arch](checkpoint=str(path) if path is not None else None)
    else:
        model = construct_sam(arch, size)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            try:
                model.load_state_dict(_resize_state_dict(state, model))
            except RuntimeError as exc:
                raise WeightsError(f"could not load SAM weights {path} into a {arch} model: {exc}") from exc
    model = model.to(device).eval().requires_grad_(False)
    return SamBackend(model, SamPredictor(model), identity(config.sam_weights, f"sam-{arch}", path))
