"""MVTec 3D-AD (RGB) -> MVTec AD layout: readable by every command, exact masks, validation optional, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stlm_core.cli import main
from stlm_core.data import open_dataset
from stlm_core.data.convert import convert_mvtec3d
from stlm_core.errors import DatasetError


def write_mvtec3d_native(root: Path, category: str = "cable_gland", size: int = 24) -> Path:
    """A tiny MVTec 3D-AD tree: 3 train, 2 validation, 2 good test, 2 'crack' test images with gt masks, xyz files."""
    rng = np.random.default_rng(0)

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        xyz = path.parent.parent / "xyz" / f"{path.stem}.tiff"  # point clouds exist and must be ignored
        xyz.parent.mkdir(parents=True, exist_ok=True)
        xyz.write_bytes(b"not an image we read")

    cat = root / category
    for i in range(3):
        image(cat / "train" / "good" / "rgb" / f"{i:03d}.png")
    for i in range(2):
        image(cat / "validation" / "good" / "rgb" / f"{i:03d}.png")
        image(cat / "test" / "good" / "rgb" / f"{i:03d}.png")
        image(cat / "test" / "crack" / "rgb" / f"{i:03d}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[2 + i:8 + i, 3:9] = 255
        (cat / "test" / "crack" / "gt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(cat / "test" / "crack" / "gt" / f"{i:03d}.png")
    return root


def test_mvtec3d_converts_to_the_mvtec_layout_with_exact_masks(tmp_path):
    native = write_mvtec3d_native(tmp_path / "native")
    assert convert_mvtec3d(native, tmp_path / "out", progress=False, log=lambda m: None) == ["cable_gland"]
    train = open_dataset("mvtec", tmp_path / "out", "cable_gland", "train")
    test = open_dataset("mvtec", tmp_path / "out", "cable_gland", "test")
    assert len(train) == 3 and len(test) == 4
    crack = [s for s in test if s.defect == "crack"]
    assert [s.path.name for s in crack] == ["000.png", "001.png"]
    expected = np.asarray(Image.open(native / "cable_gland" / "test" / "crack" / "gt" / "001.png")) > 0
    np.testing.assert_array_equal(crack[1].mask.astype(bool), expected)
    np.testing.assert_array_equal(crack[1].image, np.asarray(Image.open(
        native / "cable_gland" / "test" / "crack" / "rgb" / "001.png")))
    assert not list((tmp_path / "out").rglob("*.tiff"))
    # idempotent: a second run skips the converted category
    messages = []
    convert_mvtec3d(native, tmp_path / "out", progress=False, log=messages.append)
    assert "already converted" in messages[0]


def test_validation_images_join_training_on_request(tmp_path):
    native = write_mvtec3d_native(tmp_path / "native")
    convert_mvtec3d(native, tmp_path / "out", include_validation=True, progress=False, log=lambda m: None)
    names = sorted(s.path.name for s in open_dataset("mvtec", tmp_path / "out", "cable_gland", "train"))
    assert names == ["000.png", "001.png", "002.png", "val_000.png", "val_001.png"]


def test_missing_mask_and_wrong_folder_are_named(tmp_path, capsys):
    native = write_mvtec3d_native(tmp_path / "native")
    (native / "cable_gland" / "test" / "crack" / "gt" / "001.png").unlink()
    with pytest.raises(DatasetError, match=r"crack/rgb/001.png has no mask"):
        convert_mvtec3d(native, tmp_path / "out", progress=False, log=lambda m: None)
    assert not (tmp_path / "out" / "cable_gland").exists()
    assert main(["data", "convert", "mvtec3d", "--src", str(tmp_path / "absent"), "--dst", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["data", "convert", "mvtec3d", "--src", str(tmp_path), "--dst", str(tmp_path / "o2")]) == 2
    assert "no MVTec 3D-AD categories" in capsys.readouterr().err


def test_stlm_data_convert_command(tmp_path):
    native = write_mvtec3d_native(tmp_path / "native")
    out = tmp_path / "out"
    assert main(["data", "convert", "mvtec3d", "--src", str(native), "--dst", str(out), "--quiet"]) == 0
    assert main(["data", "check", "--dataset", "mvtec", "--root", str(out)]) == 0
