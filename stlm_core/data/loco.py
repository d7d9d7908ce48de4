"""MVTec LOCO AD (logical and structural anomalies).

::

    <root>/<category>/train/good/*.png
    <root>/<category>/validation/good/*.png
    <root>/<category>/test/{good,logical_anomalies,structural_anomalies}/<id>.png
    <root>/<category>/ground_truth/<defect>/<id>/<k>.png     one or more masks per anomalous image

The masks of one image are merged by union (any non-zero value is anomalous; LOCO encodes some defects with
values other than 255). ``anomaly_kind`` is ``"logical"`` or ``"structural"`` for anomalous test images and
``None`` for good ones; ``defect`` is the folder name.
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
KINDS = {"logical_anomalies": "logical", "structural_anomalies": "structural"}


class LocoReader(DatasetReader):
    name = "loco"
    splits = ("train", "validation", "test")

    def categories(self, root: Path) -> list[str]:
        root = require_root(root, self.name)
        found = sorted(
            p.name for p in root.iterdir()
            if p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir() and (p / "validation").is_dir()
        )
        if not found:
            raise DatasetError(
                f"no MVTec LOCO categories in {root}: expected folders <category>/train/good, "
                f"<category>/validation/good and <category>/test/<defect>. Download with 'stlm data download loco "
                f"--root {root}' or pass the folder that holds the categories."
            )
        return found

    def scan(self, root: Path, category: str, split: str) -> tuple[list[SampleRecord], list[DataProblem]]:
        root = require_root(root, self.name)
        require_category(root, category, self.categories(root), self.name)
        require_split(split, self.splits, self.name)
        cat_dir = root / category
        if split in ("train", "validation"):
            folder = cat_dir / split / NORMAL
            recs = [SampleRecord(p, 0, NORMAL, category, split) for p in list_images(folder)]
            if split == "train":
                return recs, empty_train_problems(recs, category, folder)
            if recs:
                return recs, []
            return recs, [DataProblem(folder, f"the validation split of {category!r} is empty: no images in {folder}",
                                      "Restore the validation images from the MVTec LOCO archive.")]
        test_dir = cat_dir / "test"
        recs = []
        problems: list[DataProblem] = []
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defect = defect_dir.name
            for image_path in list_images(defect_dir):
                if defect == NORMAL:
                    recs.append(SampleRecord(image_path, 0, NORMAL, category, "test"))
                    continue
                masks = self._mask_paths(cat_dir, defect, image_path)
                if not masks:
                    mask_dir = cat_dir / "ground_truth" / defect / image_path.stem
                    problems.append(missing_mask_problem(
                        image_path, f"expected one or more files {mask_dir}/000.png",
                        "Restore the ground truth from the MVTec LOCO archive, or move the image out of the test "
                        "split."))
                recs.append(SampleRecord(image_path, 1, defect, category, "test", mask_paths=masks,
                                         anomaly_kind=KINDS.get(defect, defect.removesuffix("_anomalies"))))
        return recs, problems + empty_test_problems(recs, test_dir, f"{test_dir}/<defect>/*.png")

    @staticmethod
    def _mask_paths(cat_dir: Path, defect: str, image_path: Path) -> tuple[Path, ...]:
        return tuple(list_images(cat_dir / "ground_truth" / defect / image_path.stem))
