"""Input checks shared by the metrics (scikit-learn style: fail early with a message that says what to fix).

Conventions: anomaly maps are real-valued, higher = more anomalous, shape (N, H, W) (a single (H, W) map is
accepted as N = 1); masks have the same shape with values in {0, 1} (bool, integer or float). Image scores and
labels are 1-D of length N. Torch tensors are accepted and converted with ``.detach().cpu().numpy()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stlm_core.errors import StlmError


class MetricInputError(StlmError, ValueError):
    """Inputs to a metric are malformed (shape mismatch, NaN/inf, non-binary mask, a single class, ...)."""


def as_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array without copying when possible (torch tensors: detach, cpu; half -> float32)."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.float16", "torch.bfloat16"):
            x = x.float()
        x = x.numpy()
    elif isinstance(x, (list, tuple)) and x and hasattr(x[0], "shape") and len(np.shape(x[0])) >= 1:
        x = np.stack([as_numpy(item, name) for item in x])
    arr = np.asarray(x)
    if arr.dtype == object:
        raise MetricInputError(f"{name} must be a numeric array, got an object array")
    return arr


def check_scores(x: Any, name: str) -> np.ndarray:
    """Real-valued, finite scores (float16 is promoted to float32; other dtypes are kept, never narrowed)."""
    arr = as_numpy(x, name)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MetricInputError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.size == 0:
        raise MetricInputError(f"{name} is empty")
    if np.issubdtype(arr.dtype, np.floating):
        # min/max propagate NaN and expose +-inf without allocating a boolean array of the input's size
        lo, hi = arr.min(), arr.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise MetricInputError(f"{name} contains {bad} NaN or infinite values; anomaly scores must be finite")
    return arr


def check_binary(x: Any, name: str) -> np.ndarray:
    """A boolean view/copy of a {0, 1} array (bool, integer or float); anything else raises."""
    arr = as_numpy(x, name)
    if arr.dtype == np.bool_:
        return arr
    if arr.size == 0:
        raise MetricInputError(f"{name} is empty")
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 1:
            raise MetricInputError(f"{name} must be binary (values 0 and 1), found values in [{lo}, {hi}]; "
                                   "threshold it first, e.g. mask > 0")
        if arr.dtype.itemsize == 1:
            return arr.view(np.bool_)  # zero-copy: the values are exactly 0 or 1
        return arr.astype(np.bool_)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all((arr == 0) | (arr == 1)):
            raise MetricInputError(f"{name} must be binary (values 0 and 1); found other values (e.g. a resized "
                                   "soft mask): threshold it first, e.g. mask > 0.5")
        return arr.astype(np.bool_)
    raise MetricInputError(f"{name} must be a binary array, got dtype {arr.dtype}")


def check_maps_masks(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate pixel-level inputs; returns (maps (N, H, W), masks bool (N, H, W))."""
    maps = check_scores(maps, "maps")
    masks = check_binary(masks, "masks")
    if maps.ndim == 2:
        maps = maps[None]
    if masks.ndim == 2:
        masks = masks[None]
    if maps.ndim != 3:
        raise MetricInputError(f"maps must have shape (N, H, W) or (H, W), got {maps.shape}")
    if maps.shape != masks.shape:
        raise MetricInputError(f"maps and masks must have the same shape, got {maps.shape} and {masks.shape}")
    return maps, masks


def check_scores_labels(scores: Any, labels: Any, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Validate 1-D scores and {0, 1} labels of the same length; returns (scores, labels bool)."""
    scores = check_scores(scores, f"{what} scores")
    if scores.ndim != 1:
        raise MetricInputError(f"{what} scores must be 1-D, got shape {scores.shape}")
    labels_arr = check_binary(labels, f"{what} labels")
    if labels_arr.ndim != 1:
        raise MetricInputError(f"{what} labels must be 1-D, got shape {labels_arr.shape}")
    if scores.shape != labels_arr.shape:
        raise MetricInputError(f"{what} scores and labels must have the same length, got {scores.shape[0]} "
                               f"and {labels_arr.shape[0]}")
    return scores, labels_arr
