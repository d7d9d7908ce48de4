"""Image and mask reading with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stlm_core.errors import DatasetError


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}. Check the dataset root and layout ('stlm data check').")
    try:
        image = Image.open(path)
        image.load()  # force decoding now so truncated files fail here, not later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"cannot read image {path}: it is corrupt or truncated ({exc}). "
            "Re-download or re-extract the dataset (stlm data download ...) or delete this file."
        ) from exc
    return image


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3); grayscale and palette images become 3-channel."""
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: Path, expected_shape: tuple[int, int] | None = None, image_path: Path | None = None) -> np.ndarray:
    """Read a ground-truth mask as uint8 {0, 1} (H, W); any non-zero pixel is anomalous.

    If ``expected_shape`` is given and differs from the mask's, raise a :class:`DatasetError` naming both files.
    """
    mask = np.asarray(_open(path).convert("L"), dtype=np.uint8)
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        raise DatasetError(
            f"mask {path} has size {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
            f"{image_path if image_path else ''} has size {expected_shape[1]}x{expected_shape[0]}. "
            "The mask must have the image's size: re-extract the dataset or regenerate the mask."
        )
    return (mask > 0).astype(np.uint8)
