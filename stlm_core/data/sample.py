"""The one sample type every dataset reader yields.

Conventions: ``image`` is uint8 RGB, shape (H, W, 3); ``mask`` is uint8 in {0, 1}, shape (H, W), all zeros for
normal images; ``label`` is 0 (normal) or 1 (anomalous); ``defect`` is the defect-type folder name (``"good"``
for normal images); ``split`` is ``"train"``, ``"validation"`` or ``"test"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stlm_core.data.imageio import read_mask, read_rgb
from stlm_core.data.masks import draw_ellipses


@dataclass(frozen=True)
class Sample:
    """One loaded image with its ground truth (see the module docstring for conventions)."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    defect: str
    path: Path
    category: str
    split: str
    anomaly_kind: str | None = None  # MVTec LOCO: "logical" | "structural"; None elsewhere


@dataclass(frozen=True)
class SampleRecord:
    """Where a sample lives on disk; :meth:`load` reads it (lazily, on demand).

    ``mask_paths`` lists every mask file of the image (several for MVTec LOCO, merged by union);
    it is empty for normal images. ``ellipse_masks`` is for DAGM's weak labels, which are ellipses in
    ``Labels.txt`` rather than files: tuples (cx, cy, semi_major, semi_minor, angle_rad).
    """

    image_path: Path
    label: int
    defect: str
    category: str
    split: str
    mask_paths: tuple[Path, ...] = ()
    ellipse_masks: tuple[tuple[float, float, float, float, float], ...] = field(default=())
    anomaly_kind: str | None = None

    def load(self) -> Sample:
        image = read_rgb(self.image_path)
        height, width = image.shape[:2]
        mask = np.zeros((height, width), dtype=np.uint8)
        for mask_path in self.mask_paths:
            mask |= read_mask(mask_path, expected_shape=(height, width), image_path=self.image_path)
        if self.ellipse_masks:
            mask |= draw_ellipses(self.ellipse_masks, (height, width))
        return Sample(
            image=image,
            mask=mask,
            label=self.label,
            defect=self.defect,
            path=self.image_path,
            category=self.category,
            split=self.split,
            anomaly_kind=self.anomaly_kind,
        )


class AnomalyDataset(Sequence[Sample]):
    """A lazily loaded list of samples of one dataset, category and split."""

    def __init__(self, name: str, root: Path, category: str, split: str, records: Sequence[SampleRecord]):
        self.name = name
        self.root = Path(root)
        self.category = category
        self.split = split
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.records[i].load() for i in range(*index.indices(len(self)))]
        return self.records[index].load()

    @property
    def labels(self) -> np.ndarray:
        """0/1 labels of all samples, without reading any image."""
        return np.array([r.label for r in self.records], dtype=np.int64)

    def __repr__(self) -> str:
        return f"AnomalyDataset({self.name!r}, category={self.category!r}, split={self.split!r}, n={len(self)})"
