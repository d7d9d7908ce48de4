"""Dataset readers: MVTec AD, VisA, DAGM 2007, MVTec LOCO AD and the embedded synthetic dataset.

All readers yield :class:`~stlm_core.data.sample.Sample` (see there for conventions)::

    from stlm_core.data import open_dataset, list_categories
    train = open_dataset("synthetic", "data/synthetic", "carpet_like", "train")
    sample = train[0]          # loads lazily: sample.image (H, W, 3) uint8, sample.mask (H, W) {0, 1}
"""

from __future__ import annotations

from pathlib import Path

from stlm_core.data.sample import AnomalyDataset, Sample, SampleRecord
from stlm_core.errors import DatasetError

DATASET_NAMES = ("mvtec", "visa", "dagm", "loco", "synthetic")


def get_reader(dataset: str):
    """The reader for a dataset name (one of :data:`DATASET_NAMES`)."""
    name = dataset.lower()
    if name in ("mvtec", "mvtec_ad", "synthetic"):
        from stlm_core.data.mvtec import MVTecReader

        reader = MVTecReader()
        reader.name = "synthetic" if name == "synthetic" else "mvtec"
        return reader
    if name == "visa":
        from stlm_core.data.visa import VisaReader

        return VisaReader()
    if name == "dagm":
        from stlm_core.data.dagm import DagmReader

        return DagmReader()
    if name in ("loco", "mvtec_loco"):
        from stlm_core.data.loco import LocoReader

        return LocoReader()
    raise DatasetError(f"unknown dataset {dataset!r}; use one of: {', '.join(DATASET_NAMES)}.")


def list_categories(dataset: str, root: str | Path) -> list[str]:
    """Sorted category names of a dataset root."""
    return get_reader(dataset).categories(Path(root))


def open_dataset(dataset: str, root: str | Path, category: str, split: str) -> AnomalyDataset:
    """A lazily loaded dataset of one category and split (``train`` | ``test``; LOCO also ``validation``)."""
    reader = get_reader(dataset)
    return AnomalyDataset(reader.name, Path(root), category, split, reader.records(Path(root), category, split))


__all__ = ["AnomalyDataset", "Sample", "SampleRecord", "DATASET_NAMES", "get_reader", "list_categories", "open_dataset"]
