"""Dataset readers: MVTec AD, VisA, DAGM 2007, MVTec LOCO AD and the embedded synthetic dataset.

All readers yield :class:`~stlm_core.data.sample.Sample` (see there for conventions)::

    from stlm_core.data import open_dataset, list_categories
    train = open_dataset("synthetic", "data/synthetic", "carpet_like", "train")
    sample = train[0]          # loads lazily: sample.image (H, W, 3) uint8, sample.mask (H, W) {0, 1}

Dataset names and their readers live in :mod:`~stlm_core.data.registry`; :func:`validate_split` lists every
problem of a split before work starts (:mod:`~stlm_core.data.validate`).
"""

from __future__ import annotations

from stlm_core.data.problems import DataProblem
from stlm_core.data.registry import (ALIASES, DATASET_NAMES, READERS, get_reader, list_categories, open_dataset,
                                     select_categories)
from stlm_core.data.sample import AnomalyDataset, Sample, SampleRecord
from stlm_core.data.spec import DataSpec
from stlm_core.data.validate import raise_for_problems, validate_split

__all__ = [
    "AnomalyDataset", "Sample", "SampleRecord", "DATASET_NAMES", "ALIASES", "READERS", "get_reader",
    "list_categories", "select_categories", "open_dataset", "DataSpec", "DataProblem", "validate_split",
    "raise_for_problems",
]
