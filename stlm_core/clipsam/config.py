"""CLIP-SAM settings: :class:`ClipSamConfig`, one frozen dataclass; values per profile in ``profiles.yaml``.

No official code exists, so every choice the paper leaves open is a named field with its provenance in the YAML
table (``paper`` / ``code`` = the baselines the paper builds on / ``ours``). Build one with
``ClipSamConfig.from_profile("cpu", tau=0.4)``. Profiles:

- ``paper``: ViT-L-14-336 (OpenAI) at 518 px, blocks 6/12/18/24 + SAM ViT-H at 1024 px; official weights required.
- ``cpu``: ViT-B-16 (OpenAI) at 224 px, blocks 3/6/9/12 + SAM ViT-B; official weights if present, else random init.
- ``smoke``: tiny configurations of the same classes (open_clip ``CLIP`` / segment-anything ``Sam``), random init.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stlm_core.configs import PROFILE_TABLES, ProfileConfig, check_choice
from stlm_core.errors import ConfigError

LOCALISERS = ("adapters", "training_free")
FUSIONS = ("default", "sam", "additive")
IMAGE_SCORES = ("max", "clip_cls")
BOX_MODES = ("tight", "best_component")
COFEATURES = ("prototype", "max")
KERNEL_SHAPES = ("ellipse", "rect", "cross")



@dataclass(frozen=True)
class ClipSamConfig(ProfileConfig):
    """Every setting of one CLIP-SAM run. Provenance of each default: ``profiles.yaml``."""

    PROFILE_TABLE = PROFILE_TABLES["clipsam"]
    METHOD = "clipsam"

    # Stage A: CLIP localiser
    clip_model: str = ""
    clip_weights: str | None = None
    clip_image_size: int = 0
    clip_layers: tuple[int, ...] = ()
    clip_overrides: dict[str, Any] = field(default_factory=dict)
    clip_quick_gelu: bool = True
    localiser: str = "adapters"
    logit_scale: float = 0.0
    map_align_corners: bool = True
    # adapter training (APRIL-GAN)
    adapter_epochs: dict[str, int] = field(default_factory=dict)
    adapter_default_epochs: int = 0
    adapter_lr: float = 0.0
    adapter_betas: tuple[float, float] = (0.0, 0.0)
    adapter_batch_size: int = 0
    adapter_mosaic_rate: dict[str, float] = field(default_factory=dict)
    focal_gamma: float = 0.0
    focal_smooth: float = 0.0
    # SAM
    sam_arch: str = ""
    sam_weights: str | None = None
    sam_image_size: int = 0
    # PPG
    tau: float = 0.0
    k_positive: int = 0
    k_negative: int = 0
    min_spacing_px: float = 0.0
    spacing_cap_fraction: float = 0.0
    ring_kernel: int = 0
    ring_kernel_shape: str = ""
    cofeature: str = ""
    per_component: bool = True
    max_components: int = 0
    # CPS
    cps_stages: int = 0
    multimask: bool = False
    multimask_fallback: bool = True
    box_mode: str = ""
    # fusion and scores
    fusion: str = ""
    fusion_weight: float = 0.0
    image_score: str = ""
    # evaluation
    eval_size: int = 0
    seed: int = 0

    def validate(self) -> None:
        check_choice("localiser", self.localiser, LOCALISERS)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("image_score", self.image_score, IMAGE_SCORES)
        check_choice("box_mode", self.box_mode, BOX_MODES)
        check_choice("cofeature", self.cofeature, COFEATURES)
        check_choice("ring_kernel_shape", self.ring_kernel_shape, KERNEL_SHAPES)
        if self.cps_stages not in (1, 2, 3):
            raise ConfigError(f"cps_stages must be 1, 2 or 3, got {self.cps_stages}.")
        for name in ("clip_image_size", "sam_image_size", "eval_size", "k_positive", "ring_kernel",
                     "max_components", "adapter_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.k_negative < 0:
            raise ConfigError(f"k_negative must be >= 0, got {self.k_negative}.")
        if self.sam_image_size % 16:
            raise ConfigError(f"sam_image_size must be a multiple of 16, got {self.sam_image_size}.")
        if not self.clip_layers:
            raise ConfigError("clip_layers must name at least one CLIP block.")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ConfigError(f"fusion_weight must be in [0, 1], got {self.fusion_weight}.")

    def epochs_for(self, dataset: str) -> int:
        """Adapter-training epochs for a training dataset."""
        return self.adapter_epochs.get(dataset, self.adapter_default_epochs)

    @property
    def n_layers(self) -> int:
        return len(self.clip_layers)


__all__ = ["ClipSamConfig", "LOCALISERS"]
