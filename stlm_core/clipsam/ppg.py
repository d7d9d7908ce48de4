"""PPG: co-feature point prompt generation (the paper's equations (1)-(7)).

Conventions: ``map_norm`` is Map_a / n_layers in [0, 1], shape (H, W) = the original image; points are (x, y) in
original-image pixels (column, row), float; labels 1 (positive) / 0 (negative).

1. S_a = 1[map_norm >= tau] (the "extreme anomaly region"), optionally split into 8-connected components.
2. R_a = S_a * map_norm; positives = greedy top-k of R_a, each at least ``d`` pixels (Euclidean) from the others,
   d = min(min_spacing_px, spacing_cap_fraction * shorter side).
3. N_a = dilate(S_a, kernel) - S_a (OpenCV, elliptical kernel by default), inside the image by construction.
4. Similarity of every pixel's SAM feature to the anomaly's features (``similarity_fn``), restricted to N_a;
   negatives = greedy k lowest, same spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import cv2
import numpy as np
import torch

_SHAPES = {"ellipse": cv2.MORPH_ELLIPSE, "rect": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}

SimilarityFn = Callable[[np.ndarray], np.ndarray]
"""Maps a boolean support mask (H, W) to a similarity map (H, W), higher = more similar to the support."""


@dataclass(frozen=True)
class PromptRules:
    """PPG's settings: ``tau`` (S_a threshold on map_norm in [0, 1]), ``k_positive`` / ``k_negative`` points per
    region, spacing ``min(min_spacing_px, spacing_cap_fraction * shorter side)`` pixels, ``per_component`` (one prompt
    set per 8-connected component of S_a, at most ``max_components``), the ring's dilation kernel side in pixels
    (``ring_kernel``) and shape (``ring_kernel_shape``: ellipse | rect | cross)."""

    tau: float
    k_positive: int
    k_negative: int
    min_spacing_px: float
    spacing_cap_fraction: float
    per_component: bool
    max_components: int
    ring_kernel: int
    ring_kernel_shape: str

    @classmethod
    def from_config(cls, config: Any) -> "PromptRules":
        """The rules named by a config's fields of the same names (e.g. a ``ClipSamConfig``)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


@dataclass
class PromptSet:
    """Point prompts of one region: ``points`` (n, 2) float32 (x, y) original pixels, ``labels`` (n,) int {0, 1};
    ``region`` (H, W) bool (S_a or one component), ``ring`` (H, W) bool (N_a), ``similarity`` (H, W) or None."""

    points: np.ndarray
    labels: np.ndarray
    region: np.ndarray
    ring: np.ndarray
    similarity: np.ndarray | None = None

    @property
    def positives(self) -> np.ndarray:
        return self.points[self.labels == 1]

    @property
    def negatives(self) -> np.ndarray:
        return self.points[self.labels == 0]


def extreme_region(map_norm: np.ndarray, tau: float) -> np.ndarray:
    """S_a: boolean (H, W), pixels with ``map_norm >= tau``."""
    return np.asarray(map_norm) >= tau


def point_spacing(shape: tuple[int, int], min_spacing_px: float, cap_fraction: float) -> float:
    """Minimum distance between prompts of one kind: min(min_spacing_px, cap_fraction * shorter side)."""
    return float(min(min_spacing_px, cap_fraction * min(shape)))


def select_spaced(scores: np.ndarray, valid: np.ndarray, k: int, spacing: float) -> np.ndarray:
    """Greedy selection of up to ``k`` pixels in descending ``scores`` among ``valid``, each at least ``spacing``
    pixels from those already chosen. Returns (n, 2) float32 (x, y). Implemented as iterated argmax with disc
    suppression (equivalent to scanning pixels in descending order, but k vectorised steps)."""
    work = np.where(valid, scores, -np.inf).astype(np.float64)
    height, width = work.shape
    ys, xs = np.mgrid[0:height, 0:width]
    chosen = []
    for _ in range(k):
        flat = int(np.argmax(work))
        if not np.isfinite(work.flat[flat]):
            break
        y, x = divmod(flat, width)
        chosen.append((x, y))
        work[(xs - x) ** 2 + (ys - y) ** 2 < spacing ** 2] = -np.inf
    return np.asarray(chosen, dtype=np.float32).reshape(-1, 2)


def ring_region(region: np.ndarray, s_a: np.ndarray, kernel: int, shape: str = "ellipse") -> np.ndarray:
    """N_a = dilate(region) minus S_a (the whole extreme region, so a ring never enters another component)."""
    element = cv2.getStructuringElement(_SHAPES[shape], (kernel, kernel))
    dilated = cv2.dilate(region.astype(np.uint8), element) > 0
    return dilated & ~s_a


def components(s_a: np.ndarray, score: np.ndarray, max_components: int) -> list[np.ndarray]:
    """8-connected components of S_a as boolean masks, highest peak ``score`` first, at most ``max_components``."""
    count, labels = cv2.connectedComponents(s_a.astype(np.uint8), connectivity=8)
    regions = [labels == i for i in range(1, count)]
    regions.sort(key=lambda r: -float(score[r].max()))
    return regions[:max_components]


def generate_prompts(map_norm: np.ndarray, similarity_fn: SimilarityFn, rules: PromptRules) -> list[PromptSet]:
    """PPG on one image: a list of prompt sets (one per component of S_a, or one for all of S_a); empty list if
    S_a is empty (the caller then skips SAM)."""
    map_norm = np.asarray(map_norm, dtype=np.float32)
    s_a = extreme_region(map_norm, rules.tau)
    if not s_a.any():
        return []
    spacing = point_spacing(map_norm.shape, rules.min_spacing_px, rules.spacing_cap_fraction)
    regions = components(s_a, map_norm, rules.max_components) if rules.per_component else [s_a]
    prompts = []
    for region in regions:
        r_a = region * map_norm                                              # eq. (1)
        positives = select_spaced(r_a, region, rules.k_positive, spacing)   # eq. (2)
        ring = ring_region(region, s_a, rules.ring_kernel, rules.ring_kernel_shape)  # eq. (3)
        similarity = None
        negatives = np.zeros((0, 2), np.float32)
        if ring.any() and rules.k_negative > 0:
            similarity = similarity_fn(region)                               # eqs. (4)-(6)
            negatives = select_spaced(-similarity, ring, rules.k_negative, spacing)  # eq. (7)
        points = np.concatenate([positives, negatives])
        labels = np.concatenate([np.ones(len(positives), np.int64), np.zeros(len(negatives), np.int64)])
        prompts.append(PromptSet(points, labels, region, ring, similarity))
    return prompts


def feature_similarity(features: torch.Tensor, support: torch.Tensor, mode: str = "prototype") -> torch.Tensor:
    """Cosine similarity on the feature grid: ``features`` (C, h, w), ``support`` (h, w) > 0 where the anomaly is.

    ``prototype`` (PerSAM): cos(mean feature over the support, each cell); ``max``: max over support cells.
    Returns (h, w) in [-1, 1].
    """
    c = features.shape[0]
    flat = features.reshape(c, -1)
    flat = flat / flat.norm(dim=0, keepdim=True).clamp_min(1e-12)
    cells = support.reshape(-1) > 0
    if not cells.any():
        cells = support.reshape(-1) == support.max()
    if mode == "prototype":
        proto = flat[:, cells].mean(dim=1)
        sim = proto @ flat / proto.norm().clamp_min(1e-12)
    elif mode == "max":
        sim = (flat[:, cells].T @ flat).max(dim=0).values
    else:
        raise ValueError(f"unknown co-feature mode {mode!r}; use 'prototype' or 'max'")
    return sim.reshape(features.shape[1:])


def sam_similarity_fn(backend, mode: str = "prototype") -> SimilarityFn:
    """Similarity function on the SAM embedding of the image currently set in ``backend`` (a ``SamBackend``):
    support mask -> embedding grid -> cosine map -> original image size (SAM's mask post-processing)."""

    def similarity(region: np.ndarray) -> np.ndarray:
        features = backend.predictor.features[0]
        support = backend.mask_to_grid(torch.from_numpy(region))
        sim = feature_similarity(features, support, mode)
        return backend.features_to_image(sim[None, None])[0, 0].cpu().numpy()

    return similarity
