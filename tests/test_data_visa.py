"""VisA reader: native layout (split_csv/1cls.csv), MVTec-style converted layout, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stlm_core.data import get_reader, list_categories, open_dataset
from stlm_core.data.check import check_dataset
from stlm_core.data.visa import VisaReader
from stlm_core.errors import DatasetError

SIZE = (40, 32)  # (W, H): non-square, so a transposed mask would be caught


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def write_visa_native(root: Path, categories=("candle", "pcb1"), n_train: int = 3, n_test_good: int = 2,
                      n_anomaly: int = 2, seed: int = 0) -> Path:
    """A tiny VisA tree in the native layout. Anomaly masks use the value 1 (as VisA's do) in a known box."""
    rng = np.random.default_rng(seed)
    width, height = SIZE
    rows = ["object,split,label,image,mask"]
    for cat in categories:
        index = 0
        for split, count in (("train", n_train), ("test", n_test_good)):
            for _ in range(count):
                rel = f"{cat}/Data/Images/Normal/{index:04d}.JPG"
                _save(root / rel, rng.integers(0, 255, (height, width, 3), dtype=np.uint8), format="JPEG")
                rows.append(f"{cat},{split},normal,{rel},")
                index += 1
        for i in range(n_anomaly):
            rel = f"{cat}/Data/Images/Anomaly/{i:03d}.JPG"
            mrel = f"{cat}/Data/Masks/Anomaly/{i:03d}.png"
            _save(root / rel, rng.integers(0, 255, (height, width, 3), dtype=np.uint8), format="JPEG")
            mask = np.zeros((height, width), np.uint8)
            mask[2:10, 5 + i : 20 + i] = 1
            _save(root / mrel, mask)
            rows.append(f"{cat},test,anomaly,{rel},{mrel}")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_native_layout_counts_labels_and_masks(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    assert list_categories("visa", root) == ["candle", "pcb1"]
    train = open_dataset("visa", root, "candle", "train")
    test = open_dataset("visa", root, "candle", "test")
    assert (len(train), len(test)) == (3, 4)
    assert train.name == "visa" and set(train.labels.tolist()) == {0}
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    assert {r.defect for r in test.records} == {"good", "anomaly"}
    anomalous = [s for s in test if s.label == 1]
    for i, sample in enumerate(sorted(anomalous, key=lambda s: s.path.name)):
        assert sample.image.shape == (SIZE[1], SIZE[0], 3) and sample.image.dtype == np.uint8
        expected = np.zeros((SIZE[1], SIZE[0]), np.uint8)
        expected[2:10, 5 + i : 20 + i] = 1
        np.testing.assert_array_equal(sample.mask, expected)  # value 1 in the file -> 1, nothing else
    assert all(s.mask.sum() == 0 for s in test if s.label == 0)


def test_check_reports_visa_counts(tmp_path):
    root = write_visa_native(tmp_path / "visa", categories=("fryum",), n_train=4, n_test_good=1, n_anomaly=3)
    report = check_dataset("visa", root, progress=False)
    assert report["categories"] == {"fryum": {"train": 4, "test": {"anomaly": 3, "good": 1}, "masks": 3}}


def test_mvtec_style_layout_is_detected(mvtec_tree):
    root = mvtec_tree(category="candle", n_train=2, n_good=1, defects={"bad": 2})
    assert list_categories("visa", root) == ["candle"]
    test = open_dataset("visa", root, "candle", "test")
    assert len(test) == 3 and test.name == "visa"
    assert test[1].mask.max() == 1


def test_anomalib_visa_pytorch_folder_is_found(tmp_path):
    from conftest import write_mvtec_tree

    write_mvtec_tree(tmp_path / "visa" / "visa_pytorch", category="pcb2", n_train=2, n_good=1, defects={"bad": 1})
    assert VisaReader().categories(tmp_path / "visa") == ["pcb2"]
    assert len(open_dataset("visa", tmp_path / "visa", "pcb2", "train")) == 2


# --- bad input: each raises DatasetError naming the file and the fix ---------------------------------------------

def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*stlm data download visa"):
        list_categories("visa", tmp_path / "nowhere")


def test_no_categories(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no VisA dataset in .*split_csv"):
        list_categories("visa", tmp_path / "empty")


def test_defect_image_without_mask(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    missing = root / "candle/Data/Masks/Anomaly/001.png"
    missing.unlink()
    with pytest.raises(DatasetError, match=r"defect image .*001\.JPG has no mask.*001\.png"):
        open_dataset("visa", root, "candle", "test")


def test_anomaly_row_with_empty_mask_column(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    csv = root / "split_csv" / "1cls.csv"
    csv.write_text(csv.read_text().replace(",candle/Data/Masks/Anomaly/000.png", ","))
    with pytest.raises(DatasetError, match="000.JPG has no mask"):
        open_dataset("visa", root, "candle", "test")


def test_mask_size_mismatch(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    mask_path = root / "candle/Data/Masks/Anomaly/000.png"
    _save(mask_path, np.ones((10, 10), np.uint8))
    test = open_dataset("visa", root, "candle", "test")
    record = next(r for r in test.records if r.mask_paths and r.mask_paths[0] == mask_path)
    with pytest.raises(DatasetError, match=r"mask .*000\.png has size 10x10.*must have the image's size"):
        record.load()


def test_corrupt_image(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    image = root / "candle/Data/Images/Normal/0000.JPG"
    image.write_bytes(image.read_bytes()[:60])  # truncated JPEG
    train = open_dataset("visa", root, "candle", "train")
    with pytest.raises(DatasetError, match=r"cannot read image .*0000\.JPG.*corrupt or truncated"):
        train[0]


def test_listed_image_missing(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    (root / "candle/Data/Images/Normal/0001.JPG").unlink()
    with pytest.raises(DatasetError, match=r"image file not found: .*0001\.JPG \(listed in .*1cls\.csv line \d+\)"):
        open_dataset("visa", root, "candle", "train")


def test_empty_training_split(tmp_path):
    root = write_visa_native(tmp_path / "visa", n_train=0)
    with pytest.raises(DatasetError, match="training split of category 'candle' is empty"):
        open_dataset("visa", root, "candle", "train")


def test_bad_split_file_header(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    csv = root / "split_csv" / "1cls.csv"
    csv.write_text("a,b,c\n" + "\n".join(csv.read_text().splitlines()[1:]))
    with pytest.raises(DatasetError, match="1cls.csv has columns a, b, c; expected object,split,label,image,mask"):
        list_categories("visa", root)


def test_unknown_category_and_split(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    with pytest.raises(DatasetError, match="category 'cashew' not found.*candle, pcb1"):
        open_dataset("visa", root, "cashew", "test")
    with pytest.raises(DatasetError, match="split 'validation' does not exist"):
        get_reader("visa").records(root, "candle", "validation")
