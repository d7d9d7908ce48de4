"""SAM's mask decoder used without prompts as a two-level feature extractor (spec section 2).

The official code edits MobileSAM's ``mask_decoder.py`` by hand; here :class:`FeatureDecoder` wraps an
unmodified ``MaskDecoder`` and ``PromptEncoder`` (from ``mobile_sam`` or ``segment_anything``, same design)
and calls their submodules:

- tokens = the decoder's 5 output tokens (1 IoU + 4 mask); no sparse prompt (B x 0 x 256);
- dense prompt = the learned ``no_mask_embed`` broadcast to the embedding grid; image PE = the prompt
  encoder's random-Fourier dense encoding;
- ``feature1`` = the image embedding entering the decoder (before the dense prompt is added);
- ``feature2`` = the transformer's updated image tokens (after both blocks and the final token-to-image
  attention), reshaped to (B, 256, h, w).

The mask upscaling, hypernetwork MLPs and IoU head are kept (they are part of the checkpoint and of the
parameter count) but not called. The official code loops over the batch, one image per decoder call; the
transformer's attention is per sample, so one batched call computes the same features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stlm_core.stlm.config import StlmConfig


class FeatureDecoder(nn.Module):
    """Prompt-free SAM decoder: image embedding (B, C, h, w) -> [feature1, feature2], each (B, C, h, w)."""

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module, use_decoder: bool = True):
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.use_decoder = use_decoder

    def forward(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        if not self.use_decoder:
            return [embedding]
        batch, channels, height, width = embedding.shape
        expected = tuple(self.prompt_encoder.image_embedding_size)
        if (height, width) != expected:
            raise ValueError(f"embedding grid {(height, width)} != the prompt encoder's {expected}")
        decoder = self.mask_decoder
        tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(batch, -1, -1)
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        image_pe = self.prompt_encoder.get_dense_pe()
        _, keys = decoder.transformer(embedding + dense, image_pe, tokens)
        feature2 = keys.transpose(1, 2).reshape(batch, channels, height, width)
        return [embedding, feature2]


def build_mobilesam_decoder(config: StlmConfig, checkpoint: Path | None = None) -> FeatureDecoder:
    """The shared, trainable student decoder: MobileSAM's prompt encoder + mask decoder.

    Built from ``mobile_sam``'s classes for ``config.embed_size`` (the dense positional encoding is
    resolution-free, so the official weights fit any grid). With ``checkpoint`` (``mobile_sam.pt``) the
    ``prompt_encoder.*`` and ``mask_decoder.*`` weights are loaded; MobileSAM's own TinyViT encoder in that
    file is not used (as in the official code). Without it they are randomly initialised.
    """
    from stlm_core.stlm.mobilesam import MaskDecoder, PromptEncoder, TwoWayTransformer

    prompt_encoder, mask_decoder = _sam_heads(config, PromptEncoder, MaskDecoder, TwoWayTransformer)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        for prefix, module in (("prompt_encoder.", prompt_encoder), ("mask_decoder.", mask_decoder)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return FeatureDecoder(prompt_encoder, mask_decoder, config.use_decoder)


def _sam_heads(config: StlmConfig, prompt_cls, decoder_cls, transformer_cls) -> tuple[nn.Module, nn.Module]:
    """(PromptEncoder, MaskDecoder) as SAM's builders make them, for ``config``'s embedding grid."""
    side = config.embed_size
    prompt_encoder = prompt_cls(embed_dim=256, image_embedding_size=(side, side),
                                input_image_size=(config.image_size, config.image_size), mask_in_chans=16)
    mask_decoder = decoder_cls(
        num_multimask_outputs=3,
        transformer=transformer_cls(depth=config.decoder_depth, embedding_dim=256,
                                    mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_heads),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder
