"""Shared fixtures: tiny MVTec-layout trees, the synthetic dataset, and the real sample (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = REPO_ROOT.parent / "shared" / "data" / "mvtec_ad_sample"


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_mvtec_tree(root: Path, category: str = "widget", n_train: int = 3, n_good: int = 2,
                     defects: dict[str, int] | None = None, size: int = 32, seed: int = 0) -> Path:
    """Write a tiny MVTec AD tree: random images, square defects with matching masks (0/255)."""
    rng = np.random.default_rng(seed)
    defects = {"scratch": 2} if defects is None else defects
    cat = root / category
    for i in range(n_train):
        write_png(cat / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    for i in range(n_good):
        write_png(cat / "test" / "good" / f"{i:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    for defect, n in defects.items():
        for i in range(n):
            write_png(cat / "test" / defect / f"{i:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            mask = np.zeros((size, size), np.uint8)
            mask[4 : 4 + size // 4, 4 : 4 + size // 4] = 255
            write_png(cat / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture
def mvtec_tree(tmp_path: Path):
    """Factory: ``mvtec_tree(**kwargs)`` writes a tiny MVTec tree under a fresh tmp dir and returns its root."""
    counter = iter(range(1000))

    def make(**kwargs) -> Path:
        return write_mvtec_tree(tmp_path / f"mvtec{next(counter)}", **kwargs)

    return make


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The synthetic dataset at 128 px (generated once per test session)."""
    from stlm_core.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic"), size=128, seed=0, progress=False)


@pytest.fixture
def sample_root() -> Path:
    """The real MVTec AD bottle sample beside the repository; skips when it is absent."""
    if not (SAMPLE_ROOT / "bottle").is_dir():
        pytest.skip(f"real MVTec AD sample not found at {SAMPLE_ROOT}")
    return SAMPLE_ROOT
