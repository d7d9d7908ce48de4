"""SAM parts built from segment-anything's (or MobileSAM's) own classes: the one SAM builder of the package.

``segment_anything.build_sam`` fixes 1024 px inputs and a 64x64 embedding, so reduced sizes are constructed from
``ImageEncoderViT`` / ``PromptEncoder`` / ``MaskDecoder`` / ``TwoWayTransformer`` directly, with the same
keyword arguments SAM's builders use. :func:`resize_sam_state_dict` fits an official checkpoint to another input
size (absolute position embeddings bicubic, relative ones linear, as SAM's own ``get_rel_pos`` interpolates).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stlm_core.errors import WeightsError

PIXEL_MEAN = (123.675, 116.28, 103.53)  # SAM's (= ImageNet's) normalisation on 0-255
PIXEL_STD = (58.395, 57.12, 57.375)

# segment-anything image-encoder architectures (as in ``segment_anything.build_sam``) and a tiny one for tests.
SAM_ENCODERS: dict[str, dict[str, Any]] = {
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31), "window_size": 14},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23), "window_size": 14},
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11), "window_size": 14},
    "smoke": {"embed_dim": 48, "depth": 2, "num_heads": 3, "global_attn_indexes": (1,), "window_size": 4},
}
# Decoder sizes of the tiny ``smoke`` SAM (all other architectures use SAM's standard decoder).
SMOKE_DECODER: dict[str, int] = {"prompt_dim": 64, "decoder_mlp_dim": 256, "decoder_heads": 2}


def build_image_encoder(*, image_size: int, embed_dim: int, depth: int, num_heads: int, window_size: int,
                        global_attn_indexes: tuple[int, ...], out_chans: int = 256) -> nn.Module:
    """A randomly initialised SAM ``ImageEncoderViT``: (B, 3, S, S) -> (B, out_chans, S/16, S/16)."""
    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
        img_size=image_size, patch_size=16, in_chans=3, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        mlp_ratio=4.0, out_chans=out_chans, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True, window_size=window_size, global_attn_indexes=tuple(global_attn_indexes),
    )


def build_sam_heads(*, image_size: int, prompt_dim: int = 256, decoder_depth: int = 2, decoder_mlp_dim: int = 2048,
                    decoder_heads: int = 8, library: str = "segment_anything") -> tuple[nn.Module, nn.Module]:
    """(PromptEncoder, MaskDecoder) as SAM's builders make them, for an ``image_size`` input (grid = size / 16).

    ``library``: ``"segment_anything"`` or ``"mobile_sam"`` (the same design; MobileSAM's checkpoint loads into
    the latter's classes).
    """
    if library == "mobile_sam":
        from stlm_core.modeling.mobilesam import MaskDecoder, PromptEncoder, TwoWayTransformer
    elif library == "segment_anything":
        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
    else:
        raise ValueError(f"unknown SAM library {library!r}")
    grid = image_size // 16
    prompt_encoder = PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                   input_image_size=(image_size, image_size), mask_in_chans=16)
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=decoder_depth, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim,
                                      num_heads=decoder_heads),
        transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def construct_sam(arch: str, image_size: int) -> nn.Module:
    """A randomly initialised ``Sam`` of a named encoder architecture (:data:`SAM_ENCODERS`) at ``image_size``."""
    from segment_anything.modeling import Sam

    if arch not in SAM_ENCODERS:
        raise ValueError(f"unknown SAM architecture {arch!r}; known: {', '.join(SAM_ENCODERS)}")
    decoder = SMOKE_DECODER if arch == "smoke" else {}
    prompt_dim = decoder.get("prompt_dim", 256)
    prompt_encoder, mask_decoder = build_sam_heads(
        image_size=image_size, prompt_dim=prompt_dim, decoder_mlp_dim=decoder.get("decoder_mlp_dim", 2048),
        decoder_heads=decoder.get("decoder_heads", 8))
    sam = Sam(image_encoder=build_image_encoder(image_size=image_size, out_chans=prompt_dim, **SAM_ENCODERS[arch]),
              prompt_encoder=prompt_encoder, mask_decoder=mask_decoder,
              pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))
    return sam.eval()


def resize_sam_state_dict(state: dict, model: nn.Module) -> dict:
    """Resize the position embeddings of a SAM checkpoint to ``model``'s grid (other shapes must match)."""
    target = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        if key not in target or target[key].shape == value.shape:
            continue
        if key.endswith("pos_embed"):                            # (1, g, g, C)
            grid = target[key].shape[1:3]
            out[key] = F.interpolate(value.permute(0, 3, 1, 2), size=tuple(grid), mode="bicubic",
                                     align_corners=False).permute(0, 2, 3, 1)
        elif "rel_pos" in key:                                   # (2g-1, head_dim)
            out[key] = F.interpolate(value.T[None], size=target[key].shape[0], mode="linear")[0].T
        elif "positional_encoding_gaussian_matrix" not in key:
            raise WeightsError(f"checkpoint tensor {key} has shape {tuple(value.shape)}, the model expects "
                               f"{tuple(target[key].shape)}: wrong SAM architecture for this file.")
    return out


def load_sam_checkpoint(model: nn.Module, path, *, prefixes: tuple[str, ...] = ()) -> None:
    """Load a SAM-style checkpoint into ``model`` (``prefixes``: keep only these sub-modules, prefix stripped
    when a single one is given), resizing position embeddings; a mismatch raises :class:`WeightsError`."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if prefixes:
        state = {k: v for k, v in state.items() if k.startswith(prefixes)}
    try:
        model.load_state_dict(resize_sam_state_dict(state, model))
    except RuntimeError as exc:
        raise WeightsError(f"could not load {path} into {type(model).__name__}: {exc}") from exc
