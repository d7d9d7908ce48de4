"""MVTec 3D-AD, native layout, RGB only (the point clouds ``xyz/*.tiff`` are ignored).

::

    <root>/<category>/train/good/rgb/NNN.png
    <root>/<category>/validation/good/rgb/NNN.png
    <root>/<category>/test/<defect>/rgb/NNN.png            (``good`` = normal)
    <root>/<category>/test/<defect>/gt/NNN.png             mask, 0 = normal, > 0 = anomalous

This reader lists the native layout for :func:`stlm_core.data.convert.convert_mvtec3d`, which writes the MVTec AD
layout every command reads (``--dataset mvtec``). The ``validation`` split holds normal images only.
"""

from __future__ import annotations

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
from stlm_core.data.problems import DataProblem
from stlm_core.data.sample import SampleRecord
from stlm_core.errors import DatasetError

NORMAL = "good"


class Mvtec3dReader(DatasetReader):
    """Reads MVTec 3D-AD's RGB images and masks (see the module docstring)."""

    name = "mvtec3d"
    splits = ("train", "validation", "test")

    def categories(self, root: Path) -> list[str]:
        root = require_root(root, self.name)
        found = sorted(p.name for p in root.iterdir()
                       if p.is_dir() and (p / "train" / NORMAL / "rgb").is_dir() and (p / "test").is_dir())
        if not found:
            raise DatasetError(
                f"no MVTec 3D-AD categories in {root}: expected <category>/train/good/rgb/*.png and "
                "<category>/test/<defect>/{rgb,gt}/*.png. Pass the folder unpacked from mvtec_3d_anomaly_detection.tar.xz.")
        return found

    def scan(self, root: Path, category: str, split: str) -> tuple[list[SampleRecord], list[DataProblem]]:
        root = require_root(root, self.name)
        require_category(root, category, self.categories(root), self.name)
        require_split(split, self.splits, self.name)
        cat_dir = root / category
        if split in ("train", "validation"):
            folder = cat_dir / split / NORMAL / "rgb"
            records = [SampleRecord(p, 0, NORMAL, category, split) for p in list_images(folder)]
            return records, (empty_train_problems(records, category, folder) if split == "train" else [])
        records: list[SampleRecord] = []
        problems: list[DataProblem] = []
        test_dir = cat_dir / "test"
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defect = defect_dir.name
            for image_path in list_images(defect_dir / "rgb"):
                if defect == NORMAL:
                    records.append(SampleRecord(image_path, 0, NORMAL, category, "test"))
                    continue
                mask_path = defect_dir / "gt" / image_path.name
                if not mask_path.is_file():
                    problems.append(missing_mask_problem(
                        image_path, f"expected {mask_path}",
                        "Restore the mask from the dataset archive, or move the image out of the test split."))
                masks = (mask_path,) if mask_path.is_file() else ()
                records.append(SampleRecord(image_path, 1, defect, category, "test", mask_paths=masks))
        return records, problems + empty_test_problems(records, test_dir, f"{test_dir}/<defect>/rgb/*.png")
