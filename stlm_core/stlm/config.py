"""STLM settings: :class:`StlmConfig`, one frozen dataclass; values per profile in ``profiles.yaml`` beside it.

Build one with ``StlmConfig.from_profile("cpu", seed=1)``. Profiles:

``paper``  the official code's settings: 1024 px, SAM ViT-H teacher, TinyViT-5M students with MobileSAM's neck
           (64x64 embeddings), MobileSAM's mask decoder, FA head with 512 input channels, 200 epochs at batch 2,
           evaluation at 1024 px. Needs the official weights.
``cpu``    minutes per category on a 2-core laptop (see ``profiles.yaml`` for each change and why).
``smoke``  tiny configurations of the same classes, for tests.

The reported model is always the **final** epoch: there is no model selection on test data. The book's STLM
method chapter explains every field; ``StlmConfig.deviations(profile)`` lists what a profile changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stlm_core.configs import PROFILE_TABLES, ProfileConfig, check_choice
from stlm_core.errors import ConfigError

SAM_TEACHERS = ("vit_h", "vit_l", "vit_b")
OFFLINE_TEACHERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TEACHERS = (*SAM_TEACHERS, "reduced", "tiny", *OFFLINE_TEACHERS)
STUDENTS = ("tinyvit", "teacher_copy")
STUDENT_INITS = ("random", "mobilesam")
WO_FA_COMBINES = ("product", "sum")
LEVEL_NORMS = ("none", "normal_stats")
ANOMALY_SOURCES = ("texture", "patches", "mixed")  # see stlm_core.stlm.pseudo_anomaly.anomaly_fill
ROTATIONS = ("none", "slight", "full", "auto")

# DeSTSeg's disjoint per-category rotation lists (the official lists overlap for transistor, screw and grid,
# which would be trained three times; we follow DeSTSeg and record the resolved choice in every run).
ROTATION_NONE = ("capsule", "metal_nut", "pill", "toothbrush", "transistor")
ROTATION_SLIGHT = ("wood", "zipper", "cable")
ROTATION_FULL = ("bottle", "grid", "hazelnut", "leather", "tile", "carpet", "screw")


def rotation_for_category(category: str) -> str:
    """``"none"`` | ``"slight"`` (+-5 degrees) | ``"full"`` (multiples of 90 degrees + +-5) for an MVTec category.

    Categories outside MVTec AD (VisA, DAGM, synthetic, ...) get ``"none"``.
    """
    if category in ROTATION_SLIGHT:
        return "slight"
    if category in ROTATION_FULL:
        return "full"
    return "none"



def _positive(name: str, value: int | float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}.")


@dataclass(frozen=True)
class StlmConfig(ProfileConfig):
    """Every setting of an STLM run (architecture, ablations, training, evaluation); sizes in pixels."""

    PROFILE_TABLE = PROFILE_TABLES["stlm"]
    METHOD = "stlm"

    # input / evaluation
    image_size: int = 0
    eval_size: int = 0
    top_k: int = 0
    # teacher
    teacher: str = ""
    teacher_embed_dim: int = 0
    teacher_depth: int = 0
    teacher_heads: int = 0
    teacher_window: int = 0
    teacher_global_attn: tuple[int, ...] = ()
    teacher_pretrained: bool = True
    feature_stride: int = 16
    # students
    student_dims: tuple[int, ...] = ()
    student_depths: tuple[int, ...] = ()
    student_heads: tuple[int, ...] = ()
    student_windows: tuple[int, ...] = ()
    student_init: str = ""
    student: str = "tinyvit"
    student_freeze_bn: bool = False
    # shared decoder
    decoder_depth: int = 0
    decoder_mlp_dim: int = 0
    decoder_heads: int = 0
    decoder_weights: bool = True
    # FA head
    fa_channels: int = 0
    fa_prior: float | None = None
    # ablations
    use_plain: bool = True
    use_decoder: bool = True
    use_fa: bool = True
    wo_fa_combine: str = "product"
    fa_detach: bool = False
    level_norm: str = "none"
    # pseudo anomalies and augmentation
    aug_prob: float = 0.0
    beta_max: float = 0.0
    perlin_max_exp: int = 0
    perlin_threshold: float = 0.0
    rotation: str = ""
    anomaly_source: str = "texture"
    # optimisation
    epochs: int = 0
    train_steps: int | None = None
    batch_size: int = 0
    lr_tlm: float = 0.0
    betas: tuple[float, float] = (0.0, 0.0)
    lr_fa_res: float = 0.0
    lr_fa_head: float = 0.0
    fa_momentum: float = 0.0
    fa_weight_decay: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        check_choice("teacher", self.teacher, TEACHERS)
        check_choice("student_init", self.student_init, STUDENT_INITS)
        check_choice("rotation", self.rotation, ROTATIONS)
        check_choice("student", self.student, STUDENTS)
        check_choice("wo_fa_combine", self.wo_fa_combine, WO_FA_COMBINES)
        check_choice("level_norm", self.level_norm, LEVEL_NORMS)
        check_choice("anomaly_source", self.anomaly_source, ANOMALY_SOURCES)
        if self.level_norm != "none" and self.wo_fa_combine != "sum":
            raise ConfigError("level_norm 'normal_stats' standardises each level's distance (values can be "
                              "negative), which only a sum combines; set wo_fa_combine to 'sum'.")
        if self.student == "teacher_copy" and self.teacher not in OFFLINE_TEACHERS:
            raise ConfigError(f"student 'teacher_copy' copies the teacher's network, which needs an EfficientNet-Lite "
                              f"teacher ({', '.join(OFFLINE_TEACHERS)}), not {self.teacher!r}.")
        if self.student == "teacher_copy" and self.student_init != "random":
            raise ConfigError("student 'teacher_copy' is initialised from the teacher; set student_init to 'random' "
                              "(it only applies to TinyViT students).")
        if self.fa_prior is not None and not 0.0 < self.fa_prior < 1.0:
            raise ConfigError(f"fa_prior must be a probability in (0, 1) or null, got {self.fa_prior}.")
        check_choice("feature_stride", self.feature_stride, (8, 16))
        if self.feature_stride != 16 and (self.teacher not in OFFLINE_TEACHERS or self.student != "teacher_copy"):
            raise ConfigError(f"feature_stride {self.feature_stride} needs an EfficientNet-Lite teacher and "
                              f"'teacher_copy' students; SAM's image embedding, the TinyViT students and the shared "
                              f"decoder are on the stride-16 grid (teacher {self.teacher!r}, student "
                              f"{self.student!r}).")
        if self.teacher in OFFLINE_TEACHERS and self.image_size % 32:
            raise ConfigError(f"EfficientNet-Lite teachers need image_size to be a multiple of 32, got "
                              f"{self.image_size}.")
        for name in ("image_size", "eval_size", "top_k", "epochs", "batch_size", "fa_channels"):
            _positive(name, getattr(self, name))
        _positive("train_steps", self.train_steps, allow_none=True)
        if self.image_size % 16:
            raise ConfigError(f"image_size must be a multiple of 16 (the feature stride), got {self.image_size}.")
        if self.teacher in SAM_TEACHERS and self.image_size != 1024:
            raise ConfigError(
                f"teacher {self.teacher} is built by segment_anything.sam_model_registry for 1024 px inputs; "
                f"image_size is {self.image_size}. Use teacher 'reduced' (or 'tiny') at other sizes.")
        if not 0.0 <= self.aug_prob <= 1.0:
            raise ConfigError(f"aug_prob must be in [0, 1], got {self.aug_prob}.")
        if len(self.student_dims) not in (3, 4) or len({len(self.student_dims), len(self.student_depths),
                                                        len(self.student_heads), len(self.student_windows)}) != 1:
            raise ConfigError("student_dims, student_depths, student_heads and student_windows must have the same "
                              "length (3 or 4 stages).")

    @property
    def embed_size(self) -> int:
        """Side of the 256-channel feature maps (image_size / feature_stride)."""
        return self.image_size // self.feature_stride

    @property
    def n_levels(self) -> int:
        """Feature levels compared between the streams: encoder embedding (+ decoder output)."""
        return 2 if self.use_decoder else 1

    def rotation_for(self, category: str) -> str:
        """The rotation augmentation used for ``category`` (``auto`` resolved per category)."""
        return rotation_for_category(category) if self.rotation == "auto" else self.rotation


__all__ = ["StlmConfig", "rotation_for_category", "TEACHERS", "SAM_TEACHERS", "OFFLINE_TEACHERS", "STUDENTS",
           "STUDENT_INITS", "ROTATIONS"]
