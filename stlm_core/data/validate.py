"""Validate a dataset split before any work starts, collecting every problem rather than stopping at the first.

::

    problems = validate_split("mvtec", root, "bottle")
    raise_for_problems(problems, action="train STLM on mvtec/bottle")   # before writing anything

Conventions: every image and mask is decoded fully (truncated files are found); a defect image needs its
ground truth (mask files, or a DAGM ellipse); a mask must have its image's size; the training split needs images;
the test split needs at least one defect image whose ground truth is non-empty (pixel metrics need one) unless
``need_defects=False``. Layout problems (no root, unknown category, unreadable label file) are reported as one
problem per split whose files were then not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from stlm_core.data.base import DatasetReader
from stlm_core.data.imageio import FileProblemError, mask_size_problem, open_image
from stlm_core.data.masks import draw_ellipses
from stlm_core.data.problems import DataProblem, format_problems, raise_for_problems
from stlm_core.data.registry import get_reader
from stlm_core.data.sample import SampleRecord
from stlm_core.errors import DatasetError

__all__ = ["DataProblem", "RecordCheck", "check_record", "format_problems", "no_defects_problem",
           "raise_for_problems", "scan_split", "validate_split"]

LAYOUT_FIX = "Fix the layout first; the files of this split were not checked."


@dataclass(frozen=True)
class RecordCheck:
    """Problems of one record's files; ``has_ground_truth``: it is a defect image with a non-empty mask
    (when files are not decoded, a readable mask file counts as non-empty)."""

    problems: list[DataProblem] = field(default_factory=list)
    has_ground_truth: bool = False


def _layout_problem(path: Path, exc: DatasetError) -> DataProblem:
    return DataProblem(Path(path), str(exc).rstrip("."), LAYOUT_FIX)


def scan_split(reader: DatasetReader, root: Path, category: str,
               split: str) -> tuple[list[SampleRecord], list[DataProblem]]:
    """``reader.scan`` with a layout error turned into a single problem (and no records)."""
    try:
        return reader.scan(Path(root), category, split)
    except DatasetError as exc:
        return [], [_layout_problem(Path(root) / category, exc)]


def check_record(record: SampleRecord, *, decode: bool = True, image_size_check: bool = True) -> RecordCheck:
    """Read the image and masks of ``record``: decodable (headers only without ``decode``), masks of the image's size.

    A missing mask is not checked here: the reader's scan reports it.
    """
    problems: list[DataProblem] = []
    size = None  # (W, H) of the image when it could be read
    try:
        size = open_image(record.image_path, decode=decode).size
    except FileProblemError as exc:
        problems.append(exc.problem)
    ground_truth = False
    for mask_path in record.mask_paths:
        try:
            mask = open_image(mask_path, decode=decode)
        except FileProblemError as exc:
            problems.append(exc.problem)
            continue
        if image_size_check and size is not None and mask.size != size:
            problems.append(mask_size_problem(mask_path, mask.size[::-1], size[::-1], record.image_path))
            continue
        ground_truth = ground_truth or not decode or mask.convert("L").getbbox() is not None
    if record.ellipse_masks and size is not None:
        ground_truth = ground_truth or bool(draw_ellipses(record.ellipse_masks, size[::-1]).any())
    return RecordCheck(problems, bool(record.label) and ground_truth)


def no_defects_problem(records: Sequence[SampleRecord], folder: Path) -> DataProblem:
    """The problem of a test split without a defect image that has non-empty ground truth."""
    if any(r.label for r in records):
        what = "no defect image of the test split has a non-empty mask"
    else:
        what = "the test split has no defective images, only normal ones"
    return DataProblem(Path(folder), what,
                       "Pixel metrics (and image AUROC) need at least one defect image with its mask: restore the "
                       "defect images and masks from the dataset archive.")


def validate_split(dataset: str, root: str | Path, category: str, splits: Sequence[str] = ("train", "test"), *,
                   need_defects: bool = True, image_size_check: bool = True) -> list[DataProblem]:
    """Every problem of ``splits`` of one category (empty list: clean); see the module docstring.

    ``need_defects``: require a defect image with a non-empty mask in the test split. ``image_size_check``:
    require every mask to have its image's size. Raises :class:`DatasetError` only for an unknown dataset name.
    """
    reader = get_reader(dataset)
    root = Path(root)
    try:
        known = reader.categories(root)
    except DatasetError as exc:
        return [_layout_problem(root, exc)]
    if category not in known:
        return [DataProblem(root / category, f"category {category!r} not found in {reader.name} root {root}; "
                            f"available: {', '.join(known) or 'none'}", "Pass one of the available categories.")]
    problems: list[DataProblem] = []
    for split in splits:
        records, found = scan_split(reader, root, category, split)
        problems += found
        ground_truth = False
        for record in records:
            result = check_record(record, decode=True, image_size_check=image_size_check)
            problems += result.problems
            ground_truth = ground_truth or result.has_ground_truth
        if split == "test" and need_defects and records and not ground_truth:
            problems.append(no_defects_problem(records, root / category))
    return problems
