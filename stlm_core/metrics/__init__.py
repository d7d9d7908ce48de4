"""Anomaly-detection metrics: pure functions on numpy arrays (torch tensors accepted).

Conventions (as in scikit-learn): ground truth comes first, then scores - ``auroc(y_true, y_score)``,
``pixel_auroc(masks, maps)``, ``aupro(masks, maps, fpr_limit=0.3)`` - and every option after the two arrays is
keyword-only (:func:`compute_metrics` takes keywords only). Ground truth is {0, 1} or bool; scores are real,
higher = more anomalous; results are fractions in [0, 1]. Ground truth that is not binary while the scores are
raises an error that says the arguments look swapped. Pixel metrics pool all pixels of all images of a
category. Inputs are validated and problems raise :class:`MetricInputError` (a ``ValueError`` and a
:class:`stlm_core.errors.StlmError`).

- :func:`compute_metrics` (module :mod:`stlm_core.metrics.compute`): every key of ``metrics.json`` at once
  (one sort shared by all pixel metrics).
- :func:`aupro`: exact AUPRO (MVTec AD official definition, 8-connected regions), or the 200-threshold
  approximation with ``method="thresholds"``; :func:`pro_curve` for plots.
- :func:`pixel_auroc`, :func:`pixel_ap`, :func:`pixel_f1_max`: equal to scikit-learn's ``roc_auc_score``,
  ``average_precision_score`` and max F1 over ``precision_recall_curve``, in a fraction of the memory.
- :func:`auroc`, :func:`average_precision`, :func:`f1_max`: the same for 1-D scores (image level).
"""

from stlm_core.metrics.compute import METRIC_KEYS, compute_metrics
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
