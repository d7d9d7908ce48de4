"""The frozen SAM teacher: image encoder + its own prompt-free decoder features (spec section 2).

``vit_h`` / ``vit_l`` / ``vit_b`` are built by ``segment_anything.sam_model_registry`` (1024 px, 64x64
embedding) and load the official checkpoint when given. ``reduced`` / ``tiny`` are smaller SAM image
encoders (``segment_anything.modeling.ImageEncoderViT``) for the ``cpu`` / ``smoke`` profiles, always randomly
initialised, with a standard SAM prompt encoder and mask decoder for the profile's embedding grid.

The teacher is in eval mode with ``requires_grad=False``; :meth:`SamTeacher.forward` runs under
``torch.no_grad`` and returns detached features.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from stlm_core.stlm.config import StlmConfig
from stlm_core.stlm.decoder import FeatureDecoder, _sam_heads


class SamTeacher(nn.Module):
    """(B, 3, S, S) SAM-normalised image -> [embedding, decoder feature], each (B, 256, S/16, S/16)."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module,
                 use_decoder: bool = True):
        super().__init__()
        self.image_encoder = image_encoder
        self.features = FeatureDecoder(prompt_encoder, mask_decoder, use_decoder)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "SamTeacher":
        return super().train(False)  # always frozen

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.detach() for f in self.features(self.image_encoder(x))]


def build_teacher(config: StlmConfig, checkpoint: Path | None = None) -> SamTeacher:
    """Build the teacher named by ``config.teacher``; ``checkpoint`` only for the registry variants."""
    import segment_anything
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

    if config.teacher in ("vit_h", "vit_l", "vit_b"):
        sam = segment_anything.sam_model_registry[config.teacher](checkpoint=None)
        if checkpoint is not None:
            sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        return SamTeacher(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, config.use_decoder)
    encoder = ImageEncoderViT(
        img_size=config.image_size, patch_size=16, in_chans=3, embed_dim=config.teacher_embed_dim,
        depth=config.teacher_depth, num_heads=config.teacher_heads, mlp_ratio=4.0, out_chans=256,
        qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        window_size=config.teacher_window, global_attn_indexes=tuple(config.teacher_global_attn),
    )
    prompt_encoder, mask_decoder = _sam_heads(config, PromptEncoder, MaskDecoder, TwoWayTransformer)
    return SamTeacher(encoder, prompt_encoder, mask_decoder, config.use_decoder)
