"""Stage A: the CLIP anomaly map Map_a .

Conventions: images enter as uint8 (H, W, 3) RGB and are squashed (no crop) to ``clip_image_size`` squared with
bicubic resampling and OpenAI's mean/std. Patch tokens are taken from the residual stream after the blocks in
``config.clip_layers`` (1-indexed), class token dropped: a list of (B, L, width) tensors, L = grid**2.
Per layer, ``logits = logit_scale * P . T`` (L, 2) -> (2, grid, grid) -> bilinear to the input size -> softmax; the
abnormal channels are summed over layers, so ``Map_a`` is in [0, n_layers] ([0, 4] for 4 layers).

Two localisers map tokens to the joint space ``P``:
- :class:`TrainingFreeLocaliser`: tokens through the final norm ``ln_post`` and projection ``proj`` (WinCLIP-style
  patch/text similarity without windows).
- :class:`AdapterLocaliser`: APRIL-GAN's per-layer linear adapters (``stlm_core.clipsam.adapters``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.clipsam.prompts import encode_text_prompts
from stlm_core.data.transforms import resize_image, to_tensor
from stlm_core.errors import WeightsError
from stlm_core.weights import AUTO, resolve_weights, weights_identity


def _is_torchscript_archive(path: Path) -> bool:
    """True for OpenAI's original CLIP ``.pt`` files (TorchScript zip archives with a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


@dataclass
class ClipBackbone:
    """A frozen open_clip model with the tokenizer, tapped blocks and cached per-class text features.

    ``model_name``: open_clip's name of the model; ``layers``: the tapped transformer blocks, 1-indexed;
    ``image_size``: the input side in pixels; ``weights``: the weights identity (``random-init`` or
    ``<name>@<sha256>``)."""

    model: torch.nn.Module
    tokenizer: object
    model_name: str
    layers: tuple[int, ...]
    image_size: int
    weights: str
    device: torch.device = torch.device("cpu")
    _text_cache: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def width(self) -> int:
        return int(self.model.visual.conv1.out_channels)

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.proj.shape[1])

    @property
    def indices(self) -> list[int]:
        """0-indexed block indices of :attr:`layers`."""
        return [layer - 1 for layer in self.layers]

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 (H, W, 3) images -> float32 (B, 3, S, S), bicubic squash, CLIP normalisation."""
        size = self.image_size
        return torch.stack([to_tensor(resize_image(im, size, Image.BICUBIC), "clip") for im in images]).to(self.device)

    @torch.no_grad()
    def encode_image(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, S, S) -> (normalised image embedding (B, E), patch tokens per tapped block [(B, L, width)])."""
        out = self.model.visual.forward_intermediates(
            x, indices=self.indices, output_fmt="NLC", intermediates_only=False)
        cls = out["image_features"].float()
        return cls / cls.norm(dim=-1, keepdim=True), [t.float() for t in out["image_intermediates"]]

    def text_features(self, class_name: str) -> torch.Tensor:
        """Normalised prompt-ensemble features (E, 2) of ``class_name`` (cached)."""
        if class_name not in self._text_cache:
            self._text_cache[class_name] = encode_text_prompts(
                self.model.encode_text, self.tokenizer, class_name, self.device)
        return self._text_cache[class_name]


def build_clip(
    config: ClipSamConfig, checkpoint: str | Path | None = AUTO, device: str | torch.device = "cpu"
) -> ClipBackbone:
    """Build the open_clip model of ``config`` with ``open_clip.create_model`` and load its weights.

    ``checkpoint``: ``"auto"`` = registry lookup (``config.clip_weights``; ``paper`` requires it), a file path, or
    ``None`` for random weights. OpenAI's TorchScript ``.pt`` files are read with ``weights_only=False`` (they are
    not plain state dicts); everything else with ``weights_only=True``. The positional embedding is resized to
    ``config.clip_image_size`` by open_clip (``force_image_size`` + ``resize_pos_embed``).
    """
    import logging

    import open_clip

    path = resolve_weights(config.clip_weights, required=config.profile == "paper", path=checkpoint,
                           purpose=f"the CLIP stage ({config.profile} profile)")
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs a warning for random init; we record it instead
    try:
        model = open_clip.create_model(
            config.clip_model,
            pretrained=str(path) if path is not None else None,
            force_image_size=config.clip_image_size,
            force_quick_gelu=config.clip_quick_gelu,
            weights_only=not (path is not None and _is_torchscript_archive(path)),
            **_overrides(config),
        )
    except RuntimeError as exc:
        if path is None:
            raise
        raise WeightsError(f"could not load CLIP weights from {path} into {config.clip_model}: {exc}") from exc
    finally:
        logging.getLogger().setLevel(level)
    model = model.to(device).eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(config.clip_model)
    weights = weights_identity(config.clip_weights or f"clip-{config.clip_model}", path)
    return ClipBackbone(model, tokenizer, config.clip_model, tuple(config.clip_layers), config.clip_image_size, weights,
                        torch.device(device))


def _overrides(config: ClipSamConfig) -> dict:
    """open_clip config overrides with the forced image size kept (smoke's tiny towers)."""
    overrides = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.clip_overrides.items()}
    if "vision_cfg" in overrides:
        overrides["vision_cfg"]["image_size"] = config.clip_image_size
    return overrides


def layer_probabilities(
    tokens: Sequence[torch.Tensor],
    text: torch.Tensor,
    image_size: int,
    logit_scale: float = 100.0,
    align_corners: bool = True,
) -> torch.Tensor:
    """Per-layer 2-channel softmax maps (B, n_layers, 2, S, S) from joint-space tokens.

    ``tokens``: per layer (B, L, E) joint-space features (normalised here); ``text``: (E, 2) or (B, E, 2).
    """
    maps = []
    for tok in tokens:
        tok = tok / tok.norm(dim=-1, keepdim=True)
        logits = logit_scale * (tok @ text)                        # (B, L, 2)
        batch, length, _ = logits.shape
        grid = int(round(length ** 0.5))
        logits = logits.permute(0, 2, 1).reshape(batch, 2, grid, grid)
        logits = F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=align_corners)
        maps.append(torch.softmax(logits, dim=1))
    return torch.stack(maps, dim=1)


class TrainingFreeLocaliser:
    """Patch tokens through ``ln_post`` and ``proj`` (no training; WinCLIP-style similarity)."""

    name = "training_free"
    trained_on: str | None = None

    def project(self, backbone: ClipBackbone, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        visual = backbone.model.visual
        return [visual.ln_post(t) @ visual.proj for t in tokens]


class AdapterLocaliser:
    """APRIL-GAN linear adapters (one per tapped block) map raw tokens to the joint space."""

    name = "adapters"

    def __init__(self, adapters: torch.nn.Module, trained_on: str | None, source: str = ""):
        self.adapters = adapters.eval()
        self.trained_on = trained_on
        self.source = source

    def project(self, backbone: ClipBackbone, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.adapters(tokens)


# name -> localiser class; ``config.localiser`` picks one (``adapters`` needs an adapter file).
localiser_registry: dict[str, type] = {"training_free": TrainingFreeLocaliser, "adapters": AdapterLocaliser}


@torch.no_grad()
def clip_anomaly_maps(
    backbone: ClipBackbone, localiser, images: Sequence[np.ndarray], class_name: str, *, logit_scale: float,
    align_corners: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map_a (B, S, S) in [0, n_layers] at the backbone's ``image_size`` and APRIL-GAN's CLS image score (B,) in
    [0, 1]. ``logit_scale``: the temperature of the two-way softmax; ``align_corners``: of the bilinear upsampling."""
    x = backbone.preprocess(images)
    cls, tokens = backbone.encode_image(x)
    text = backbone.text_features(class_name)
    probs = layer_probabilities(localiser.project(backbone, tokens), text, backbone.image_size, logit_scale,
                                align_corners)
    map_a = probs[:, :, 1].sum(dim=1)
    score = torch.softmax(logit_scale * cls @ text, dim=-1)[:, 1]
    return map_a, score
