"""DAGM 2007 (Weakly Supervised Learning for Industrial Optical Inspection), native layout.

::

    <root>/Class<k>/Train/*.PNG                     grayscale (read as 3-channel RGB)
    <root>/Class<k>/Train/Label/Labels.txt          one header line, then one row per image
    <root>/Class<k>/Train/Label/<stem>_label.PNG    (optional) weak mask of a defective image
    <root>/Class<k>/Test/...                        the same for the test split

A ``Labels.txt`` row is ``index flag filename [semi_major semi_minor angle cx cy]`` (whitespace separated);
``flag`` 1 marks a defective image. The weak label of a defective image is an ellipse (centre ``cx, cy`` in
pixels, semi-axes in pixels, rotation ``angle`` in radians, see :func:`draw_ellipses`) or, in the variant
distributed with pixel masks, the file ``Label/<stem>_label.PNG``; the mask file wins when both exist.
Without ``Labels.txt`` an image is defective exactly when its ``_label.PNG`` exists.

Splits follow the unsupervised protocol: ``train`` holds the defect-free ``Train`` images only, ``test`` all
``Test`` images (``defect`` is ``"good"`` or ``"defect"``). A root without native ``Class<k>/Train`` folders but
in the converted MVTec-style layout (written by ``stlm data download dagm`` / ``convert_dagm``) is detected and
read through :class:`~stlm_core.data.mvtec.MVTecReader` (``--dataset mvtec`` reads it too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stlm_core.data.base import (
    DatasetReader,
    empty_test_problems,
    empty_train_problems,
    list_images,
    missing_mask_problem,
    require_category,
    require_root,
    require_split,
)
from stlm_core.data.masks import Ellipse, draw_ellipses
from stlm_core.data.mvtec import MVTecReader
from stlm_core.data.problems import DataProblem
from stlm_core.data.sample import SampleRecord
from stlm_core.errors import DatasetError

NORMAL = "good"
DEFECT = "defect"
SPLIT_DIRS = {"train": "Train", "test": "Test"}
_CLASS_RE = re.compile(r"^Class(\d+)$")

__all__ = ["DagmReader", "ConvertedDagmReader", "LabelRow", "read_labels", "draw_ellipses", "Ellipse"]


@dataclass(frozen=True)
class LabelRow:
    """One parsed ``Labels.txt`` row."""

    filename: str
    defective: bool
    ellipse: Ellipse | None = None


def read_labels(path: Path) -> dict[str, LabelRow]:
    """Parse a DAGM ``Labels.txt``: header line, then ``index flag filename [semi_major semi_minor angle cx cy]``.

    Returns rows keyed by file name. Rows whose fields after the file name are not five numbers carry no ellipse
    (the pixel-mask variant writes e.g. ``0`` or a mask file name there).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read the DAGM label file {path} ({exc}); restore it from the archive.") from exc
    rows: dict[str, LabelRow] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3 or fields[1] not in ("0", "1"):
            raise DatasetError(
                f"{path} line {number}: expected 'index flag filename [semi_major semi_minor angle cx cy]' with "
                f"flag 0 or 1, got {line.strip()!r}. Restore the file from the DAGM 2007 archive."
            )
        defective = fields[1] == "1"
        ellipse = None
        if defective and len(fields) >= 8:
            try:
                semi_major, semi_minor, angle, cx, cy = (float(f) for f in fields[3:8])
                ellipse = (cx, cy, semi_major, semi_minor, angle)
            except ValueError:
                ellipse = None
        rows[fields[2]] = LabelRow(fields[2], defective, ellipse)
    return rows


class ConvertedDagmReader(MVTecReader):
    """DAGM converted to the MVTec AD layout (named ``dagm`` in messages and datasets)."""

    name = "dagm"


class DagmReader(DatasetReader):
    """Reads DAGM 2007 classes ``Class1`` .. ``Class10`` (any ``Class<k>`` folder with ``Train`` and ``Test``)."""

    name = "dagm"
    splits = ("train", "test")

    def _converted(self, root: Path) -> MVTecReader | None:
        """An MVTec reader (named ``dagm``) if ``root`` holds no native class but the converted layout."""
        if any(self._native_classes(root)):
            return None
        reader = ConvertedDagmReader()
        try:
            reader.categories(root)
        except DatasetError:
            return None
        return reader

    @staticmethod
    def _native_classes(root: Path) -> list[str]:
        return [
            p.name for p in root.iterdir()
            if p.is_dir() and _CLASS_RE.match(p.name) and (p / "Train").is_dir() and (p / "Test").is_dir()
        ]

    def categories(self, root: Path) -> list[str]:
        root = require_root(root, self.name)
        converted = self._converted(root)
        if converted is not None:
            return converted.categories(root)
        found = self._native_classes(root)
        if not found:
            raise DatasetError(
                f"no DAGM 2007 classes in {root}: expected folders Class1..Class10 each with Train/ and Test/ "
                f"(and Train/Label/Labels.txt), or the converted layout Class<k>/train/good + Class<k>/test/<defect>. "
                f"Download with 'stlm data download dagm --root {root}'."
            )
        return sorted(found, key=lambda n: int(_CLASS_RE.match(n).group(1)))

    def scan(self, root: Path, category: str, split: str) -> tuple[list[SampleRecord], list[DataProblem]]:
        root = require_root(root, self.name)
        converted = self._converted(root)
        if converted is not None:
            return converted.scan(root, category, split)
        require_category(root, category, self.categories(root), self.name)
        require_split(split, self.splits, self.name)
        folder = root / category / SPLIT_DIRS[split]
        label_dir = folder / "Label"
        labels_txt = label_dir / "Labels.txt"
        labels = read_labels(labels_txt) if labels_txt.is_file() else None
        if labels is None and not label_dir.is_dir():
            raise DatasetError(
                f"{folder} has no Label/ folder, so defective images cannot be told from normal ones: expected "
                f"{labels_txt} (or Label/<name>_label.PNG masks). Restore it from the DAGM 2007 archive."
            )
        recs: list[SampleRecord] = []
        problems: list[DataProblem] = []
        for image_path in list_images(folder):
            mask_file = self._mask_file(label_dir, image_path)
            row = labels.get(image_path.name) if labels is not None else None
            if labels is not None and row is None:
                problems.append(DataProblem(
                    image_path, f"image {image_path} is not listed in {labels_txt}",
                    "Restore the label file from the archive or remove the image."))
                continue
            defective = row.defective if row is not None else mask_file is not None
            if not defective:
                recs.append(SampleRecord(image_path, 0, NORMAL, category, split))
                continue
            if split == "train":
                continue  # unsupervised protocol: defective training images are not used
            if mask_file is not None:
                recs.append(SampleRecord(image_path, 1, DEFECT, category, split, mask_paths=(mask_file,)))
            elif row is not None and row.ellipse is not None:
                recs.append(SampleRecord(image_path, 1, DEFECT, category, split, ellipse_masks=(row.ellipse,)))
            else:
                problems.append(missing_mask_problem(
                    image_path, f"{labels_txt} gives no ellipse for it and "
                    f"{label_dir / (image_path.stem + '_label.PNG')} does not exist",
                    "Restore the labels from the DAGM 2007 archive, or move the image out of the test split."))
                recs.append(SampleRecord(image_path, 1, DEFECT, category, split))
        if split == "train":
            return recs, problems + empty_train_problems(recs, category, folder)
        return recs, problems + empty_test_problems(recs, folder, f"{folder}/*.PNG")

    @staticmethod
    def _mask_file(label_dir: Path, image_path: Path) -> Path | None:
        for suffix in (".PNG", ".png"):
            candidate = label_dir / f"{image_path.stem}_label{suffix}"
            if candidate.is_file():
                return candidate
        return None
