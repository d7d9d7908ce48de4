"""Convert VisA, DAGM 2007 and MVTec 3D-AD (RGB) from their native layouts to the MVTec AD layout.

Output per category (read with ``--dataset mvtec``; VisA's converted layout also with ``--dataset visa``)::

    <dst>/<category>/train/good/<name>
    <dst>/<category>/test/good/<name>
    <dst>/<category>/test/<defect>/<name>                 defect: "anomaly" (VisA) or "defect" (DAGM)
    <dst>/<category>/ground_truth/<defect>/<stem>_mask.png  uint8 PNG, 0 = normal, 255 = anomalous

- VisA uses the official one-class split ``split_csv/1cls.csv``. Images are copied byte for byte (the original
  JPEGs: re-encoding them as PNG adds no information and multiplies the size about tenfold); masks are binarised
  (any non-zero value -> 255) and written as PNG.
- DAGM: ``train/good`` holds the defect-free ``Train`` images only; ``test`` holds every ``Test`` image; the weak
  labels (ellipses from ``Labels.txt`` or ``*_label.PNG`` masks) become ``_mask.png`` files. Images are PNG.

- MVTec 3D-AD: the RGB images of ``train/good`` (and, with ``include_validation``, ``validation/good``, named
  ``val_<name>``) and of ``test/<defect>``, copied byte for byte; the ``gt`` masks binarised as ``_mask.png``; the
  point clouds are ignored.

All are idempotent and atomic per category: a category is written to ``<dst>/.<category>.converting`` and
renamed to ``<dst>/<category>`` when complete; categories already present in ``<dst>`` are skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from stlm_core.data.dagm import DagmReader
from stlm_core.data.imageio import open_image, read_mask
from stlm_core.data.sample import SampleRecord
from stlm_core.data.visa import SPLIT_CSV, VisaReader, is_native
from stlm_core.errors import DatasetError


def _image_shape(path: Path) -> tuple[int, int]:
    width, height = open_image(path).size  # decodes fully, so truncated files fail here with a clear message
    return height, width


def _write_mask(mask01: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask01 > 0).astype(np.uint8) * 255).save(path)


def _check_distinct(src: Path, dst: Path) -> None:
    if Path(os.path.realpath(src)) == Path(os.path.realpath(dst)):
        raise DatasetError(
            f"the output folder {dst} is the input folder; convert into a separate folder (e.g. {dst}_mvtec)."
        )


def _convert(reader, src: Path, dst: Path, categories: list[str] | None, write_record, log, progress,
             splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    src, dst = Path(src), Path(dst)
    _check_distinct(src, dst)
    found = reader.categories(src)
    chosen = categories or found
    dst.mkdir(parents=True, exist_ok=True)
    done = []
    for category in chosen:
        if category not in found:
            raise DatasetError(f"category {category!r} not found in {src}; available: {', '.join(found)}.")
        final = dst / category
        if final.exists():
            log(f"{category}: already converted ({final}); skipped")
            done.append(category)
            continue
        tmp = dst / f".{category}.converting"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            records = [r for split in splits for r in reader.records(src, category, split)]
            for record in tqdm(records, desc=f"converting {category}", disable=not progress, leave=False):
                write_record(record, tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"{category}: {len(records)} images -> {final}")
        done.append(category)
    return done


def convert_visa(src: str | Path, dst: str | Path, categories: list[str] | None = None, *,
                 log: Callable[[str], None] = print, progress: bool = True) -> list[str]:
    """Convert VisA from the native layout at ``src`` to the MVTec AD layout at ``dst``; return the categories."""
    if not is_native(Path(src)):
        raise DatasetError(
            f"{src} is not VisA in its native layout: {Path(src) / SPLIT_CSV} is missing. Pass the folder unpacked "
            "from VisA_20220922.tar (it holds split_csv/ and the category folders)."
        )

    def write(record: SampleRecord, out: Path) -> None:
        folder = out / record.split / record.defect
        folder.mkdir(parents=True, exist_ok=True)
        if record.label:
            mask = np.zeros(_image_shape(record.image_path), dtype=np.uint8)
            for mask_path in record.mask_paths:
                mask |= read_mask(mask_path, expected_shape=mask.shape, image_path=record.image_path)
            _write_mask(mask, out / "ground_truth" / record.defect / f"{record.image_path.stem}_mask.png")
        else:
            _image_shape(record.image_path)  # refuse corrupt images before copying them
        shutil.copyfile(record.image_path, folder / record.image_path.name)

    return _convert(VisaReader(), Path(src), Path(dst), categories, write, log, progress)


def convert_dagm(src: str | Path, dst: str | Path, categories: list[str] | None = None, *,
                 log: Callable[[str], None] = print, progress: bool = True) -> list[str]:
    """Convert DAGM 2007 from the native layout at ``src`` to the MVTec AD layout at ``dst``; return the classes."""
    def write(record: SampleRecord, out: Path) -> None:
        folder = out / record.split / record.defect
        folder.mkdir(parents=True, exist_ok=True)
        sample = record.load()  # decodes the image and rasterises / reads the weak label
        name = f"{record.image_path.stem}.png"
        if record.image_path.suffix.lower() == ".png":
            shutil.copyfile(record.image_path, folder / name)
        else:
            Image.open(record.image_path).save(folder / name)
        if record.label:
            _write_mask(sample.mask, out / "ground_truth" / record.defect / f"{record.image_path.stem}_mask.png")

    return _convert(DagmReader(), Path(src), Path(dst), categories, write, log, progress)


def convert_mvtec3d(src: str | Path, dst: str | Path, categories: list[str] | None = None, *,
                    include_validation: bool = False, log: Callable[[str], None] = print,
                    progress: bool = True) -> list[str]:
    """Convert MVTec 3D-AD's RGB images and masks at ``src`` to the MVTec AD layout at ``dst``; return the
    categories. ``include_validation``: also train on the ``validation/good`` images (as ``train/good/val_*``)."""
    from stlm_core.data.mvtec3d import Mvtec3dReader

    if not Path(src).is_dir():
        raise DatasetError(f"{src} is not a folder; pass the folder unpacked from MVTec 3D-AD (it holds the category "
                           "folders, each with train/good/rgb and test/<defect>/{rgb,gt}).")

    def write(record: SampleRecord, out: Path) -> None:
        split = "train" if record.split == "validation" else record.split
        name = f"val_{record.image_path.name}" if record.split == "validation" else record.image_path.name
        folder = out / split / record.defect
        folder.mkdir(parents=True, exist_ok=True)
        shape = _image_shape(record.image_path)  # refuse corrupt images before copying them
        if record.label:
            mask = read_mask(record.mask_paths[0], expected_shape=shape, image_path=record.image_path)
            _write_mask(mask, out / "ground_truth" / record.defect / f"{Path(name).stem}_mask.png")
        shutil.copyfile(record.image_path, folder / name)

    splits = ("train", "validation", "test") if include_validation else ("train", "test")
    return _convert(Mvtec3dReader(), Path(src), Path(dst), categories, write, log, progress, splits)
