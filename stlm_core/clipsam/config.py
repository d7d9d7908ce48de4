"""Per-profile settings of the CLIP-SAM cascaded-prompt method (spec: ``../shared/specs/clipsam.md``).

No official code exists, so every choice the paper leaves open is a named field below with the spec's default.
Tags in the comments follow the spec: [P] paper, [T] third-party reading, [B] baseline/tool fact, [D] project default.

Profiles (``stlm_core.config.PROFILES``):

- ``paper``: ViT-L-14-336 (OpenAI) at 518 px, blocks 6/12/18/24 + SAM ViT-H at 1024 px; official weights required.
- ``cpu``: ViT-B-16 (OpenAI) at 224 px, blocks 3/6/9/12 + SAM ViT-B; official weights if present, else random init.
- ``smoke``: tiny configurations of the same classes (open_clip ``CLIP`` / segment-anything ``Sam``), random init.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from stlm_core.config import check_profile

# Tiny open_clip tower configs for ``smoke`` (same ``CLIP`` / ``VisionTransformer`` / ``TextTransformer`` classes).
SMOKE_CLIP_OVERRIDES: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# Tiny segment-anything config for ``smoke`` (see NOTES.md: ``_build_sam`` fixes 1024 px, so it is built directly).
SMOKE_SAM_ENCODER: dict[str, Any] = {
    "embed_dim": 48, "depth": 2, "num_heads": 3, "global_attn_indexes": (1,), "window_size": 4,
    "prompt_dim": 64, "decoder_mlp_dim": 256, "decoder_heads": 2,
}

# segment-anything encoder architectures (as in ``segment_anything.build_sam``).
SAM_ARCHS: dict[str, dict[str, Any]] = {
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31), "window_size": 14},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23), "window_size": 14},
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11), "window_size": 14},
    "smoke": SMOKE_SAM_ENCODER,
}


@dataclass(frozen=True)
class ClipSamConfig:
    """Every setting of one CLIP-SAM run. Field comments give the provenance of the default."""

    profile: str

    # --- Stage A: CLIP localiser (spec 1.1) ---
    clip_model: str = "ViT-L-14-336"           # [D] APRIL-GAN's backbone; the paper's CLIP stage is unknown
    clip_weights: str | None = "clip_vit_l14_336_openai"  # stlm_core.weights name; None = never load weights
    clip_image_size: int = 518                 # [B] APRIL-GAN: 518x518 squash, pos. embedding resized to 37x37
    clip_layers: tuple[int, ...] = (6, 12, 18, 24)  # [B] 1-indexed residual-stream blocks
    clip_overrides: dict[str, Any] = field(default_factory=dict)  # open_clip config overrides (smoke only)
    clip_quick_gelu: bool = True               # [B] OpenAI CLIP weights were trained with QuickGELU
    localiser: str = "adapters"                # [D] "adapters" (APRIL-GAN) | "training_free" (WinCLIP-style)
    logit_scale: float = 100.0                 # [B] APRIL-GAN: logits = 100 * cos(token, text)
    map_align_corners: bool = True             # [B] APRIL-GAN upsamples the 2-channel logits this way

    # --- adapter training (APRIL-GAN, spec 1.1) ---
    adapter_epochs: dict[str, int] = field(default_factory=lambda: {"mvtec": 3, "visa": 15})  # [B]
    adapter_default_epochs: int = 3            # [D] any other training dataset
    adapter_lr: float = 1e-3                   # [B]
    adapter_betas: tuple[float, float] = (0.5, 0.999)  # [B]
    adapter_batch_size: int = 8                # [B]
    adapter_mosaic_rate: dict[str, float] = field(default_factory=lambda: {"mvtec": 0.2})  # [B] aug_rate, MVTec only
    focal_gamma: float = 2.0                   # [B] APRIL-GAN FocalLoss defaults
    focal_smooth: float = 1e-5                 # [B]

    # --- SAM (spec 2) ---
    sam_arch: str = "vit_h"                    # [D]/[T] EthMuSAM uses vit_h; the paper's variant is unknown
    sam_weights: str | None = "sam_vit_h"
    sam_image_size: int = 1024                 # [B] longest side fed to SAM

    # --- PPG (spec 1.2, 5) ---
    tau: float = 0.5                           # [D] threshold on Map_a / n_layers in [0, 1]
    k_positive: int = 3                        # [D] ablate 1/3/5/7
    k_negative: int = 3                        # [D] same k as positives
    min_spacing_px: float = 400.0              # [P] "spaced by 400 pixels", read as Euclidean in original pixels [D]
    spacing_cap_fraction: float = 0.25         # [D] spacing capped at this fraction of the shorter image side
    ring_kernel: int = 25                      # [T] 25x25 best in the paper's Table 2 ablation
    ring_kernel_shape: str = "ellipse"         # [D] OpenCV MORPH_ELLIPSE (EthMuSAM); "rect" | "cross" for ablation
    cofeature: str = "prototype"               # [D] PerSAM prototype cosine; "max" = max similarity to any S_a cell
    per_component: bool = True                 # [D] one PPG+CPS cascade per connected component of S_a, union
    max_components: int = 8                    # [D] guard: at most this many components (highest peak first)

    # --- CPS (spec 1.3) ---
    cps_stages: int = 3                        # [P] three cascaded decoder passes (1 or 2 for the ablation)
    multimask: bool = False                    # [D] single mask (EthMuSAM); True = 3 masks, best predicted IoU (PerSAM)
    multimask_fallback: bool = True            # [D] spec 5: an empty single mask is redone as 3 masks, best IoU
    box_mode: str = "tight"                    # [D] "tight" box of M2 (PerSAM) | "best_component" (EthMuSAM)

    # --- fusion and scores (spec 1.4) ---
    fusion: str = "default"                    # [D] "default": 0.5 m + 0.5 m*sigmoid(L3); "sam"; "additive"
    fusion_weight: float = 0.5                 # [D] the 0.5 / 0.5 split of the default fusion
    image_score: str = "max"                   # [D] "max" of the final map | "clip_cls" (APRIL-GAN's CLS score)

    # --- evaluation (spec 2, 3) ---
    eval_size: int = 518                       # [D] maps and masks resized to eval_size^2 (masks binarised at 0.5)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return asdict(self)

    def with_overrides(self, **changes: Any) -> "ClipSamConfig":
        """A copy with some fields replaced; ``None`` values are ignored (convenient for CLI options)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def epochs_for(self, dataset: str) -> int:
        return self.adapter_epochs.get(dataset, self.adapter_default_epochs)

    @property
    def n_layers(self) -> int:
        return len(self.clip_layers)


def get_config(profile: str, **overrides: Any) -> ClipSamConfig:
    """The settings of ``profile`` (``paper`` | ``cpu`` | ``smoke``), with optional field overrides."""
    check_profile(profile)
    if profile == "paper":
        config = ClipSamConfig(profile="paper")
    elif profile == "cpu":
        config = ClipSamConfig(
            profile="cpu",
            clip_model="ViT-B-16", clip_weights="clip_vit_b16_openai", clip_image_size=224,
            clip_layers=(3, 6, 9, 12),
            sam_arch="vit_b", sam_weights="sam_vit_b", sam_image_size=1024,
            eval_size=256,
        )
    else:
        config = ClipSamConfig(
            profile="smoke",
            clip_model="ViT-B-16", clip_weights=None, clip_image_size=64, clip_layers=(1, 2),
            clip_overrides=SMOKE_CLIP_OVERRIDES, clip_quick_gelu=False,
            sam_arch="smoke", sam_weights=None, sam_image_size=128,
            adapter_batch_size=4, ring_kernel=7, eval_size=64,
        )
    return config.with_overrides(**overrides)
