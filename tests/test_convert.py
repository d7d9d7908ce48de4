"""VisA -> MVTec and DAGM -> MVTec conversion: readable by MVTecReader, exact masks, idempotent, atomic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stlm_core.data import list_categories, open_dataset
from stlm_core.data.convert import convert_dagm, convert_visa
from stlm_core.cli.download import convert_main
from stlm_core.errors import DatasetError
from test_data_dagm import write_dagm_native
from test_data_visa import write_visa_native


def _quiet(_message: str) -> None:
    pass


def _by_name(dataset):
    return {(s.defect, s.path.stem): s for s in dataset}


def test_visa_conversion_matches_native(tmp_path):
    native = write_visa_native(tmp_path / "native")
    out = tmp_path / "mvtec"
    assert convert_visa(native, out, log=_quiet, progress=False) == ["candle", "pcb1"]
    assert list_categories("mvtec", out) == ["candle", "pcb1"]
    for split in ("train", "test"):
        converted = open_dataset("mvtec", out, "candle", split)
        original = open_dataset("visa", native, "candle", split)
        assert sorted(converted.labels.tolist()) == sorted(original.labels.tolist())
        ref = _by_name(original)
        for key, sample in _by_name(converted).items():
            np.testing.assert_array_equal(sample.mask, ref[key].mask)
            np.testing.assert_array_equal(sample.image, ref[key].image)
    # masks are 0/255 PNGs; images are the original bytes
    mask_file = out / "candle" / "ground_truth" / "anomaly" / "000_mask.png"
    assert set(np.unique(np.asarray(Image.open(mask_file)))) == {0, 255}
    assert (out / "candle/test/anomaly/000.JPG").read_bytes() == (native / "candle/Data/Images/Anomaly/000.JPG").read_bytes()
    # the converted layout is also what --dataset visa auto-detects
    assert len(open_dataset("visa", out, "pcb1", "test")) == 4


def test_conversion_is_idempotent(tmp_path):
    native = write_visa_native(tmp_path / "native", categories=("candle",))
    out = tmp_path / "mvtec"
    convert_visa(native, out, log=_quiet, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    messages = []
    convert_visa(native, out, log=messages.append, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert any("already converted" in m for m in messages)


def test_failed_conversion_leaves_nothing(tmp_path):
    native = write_visa_native(tmp_path / "native", categories=("candle",))
    (native / "candle/Data/Masks/Anomaly/001.png").unlink()
    out = tmp_path / "mvtec"
    with pytest.raises(DatasetError, match="001.JPG has no mask"):
        convert_visa(native, out, log=_quiet, progress=False)
    assert list(out.iterdir()) == []  # neither the category nor its temporary folder


def test_refuses_wrong_input(tmp_path):
    native = write_visa_native(tmp_path / "native")
    with pytest.raises(DatasetError, match="output folder .* is the input folder"):
        convert_visa(native, native, log=_quiet, progress=False)
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match=r"not VisA in its native layout: .*split_csv/1cls\.csv is missing"):
        convert_visa(tmp_path / "plain", tmp_path / "out", log=_quiet, progress=False)


def test_dagm_conversion(tmp_path):
    native = write_dagm_native(tmp_path / "native", classes=("Class1", "Class2"))
    out = tmp_path / "mvtec"
    assert convert_dagm(native, out, log=_quiet, progress=False) == ["Class1", "Class2"]
    assert list_categories("mvtec", out) == ["Class1", "Class2"]
    train = open_dataset("mvtec", out, "Class1", "train")
    assert len(train) == 3  # defective Train images are not part of the unsupervised training split
    converted = _by_name(open_dataset("mvtec", out, "Class1", "test"))
    original = _by_name(open_dataset("dagm", native, "Class1", "test"))
    assert converted.keys() == original.keys() == {("good", "0001"), ("good", "0002"), ("defect", "0003"),
                                                   ("defect", "0004")}
    for key, sample in converted.items():
        np.testing.assert_array_equal(sample.mask, original[key].mask)  # ellipses rasterised identically
        np.testing.assert_array_equal(sample.image, original[key].image)
    assert converted[("defect", "0003")].mask.sum() > 0
    assert (out / "Class1/test/defect/0003.png").is_file()


def test_convert_script_entry_point(tmp_path, capsys):
    native = write_dagm_native(tmp_path / "native", classes=("Class7",), variant="png")
    assert convert_main("dagm", ["--src", str(native), "--dst", str(tmp_path / "out"), "--quiet"]) == 0
    assert len(open_dataset("mvtec", tmp_path / "out", "Class7", "test")) == 4
    assert convert_main("visa", ["--src", str(native), "--dst", str(tmp_path / "out2"), "--quiet"]) == 2
    assert "error: " in capsys.readouterr().err
