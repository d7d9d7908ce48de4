"""SAM's mask decoder used without prompts as a two-level feature extractor (STLM's shared decoder).

The official STLM code edits MobileSAM's ``mask_decoder.py`` by hand; here :class:`FeatureDecoder` wraps an
unmodified ``MaskDecoder`` and ``PromptEncoder`` (from ``mobile_sam`` or ``segment_anything``, same design) and calls
their submodules:

- tokens = the decoder's 5 output tokens (1 IoU + 4 mask); no sparse prompt;
- dense prompt = the learned ``no_mask_embed`` broadcast to the embedding grid; image PE = the prompt encoder's
  random-Fourier dense encoding;
- ``feature1`` = the image embedding entering the decoder (before the dense prompt is added);
- ``feature2`` = the transformer's updated image tokens (after both blocks and the final token-to-image attention),
  reshaped to (B, 256, h, w).

The mask upscaling, hypernetwork MLPs and IoU head are kept (they are part of the checkpoint and of the parameter
count) but not called. The official code loops over the batch, one image per decoder call; the transformer's
attention is per sample, so one batched call computes the same features (tested).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureDecoder(nn.Module):
    """Prompt-free SAM decoder: image embedding (B, C, h, w) -> [feature1, feature2], each (B, C, h, w).

    With ``use_decoder=False`` only ``[feature1]`` (the embedding itself) is returned.
    """

    def __init__(self, *, prompt_encoder: nn.Module, mask_decoder: nn.Module, use_decoder: bool = True):
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
