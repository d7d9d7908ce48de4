"""``compute_metrics``: every number of a ``metrics.json`` from masks and maps.

The pixel metrics share one :class:`~stlm_core.metrics.ranking.Ranking` (one sort of the normal pixels), so
all of them together cost about as much as one; see :mod:`stlm_core.metrics.ranking` and
:mod:`stlm_core.metrics.pro` for definitions and exactness.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from numpy.typing import ArrayLike

from stlm_core.metrics.pro import aupro_from_ranking, aupro_thresholds_from_ranking, label_regions, pro_weights
from stlm_core.metrics.ranking import (
    ap_from_ranking,
    auroc_from_ranking,
    f1_max_from_ranking,
    rank_binary,
    rank_pixels,
)
from stlm_core.metrics.validation import MetricInputError, check_masks_maps

METRIC_KEYS: tuple[str, ...] = (
    "image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap", "pixel_f1_max", "image_ap", "image_f1_max",
)


def compute_metrics(*, masks: ArrayLike, maps: ArrayLike, labels: ArrayLike | None = None,
                    image_scores: ArrayLike | None = None, fpr_limit: float = 0.3, connectivity: int = 8,
                    aupro_thresholds: int | None = None, timings: dict | None = None) -> dict:
    """All anomaly-detection metrics of one category (every argument is keyword-only).

    Parameters
    ----------
    masks : array of shape (N, H, W)
        Pixel ground truth, {0, 1} or bool (1 = anomalous).
    maps : array of shape (N, H, W)
        Anomaly maps, real and finite, higher = more anomalous (torch tensors accepted). Keep them float32
        at 1024 px: the pixel metrics need about one extra copy of the maps in memory.
    labels : array of shape (N,), optional
        Image ground truth {0, 1}; default: 1 where the mask has any positive pixel.
    image_scores : array of shape (N,), optional
        Image anomaly scores, higher = more anomalous; default: the maximum of each map.
    fpr_limit : float
        FPR bound of the AUPRO, in (0, 1] (0.3, normalised).
    connectivity : {8, 4}
        Ground-truth region connectivity for the AUPRO (8 = MVTec official).
    aupro_thresholds : int, optional
        If given, also report ``pixel_aupro_thresholds``, the fixed-grid approximation with this many
        thresholds (RD4AD/DeSTSeg-style; see :mod:`stlm_core.metrics.pro`).
    timings : dict, optional
        If a dict is passed, seconds per step are stored in it.

    Returns
    -------
    dict
        ``{key: float | None}`` for :data:`METRIC_KEYS` (fractions in [0, 1]). Image metrics are ``None``
        (with a warning) when all images have the same label; pixel metrics raise :class:`MetricInputError`
        when there are no anomalous or no normal pixels.

    Examples
    --------
    >>> import numpy as np
    >>> masks = np.zeros((2, 2, 3), dtype=np.uint8)
    >>> masks[0, 0, :2] = 1
    >>> maps = np.array([[[0.9, 0.8, 0.1], [0.2, 0.1, 0.3]], [[0.1, 0.2, 0.1], [0.3, 0.2, 0.1]]])
    >>> out = compute_metrics(masks=masks, maps=maps)
    >>> out["pixel_auroc"], out["pixel_aupro"], out["image_auroc"]
    (1.0, 1.0, 1.0)
    """
    clock = time.perf_counter
    t0 = clock()
    masks, maps = check_masks_maps(masks, maps)
    n_images = maps.shape[0]
    if image_scores is None:
        image_scores = maps.reshape(n_images, -1).max(axis=1)
    if labels is None:
        labels = masks.reshape(n_images, -1).any(axis=1)
    if np.shape(image_scores) != (n_images,) or np.shape(labels) != (n_images,):
        raise MetricInputError(f"labels and image_scores must have shape ({n_images},), got "
                               f"{np.shape(labels)} and {np.shape(image_scores)}")
    t1 = clock()
    out: dict = {}
    try:
        image = rank_binary(labels, image_scores, what="images")
        out["image_auroc"] = auroc_from_ranking(image)
        out["image_ap"] = ap_from_ranking(image)
        out["image_f1_max"] = f1_max_from_ranking(image)
    except MetricInputError as exc:
        if "no positive" not in str(exc) and "no negative" not in str(exc):
            raise
        warnings.warn(f"image metrics not computed: {exc}", stacklevel=2)
        out.update(image_auroc=None, image_ap=None, image_f1_max=None)
    t2 = clock()
    pixels = rank_pixels(masks, maps)
    t3 = clock()
    out["pixel_auroc"] = auroc_from_ranking(pixels)
    t4 = clock()
    out["pixel_ap"] = ap_from_ranking(pixels)
    out["pixel_f1_max"] = f1_max_from_ranking(pixels)
    t5 = clock()
    region_of_pixel, sizes = label_regions(masks, connectivity)
    weights = pro_weights(pixels, region_of_pixel, sizes)
    t6 = clock()
    out["pixel_aupro"] = aupro_from_ranking(pixels, weights, fpr_limit)
    t7 = clock()
    if aupro_thresholds is not None:
        out["pixel_aupro_thresholds"] = aupro_thresholds_from_ranking(pixels, weights, fpr_limit, aupro_thresholds)
    t8 = clock()
    if timings is not None:
        timings.update({
            "validate_s": t1 - t0, "image_s": t2 - t1, "pixel_sort_s": t3 - t2, "pixel_auroc_s": t4 - t3,
            "pixel_ap_f1_s": t5 - t4, "regions_s": t6 - t5, "pixel_aupro_s": t7 - t6,
            "pixel_aupro_thresholds_s": t8 - t7, "total_s": t8 - t0,
        })
    keys = METRIC_KEYS + (("pixel_aupro_thresholds",) if aupro_thresholds is not None else ())
    return {key: (None if out[key] is None else float(out[key])) for key in keys}
