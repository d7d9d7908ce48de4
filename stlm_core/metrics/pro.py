"""Per-region overlap (PRO) and its area up to an FPR limit (AUPRO), exact and fixed-threshold.

Definitions (MVTec AD official evaluation, Bergmann et al., IJCV 2021, ``generic_util.compute_pro`` +
``trapezoid``):

- Regions are the connected components of each image's ground-truth mask, found with
  ``scipy.ndimage.label`` and a 3x3 all-ones structure, i.e. **8-connectivity** (diagonal neighbours join a
  region). We use 8-connectivity because the official MVTec script does, and so do the implementations the
  papers' numbers come from (anomalib/kornia and OpenCV components, ``skimage.measure.label``'s default full
  connectivity in RD4AD/DeSTSeg-style code); 4-connectivity would split diagonal strokes (scratches, cracks)
  into many small regions and inflate their weight. ``connectivity=4`` is available for comparison.
- At a threshold t (anomalous when score >= t): FPR(t) = #normal pixels with score >= t / #normal pixels
  (over all images, normal images included); PRO(t) = mean over all regions of all images of
  |region ∩ {score >= t}| / |region|.
- The curve has one vertex per distinct score, plus (0, 0) and (1, 1); AUPRO is its trapezoidal area for
  FPR in [0, limit], with the curve linearly interpolated at FPR = limit, divided by the limit (so 1 = perfect).

**Exact computation without enumerating thresholds.** Segments in which FPR does not change have no area. A
group of k tied normal pixels at score s moves FPR by k/N and PRO from PRO(> s) to PRO(>= s), contributing
(k/N)(PRO(> s) + PRO(>= s))/2. Summing over normal pixels and swapping the sums turns the area into
sum over anomalous pixels p of w_p times the number of normal pixels below p (ties one half), with
w_p = 1 / (#regions * |region of p|): a weighted Mann-Whitney statistic, computed from the same rank counts as
the pixel AUROC (:mod:`stlm_core.metrics.ranking`), restricted to the normal pixels above the FPR limit, plus
the interpolated part of the tie group that crosses the limit. This equals the official script's number up to
its float32 rounding of the FPRs (which it does to save memory), and is invariant to monotone transforms of
the scores.

**Fixed-threshold approximation** (``method="thresholds"``): the ``compute_pro(masks, amaps, num_th=200)``
found in RD4AD, DeSTSeg and code derived from them: ``num_th`` thresholds evenly spaced from the minimum to the
maximum score (``np.arange(min, max, (max - min) / num_th)``), binarised with ``score > t``, the points with
FPR < limit kept, the FPRs divided by the largest kept FPR, and the trapezoidal area under PRO. It misses the
curve between grid points and rescales by the last FPR instead of the limit, so it can move the number by
tenths of a point; notebooks report both.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from stlm_core.metrics.ranking import Ranking, rank_pixels
from stlm_core.metrics.validation import MetricInputError, check_binary

_STRUCTURES = {8: np.ones((3, 3), dtype=int), 4: ndimage.generate_binary_structure(2, 1).astype(int)}


def label_regions(masks, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Connected ground-truth regions of every image.

    Args:
        masks: {0, 1} array (N, H, W) (or (H, W)).
        connectivity: 8 (default, MVTec official) or 4.

    Returns:
        ``(region_of_pixel, region_sizes)``: for each positive pixel in C order of ``masks`` (the order of
        ``maps[masks]``) the index of its region, int64 (P,); and the pixel count of each region, int64 (R,).
        Regions never span two images.
    """
    if connectivity not in _STRUCTURES:
        raise MetricInputError(f"connectivity must be 8 or 4, got {connectivity!r}")
    masks = check_binary(masks, "masks")
    if masks.ndim == 2:
        masks = masks[None]
    structure = _STRUCTURES[connectivity]
    region_ids, sizes = [], []
    offset = 0
    for mask in masks:
        if not mask.any():
            continue
        labels, count = ndimage.label(mask, structure=structure, output=np.int32)
        region_ids.append(labels[mask].astype(np.int64) + (offset - 1))
        sizes.append(np.bincount(labels.reshape(-1), minlength=count + 1)[1:])
        offset += count
    if not region_ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(region_ids), np.concatenate(sizes).astype(np.int64)


def _check_limit(fpr_limit: float) -> float:
    fpr_limit = float(fpr_limit)
    if not 0.0 < fpr_limit <= 1.0:
        raise MetricInputError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    return fpr_limit


def pro_weights(r: Ranking, region_of_pixel: np.ndarray, region_sizes: np.ndarray) -> np.ndarray:
    """w_p = 1 / (#regions * |region of p|) for each positive of ``r`` in sorted order (float64, sums to 1)."""
    if region_sizes.size == 0:
        raise MetricInputError("no ground-truth regions (all masks are empty): AUPRO is undefined")
    return 1.0 / (region_sizes.size * region_sizes[region_of_pixel[r.pos_order]].astype(np.float64))


def _limit_group(r: Ranking, fpr_limit: float) -> tuple[float, int, int]:
    """The normal score u whose tie group makes FPR reach the limit, with #normal > u and #normal >= u."""
    n = r.n_neg
    m = min(max(math.ceil(fpr_limit * n), 1), n)  # smallest m with m / n >= limit (fixed up for rounding)
    while m > 1 and (m - 1) / n >= fpr_limit:
        m -= 1
    while m < n and m / n < fpr_limit:
        m += 1
    u = r.neg_sorted[n - m]
    above = n - int(np.searchsorted(r.neg_sorted, u, side="right"))
    at_or_above = n - int(np.searchsorted(r.neg_sorted, u, side="left"))
    return u, above, at_or_above


def aupro_from_ranking(r: Ranking, weights: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Exact normalised AUPRO from a pixel :class:`Ranking` and :func:`pro_weights` (see the module doc)."""
    fpr_limit = _check_limit(fpr_limit)
    n = r.n_neg
    u, above, at_or_above = _limit_group(r, fpr_limit)
    n_not_above = n - above  # normal pixels with score <= u
    # Area for FPR in [0, above / n]: each normal pixel j with score > u contributes
    # (1/n) * (PRO(> s_j) + PRO(>= s_j)) / 2; swapped into a sum over anomalous pixels.
    leq = np.clip(r.n_leq - n_not_above, 0, None)
    less = np.clip(r.n_less - n_not_above, 0, None)
    area = 0.5 * (float(np.dot(weights, leq)) + float(np.dot(weights, less))) / n
    # The tie group at u: a straight segment from (F_a, PRO(> u)) to (F_b, PRO(>= u)), cut at the limit.
    f_a, f_b = above / n, at_or_above / n
    pro_gt = float(weights[np.searchsorted(r.pos_sorted, u, side="right"):].sum())
    pro_ge = float(weights[np.searchsorted(r.pos_sorted, u, side="left"):].sum())
    y_lim = pro_gt + (pro_ge - pro_gt) * (fpr_limit - f_a) / (f_b - f_a)
    area += 0.5 * (pro_gt + y_lim) * (fpr_limit - f_a)
    return area / fpr_limit


def _count_at_most(sorted_scores: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """#{sorted_scores <= key} for float64 ``keys``, compared exactly in float64, without widening a float32
    ``sorted_scores`` (``np.searchsorted`` would copy all of it to the common dtype)."""
    keys = np.asarray(keys, np.float64)
    if sorted_scores.dtype == np.float64:
        return np.searchsorted(sorted_scores, keys, side="right")
    narrow = keys.astype(sorted_scores.dtype)
    # ``narrow`` is the nearest representable value, so no score lies strictly between it and the key:
    # when it rounded up, the scores equal to it are above the key; otherwise they are not.
    return np.where(narrow.astype(np.float64) > keys,
                    np.searchsorted(sorted_scores, narrow, side="left"),
                    np.searchsorted(sorted_scores, narrow, side="right"))


def aupro_thresholds_from_ranking(r: Ranking, weights: np.ndarray, fpr_limit: float = 0.3,
                                  num_thresholds: int = 200) -> float:
    """The fixed-threshold approximation of RD4AD/DeSTSeg-style code (see the module doc)."""
    fpr_limit = _check_limit(fpr_limit)
    if num_thresholds < 2:
        raise MetricInputError(f"num_thresholds must be >= 2, got {num_thresholds}")
    lo = float(min(r.neg_sorted[0], r.pos_sorted[0]))
    hi = float(max(r.neg_sorted[-1], r.pos_sorted[-1]))
    if hi == lo:
        raise MetricInputError("all scores are equal: the threshold grid is empty")
    thresholds = np.arange(lo, hi, (hi - lo) / num_thresholds)
    # FPR(t) with "score > t": normal pixels above t
    fpr = (r.n_neg - _count_at_most(r.neg_sorted, thresholds)) / r.n_neg
    # PRO(t): a positive p counts for every grid threshold strictly below its score
    below = np.searchsorted(thresholds, r.pos_sorted, side="left")
    mass = np.bincount(below, weights=weights, minlength=thresholds.size + 1)
    pro = np.cumsum(mass[::-1])[::-1][1:]  # pro[k] = sum of weights with below > k
    keep = fpr < fpr_limit
    if not np.any(keep) or fpr[keep].max() == 0:
        return float("nan")  # the reference code divides by zero here
    x = fpr[keep] / fpr[keep].max()
    y = pro[keep]
    return float(abs(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x))))


def aupro(masks: ArrayLike, maps: ArrayLike, *, fpr_limit: float = 0.3,
          method: Literal["exact", "thresholds"] = "exact", num_thresholds: int = 200,
          connectivity: int = 8) -> float:
    """Normalised area under the per-region-overlap curve for FPR in [0, ``fpr_limit``].

    Parameters
    ----------
    masks : array of shape (N, H, W) or (H, W)
        Ground truth, {0, 1} or bool (1 = anomalous pixel). Comes first, as in scikit-learn.
    maps : array of shape (N, H, W) or (H, W)
        Anomaly maps, real and finite, higher = more anomalous (torch tensors accepted).
    fpr_limit : float
        Upper FPR bound, in (0, 1]; 0.3 as in MVTec AD.
    method : {"exact", "thresholds"}
        ``"exact"`` (MVTec official definition, all distinct scores) or ``"thresholds"`` (the
        ``num_thresholds``-point approximation of RD4AD/DeSTSeg-style code; see the module doc).
    num_thresholds : int
        Grid size for ``method="thresholds"``.
    connectivity : {8, 4}
        Connectivity of the ground-truth regions; 8 is the MVTec official one.

    Returns
    -------
    float
        AUPRO in [0, 1] (1 = every region fully detected before any false positive).

    Examples
    --------
    >>> import numpy as np
    >>> masks = np.array([[[1, 1, 0, 0, 0]]])
    >>> maps = np.array([[[0.9, 0.1, 0.8, 0.2, 0.05]]])
    >>> round(aupro(masks, maps), 6), round(aupro(masks, maps, fpr_limit=1.0), 6)
    (0.5, 0.666667)
    """
    r = rank_pixels(masks, maps)
    region_of_pixel, sizes = label_regions(masks, connectivity)
    weights = pro_weights(r, region_of_pixel, sizes)
    if method == "exact":
        return aupro_from_ranking(r, weights, fpr_limit)
    if method == "thresholds":
        return aupro_thresholds_from_ranking(r, weights, fpr_limit, num_thresholds)
    raise MetricInputError(f"method must be 'exact' or 'thresholds', got {method!r}")


def pro_curve(masks: ArrayLike, maps: ArrayLike, *, fpr_limit: float = 0.3,
              connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The exact PRO curve up to ``fpr_limit``: ``(fpr, pro)`` float64 arrays, one vertex per distinct score.

    ``masks`` ({0, 1}) and ``maps`` (real) are (N, H, W) or (H, W), ground truth first. The curve starts at
    (0, 0) and ends with the interpolated point at FPR = ``fpr_limit``, so that
    ``np.trapezoid(pro, fpr) / fpr_limit == aupro(masks, maps, fpr_limit=fpr_limit)`` up to rounding. Meant
    for plots (it has one point per distinct score above the limit: subsample for large inputs).
    """
    fpr_limit = _check_limit(fpr_limit)
    r = rank_pixels(masks, maps)
    region_of_pixel, sizes = label_regions(masks, connectivity)
    weights = pro_weights(r, region_of_pixel, sizes)
    n = r.n_neg
    u, above, at_or_above = _limit_group(r, fpr_limit)
    values = np.unique(np.concatenate([r.neg_sorted[n - above:], r.pos_sorted[r.pos_sorted > u]]))[::-1]
    fpr = (n - np.searchsorted(r.neg_sorted, values, side="left")) / n
    cum = np.r_[np.cumsum(weights[::-1])[::-1], 0.0]  # cum[i] = sum of weights[i:]
    pro = cum[np.searchsorted(r.pos_sorted, values, side="left")]
    f_a, f_b = above / n, at_or_above / n
    pro_gt = cum[np.searchsorted(r.pos_sorted, u, side="right")]
    pro_ge = cum[np.searchsorted(r.pos_sorted, u, side="left")]
    y_lim = pro_gt + (pro_ge - pro_gt) * (fpr_limit - f_a) / (f_b - f_a)
    return np.r_[0.0, fpr, fpr_limit], np.r_[0.0, pro, y_lim]
