"""Final anomaly map and image score.

``m`` = Map_a / n_layers in [0, 1] at the original size; ``L3`` = the final CPS logits at the same size (the union
over components = pixel-wise max of their logits).

| fusion | A | empty S_a (no SAM call) |
|---|---|---|
| ``default`` | w * m + (1 - w) * m * sigmoid(L3), w = 0.5 | w * m |
| ``sam`` | sigmoid(L3) (pure SAM) | 0 |
| ``additive`` | m + 1[L3 > 0] (ClipSAM-like) | m |

The empty-S_a column is each rule with SAM's mask set to empty (sigmoid -> 0), so maps stay on one scale across
images; for ``default`` it is 0.5 * Map_a. There is deliberately no top-q % fallback.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

FUSIONS = ("default", "sam", "additive")
IMAGE_SCORES = ("max", "clip_cls")


def fuse(map_norm: np.ndarray, logits: np.ndarray | None, fusion: str = "default", weight: float = 0.5) -> np.ndarray:
    """Final map (H, W) float32. ``logits`` None means S_a was empty and SAM was not called."""
    m = np.asarray(map_norm, dtype=np.float32)
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; use one of {FUSIONS}")
    if logits is None:
        if fusion == "default":
            return (weight * m).astype(np.float32)
        return np.zeros_like(m) if fusion == "sam" else m.copy()
    s = expit(np.asarray(logits, dtype=np.float32))
    if fusion == "default":
        out = weight * m + (1.0 - weight) * m * s
    elif fusion == "sam":
        out = s
    else:
        out = m + (logits > 0)
    return out.astype(np.float32)


def image_score(final_map: np.ndarray, clip_cls_score: float, mode: str = "max") -> float:
    """Image-level score: ``max`` of the final map, or APRIL-GAN's CLS score (``clip_cls``)."""
    if mode == "max":
        return float(np.max(final_map))
    if mode == "clip_cls":
        return float(clip_cls_score)
    raise ValueError(f"unknown image score {mode!r}; use one of {IMAGE_SCORES}")
