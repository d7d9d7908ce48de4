"""The reader interface shared by all datasets, and helpers common to MVTec-style layouts.

A reader's :meth:`~DatasetReader.scan` lists a split's records *and* every per-file problem it meets (a defect image
without its mask, an image its label file does not list, an empty split) without stopping;
:meth:`~DatasetReader.records` is the strict form that raises the first of them. Problems of the layout itself
(no root, unknown category or split, an unreadable label file) raise :class:`DatasetError` from both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from stlm_core.data.problems import DataProblem
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
    def scan(self, root: Path, category: str, split: str) -> tuple[list, list[DataProblem]]:
        """Records of one category and split (sorted by path) and every problem found while listing them.

        A defect image without its mask is still listed (with no mask) so that its pixels can be checked.
        """

    def records(self, root: Path, category: str, split: str) -> list:
        """:class:`~stlm_core.data.sample.SampleRecord` s of one category and split, sorted by path.

        Raises :class:`DatasetError` with the first problem :meth:`scan` found.
        """
        records, problems = self.scan(root, category, split)
        if problems:
            raise DatasetError(problems[0].message)
        return records


def require_root(root: Path, dataset: str) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        make = (f"Generate it with 'stlm data synthetic {root}'" if dataset == "synthetic" else
                f"Download the dataset with 'stlm data download {dataset} --root {root}'")
        raise DatasetError(f"dataset root {root} does not exist. {make} or pass the folder that holds it with --root.")
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


def empty_train_problems(records: list, category: str, folder: Path) -> list[DataProblem]:
    """``[problem]`` if the training split has no records, else ``[]``."""
    if records:
        return []
    return [DataProblem(
        Path(folder),
        f"the training split of category {category!r} is empty: no normal images in {folder}",
        "Training needs defect-free images there; check the download or the conversion.",
    )]


def empty_test_problems(records: list, folder: Path, expected: str) -> list[DataProblem]:
    """``[problem]`` if the test split has no records (``expected`` describes where images belong), else ``[]``."""
    if records:
        return []
    return [DataProblem(Path(folder), f"no test images in {folder}; expected {expected}",
                        "Restore the test images from the dataset archive.")]


def missing_mask_problem(image_path: Path, expected: str, fix: str) -> DataProblem:
    """A defect image without ground truth; ``expected`` says which mask was looked for."""
    return DataProblem(Path(image_path), f"defect image {image_path} has no mask: {expected}", fix)
