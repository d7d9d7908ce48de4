"""A frozen SAM teacher: image encoder + its own prompt-free decoder features (STLM's teacher).

The teacher is in eval mode with ``requires_grad=False`` whatever ``.train()`` is asked; :meth:`SamTeacher.forward`
runs under ``torch.no_grad`` and returns detached features.
"""

from __future__ import annotations

import torch
from torch import nn

from stlm_core.modeling.feature_decoder import FeatureDecoder


class SamTeacher(nn.Module):
    """(B, 3, S, S) SAM-normalised image -> [embedding, decoder feature], each (B, 256, S/16, S/16)."""

    def __init__(self, *, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module,
                 use_decoder: bool = True):
        super().__init__()
        self.image_encoder = image_encoder
        self.features = FeatureDecoder(prompt_encoder=prompt_encoder, mask_decoder=mask_decoder,
                                       use_decoder=use_decoder)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "SamTeacher":
        return super().train(False)  # always frozen

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.detach() for f in self.features(self.image_encoder(x))]
