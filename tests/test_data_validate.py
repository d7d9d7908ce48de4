"""validate_split collects every problem of a split; raise_for_problems lists them; the dataset registry;
``stlm data check`` reports empty splits and test splits without defects."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_png
from test_data_dagm import write_dagm_native
from test_data_loco import write_loco
from test_data_visa import write_visa_native

import stlm_core.data as data
from stlm_core.data import DataProblem, get_reader, raise_for_problems, validate_split
from stlm_core.data.check import check_dataset, format_report
from stlm_core.data.dagm import ConvertedDagmReader, DagmReader
from stlm_core.data.mvtec import MVTecReader, SyntheticReader
from stlm_core.data.registry import ALIASES, DATASET_NAMES, READERS
from stlm_core.data.visa import VisaReader
from stlm_core.errors import DatasetError


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def _paths(problems: list[DataProblem]) -> set[Path]:
    return {p.path for p in problems}


# ---------------------------------------------------------------- registry

def test_registry_is_the_one_list_of_names():
    assert data.DATASET_NAMES == DATASET_NAMES == ("mvtec", "visa", "dagm", "loco", "synthetic")
    assert set(READERS) == set(DATASET_NAMES) and ALIASES == {"mvtec_ad": "mvtec", "mvtec_loco": "loco"}
    for name in (*DATASET_NAMES, *ALIASES, "MVTec"):
        reader = get_reader(name)
        assert "name" not in vars(reader), "readers carry their name as a class attribute"
        assert reader.name == ALIASES.get(name.lower(), name.lower())
    assert type(get_reader("synthetic")) is SyntheticReader and issubclass(SyntheticReader, MVTecReader)
    assert "name" not in vars(VisaReader._mvtec()) and VisaReader._mvtec().name == "visa"
    assert ConvertedDagmReader.name == "dagm" and DagmReader.name == "dagm"
    with pytest.raises(DatasetError, match="unknown dataset 'kitti'; use one of: mvtec, visa, dagm, loco, synthetic"):
        get_reader("kitti")


def test_open_dataset_names_synthetic_and_converted_layouts(mvtec_tree):
    root = mvtec_tree()
    assert data.open_dataset("synthetic", root, "widget", "train").name == "synthetic"
    assert data.open_dataset("mvtec_ad", root, "widget", "test").name == "mvtec"
    assert data.open_dataset("dagm", root, "widget", "test").name == "dagm"


# ---------------------------------------------------------------- MVTec layout, one broken thing per test

def test_clean_tree_has_no_problems(mvtec_tree):
    assert validate_split("mvtec", mvtec_tree(), "widget") == []


def test_defect_image_without_mask(mvtec_tree):
    root = mvtec_tree()
    (root / "widget/ground_truth/scratch/001_mask.png").unlink()
    [problem] = validate_split("mvtec", root, "widget")
    assert problem.path == root / "widget/test/scratch/001.png"
    assert "has no mask" in problem.problem and "001_mask.png" in problem.problem and "Restore" in problem.fix


def test_mask_of_the_wrong_size(mvtec_tree):
    root = mvtec_tree()
    mask = write_png(root / "widget/ground_truth/scratch/000_mask.png", np.full((16, 16), 255, np.uint8))
    [problem] = validate_split("mvtec", root, "widget")
    assert problem.path == mask and "16x16" in problem.problem and "32x32" in problem.problem
    assert validate_split("mvtec", root, "widget", image_size_check=False) == []


def test_truncated_test_image(mvtec_tree):
    root = mvtec_tree()
    image = root / "widget/test/good/001.png"
    _truncate(image)
    [problem] = validate_split("mvtec", root, "widget")
    assert problem.path == image and "corrupt or truncated" in problem.problem


def test_zero_byte_image(mvtec_tree):
    root = mvtec_tree()
    image = root / "widget/train/good/002.png"
    image.write_bytes(b"")
    [problem] = validate_split("mvtec", root, "widget")
    assert problem.path == image and "corrupt or truncated" in problem.problem


def test_test_split_without_defective_images(mvtec_tree):
    root = mvtec_tree(defects={})
    [problem] = validate_split("mvtec", root, "widget")
    assert "no defective images" in problem.problem and "Pixel metrics" in problem.fix
    assert validate_split("mvtec", root, "widget", need_defects=False) == []


def test_defect_masks_all_empty(mvtec_tree):
    root = mvtec_tree(defects={"scratch": 1})
    write_png(root / "widget/ground_truth/scratch/000_mask.png", np.zeros((32, 32), np.uint8))
    [problem] = validate_split("mvtec", root, "widget")
    assert "non-empty mask" in problem.problem


def test_empty_train_split(mvtec_tree):
    root = mvtec_tree(n_train=0)
    (root / "widget/train/good").mkdir(parents=True)
    [problem] = validate_split("mvtec", root, "widget")
    assert problem.path == root / "widget/train/good" and "training split" in problem.problem
    assert validate_split("mvtec", root, "widget", splits=("test",)) == []


def test_three_problems_are_all_reported(mvtec_tree):
    root = mvtec_tree(defects={"scratch": 3})
    _truncate(root / "widget/train/good/000.png")
    (root / "widget/ground_truth/scratch/001_mask.png").unlink()
    write_png(root / "widget/ground_truth/scratch/002_mask.png", np.full((8, 8), 255, np.uint8))
    problems = validate_split("mvtec", root, "widget")
    assert _paths(problems) == {root / "widget/train/good/000.png", root / "widget/test/scratch/001.png",
                                root / "widget/ground_truth/scratch/002_mask.png"}
    with pytest.raises(DatasetError) as info:
        raise_for_problems(problems, action="train STLM on mvtec/widget")
    message = str(info.value)
    assert message.startswith("cannot train STLM on mvtec/widget: the dataset has 3 problems")
    assert "nothing was written" in message
    lines = message.splitlines()
    for problem in problems:
        assert f"  {problem.path}: {problem.problem}; {problem.fix}" in lines


def test_raise_for_problems_is_silent_without_problems():
    raise_for_problems([], action="anything")
    with pytest.raises(DatasetError, match="has 1 problem \\(nothing was written\\)"):
        raise_for_problems([DataProblem(Path("x.png"), "broken", "fix it")], action="evaluate")


def test_layout_problems_are_problems_not_exceptions(mvtec_tree, tmp_path):
    [missing] = validate_split("mvtec", tmp_path / "nowhere", "widget")
    assert "does not exist" in missing.problem and missing.path == tmp_path / "nowhere"
    [unknown] = validate_split("mvtec", mvtec_tree(), "gadget")
    assert "category 'gadget' not found" in unknown.problem and "widget" in unknown.problem
    [split] = validate_split("mvtec", mvtec_tree(), "widget", splits=("validation",))
    assert "split 'validation' does not exist" in split.problem


def test_real_sample_is_clean_and_fast(sample_root):
    start = time.perf_counter()
    assert validate_split("mvtec", sample_root, "bottle") == []
    assert time.perf_counter() - start < 30


# ---------------------------------------------------------------- other datasets

def test_synthetic(synthetic_root, tmp_path):
    assert validate_split("synthetic", synthetic_root, "carpet_like") == []
    root = tmp_path / "synthetic"
    shutil.copytree(synthetic_root / "nut_like", root / "nut_like")
    (root / "nut_like/ground_truth/crack/000_mask.png").unlink()
    [problem] = validate_split("synthetic", root, "nut_like")
    assert problem.path == root / "nut_like/test/crack/000.png" and "has no mask" in problem.problem


def test_visa_native(tmp_path):
    root = write_visa_native(tmp_path / "visa")
    assert validate_split("visa", root, "candle") == []
    (root / "candle/Data/Masks/Anomaly/001.png").unlink()
    (root / "candle/Data/Images/Normal/0001.JPG").unlink()
    _truncate(root / "candle/Data/Images/Anomaly/000.JPG")
    problems = validate_split("visa", root, "candle")
    assert _paths(problems) == {root / "candle/Data/Images/Anomaly/001.JPG", root / "candle/Data/Images/Normal/0001.JPG",
                                root / "candle/Data/Images/Anomaly/000.JPG"}


def test_dagm_ellipses_and_label_masks(tmp_path):
    root = write_dagm_native(tmp_path / "dagm", classes=("Class1",))
    assert validate_split("dagm", root, "Class1") == []
    labels = root / "Class1/Test/Label/Labels.txt"
    lines = labels.read_text().splitlines()
    lines[-1] = "\t".join(lines[-1].split("\t")[:3])  # the last defect loses its ellipse
    labels.write_text("\n".join(lines) + "\n")
    [problem] = validate_split("dagm", root, "Class1")
    assert problem.path == root / "Class1/Test/0004.PNG" and "gives no ellipse" in problem.problem

    png = write_dagm_native(tmp_path / "dagm_png", classes=("Class2",), variant="png")
    write_png(png / "Class2/Test/Label/0003_label.PNG", np.full((8, 8), 255, np.uint8))
    [problem] = validate_split("dagm", png, "Class2")
    assert problem.path == png / "Class2/Test/Label/0003_label.PNG" and "8x8" in problem.problem


def test_loco_all_splits(tmp_path):
    root = write_loco(tmp_path / "loco", n_val=0)
    (root / "juice_bottle/validation/good").mkdir(parents=True)
    assert validate_split("loco", root, "juice_bottle") == []
    shutil.rmtree(root / "juice_bottle/ground_truth/structural_anomalies/000")
    problems = validate_split("loco", root, "juice_bottle", splits=("train", "validation", "test"))
    assert [p.path for p in problems] == [root / "juice_bottle/validation/good",
                                          root / "juice_bottle/test/structural_anomalies/000.png"]
    assert "validation split" in problems[0].problem and "has no mask" in problems[1].problem


# ---------------------------------------------------------------- stlm data check

def test_check_reports_no_problems_on_a_clean_tree(mvtec_tree):
    report = check_dataset("mvtec", mvtec_tree(), progress=False)
    assert report["ok"] is True and report["problems"] == []
    assert report["categories"]["widget"] == {"train": 3, "test": {"good": 2, "scratch": 2}, "masks": 2}
    assert "1 categories, OK" in format_report(report)


def test_check_reports_empty_splits_and_missing_defects(mvtec_tree):
    root = mvtec_tree(category="a", defects={})
    write_mvtec_like = mvtec_tree(category="b", n_train=0)
    shutil.move(str(write_mvtec_like / "b"), str(root / "b"))
    (root / "b/train/good").mkdir(parents=True)
    report = check_dataset("mvtec", root, progress=False, raise_on_problems=False)
    assert report["ok"] is False
    assert [(p["category"], p["split"]) for p in report["problems"]] == [("a", "test"), ("b", "train")]
    assert "no defective images" in report["problems"][0]["problem"]
    assert "training split of category 'b' is empty" in report["problems"][1]["problem"]
    assert set(report["problems"][0]) == {"category", "split", "path", "problem", "fix"}
    text = format_report(report)
    assert "2 problems" in text and "a/test:" in text and "b/train:" in text
    with pytest.raises(DatasetError, match="has 2 problems") as info:
        check_dataset("mvtec", root, progress=False)
    assert len(str(info.value).splitlines()) == 3


def test_select_categories_accepts_what_papermill_passes(synthetic_root):
    from stlm_core.data import list_categories, select_categories
    from stlm_core.errors import DatasetError

    every = list_categories("synthetic", synthetic_root)
    assert select_categories("synthetic", synthetic_root) == every
    assert select_categories("synthetic", synthetic_root, max_categories=2) == every[:2]
    assert select_categories("synthetic", synthetic_root, "nut_like") == ["nut_like"]         # -p categories nut_like
    assert select_categories("synthetic", synthetic_root, "nut_like, wood_like") == ["nut_like", "wood_like"]
    assert select_categories("synthetic", synthetic_root, ["wood_like"]) == ["wood_like"]
    with pytest.raises(DatasetError, match="available: .*nut_like"):
        select_categories("synthetic", synthetic_root, "bottle")
