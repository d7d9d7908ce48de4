"""Validate a dataset root and count its samples (``stlm data check``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from stlm_core.data import get_reader
from stlm_core.data.sample import SampleRecord
from stlm_core.errors import DatasetError


def _image_size(path: Path, deep: bool) -> tuple[int, int]:
    """(width, height) from the file header; with ``deep`` the whole image is decoded to catch truncation."""
    try:
        with Image.open(path) as image:
            if deep:
                image.load()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"cannot read image {path}: it is corrupt or truncated ({exc}). Re-download or re-extract the dataset."
        ) from exc


def _check_record(record: SampleRecord, deep: bool) -> None:
    size = _image_size(record.image_path, deep)
    for mask_path in record.mask_paths:
        mask_size = _image_size(mask_path, deep)
        if mask_size != size:
            raise DatasetError(
                f"mask {mask_path} has size {mask_size[0]}x{mask_size[1]} but its image {record.image_path} has "
                f"size {size[0]}x{size[1]}. The mask must have the image's size: re-extract the dataset."
            )


def check_dataset(dataset: str, root: str | Path, categories: list[str] | None = None, deep: bool = False,
                  progress: bool = True) -> dict:
    """Validate ``root`` and return per-category counts.

    Returns ``{"dataset": name, "root": str, "categories": {cat: {"train": N, "test": {defect: N}, "masks": N}}}``
    (plus ``"validation": N`` for MVTec LOCO). ``masks`` counts test images that have a ground-truth mask.
    Every image and mask header is read (sizes must match); ``deep=True`` also decodes every file.
    Raises :class:`DatasetError` on the first problem, naming the file and the fix.
    """
    reader = get_reader(dataset)
    root = Path(root)
    found = reader.categories(root)
    chosen = categories or found
    report: dict = {"dataset": reader.name, "root": str(root), "categories": {}}
    for category in chosen:
        if category not in found:
            raise DatasetError(f"category {category!r} not found in {root}; available: {', '.join(found)}.")
        entry: dict = {}
        for split in reader.splits:
            records = reader.records(root, category, split)
            for record in tqdm(records, desc=f"{category}/{split}", disable=not progress, leave=False):
                _check_record(record, deep)
            if split == "test":
                entry["test"] = dict(sorted(Counter(r.defect for r in records).items()))
                entry["masks"] = sum(1 for r in records if r.mask_paths or r.ellipse_masks)
            else:
                entry[split] = len(records)
        report["categories"][category] = {k: entry[k] for k in (*[s for s in reader.splits if s != "test"], "test", "masks")}
    return report


def format_report(report: dict) -> str:
    """A human-readable table of :func:`check_dataset`'s result."""
    lines = [f"dataset {report['dataset']} at {report['root']}: {len(report['categories'])} categories, OK"]
    for category, counts in report["categories"].items():
        extra = "".join(f" {k} {v}" for k, v in counts.items() if k not in ("train", "test", "masks"))
        tests = ", ".join(f"{d} {n}" for d, n in counts["test"].items())
        lines.append(f"  {category}: train {counts['train']}{extra} | test {sum(counts['test'].values())} ({tests}) "
                     f"| masks {counts['masks']}")
    return "\n".join(lines)
