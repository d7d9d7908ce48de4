"""STLM settings per profile (DESIGN.md section 2) and the paper's ablation switches.

One flat, JSON-able dataclass, :class:`StlmConfig`; :func:`profile_config` returns the defaults of a profile
with overrides applied. The dict form (:meth:`StlmConfig.to_dict`) is what ``config.json`` stores and what
the run-directory id is hashed from.

Profiles
--------
``paper``  the official code's settings (spec sections 2-3): 1024 px, SAM ViT-H teacher, TinyViT-5M students
           (MobileSAM neck, 64x64 embeddings), the MobileSAM mask decoder (official ``mobile_sam.pt``), FA head
           with 512 input channels, 200 epochs at batch 2, evaluation at 1024 px. Needs the official weights.
``cpu``    minutes per category on a 2-core laptop, random weights unless official ones are present:
           256 px inputs; the *same* TinyViT-5M students, neck, mask decoder and FA head as ``paper`` (so the
           parameter counts are the paper's), with 16x16 embeddings (the decoder's dense positional encoding is
           built for 16x16); the teacher is a reduced SAM ``ImageEncoderViT`` (embed 192, depth 4, 3 heads,
           window 8, global attention at blocks 1 and 3; about 2.6M parameters, about 20 ms per image) with a
           standard SAM prompt encoder and mask decoder, randomly initialised, because ViT-H at 1024 px costs
           minutes per image on a CPU. Training length is a fixed number of optimisation steps
           (``train_steps`` = 200 at batch 2, as in the paper; the epoch count follows from the training-set
           size, 10 epochs for the 40-image synthetic categories). Measured on 2 shared cores with
           ``--threads 1``: 1.7 s per step with a core to itself, 350-660 s per 200 steps under a load of 3-7 (use
           ``--threads 1`` when other jobs share the cores: two threads on one free core were 2-5x slower).
           200 steps is about 1 % of the paper's schedule; with the random teacher the FA map does not
           learn the synthetic defects in that budget (see the STLM chapter / issue 4 note).
           Evaluation at 256 px.
``smoke``  tiny configurations of the same classes for tests and the default book: 128 px, a 3-stage TinyViT
           (dims 16/32/64, one block each; TinyViT's stride-1 last merge only exists for 4-stage models with
           320+ channels, a 3-stage model reaches the same stride 16), a 2-block 32-dim ViT teacher, a 1-block
           decoder transformer, a 32-channel FA head, 2 epochs.

The reported model is always the **final** epoch: there is no model selection on test data (spec 6.3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from stlm_core.config import check_profile
from stlm_core.errors import StlmError

TEACHERS = ("vit_h", "vit_l", "vit_b", "reduced", "tiny")
STUDENT_INITS = ("random", "mobilesam")
ROTATIONS = ("none", "slight", "full", "auto")

# DeSTSeg's disjoint per-category rotation lists (spec 3 and 6.4: the official lists overlap for
# transistor, screw and grid, which would be trained three times; we follow DeSTSeg and record it).
ROTATION_NONE = ("capsule", "metal_nut", "pill", "toothbrush", "transistor")
ROTATION_SLIGHT = ("wood", "zipper", "cable")
ROTATION_FULL = ("bottle", "grid", "hazelnut", "leather", "tile", "carpet", "screw")


def rotation_for_category(category: str) -> str:
    """``"none"`` | ``"slight"`` (+-5 degrees) | ``"full"`` (multiples of 90 degrees + +-5) for an MVTec category.

    Categories outside MVTec AD (VisA, DAGM, synthetic, ...) get ``"none"`` (spec 6.8).
    """
    if category in ROTATION_SLIGHT:
        return "slight"
    if category in ROTATION_FULL:
        return "full"
    return "none"


@dataclass
class StlmConfig:
    """Every setting of an STLM run (architecture, ablations, training, evaluation)."""

    profile: str = "paper"
    # -- input / evaluation -------------------------------------------------------------------------------
    image_size: int = 1024          # model input (square, pixels)
    eval_size: int = 1024           # resolution of the evaluated maps and masks
    top_k: int = 100                # image score = mean of the top-k pixels of the map
    # -- teacher ------------------------------------------------------------------------------------------
    teacher: str = "vit_h"          # vit_h | vit_l | vit_b (sam_model_registry, 1024 px) | reduced | tiny
    teacher_embed_dim: int = 192    # reduced / tiny teachers only
    teacher_depth: int = 4
    teacher_heads: int = 3
    teacher_window: int = 8
    teacher_global_attn: tuple[int, ...] = (1, 3)
    # -- students (TinyViT + MobileSAM neck) ----------------------------------------------------------------
    student_dims: tuple[int, ...] = (64, 128, 160, 320)
    student_depths: tuple[int, ...] = (2, 2, 6, 2)
    student_heads: tuple[int, ...] = (2, 4, 5, 10)
    student_windows: tuple[int, ...] = (7, 7, 14, 7)
    student_init: str = "random"    # random (official code) | mobilesam (MobileSAM's pretrained encoder)
    # -- shared decoder ------------------------------------------------------------------------------------
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    decoder_weights: bool = True    # load mobile_sam.pt into the shared decoder when the file is present
    # -- FA head -------------------------------------------------------------------------------------------
    fa_channels: int = 128
    # -- ablations -----------------------------------------------------------------------------------------
    use_plain: bool = True          # False: the frozen teacher takes the plain stream's place (DeSTSeg-like)
    use_decoder: bool = True        # False: encoder level only (one feature level)
    use_fa: bool = True             # False: no FA head, no segmentation loss; the w/o-FA map is the output
    # -- pseudo anomalies and augmentation -----------------------------------------------------------------
    aug_prob: float = 0.5
    beta_max: float = 0.8
    perlin_max_exp: int = 6         # Perlin scales 2**0 .. 2**(perlin_max_exp - 1)
    perlin_threshold: float = 0.5
    rotation: str = "auto"          # auto = per-category list (DeSTSeg's disjoint lists)
    # -- optimisation --------------------------------------------------------------------------------------
    epochs: int = 200
    train_steps: int | None = None  # if set, epochs = ceil(train_steps / steps per epoch)
    batch_size: int = 2
    lr_tlm: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_fa_res: float = 0.1
    lr_fa_head: float = 0.01
    fa_momentum: float = 0.9
    fa_weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if self.teacher not in TEACHERS:
            raise StlmError(f"unknown teacher {self.teacher!r}; use one of: {', '.join(TEACHERS)}.")
        if self.student_init not in STUDENT_INITS:
            raise StlmError(f"unknown student init {self.student_init!r}; use one of: {', '.join(STUDENT_INITS)}.")
        if self.rotation not in ROTATIONS:
            raise StlmError(f"unknown rotation {self.rotation!r}; use one of: {', '.join(ROTATIONS)}.")
        if self.image_size % 16:
            raise StlmError(f"image_size must be a multiple of 16 (the feature stride), got {self.image_size}.")
        if self.teacher in ("vit_h", "vit_l", "vit_b") and self.image_size != 1024:
            raise StlmError(
                f"teacher {self.teacher} is built by segment_anything.sam_model_registry for 1024 px inputs; "
                f"image_size is {self.image_size}. Use --teacher reduced (or tiny) at other sizes."
            )
        for name in ("teacher_global_attn", "student_dims", "student_depths", "student_heads",
                     "student_windows", "betas"):
            setattr(self, name, tuple(getattr(self, name)))

    @property
    def embed_size(self) -> int:
        """Side of the 256-channel feature maps (image_size / 16)."""
        return self.image_size // 16

    @property
    def n_levels(self) -> int:
        return 2 if self.use_decoder else 1

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f, v in ((f, getattr(self, f.name)) for f in dataclasses.fields(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StlmConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise StlmError(f"unknown STLM config keys {sorted(unknown)}; the run was made by another version.")
        return cls(**data)


_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(
        image_size=256, eval_size=256, teacher="reduced",
        teacher_embed_dim=192, teacher_depth=4, teacher_heads=3, teacher_window=8, teacher_global_attn=(1, 3),
        epochs=1, train_steps=200, batch_size=2,
    ),
    "smoke": dict(
        image_size=128, eval_size=128, teacher="tiny",
        teacher_embed_dim=32, teacher_depth=2, teacher_heads=2, teacher_window=4, teacher_global_attn=(1,),
        student_dims=(16, 32, 64), student_depths=(1, 1, 1), student_heads=(1, 2, 2), student_windows=(4, 4, 4),
        decoder_depth=1, decoder_mlp_dim=256, decoder_heads=8, fa_channels=32,
        epochs=2, batch_size=2,
    ),
}


def profile_config(profile: str, **overrides: Any) -> StlmConfig:
    """Defaults of ``profile`` with ``overrides`` (``None`` values are ignored) applied."""
    check_profile(profile)
    values = dict(_PROFILE_DEFAULTS[profile])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["profile"] = profile
    return StlmConfig(**values)


def resolved_rotation(config: StlmConfig, category: str) -> str:
    return rotation_for_category(category) if config.rotation == "auto" else config.rotation


__all__ = ["StlmConfig", "profile_config", "rotation_for_category", "resolved_rotation", "TEACHERS",
           "STUDENT_INITS"]
