"""The CLIP-SAM cascade on images and datasets: CLIP map -> PPG -> CPS -> fusion.

Per image (uint8 (H, W, 3) RGB, any size):

1. Map_a at ``clip_image_size`` (CLIP stage), upsampled bilinearly to (H, W) and divided by the number of layers
   -> ``clip_map`` in [0, 1].
2. If S_a = 1[clip_map >= tau] is empty: no SAM call; the final map is the fusion's empty rule.
3. Otherwise SAM encodes the image once; PPG gives prompt sets (per component of S_a by default); each runs the
   CPS cascade; the final logits are the pixel-wise max over components (union of masks); fusion gives the map.

Maps for evaluation are resized to ``eval_size`` squared (bilinear) and masks likewise (bilinear, then > 0.5:
APRIL-GAN's reader, ``gt[gt > 0.5], gt[gt <= 0.5] = 1, 0``, which the zero-shot field's evaluation code shares).
The intermediate results behind the PPG and CPS figures (:func:`detail_arrays`) are kept at ``DETAIL_SIZE``
squared at most, so that a record of a 1024 px run stays small.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stlm_core.clipsam.clip_localiser import ClipBackbone, build_clip, clip_anomaly_maps, localiser_registry
from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.clipsam.cps import CascadeResult, run_cascade
from stlm_core.clipsam.fusion import fuse, image_score
from stlm_core.clipsam.ppg import PromptRules, PromptSet, generate_prompts, sam_similarity_fn
from stlm_core.clipsam.sam_backend import SamBackend, build_sam
from stlm_core.data.transforms import resize_mask
from stlm_core.weights import AUTO

STAGES = ("clip", "sam_encoder", "ppg", "cps")
DETAIL_SIZE = 256  # side of the saved PPG / CPS detail arrays (at most the evaluation size)


@dataclass
class ImageResult:
    """Outputs for one image; maps are (H, W) float32 at the original size, timings in milliseconds."""

    anomaly_map: np.ndarray
    clip_map: np.ndarray
    score: float
    clip_score: float
    prompts: list[PromptSet] = field(default_factory=list)
    cascades: list[CascadeResult] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def sam_called(self) -> bool:
        return bool(self.prompts)

    def prompt_record(self) -> dict:
        """JSON-ready prompts: per component, points (x, y) in original pixels, labels, boxes per stage."""
        return {
            "sam_called": self.sam_called,
            "components": [
                {"points": p.points.tolist(), "labels": p.labels.tolist(),
                 "boxes": [None if b is None else b.tolist() for b in c.boxes], "iou": c.iou}
                for p, c in zip(self.prompts, self.cascades)
            ],
        }


def detail_arrays(result: "ImageResult", size: int, n_stages: int) -> dict[str, np.ndarray]:
    """What PPG and CPS did on one image, at ``size`` squared, unions over the prompt sets (components of S_a):

    ``ppg_region`` uint8 {0, 1} (S_a), ``ppg_ring`` uint8 (N_a, where negatives are drawn), ``ppg_similarity``
    float16 (SAM co-feature similarity to the positives; 0 where PPG computed none), ``cps_stage<k>`` uint8 (the
    mask of cascade stage k, logits > 0) for k = 1..``n_stages``. All zeros when S_a was empty (no SAM call).
    """
    def union(planes: list[np.ndarray], dtype) -> np.ndarray:
        if not planes:
            return np.zeros((size, size), dtype)
        stacked = np.max(np.stack([np.asarray(p, np.float32) for p in planes]), axis=0)
        out = resize_map(stacked, size)
        return (out > 0.5).astype(np.uint8) if dtype is np.uint8 else out.astype(dtype)

    prompts, cascades = result.prompts, result.cascades
    arrays = {
        "ppg_region": union([p.region for p in prompts], np.uint8),
        "ppg_ring": union([p.ring for p in prompts], np.uint8),
        "ppg_similarity": union([p.similarity for p in prompts if p.similarity is not None], np.float16),
    }
    for k in range(n_stages):
        arrays[f"cps_stage{k + 1}"] = union([c.logits[k] > 0 for c in cascades if len(c.logits) > k], np.uint8)
    return arrays


def upsample_map(map_small: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(S, S) -> (H, W) bilinear (undoes the CLIP stage's squash)."""
    out = F.interpolate(map_small[None, None].float(), size=shape, mode="bilinear", align_corners=False)
    return out[0, 0].cpu().numpy()


def resize_map(anomaly_map: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float -> (size, size) float32, bilinear."""
    t = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))
    return F.interpolate(t[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


class ClipSamPipeline:
    """CLIP localiser + frozen SAM with PPG and CPS; see the module docstring."""

    def __init__(self, config: ClipSamConfig, clip: ClipBackbone, localiser, sam: SamBackend):
        self.config, self.clip, self.localiser, self.sam = config, clip, localiser, sam
        self.prompt_rules = PromptRules.from_config(config)

    @classmethod
    def build(
        cls,
        config: ClipSamConfig,
        adapters: str | Path | None = None,
        clip_checkpoint: str | Path | None = AUTO,
        sam_checkpoint: str | Path | None = AUTO,
        device: str = "cpu",
    ) -> "ClipSamPipeline":
        """Build from a config; ``adapters`` is a file from ``stlm zeroshot-adapters train``. With
        ``config.localiser == "adapters"`` and no file, the training-free localiser is used (and recorded)."""
        from stlm_core.clipsam.adapters import load_adapters

        clip = build_clip(config, clip_checkpoint, device)
        if adapters is not None:
            module, meta = load_adapters(adapters, clip)
            localiser = localiser_registry["adapters"](module, meta.get("trained_on"), str(adapters))
            localiser.meta = meta
        else:
            localiser = localiser_registry["training_free"]()
        sam = build_sam(config, sam_checkpoint, device)
        return cls(config, clip, localiser, sam)

    @property
    def weights(self) -> dict[str, str]:
        return {"clip": self.clip.weights, "sam": self.sam.weights}

    def clip_stage(self, image: np.ndarray, class_name: str) -> tuple[np.ndarray, float]:
        """``clip_map`` (H, W) in [0, 1] and APRIL-GAN's CLS score."""
        map_a, cls_score = clip_anomaly_maps(self.clip, self.localiser, [image], class_name,
                                             logit_scale=self.config.logit_scale,
                                             align_corners=self.config.map_align_corners)
        return upsample_map(map_a[0], image.shape[:2]) / self.clip.n_layers, float(cls_score[0])

    @torch.no_grad()
    def run_image(self, image: np.ndarray, class_name: str) -> ImageResult:
        cfg = self.config
        times = dict.fromkeys(STAGES, 0.0)
        t0 = time.perf_counter()
        clip_map, clip_score = self.clip_stage(image, class_name)
        times["clip"] = (time.perf_counter() - t0) * 1e3
        prompts: list[PromptSet] = []
        cascades: list[CascadeResult] = []
        logits = None
        if (clip_map >= cfg.tau).any():                       # otherwise: empty S_a, no SAM call at all
            t0 = time.perf_counter()
            self.sam.set_image(image)
            times["sam_encoder"] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            prompts = generate_prompts(clip_map, sam_similarity_fn(self.sam, cfg.cofeature), self.prompt_rules)
            times["ppg"] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            for prompt in prompts:
                cascade = run_cascade(self.sam.predictor, prompt.points, prompt.labels, cfg.cps_stages,
                                      cfg.multimask, cfg.box_mode, clip_map,
                                      cfg.multimask_fallback)
                cascades.append(cascade)
                logits = cascade.final_logits if logits is None else np.maximum(logits, cascade.final_logits)
            times["cps"] = (time.perf_counter() - t0) * 1e3
        final = fuse(clip_map, logits, cfg.fusion, cfg.fusion_weight)
        return ImageResult(final, clip_map.astype(np.float32), image_score(final, clip_score, cfg.image_score),
                           clip_score, prompts, cascades, times)

    def run_dataset(self, samples: Sequence, class_name: str, progress: bool = True,
                    limit: int | None = None) -> dict:
        """Run on a sequence of samples (``limit``: at most that many, evenly spaced); returns eval-size arrays
        and per-image records.

        Keys: ``maps`` (N, E, E) final maps, ``clip_maps`` (N, E, E), ``masks`` (N, E, E) uint8, ``scores`` (N,),
        ``clip_scores`` (N,), ``labels`` (N,), ``paths``, ``prompts`` (per image, original pixels), ``timings_ms``
        (per stage, list over images), ``sam_calls`` (number of images where S_a was non-empty), ``details``
        name -> (N, d, d) arrays of :func:`detail_arrays` (d = min(eval size, ``DETAIL_SIZE``)).
        """
        from tqdm import tqdm

        size = self.config.eval_size
        n = len(samples) if limit is None else min(limit, len(samples))
        # ``limit``: an evenly spaced subset, so that normal and anomalous images (sorted by folder) both appear
        indices = np.unique(np.linspace(0, len(samples) - 1, n).round().astype(int)) if n else []
        out: dict = {"maps": [], "clip_maps": [], "masks": [], "scores": [], "clip_scores": [], "labels": [],
                     "paths": [], "prompts": [], "timings_ms": {s: [] for s in STAGES}, "details": {}}
        detail_size = min(size, DETAIL_SIZE)
        for i in tqdm(indices, desc=f"zeroshot {class_name}", disable=not progress):
            sample = samples[int(i)]
            result = self.run_image(sample.image, class_name)
            out["maps"].append(resize_map(result.anomaly_map, size))
            out["clip_maps"].append(resize_map(result.clip_map, size))
            out["masks"].append(resize_mask(sample.mask, size, include_half=False))
            out["scores"].append(result.score)
            out["clip_scores"].append(result.clip_score)
            out["labels"].append(int(sample.label))
            out["paths"].append(str(sample.path))
            out["prompts"].append({"path": str(sample.path), "shape": list(sample.image.shape[:2]),
                                   **result.prompt_record()})
            for stage in STAGES:
                out["timings_ms"][stage].append(result.timings_ms[stage])
            for name, array in detail_arrays(result, detail_size, self.config.cps_stages).items():
                out["details"].setdefault(name, []).append(array)
        for key in ("maps", "clip_maps", "masks"):
            out[key] = np.stack(out[key]) if out[key] else np.zeros((0, size, size), np.float32)
        for key in ("scores", "clip_scores", "labels"):
            out[key] = np.asarray(out[key])
        out["details"] = {name: np.stack(arrays) for name, arrays in out["details"].items()}
        out["sam_calls"] = int(sum(p["sam_called"] for p in out["prompts"]))
        return out
