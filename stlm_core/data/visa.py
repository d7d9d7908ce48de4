"""VisA (Visual Anomaly, Zou et al. 2022), native layout or converted to the MVTec AD layout.

Native layout (as unpacked from ``VisA_20220922.tar``)::

    <root>/split_csv/1cls.csv                       columns object,split,label,image,mask (paths relative to root)
    <root>/<category>/Data/Images/Normal/*.JPG
    <root>/<category>/Data/Images/Anomaly/*.JPG
    <root>/<category>/Data/Masks/Anomaly/*.png       any non-zero pixel is anomalous

The split is the official one-class split of ``1cls.csv`` (``label`` is ``normal`` or ``anomaly``). VisA has no
per-type defect folders, so every anomalous image has ``defect == "anomaly"`` (normal ones ``"good"``).

A root without ``split_csv/1cls.csv`` is read as the MVTec-style converted layout
(``stlm data download visa`` / ``data_scripts/convert_visa.py`` write it; anomalib's ``visa_pytorch`` folder is
the same layout and is found too), delegating to :class:`~stlm_core.data.mvtec.MVTecReader`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from stlm_core.data.base import (
    DatasetReader,
    empty_test_problems,
    empty_train_problems,
    missing_mask_problem,
    require_category,
    require_root,
    require_split,
)
from stlm_core.data.mvtec import MVTecReader
from stlm_core.data.problems import DataProblem
from stlm_core.data.sample import SampleRecord
from stlm_core.errors import DatasetError

SPLIT_CSV = Path("split_csv") / "1cls.csv"
CSV_COLUMNS = ("object", "split", "label", "image", "mask")
NORMAL = "good"
ANOMALY = "anomaly"


def is_native(root: Path) -> bool:
    """True if ``root`` holds VisA in its native layout (``split_csv/1cls.csv`` present)."""
    return (Path(root) / SPLIT_CSV).is_file()


def read_split_csv(root: Path) -> list[dict[str, str]]:
    """Rows of ``<root>/split_csv/1cls.csv`` as dicts with keys :data:`CSV_COLUMNS` (values stripped)."""
    path = Path(root) / SPLIT_CSV
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = tuple(h.strip() for h in (reader.fieldnames or ()))
            if header[: len(CSV_COLUMNS)] != CSV_COLUMNS:
                raise DatasetError(
                    f"{path} has columns {', '.join(header) or '(none)'}; expected {','.join(CSV_COLUMNS)} "
                    "(the official VisA split file). Restore it from the VisA archive."
                )
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read the VisA split file {path} ({exc}); restore it from the VisA archive.") from exc
    return rows


class ConvertedVisaReader(MVTecReader):
    """VisA converted to the MVTec AD layout (named ``visa`` in messages and datasets)."""

    name = "visa"


class VisaReader(DatasetReader):
    """Reads VisA; auto-detects the native layout vs. the MVTec-style converted one."""

    name = "visa"
    splits = ("train", "test")

    def _mvtec_root(self, root: Path) -> Path:
        """The MVTec-style root to delegate to (``root`` itself or anomalib's ``root/visa_pytorch``)."""
        if not any((p / "train").is_dir() for p in root.iterdir() if p.is_dir()) and (root / "visa_pytorch").is_dir():
            return root / "visa_pytorch"
        return root

    @staticmethod
    def _mvtec() -> MVTecReader:
        return ConvertedVisaReader()

    def categories(self, root: Path) -> list[str]:
        root = require_root(root, self.name)
        if not is_native(root):
            try:
                return self._mvtec().categories(self._mvtec_root(root))
            except DatasetError as exc:
                raise DatasetError(
                    f"no VisA dataset in {root}: neither the native layout ({root / SPLIT_CSV} with "
                    "<category>/Data/Images/...) nor the MVTec-style converted layout (<category>/train/good, "
                    "<category>/test/...) was found. Download it with 'stlm data download visa --root "
                    f"{root}', or pass the folder that holds split_csv/ or the categories."
                ) from exc
        found = sorted({row["object"] for row in read_split_csv(root) if row.get("object")})
        if not found:
            raise DatasetError(f"the VisA split file {root / SPLIT_CSV} lists no images; restore it from the archive.")
        return found

    def scan(self, root: Path, category: str, split: str) -> tuple[list[SampleRecord], list[DataProblem]]:
        root = require_root(root, self.name)
        if not is_native(root):
            mvtec_root = self._mvtec_root(root)
            require_category(root, category, self.categories(root), self.name)
            return self._mvtec().scan(mvtec_root, category, split)
        require_category(root, category, self.categories(root), self.name)
        require_split(split, self.splits, self.name)
        csv_path = root / SPLIT_CSV
        recs: list[SampleRecord] = []
        problems: list[DataProblem] = []
        for line, row in enumerate(read_split_csv(root), start=2):
            if row["object"] != category or row["split"] != split:
                continue
            label = row["label"].lower()
            if label not in ("normal", ANOMALY):
                problems.append(DataProblem(
                    csv_path, f"{csv_path} line {line}: label {row['label']!r} is neither 'normal' nor 'anomaly'",
                    "Restore the split file from the VisA archive."))
                continue
            image_path = root / row["image"]
            if not image_path.is_file():
                problems.append(DataProblem(
                    image_path, f"image file not found: {image_path} (listed in {csv_path} line {line})",
                    "Re-extract the VisA archive into this root or remove the row."))
                continue
            if label == "normal":
                recs.append(SampleRecord(image_path, 0, NORMAL, category, split))
                continue
            mask_path = root / row["mask"] if row["mask"] else None
            if mask_path is None or not mask_path.is_file():
                expected = mask_path or root / category / "Data/Masks/Anomaly" / f"{image_path.stem}.png"
                problems.append(missing_mask_problem(
                    image_path, f"expected {expected} ({csv_path} line {line})",
                    "Restore the mask from the VisA archive, or remove the row."))
                mask_path = None
            masks = (mask_path,) if mask_path is not None else ()
            recs.append(SampleRecord(image_path, 1, ANOMALY, category, split, mask_paths=masks))
        recs.sort(key=lambda r: str(r.image_path))
        if split == "train":
            normal = [r for r in recs if r.label == 0]
            folder = root / category / "Data" / "Images" / "Normal"
            return normal, problems + empty_train_problems(normal, category, folder)
        return recs, problems + empty_test_problems(recs, csv_path, f"rows 'test' of category {category!r}")
