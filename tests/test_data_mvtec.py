"""MVTec AD reader, torch adapter, `stlm data check`, and the bad-input errors of the foundation issue."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from stlm_core.cli import main
from stlm_core.data import get_reader, list_categories, open_dataset
from stlm_core.data.check import check_dataset
from stlm_core.data.transforms import ResizeNormalise, TorchAnomalyDataset
from stlm_core.errors import DatasetError

from conftest import write_png


def test_reader_yields_samples_with_conventions(mvtec_tree):
    root = mvtec_tree(n_train=3, n_good=2, defects={"scratch": 2, "hole": 1})
    assert list_categories("mvtec", root) == ["widget"]
    train = open_dataset("mvtec", root, "widget", "train")
    assert len(train) == 3 and train.labels.tolist() == [0, 0, 0]
    test = open_dataset("mvtec", root, "widget", "test")
    assert sorted({r.defect for r in test.records}) == ["good", "hole", "scratch"]
    for sample in test:
        assert sample.image.dtype == np.uint8 and sample.image.shape == (32, 32, 3)
        assert sample.mask.shape == (32, 32) and set(np.unique(sample.mask)) <= {0, 1}
        assert sample.label == int(sample.mask.any())
        assert sample.category == "widget" and sample.split == "test"


def test_torch_adapter_resizes_and_normalises(mvtec_tree):
    root = mvtec_tree()
    test = open_dataset("mvtec", root, "widget", "test")
    ds = TorchAnomalyDataset(test, ResizeNormalise(size=48, normalisation="sam"))
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, 48, 48)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert batch["label"].tolist() == [0, 0, 1, 1]
    assert -3 < batch["image"].min() < 0 < batch["image"].max() < 3  # normalised, not 0-255


def test_check_json_counts(mvtec_tree, capsys):
    root = mvtec_tree(n_train=4, n_good=3, defects={"scratch": 2, "hole": 1})
    assert main(["data", "check", "--dataset", "mvtec", "--root", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "mvtec"
    assert report["categories"] == {"widget": {"train": 4, "test": {"good": 3, "hole": 1, "scratch": 2}, "masks": 3}}


def test_hidden_files_are_not_samples(mvtec_tree):
    root = mvtec_tree(n_train=2)
    (root / "widget/train/good/._000.png").write_bytes(b"AppleDouble metadata")
    (root / "widget/train/good/notes.txt").write_text("not an image")
    assert len(open_dataset("mvtec", root, "widget", "train")) == 2


def test_check_counts_real_sample(sample_root):
    report = check_dataset("mvtec", sample_root, progress=False)
    bottle = report["categories"]["bottle"]
    # Counted independently of the reader: files on disk.
    assert bottle["train"] == len(list((sample_root / "bottle/train/good").glob("*.png")))
    for defect, n in bottle["test"].items():
        assert n == len(list((sample_root / "bottle/test" / defect).glob("*.png")))
    assert bottle["masks"] == len(list((sample_root / "bottle/ground_truth").glob("*/*_mask.png")))
    sample = open_dataset("mvtec", sample_root, "bottle", "test")[0]
    assert sample.image.shape == (900, 900, 3)


# ---------------------------------------------------------------- bad input: one test per case

def _error_of(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_missing_root(tmp_path, capsys):
    err = _error_of(capsys, ["data", "check", "--dataset", "mvtec", "--root", str(tmp_path / "nope")])
    assert "does not exist" in err and "stlm data download mvtec" in err


def test_no_categories(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _error_of(capsys, ["data", "check", "--dataset", "mvtec", "--root", str(tmp_path / "empty")])
    assert "no mvtec categories" in err and "train/good" in err


def test_defect_image_without_mask(mvtec_tree, capsys):
    root = mvtec_tree()
    (root / "widget/ground_truth/scratch/001_mask.png").unlink()
    err = _error_of(capsys, ["data", "check", "--dataset", "mvtec", "--root", str(root)])
    assert "001.png has no mask" in err and "001_mask.png" in err


def test_mask_image_size_mismatch(mvtec_tree, capsys):
    root = mvtec_tree()
    write_png(root / "widget/ground_truth/scratch/000_mask.png", np.zeros((16, 16), np.uint8))
    err = _error_of(capsys, ["data", "check", "--dataset", "mvtec", "--root", str(root)])
    assert "000_mask.png" in err and "16x16" in err and "32x32" in err
    with pytest.raises(DatasetError, match="size"):
        open_dataset("mvtec", root, "widget", "test")[2].mask


def test_corrupt_or_truncated_image(mvtec_tree, capsys):
    root = mvtec_tree()
    target = root / "widget/train/good/001.png"
    target.write_bytes(target.read_bytes()[:60])  # truncated PNG
    err = _error_of(capsys, ["data", "check", "--dataset", "mvtec", "--root", str(root), "--deep"])
    assert "001.png" in err and "corrupt or truncated" in err
    (root / "widget/train/good/002.png").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="002.png"):
        open_dataset("mvtec", root, "widget", "train")[2]


def test_empty_training_split(mvtec_tree, capsys):
    root = mvtec_tree()
    shutil.rmtree(root / "widget/train/good")
    (root / "widget/train/good").mkdir()
    err = _error_of(capsys, ["data", "check", "--dataset", "mvtec", "--root", str(root)])
    assert "training split" in err and "empty" in err


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="unknown dataset 'kitti'.*mvtec"):
        get_reader("kitti")
