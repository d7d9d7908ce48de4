"""Student encoders: MobileSAM's TinyViT with its neck, at any input size that is a multiple of 16.

``mobile_sam``'s ``TinyViT.forward_features`` hard-codes a 64x64 token grid (1024 px inputs); the wrapper here
runs the library's own submodules (``patch_embed``, ``layers``, ``neck``) and reshapes the tokens to the actual
grid instead, so the same class serves the ``paper`` (1024 px -> 64x64), ``cpu`` (256 px -> 16x16) and
``smoke`` profiles. The unused classifier (``norm_head``, ``head``) is removed, so a paper-profile student
has 5,743,892 parameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from stlm_core.modeling.mobilesam import TinyViT


def build_tinyvit(*, image_size: int, dims: tuple[int, ...], depths: tuple[int, ...], heads: tuple[int, ...],
                  windows: tuple[int, ...]) -> TinyViT:
    """A randomly initialised TinyViT as MobileSAM builds it (``vit_t`` = dims 64/128/160/320, depths 2/2/6/2,
    heads 2/4/5/10, windows 7/7/14/7)."""
    return TinyViT(
        img_size=image_size, in_chans=3, num_classes=0,
        embed_dims=list(dims), depths=list(depths), num_heads=list(heads), window_sizes=list(windows),
        mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
        mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8,
    )


class StudentEncoder(nn.Module):
    """TinyViT body + MobileSAM neck: (B, 3, S, S) SAM-normalised image -> (B, 256, S/16, S/16)."""

    def __init__(self, *, image_size: int, dims: tuple[int, ...], depths: tuple[int, ...],
                 heads: tuple[int, ...], windows: tuple[int, ...]):
        super().__init__()
        self.encoder = build_tinyvit(image_size=image_size, dims=dims, depths=depths, heads=heads, windows=windows)
        # The classifier is never used by STLM ; drop it from the parameter count.
        self.encoder.norm_head = nn.Identity()
        self.encoder.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.encoder
        x = body.patch_embed(x)
        for layer in body.layers:
            x = layer(x)
        batch, tokens, channels = x.shape
        side = math.isqrt(tokens)
        x = x.reshape(batch, side, side, channels).permute(0, 3, 1, 2)
        return body.neck(x)


def load_mobilesam_encoder(student: StudentEncoder, checkpoint: Path) -> None:
    """Initialise a student from the ``image_encoder.*`` weights of ``mobile_sam.pt`` (an ablation)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    prefix = "image_encoder."
    encoder_state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix) and not k[len(prefix):].startswith(("head.", "norm_head."))}
    missing, unexpected = student.encoder.load_state_dict(encoder_state, strict=False)
    if unexpected or missing:
        from stlm_core.errors import WeightsError

        raise WeightsError(
            f"{checkpoint} does not match the student architecture (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); MobileSAM-encoder initialisation needs the paper-sized TinyViT-5M."
        )
