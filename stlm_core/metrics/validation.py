"""Input checks shared by the metrics (scikit-learn style: fail early with a message that says what to fix).

Conventions: ground truth comes first, as in scikit-learn (``y_true, y_score`` / ``masks, maps``). Masks have
values in {0, 1} (bool, integer or float), shape (N, H, W) (a single (H, W) mask is accepted as N = 1);
anomaly maps have the same shape, real-valued, higher = more anomalous. Image labels and scores are 1-D of
length N. Torch tensors are accepted and converted with ``.detach().cpu().numpy()``.
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


def _is_binary(x: Any) -> bool:
    """Whether ``x`` holds only 0 and 1 (used to spot swapped arguments; never raises)."""
    try:
        arr = as_numpy(x, "y_score")
    except MetricInputError:
        return False
    if arr.dtype == np.bool_:
        return True
    if arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        return False
    return bool(np.all((arr == 0) | (arr == 1)))


def check_truth(y_true: Any, y_score: Any, name: str) -> np.ndarray:
    """:func:`check_binary` of the ground truth; when it is not binary but ``y_score`` is, say that the
    arguments look swapped (the metrics take ground truth first, as scikit-learn does)."""
    try:
        return check_binary(y_true, name)
    except MetricInputError as exc:
        if _is_binary(y_score):
            raise MetricInputError(f"{exc}. The scores are binary and the ground truth is not: arguments "
                                   "swapped? ground truth first, as in scikit-learn: "
                                   "metric(y_true, y_score) / metric(masks, maps)") from None
        raise


def check_masks_maps(masks: Any, maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate pixel-level inputs, ground truth first; returns (masks bool (N, H, W), maps (N, H, W))."""
    masks = check_truth(masks, maps, "masks")
    maps = check_scores(maps, "maps")
    if maps.ndim == 2:
        maps = maps[None]
    if masks.ndim == 2:
        masks = masks[None]
    if maps.ndim != 3:
        raise MetricInputError(f"maps must have shape (N, H, W) or (H, W), got {maps.shape}")
    if maps.shape != masks.shape:
        raise MetricInputError(f"masks and maps must have the same shape, got {masks.shape} and {maps.shape}")
    return masks, maps


def check_labels_scores(y_true: Any, y_score: Any, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Validate {0, 1} labels and 1-D scores of the same length, ground truth first; returns
    (labels bool, scores)."""
    labels = check_truth(y_true, y_score, f"{what} labels (y_true)")
    if labels.ndim != 1:
        raise MetricInputError(f"{what} labels (y_true) must be 1-D, got shape {labels.shape}")
    scores = check_scores(y_score, f"{what} scores (y_score)")
    if scores.ndim != 1:
        raise MetricInputError(f"{what} scores (y_score) must be 1-D, got shape {scores.shape}")
    if scores.shape != labels.shape:
        raise MetricInputError(f"{what} labels and scores must have the same length, got {labels.shape[0]} "
                               f"and {scores.shape[0]}")
    return labels, scores
