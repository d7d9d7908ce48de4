"""What data a run reads: :class:`DataSpec` (dataset, root, category, optional test-image limit)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DataSpec:
    """One category of one dataset. ``limit``: evaluate on at most this many test images, evenly spaced over
    the sorted list (so normal and defective images both appear); ``None`` = all."""

    dataset: str
    root: Path
    category: str
    limit: int | None = None

    def __post_init__(self) -> None:
        from stlm_core.data.registry import canonical_name
        from stlm_core.errors import DatasetError

        object.__setattr__(self, "dataset", canonical_name(self.dataset))
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        if self.limit is not None and self.limit < 1:
            raise DatasetError(f"limit must be a positive number of test images, got {self.limit}.")

    def open(self, split: str):
        """The split as an :class:`~stlm_core.data.sample.AnomalyDataset` (``test`` honours ``limit``)."""
        from stlm_core.data.registry import open_dataset

        dataset = open_dataset(self.dataset, self.root, self.category, split)
        if split == "test" and self.limit is not None and len(dataset) > self.limit:
            keep = np.unique(np.linspace(0, len(dataset) - 1, self.limit).round().astype(int))
            dataset.records = [dataset.records[i] for i in keep]
        return dataset

    def identity(self, splits: tuple[str, ...] = ("train", "test")) -> dict[str, Any]:
        """What the run id hashes about the data: name, category, limit and file counts per split (not the root,
        so the same data moved elsewhere keeps its runs)."""
        counts = {split: len(self.open(split)) for split in splits}
        return {"name": self.dataset, "category": self.category, "limit": self.limit, "files": counts,
                "synthetic": self.dataset == "synthetic"}

    def load_images(self, split: str, size: int, *, progress: bool = True) -> np.ndarray:
        """Every image of the split resized to (size, size) (PIL bilinear): uint8 (N, size, size, 3)."""
        from tqdm import tqdm

        from stlm_core.data.transforms import resize_image

        samples = self.open(split)
        return np.stack([resize_image(s.image, size) for s in
                         tqdm(samples, desc=f"load {split}", disable=not progress, leave=False)])

    def load_test(self, image_size: int | None, mask_size: int, *, progress: bool = True) -> dict[str, Any]:
        """The test split in one pass (each file decoded once): ``images`` uint8 (N, S, S, 3) resized to
        ``image_size`` (a list of originals when ``None``), ``masks`` uint8 {0, 1} (N, mask_size, mask_size),
        ``labels`` (N,), ``defects`` (N,), ``paths`` (N,) strings."""
        from tqdm import tqdm

        from stlm_core.data.transforms import resize_image, resize_mask

        dataset = self.open("test")
        images, masks = [], []
        for sample in tqdm(dataset, desc="load test", disable=not progress, leave=False):
            images.append(sample.image if image_size is None else resize_image(sample.image, image_size))
            masks.append(resize_mask(sample.mask, mask_size))
        records = dataset.records
        return {"images": images if image_size is None else np.stack(images),
                "masks": np.stack(masks).astype(np.uint8), "labels": dataset.labels,
                "defects": np.array([r.defect for r in records]), "paths": np.array([str(r.image_path) for r in records])}

    def validate(self, splits: tuple[str, ...], *, action: str) -> None:
        """Check every image and mask of ``splits`` before any work (decodable, masks present and of the image's
        size, defects in the test split); raises :class:`~stlm_core.errors.DatasetError` listing every problem."""
        from stlm_core.data.validate import raise_for_problems, validate_split

        raise_for_problems(validate_split(self.dataset, self.root, self.category, splits), action=action)
