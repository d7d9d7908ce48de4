"""MVTec AD layout (also used by the synthetic dataset and by converted VisA/DAGM).

::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect>/*.png                 (``good`` = normal)
    <root>/<category>/ground_truth/<defect>/<name>_mask.png
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


class MVTecReader(DatasetReader):
    """Reads the MVTec AD layout; subclasses only change ``name`` (used in messages and by ``open_dataset``)."""

    name = "mvtec"
    splits = ("train", "test")

    def categories(self, root: Path) -> list[str]:
        root = require_root(root, self.name)
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir())
        if not found:
            raise DatasetError(
                f"no {self.name} categories in {root}: expected folders <category>/train/good and "
                f"<category>/test/<defect> (MVTec AD layout). If this is VisA or DAGM in their native layout, "
                "use --dataset visa / dagm or convert it first."
            )
        return found

    def scan(self, root: Path, category: str, split: str) -> tuple[list[SampleRecord], list[DataProblem]]:
        root = require_root(root, self.name)
        require_category(root, category, self.categories(root), self.name)
        require_split(split, self.splits, self.name)
        cat_dir = root / category
        if split == "train":
            folder = cat_dir / "train" / NORMAL
            recs = [SampleRecord(p, 0, NORMAL, category, "train") for p in list_images(folder)]
            return recs, empty_train_problems(recs, category, folder)
        recs: list[SampleRecord] = []
        problems: list[DataProblem] = []
        test_dir = cat_dir / "test"
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defect = defect_dir.name
            for image_path in list_images(defect_dir):
                if defect == NORMAL:
                    recs.append(SampleRecord(image_path, 0, NORMAL, category, "test"))
                    continue
                mask_path = self._mask_path(cat_dir, defect, image_path)
                if mask_path is None:
                    expected = cat_dir / "ground_truth" / defect / f"{image_path.stem}_mask.png"
                    problems.append(missing_mask_problem(
                        image_path, f"expected {expected}",
                        "Restore the mask from the dataset archive, or move the image out of the test split."))
                masks = (mask_path,) if mask_path is not None else ()
                recs.append(SampleRecord(image_path, 1, defect, category, "test", mask_paths=masks))
        return recs, problems + empty_test_problems(recs, test_dir, f"{test_dir}/<defect>/*.png")

    @staticmethod
    def _mask_path(cat_dir: Path, defect: str, image_path: Path) -> Path | None:
        gt_dir = cat_dir / "ground_truth" / defect
        for candidate in (gt_dir / f"{image_path.stem}_mask.png", gt_dir / f"{image_path.stem}.png"):
            if candidate.is_file():
                return candidate
        return None


class SyntheticReader(MVTecReader):
    """The embedded synthetic dataset: MVTec AD layout (see :mod:`stlm_core.data.synthetic`)."""

    name = "synthetic"
