"""Exact binary ranking metrics (AUROC, average precision, F1-max) from one sort of the negatives.

Why hand-written instead of ``sklearn.metrics``: scikit-learn sorts all scores with a stable ``argsort``
(int64 indices) and builds several float64 arrays of the input's length, which needs tens of bytes per
pixel (several GiB for the 87M pixels of an MVTec category at 1024 px). Here only the *negatives* are sorted
(in place, numpy's SIMD sort), the positives - few in anomaly segmentation - are sorted on their own, and each
positive gets two counts by binary search: ``n_less`` (negatives with a lower score) and ``n_leq`` (lower or
equal). Every metric is a sum over positives of these integer counts, so the results equal scikit-learn's
``roc_auc_score``, ``average_precision_score`` and the maximum F1 over ``precision_recall_curve`` (ties
included) up to floating-point rounding (< 1e-12 in our tests). Arguments follow scikit-learn's order, ground
truth first: ``auroc(y_true, y_score)``, ``pixel_auroc(masks, maps)``.

Definitions:

- AUROC = P(s_pos > s_neg) + P(s_pos = s_neg) / 2 (Mann-Whitney), which is exactly the area under the ROC
  curve that joins the points of all distinct thresholds by straight lines (the trapezoidal rule).
- AP = sum over distinct positive scores v (descending) of  (#positives at v / P) * precision(>= v);
  thresholds between positive scores change no recall and add nothing.
- F1-max = max over distinct positive scores v of 2 TP / (P + TP + FP) at threshold v; lowering the threshold
  to a negative-only score adds false positives without true ones, so the maximum is at a positive score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from stlm_core.metrics.validation import MetricInputError, check_labels_scores, check_masks_maps


@dataclass(frozen=True)
class Ranking:
    """Sorted scores of a binary problem and the rank counts every metric here is computed from.

    Attributes:
        neg_sorted: scores of the negatives, ascending, shape (N,).
        pos_sorted: scores of the positives, ascending, shape (P,).
        pos_order: permutation with ``pos_sorted = positives[pos_order]`` (positives in input C order).
        n_less: int64 (P,), number of negatives with score < ``pos_sorted[i]``.
        n_leq: int64 (P,), number of negatives with score <= ``pos_sorted[i]``.
    """

    neg_sorted: np.ndarray
    pos_sorted: np.ndarray
    pos_order: np.ndarray
    n_less: np.ndarray
    n_leq: np.ndarray

    @property
    def n_neg(self) -> int:
        return int(self.neg_sorted.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.pos_sorted.shape[0])


def _ranking(neg_sorted: np.ndarray, positives: np.ndarray, what: str) -> Ranking:
    if neg_sorted.size == 0:
        raise MetricInputError(f"no negative {what} (all ground truth is anomalous): the metric is undefined")
    if positives.size == 0:
        raise MetricInputError(f"no positive {what} (all ground truth is normal): the metric is undefined")
    order = np.argsort(positives, kind="stable")
    pos_sorted = positives[order]
    # numpy's binary search narrows its range from the previous key, so sorted keys make this fast.
    n_less = np.searchsorted(neg_sorted, pos_sorted, side="left").astype(np.int64, copy=False)
    n_leq = np.searchsorted(neg_sorted, pos_sorted, side="right").astype(np.int64, copy=False)
    return Ranking(neg_sorted, pos_sorted, order, n_less, n_leq)


def rank_binary(y_true: ArrayLike, y_score: ArrayLike, what: str = "images") -> Ranking:
    """:class:`Ranking` of 1-D ``y_score`` against {0, 1} ``y_true`` (validated; ground truth first)."""
    labels, scores = check_labels_scores(y_true, y_score, what=what.rstrip("s"))
    negatives = np.sort(scores[~labels])
    return _ranking(negatives, scores[labels], what)


def rank_pixels(masks: ArrayLike, maps: ArrayLike) -> Ranking:
    """:class:`Ranking` of all pixels of ``maps`` (N, H, W) against ``masks`` (N, H, W) (validated; ground
    truth first).

    Memory: one copy of the maps (the negatives are sorted in that copy) plus O(#positive pixels); the maps
    keep their dtype (float32 maps are never widened, float64 maps never narrowed, so ties are preserved).
    """
    masks, maps = check_masks_maps(masks, maps)
    flat = maps.reshape(-1)
    pos_idx = np.flatnonzero(masks.reshape(-1))
    positives = flat[pos_idx]
    # Sort a copy in which the positives are pushed past every finite score; the first N entries are then
    # exactly the sorted negatives (cheaper than boolean-mask extraction of the ~all negative pixels).
    work = flat.copy()
    if np.issubdtype(work.dtype, np.floating):
        work[pos_idx] = np.inf
    else:
        work = work.astype(np.float64)  # integer maps: widen so +inf is representable (exact below 2**53)
        work[pos_idx] = np.inf
        positives = positives.astype(np.float64)
    work.sort()
    neg_sorted = work[: flat.size - pos_idx.size]
    return _ranking(neg_sorted, positives, "pixels")


def auroc_from_ranking(r: Ranking) -> float:
    """Area under the ROC curve (ties count one half)."""
    # integer sums: exact up to 2**63 (P * N < 9.2e18)
    wins2 = int(r.n_less.sum(dtype=np.int64)) + int(r.n_leq.sum(dtype=np.int64))
    return wins2 / (2.0 * r.n_pos * r.n_neg)


def _positive_groups(r: Ranking) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct positive score (ascending): TP and FP at that threshold (>=), and the group size."""
    p = r.pos_sorted
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    sizes = np.diff(np.r_[starts, p.size])
    tp = (r.n_pos - starts).astype(np.float64)       # positives with score >= v
    fp = (r.n_neg - r.n_less[starts]).astype(np.float64)  # negatives with score >= v
    return tp, fp, sizes.astype(np.float64)


def ap_from_ranking(r: Ranking) -> float:
    """Average precision, scikit-learn's definition (step-wise, no interpolation)."""
    tp, fp, sizes = _positive_groups(r)
    # descending thresholds: recall increases by sizes / P at each distinct positive score
    return float(np.sum(sizes[::-1] / r.n_pos * (tp[::-1] / (tp[::-1] + fp[::-1]))))


def f1_max_from_ranking(r: Ranking) -> float:
    """Maximum F1 over all thresholds (the F1-max of anomaly-detection papers)."""
    tp, fp, _ = _positive_groups(r)
    return float(np.max(2.0 * tp / (r.n_pos + tp + fp)))


def f1_max_threshold(r: Ranking) -> float:
    """The score threshold (predict anomalous when score >= it) that attains :func:`f1_max_from_ranking`."""
    tp, fp, _ = _positive_groups(r)
    starts = np.flatnonzero(np.r_[True, r.pos_sorted[1:] != r.pos_sorted[:-1]])
    return float(r.pos_sorted[starts[int(np.argmax(2.0 * tp / (r.n_pos + tp + fp)))]])


# ---- public 1-D functions (image level, or any binary scores) ------------------------------------------------


def auroc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve; equals ``sklearn.metrics.roc_auc_score(y_true, y_score)``.

    Parameters
    ----------
    y_true : array of shape (n,)
        Ground truth, {0, 1} or bool (1 = anomalous). Comes first, as in scikit-learn.
    y_score : array of shape (n,)
        Real, finite scores, higher = more anomalous.

    Returns
    -------
    float
        AUROC in [0, 1] (ties count one half).

    Examples
    --------
    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    return auroc_from_ranking(rank_binary(y_true, y_score))


def average_precision(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Average precision in [0, 1] of {0, 1} ``y_true`` (n,) and real ``y_score`` (n,); equals
    ``sklearn.metrics.average_precision_score(y_true, y_score)``."""
    return ap_from_ranking(rank_binary(y_true, y_score))


def f1_max(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Maximum F1 in [0, 1] over all thresholds of {0, 1} ``y_true`` (n,) and real ``y_score`` (n,); equals
    the max of 2PR/(P+R) over ``sklearn.metrics.precision_recall_curve(y_true, y_score)``."""
    return f1_max_from_ranking(rank_binary(y_true, y_score))


# ---- pixel level: all pixels of all images pooled ------------------------------------------------------------


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """AUROC over all pixels of all images pooled.

    Parameters
    ----------
    masks : array of shape (N, H, W) or (H, W)
        Ground truth, {0, 1} or bool (1 = anomalous pixel). Comes first, as in scikit-learn.
    maps : array of shape (N, H, W) or (H, W)
        Anomaly maps, real and finite, higher = more anomalous (torch tensors accepted).

    Returns
    -------
    float
        AUROC in [0, 1]; equals ``roc_auc_score(masks.ravel(), maps.ravel())``.

    Examples
    --------
    >>> import numpy as np
    >>> masks = np.array([[[0, 0], [1, 1]]])
    >>> pixel_auroc(masks, np.array([[[0.1, 0.4], [0.35, 0.8]]]))
    0.75
    >>> pixel_auroc(masks, masks.astype(float)), pixel_auroc(masks, 1.0 - masks)
    (1.0, 0.0)
    """
    return auroc_from_ranking(rank_pixels(masks, maps))


def pixel_ap(masks: ArrayLike, maps: ArrayLike) -> float:
    """Average precision in [0, 1] over all pixels of all images; ``masks`` {0, 1} and ``maps`` real, both
    (N, H, W) or (H, W), ground truth first."""
    return ap_from_ranking(rank_pixels(masks, maps))


def pixel_f1_max(masks: ArrayLike, maps: ArrayLike) -> float:
    """Maximum F1 in [0, 1] over all pixels of all images; ``masks`` {0, 1} and ``maps`` real, both
    (N, H, W) or (H, W), ground truth first."""
    return f1_max_from_ranking(rank_pixels(masks, maps))
