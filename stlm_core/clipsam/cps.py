"""CPS: cascaded prompts for SAM, on one image embedding (only the mask decoder is re-run).

| stage | prompts | output |
|---|---|---|
| 1 | points (labels 1/0) | M1, low-res logits 1 |
| 2 | same points + ``mask_input`` = low-res logits 1 | M2, logits 2 |
| 3 | same points + box of M2 + ``mask_input`` = logits 2 | M3 (final) |

``mask_input`` is always the previous call's low-resolution **logits** (1, 256, 256 for SAM at 1024 px), never a
binary mask (segment-anything #169, #242, #447). With ``multimask`` each call returns three masks and the one with
the highest predicted IoU is kept (PerSAM); otherwise one mask per call (EthMuSAM). The predictor is anything
with ``SamPredictor.predict``'s signature; its image must already be set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class CascadeResult:
    """Per-stage outputs: ``logits`` (H, W) logits of each stage at the original size; ``low_res`` logits
    (h, w); ``boxes`` the box given to each stage (x0, y0, x1, y1) or None; ``iou`` the predicted IoU kept."""

    logits: list[np.ndarray] = field(default_factory=list)
    low_res: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray | None] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)

    @property
    def final_logits(self) -> np.ndarray:
        return self.logits[-1]

    @property
    def masks(self) -> list[np.ndarray]:
        return [lg > 0 for lg in self.logits]


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight box (x0, y0, x1, y1) in pixels of a boolean mask, or None if it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def best_component_box(mask: np.ndarray, score_map: np.ndarray) -> np.ndarray | None:
    """Box of the connected component of ``mask`` with the highest mean ``score_map`` (EthMuSAM's variant)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    best = max(range(1, count), key=lambda i: float(score_map[labels == i].mean()))
    return mask_box(labels == best)


def run_cascade(
    predictor,
    points: np.ndarray,
    labels: np.ndarray,
    stages: int = 3,
    multimask: bool = False,
    box_mode: str = "tight",
    score_map: np.ndarray | None = None,
    fallback: bool = True,
) -> CascadeResult:
    """Run 1-3 cascaded decoder calls with point prompts ``points`` (n, 2) (x, y) original pixels and ``labels``.

    ``fallback`` (single-mask mode only): when a call returns an empty mask, repeat it with three masks and keep the
    one with the highest predicted IoU.
    """
    if not 1 <= stages <= 3:
        raise ValueError(f"stages must be 1, 2 or 3, got {stages}")
    if box_mode not in ("tight", "best_component"):
        raise ValueError(f"unknown box_mode {box_mode!r}; use 'tight' or 'best_component'")
    result = CascadeResult()
    for stage in range(1, stages + 1):
        box = None
        mask_input = None
        if stage >= 2:
            mask_input = result.low_res[-1][None]                 # (1, h, w) logits of the previous stage
        if stage == 3:
            previous = result.logits[-1] > 0
            if box_mode == "best_component" and score_map is not None:
                box = best_component_box(previous, score_map)
            else:
                box = mask_box(previous)
        call = dict(point_coords=np.asarray(points, dtype=np.float32),
                    point_labels=np.asarray(labels, dtype=np.int64), box=box, mask_input=mask_input,
                    return_logits=True)
        masks, iou, low_res = predictor.predict(multimask_output=multimask, **call)
        use_best = multimask
        if not multimask and fallback and not (masks[0] > 0).any():
            masks, iou, low_res = predictor.predict(multimask_output=True, **call)
            use_best = True
        best = int(np.argmax(iou)) if use_best else 0
        result.logits.append(np.asarray(masks[best], dtype=np.float32))
        result.low_res.append(np.asarray(low_res[best], dtype=np.float32))
        result.boxes.append(box)
        result.iou.append(float(iou[best]))
    return result
