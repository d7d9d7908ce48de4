"""The one list of dataset names: name -> reader class, aliases, and the functions that open a dataset by name.

Canonical names are :data:`DATASET_NAMES` (the ``--dataset`` choices); :data:`ALIASES` maps other accepted
spellings onto them. Names are case-insensitive. A reader's ``name`` is its class attribute, never set afterwards.
"""

from __future__ import annotations

from pathlib import Path

from stlm_core.data.base import DatasetReader
from stlm_core.data.dagm import DagmReader
from stlm_core.data.loco import LocoReader
from stlm_core.data.mvtec import MVTecReader, SyntheticReader
from stlm_core.data.sample import AnomalyDataset
from stlm_core.data.visa import VisaReader
from stlm_core.errors import DatasetError

READERS: dict[str, type[DatasetReader]] = {
    "mvtec": MVTecReader,
    "visa": VisaReader,
    "dagm": DagmReader,
    "loco": LocoReader,
    "synthetic": SyntheticReader,
}
ALIASES: dict[str, str] = {"mvtec_ad": "mvtec", "mvtec_loco": "loco"}
DATASET_NAMES: tuple[str, ...] = tuple(READERS)


def canonical_name(dataset: str) -> str:
    """The canonical name of ``dataset`` (an entry of :data:`DATASET_NAMES` or :data:`ALIASES`, any case)."""
    name = dataset.lower()
    name = ALIASES.get(name, name)
    if name not in READERS:
        raise DatasetError(f"unknown dataset {dataset!r}; use one of: {', '.join(DATASET_NAMES)}.")
    return name


def get_reader(dataset: str) -> DatasetReader:
    """A new reader for a dataset name (one of :data:`DATASET_NAMES` or an alias)."""
    return READERS[canonical_name(dataset)]()


def list_categories(dataset: str, root: str | Path) -> list[str]:
    """Sorted category names of a dataset root."""
    return get_reader(dataset).categories(Path(root))


def select_categories(dataset: str, root: str | Path, categories=None, max_categories: int | None = None) -> list[str]:
    """The categories a chapter runs on: ``categories`` as a list, or one string (``"bottle"`` or ``"bottle,cable"``,
    as ``papermill -p categories bottle`` passes it), default all of the root; at most ``max_categories``. Unknown
    names raise :class:`~stlm_core.errors.DatasetError` listing the available ones."""
    from stlm_core.errors import DatasetError

    available = list_categories(dataset, root)
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    chosen = list(categories) if categories else available
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise DatasetError(f"categories {unknown} not found in the {dataset} root {root}; available: "
                           f"{', '.join(available) or 'none'}.")
    return chosen[:max_categories] if max_categories else chosen


def open_dataset(dataset: str, root: str | Path, category: str, split: str) -> AnomalyDataset:
    """A lazily loaded dataset of one category and split (``train`` | ``test``; LOCO also ``validation``)."""
    reader = get_reader(dataset)
    return AnomalyDataset(reader.name, Path(root), category, split, reader.records(Path(root), category, split))
