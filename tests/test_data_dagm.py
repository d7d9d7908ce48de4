"""DAGM 2007 reader: Labels.txt ellipses, *_label.PNG masks, unsupervised splits, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stlm_core.data import list_categories, open_dataset
from stlm_core.data.check import check_dataset
from stlm_core.data.dagm import draw_ellipses, read_labels
from stlm_core.errors import DatasetError

SIZE = 64
ELLIPSE = (20.0, 8.0, 0.0, 30.0, 34.0)  # semi_major, semi_minor, angle, cx, cy (Labels.txt order)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_dagm_native(root: Path, classes=("Class1", "Class2"), n_train_ok: int = 3, n_train_def: int = 1,
                      n_test_ok: int = 2, n_test_def: int = 2, variant: str = "ellipse", labels_txt: bool = True,
                      seed: int = 0) -> Path:
    """A tiny DAGM tree: grayscale PNGs; defects labelled by ellipses in Labels.txt or by *_label.PNG masks."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        for split, n_ok, n_def in (("Train", n_train_ok, n_train_def), ("Test", n_test_ok, n_test_def)):
            folder = root / cls / split
            rows = ["Index\tFlag\tFilename\tSemiMajor\tSemiMinor\tAngle\tX\tY"]
            for i in range(n_ok + n_def):
                name = f"{i + 1:04d}.PNG"
                _save(folder / name, rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8))
                defective = i >= n_ok
                if not defective:
                    rows.append(f"{i + 1}\t0\t{name}\t0")
                elif variant == "ellipse":
                    rows.append(f"{i + 1}\t1\t{name}\t" + "\t".join(str(v) for v in ELLIPSE))
                else:
                    mask = np.zeros((SIZE, SIZE), np.uint8)
                    mask[10:20, 30:50] = 255
                    _save(folder / "Label" / f"{i + 1:04d}_label.PNG", mask)
                    rows.append(f"{i + 1}\t1\t{name}\t1\t{i + 1:04d}_label.PNG")
            (folder / "Label").mkdir(exist_ok=True)
            if labels_txt:
                (folder / "Label" / "Labels.txt").write_text("\n".join(rows) + "\n")
    return root


# --- draw_ellipses -------------------------------------------------------------------------------------------------

def test_draw_ellipses_area_centre_and_rotation():
    mask = draw_ellipses([(50.0, 40.0, 30.0, 10.0, 0.0)], (100, 120))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert abs(int(mask.sum()) - math.pi * 30 * 10) / (math.pi * 300) < 0.03
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 80, 30, 50)  # major axis along x
    rotated = draw_ellipses([(50.0, 40.0, 30.0, 10.0, math.pi / 2)], (100, 120))
    ys, xs = np.nonzero(rotated)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (40, 60, 10, 70)  # now along y
    diagonal = draw_ellipses([(50.0, 50.0, 30.0, 3.0, math.pi / 4)], (100, 100))
    assert diagonal[50 - 15, 50 + 15] == 1 and diagonal[50 + 15, 50 + 15] == 0  # ccw on screen: up and right
    assert draw_ellipses([], (5, 7)).shape == (5, 7) and draw_ellipses([], (5, 7)).sum() == 0


def test_read_labels_parses_ellipses_and_flags(tmp_path):
    path = tmp_path / "Labels.txt"
    path.write_text("header\n1\t0\ta.PNG\t0\n2\t1\tb.PNG\t20.5\t8\t0.25\t30\t34.5\n3 1 c.PNG 1 c_label.PNG\n\n")
    rows = read_labels(path)
    assert not rows["a.PNG"].defective and rows["a.PNG"].ellipse is None
    assert rows["b.PNG"].ellipse == (30.0, 34.5, 20.5, 8.0, 0.25)
    assert rows["c.PNG"].defective and rows["c.PNG"].ellipse is None


# --- reader -------------------------------------------------------------------------------------------------------

def test_ellipse_variant_splits_and_masks(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1", "Class10", "Class2"))
    assert list_categories("dagm", root) == ["Class1", "Class2", "Class10"]  # numeric order
    train = open_dataset("dagm", root, "Class1", "train")
    test = open_dataset("dagm", root, "Class1", "test")
    assert len(train) == 3 and set(train.labels.tolist()) == {0}  # the defective Train image is left out
    assert "0004.PNG" not in {r.image_path.name for r in train.records}
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    assert {r.defect for r in test.records} == {"good", "defect"}
    sample = next(s for s in test if s.label == 1)
    assert sample.image.shape == (SIZE, SIZE, 3)  # grayscale -> 3-channel
    assert np.array_equal(sample.image[..., 0], sample.image[..., 2])
    semi_major, semi_minor, angle, cx, cy = ELLIPSE
    np.testing.assert_array_equal(sample.mask, draw_ellipses([(cx, cy, semi_major, semi_minor, angle)], (SIZE, SIZE)))
    assert sample.mask[34, 30] == 1 and sample.mask[34, 5] == 0
    report = check_dataset("dagm", root, categories=["Class1"], progress=False)
    assert report["categories"]["Class1"] == {"train": 3, "test": {"defect": 2, "good": 2}, "masks": 2}


def test_label_png_variant(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class3",), variant="png")
    test = open_dataset("dagm", root, "Class3", "test")
    sample = next(s for s in test if s.label == 1)
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[10:20, 30:50] = 1
    np.testing.assert_array_equal(sample.mask, expected)


def test_label_png_variant_without_labels_txt(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class4",), variant="png", labels_txt=False)
    assert len(open_dataset("dagm", root, "Class4", "train")) == 3
    assert sorted(open_dataset("dagm", root, "Class4", "test").labels.tolist()) == [0, 0, 1, 1]


# --- bad input ----------------------------------------------------------------------------------------------------

def test_missing_root_and_no_classes(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*stlm data download dagm"):
        list_categories("dagm", tmp_path / "nowhere")
    (tmp_path / "empty" / "Class1").mkdir(parents=True)  # no Train/Test inside
    with pytest.raises(DatasetError, match="no DAGM 2007 classes in .*Class1..Class10"):
        list_categories("dagm", tmp_path / "empty")


def test_defect_without_ellipse_or_mask(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",))
    labels = root / "Class1" / "Test" / "Label" / "Labels.txt"
    lines = labels.read_text().splitlines()
    lines[-1] = "\t".join(lines[-1].split("\t")[:3])  # flag 1, no ellipse, no _label.PNG
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"defect image .*0004\.PNG has no mask.*0004_label\.PNG does not exist"):
        open_dataset("dagm", root, "Class1", "test")


def test_image_not_in_labels(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",))
    _save(root / "Class1" / "Test" / "0099.PNG", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(DatasetError, match=r"0099\.PNG is not listed in .*Labels\.txt"):
        open_dataset("dagm", root, "Class1", "test")


def test_missing_label_folder(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",))
    import shutil

    shutil.rmtree(root / "Class1" / "Train" / "Label")
    with pytest.raises(DatasetError, match=r"Train has no Label/ folder.*Labels\.txt"):
        open_dataset("dagm", root, "Class1", "train")


def test_malformed_labels_line(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",))
    labels = root / "Class1" / "Train" / "Label" / "Labels.txt"
    labels.write_text(labels.read_text() + "7\tmaybe\t0007.PNG\n")
    with pytest.raises(DatasetError, match=r"Labels\.txt line \d+: expected 'index flag filename"):
        open_dataset("dagm", root, "Class1", "train")


def test_empty_training_split(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",), n_train_ok=0, n_train_def=2)
    with pytest.raises(DatasetError, match="training split of category 'Class1' is empty"):
        open_dataset("dagm", root, "Class1", "train")


def test_label_mask_size_mismatch(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",), variant="png")
    _save(root / "Class1" / "Test" / "Label" / "0003_label.PNG", np.zeros((8, 8), np.uint8))
    test = open_dataset("dagm", root, "Class1", "test")
    record = next(r for r in test.records if r.image_path.name == "0003.PNG")
    with pytest.raises(DatasetError, match=r"0003_label\.PNG has size 8x8"):
        record.load()
