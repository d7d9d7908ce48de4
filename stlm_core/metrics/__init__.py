"""Anomaly-detection metrics: pure functions on numpy arrays (torch tensors accepted).

Conventions (as in scikit-learn): scores are real, higher = more anomalous; ground truth is {0, 1}; results are
fractions in [0, 1]. Pixel metrics pool all pixels of all images of a category. Inputs are validated and
problems raise :class:`MetricInputError` (a ``ValueError`` and a :class:`stlm_core.errors.StlmError`).

- :func:`compute_metrics`: every key of ``metrics.json`` at once (one sort shared by all pixel metrics).
- :func:`aupro`: exact AUPRO (MVTec AD official definition, 8-connected regions), or the 200-threshold
  approximation with ``method="thresholds"``; :func:`pro_curve` for plots.
- :func:`pixel_auroc`, :func:`pixel_ap`, :func:`pixel_f1_max`: equal to scikit-learn's ``roc_auc_score``,
  ``average_precision_score`` and max F1 over ``precision_recall_curve``, in a fraction of the memory.
- :func:`auroc`, :func:`average_precision`, :func:`f1_max`: the same for 1-D scores (image level).
"""

from stlm_core.metrics.evaluate import METRIC_KEYS, compute_metrics
from stlm_core.metrics.pro import aupro, label_regions, pro_curve
from stlm_core.metrics.ranking import (
    auroc,
    average_precision,
    f1_max,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
)
from stlm_core.metrics.validation import MetricInputError

__all__ = [
    "METRIC_KEYS", "MetricInputError", "aupro", "auroc", "average_precision", "compute_metrics", "f1_max",
    "label_regions", "pixel_ap", "pixel_auroc", "pixel_f1_max", "pro_curve",
]
