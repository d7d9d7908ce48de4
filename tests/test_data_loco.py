"""MVTec LOCO AD reader: train/validation/test splits, merged multi-masks, logical vs structural, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stlm_core.data import list_categories, open_dataset
from stlm_core.data.check import check_dataset
from stlm_core.errors import DatasetError

H, W = 24, 36


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_loco(root: Path, category: str = "juice_bottle", n_train: int = 3, n_val: int = 2, n_good: int = 2,
               n_logical: int = 2, n_structural: int = 1, seed: int = 0) -> Path:
    """A tiny LOCO tree. Logical anomalies get two masks (values 255 and 67, overlapping); structural one."""
    rng = np.random.default_rng(seed)
    cat = root / category

    def image(path: Path) -> None:
        _save(path, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))

    for i in range(n_train):
        image(cat / "train" / "good" / f"{i:03d}.png")
    for i in range(n_val):
        image(cat / "validation" / "good" / f"{i:03d}.png")
    for i in range(n_good):
        image(cat / "test" / "good" / f"{i:03d}.png")
    for i in range(n_logical):
        image(cat / "test" / "logical_anomalies" / f"{i:03d}.png")
        first, second = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
        first[0:5, 0:5] = 255
        second[3:8, 3:10] = 67  # LOCO encodes some defects with values other than 255
        _save(cat / "ground_truth" / "logical_anomalies" / f"{i:03d}" / "000.png", first)
        _save(cat / "ground_truth" / "logical_anomalies" / f"{i:03d}" / "001.png", second)
    for i in range(n_structural):
        image(cat / "test" / "structural_anomalies" / f"{i:03d}.png")
        mask = np.zeros((H, W), np.uint8)
        mask[10:20, 20:30] = 255
        _save(cat / "ground_truth" / "structural_anomalies" / f"{i:03d}" / "000.png", mask)
    return root


def test_splits_kinds_and_merged_masks(tmp_path):
    root = write_loco(tmp_path / "loco")
    assert list_categories("loco", root) == ["juice_bottle"]
    assert len(open_dataset("loco", root, "juice_bottle", "train")) == 3
    validation = open_dataset("loco", root, "juice_bottle", "validation")
    assert len(validation) == 2 and validation[0].split == "validation" and validation[0].label == 0
    test = open_dataset("loco", root, "juice_bottle", "test")
    assert len(test) == 5
    kinds = {r.image_path.parent.name: r.anomaly_kind for r in test.records}
    assert kinds == {"good": None, "logical_anomalies": "logical", "structural_anomalies": "structural"}
    logical = next(s for s in test if s.defect == "logical_anomalies")
    assert logical.anomaly_kind == "logical" and logical.label == 1
    expected = np.zeros((H, W), np.uint8)
    expected[0:5, 0:5] = 1
    expected[3:8, 3:10] = 1
    np.testing.assert_array_equal(logical.mask, expected)  # union of both masks, value 67 counts
    structural = next(s for s in test if s.defect == "structural_anomalies")
    assert structural.mask.sum() == 100 and structural.anomaly_kind == "structural"


def test_check_reports_validation(tmp_path):
    root = write_loco(tmp_path / "loco", category="pushpins", n_train=4, n_val=3, n_good=1, n_logical=2, n_structural=2)
    report = check_dataset("loco", root, progress=False)
    assert report["categories"]["pushpins"] == {
        "train": 4, "validation": 3, "test": {"good": 1, "logical_anomalies": 2, "structural_anomalies": 2}, "masks": 4,
    }


def test_missing_root_and_no_categories(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*stlm data download loco"):
        list_categories("loco", tmp_path / "nowhere")
    (tmp_path / "flat" / "x" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no MVTec LOCO categories in .*validation/good"):
        list_categories("loco", tmp_path / "flat")


def test_defect_without_masks(tmp_path):
    root = write_loco(tmp_path / "loco")
    gt = root / "juice_bottle" / "ground_truth" / "structural_anomalies" / "000"
    for f in gt.iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"defect image .*structural_anomalies/000\.png has no mask.*000/000\.png"):
        open_dataset("loco", root, "juice_bottle", "test")


def test_mask_size_mismatch(tmp_path):
    root = write_loco(tmp_path / "loco")
    _save(root / "juice_bottle" / "ground_truth" / "logical_anomalies" / "001" / "001.png", np.zeros((5, 5), np.uint8))
    test = open_dataset("loco", root, "juice_bottle", "test")
    record = next(r for r in test.records if r.defect == "logical_anomalies" and r.image_path.stem == "001")
    with pytest.raises(DatasetError, match=r"001/001\.png has size 5x5"):
        record.load()


def test_empty_training_split(tmp_path):
    root = write_loco(tmp_path / "loco", n_train=0)
    (root / "juice_bottle" / "train" / "good").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DatasetError, match="training split of category 'juice_bottle' is empty"):
        open_dataset("loco", root, "juice_bottle", "train")


def test_corrupt_mask(tmp_path):
    root = write_loco(tmp_path / "loco")
    (root / "juice_bottle" / "ground_truth" / "structural_anomalies" / "000" / "000.png").write_bytes(b"\x89PNG\r\n")
    test = open_dataset("loco", root, "juice_bottle", "test")
    record = next(r for r in test.records if r.defect == "structural_anomalies")
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        record.load()


def test_gallery_shows_logical_and_structural_anomalies_apart(tmp_path):
    from stlm_core.data.gallery import gallery_rows
    from stlm_core.plotting import dataset_gallery

    root = write_loco(tmp_path / "loco")
    fig = dataset_gallery(gallery_rows("loco", root, ["juice_bottle"], n_normal=1, n_defect=2))
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["juice_bottle / logical", "juice_bottle / structural"]
    titles = {ax.get_title() for ax in fig.axes[3:5]}     # the logical row's images carry only logical defects
    assert "structural_anomalies" not in titles
