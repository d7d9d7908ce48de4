"""The reader interface shared by all datasets, and helpers common to MVTec-style layouts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from stlm_core.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".PNG", ".JPG", ".JPEG", ".BMP")


class DatasetReader(ABC):
    """Lists the categories and sample records of one dataset layout. Reading pixels is left to the records."""

    name: str = ""
    splits: tuple[str, ...] = ("train", "test")

    @abstractmethod
    def categories(self, root: Path) -> list[str]:
        """Category names found under ``root`` (sorted); raise :class:`DatasetError` if there are none."""

    @abstractmethod
    def records(self, root: Path, category: str, split: str) -> list:
        """:class:`~stlm_core.data.sample.SampleRecord` s of one category and split, sorted by path."""


def require_root(root: Path, dataset: str) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(
            f"dataset root {root} does not exist. Download the dataset with 'stlm data download {dataset} "
            f"--root {root}' or pass the folder that holds it with --root."
        )
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder; pass the folder that holds the categories.")
    return root


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; hidden files (e.g. macOS ``._000.png``) are skipped."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix in IMAGE_SUFFIXES and not p.name.startswith("."))


def require_category(root: Path, category: str, known: list[str], dataset: str) -> None:
    if category not in known:
        raise DatasetError(
            f"category {category!r} not found in {dataset} root {root}; available: {', '.join(known) or 'none'}."
        )


def require_split(split: str, splits: tuple[str, ...], dataset: str) -> None:
    if split not in splits:
        raise DatasetError(f"split {split!r} does not exist for {dataset}; use one of {', '.join(splits)}.")


def require_nonempty_train(records: list, root: Path, category: str, folder: Path) -> list:
    if not records:
        raise DatasetError(
            f"the training split of category {category!r} is empty: no normal images in {folder}. "
            "Training needs defect-free images there; check the download or the conversion."
        )
    return records
