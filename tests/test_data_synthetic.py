"""The embedded synthetic dataset: layout, variety, exact masks, determinism."""

from __future__ import annotations

import hashlib

import numpy as np

from stlm_core.cli import main
from stlm_core.data import list_categories, open_dataset
from stlm_core.data.check import check_dataset
from stlm_core.data.synthetic import CATEGORIES, DEFECTS, generate, render_pair


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(synthetic_root):
    assert set(CATEGORIES.values()) == {"texture", "object"}
    assert sorted(list_categories("synthetic", synthetic_root)) == sorted(CATEGORIES)
    report = check_dataset("synthetic", synthetic_root, progress=False)
    for category, counts in report["categories"].items():
        assert counts["train"] >= 40
        n_test = sum(counts["test"].values())
        assert n_test >= 30 and 0.25 <= counts["test"]["good"] / n_test <= 0.4
        assert len(counts["test"]) - 1 >= 3  # several defect kinds
        assert counts["masks"] == n_test - counts["test"]["good"]


def test_masks_are_exact():
    rng = np.random.default_rng(0)
    for category, kind in CATEGORIES.items():
        for defect in DEFECTS[kind]:
            for _ in range(3):
                image, clean, mask = render_pair(category, defect, rng, 96)
                changed = (image != clean).any(axis=2)
                assert mask.any()
                assert np.array_equal(mask.astype(bool), changed)  # mask == exactly the changed pixels


def test_defects_vary_in_size_and_contrast(synthetic_root):
    areas, contrasts = [], []
    for category in CATEGORIES:
        for sample in open_dataset("synthetic", synthetic_root, category, "test"):
            if sample.label == 0:
                assert sample.mask.sum() == 0
                continue
            areas.append(sample.mask.mean())
    assert min(areas) < 0.005 and max(areas) > 0.01  # sizes range from tiny to sizeable
    rng = np.random.default_rng(1)
    for _ in range(20):
        image, clean, mask = render_pair("carpet_like", "contamination", rng, 64)
        contrasts.append(np.abs(image.astype(int) - clean.astype(int))[mask == 1].mean())
    assert min(contrasts) < 0.5 * max(contrasts)  # subtle and strong defects


def test_normal_images_vary(synthetic_root):
    train = open_dataset("synthetic", synthetic_root, "nut_like", "train")
    a, b = train[0].image.astype(np.int16), train[1].image.astype(np.int16)
    assert np.abs(a - b).mean() > 5


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    small = ["carpet_like", "nut_like"]
    first = _digest(generate(tmp_path / "a", size=64, seed=3, categories=small, progress=False))
    second = _digest(generate(tmp_path / "b", size=64, seed=3, categories=small, progress=False))
    third = _digest(generate(tmp_path / "c", size=64, seed=4, categories=small, progress=False))
    assert first == second
    assert first != third


def test_cli_writes_dataset(tmp_path, capsys):
    assert main(["data", "synthetic", str(tmp_path / "syn"), "--size", "64", "--seed", "1", "--quiet"]) == 0
    assert "synthetic" in capsys.readouterr().out
    assert len(list((tmp_path / "syn").glob("*/train/good/*.png"))) == 40 * len(CATEGORIES)
