"""Image and mask reading with errors that name the file and the fix.

:func:`open_image` and :func:`read_mask` raise :class:`FileProblemError`, a :class:`DatasetError` that also carries
the :class:`~stlm_core.data.problems.DataProblem` it describes, so validation can collect it instead of stopping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stlm_core.data.problems import DataProblem
from stlm_core.errors import DatasetError

UNREADABLE_FIX = "Re-download or re-extract the dataset (stlm data download ...) or delete this file."
MISSING_FIX = "Check the dataset root and layout ('stlm data check')."
MASK_SIZE_FIX = "The mask must have the image's size: re-extract the dataset or regenerate the mask."


class FileProblemError(DatasetError):
    """A missing, unreadable or mis-sized image or mask; ``problem`` holds path, what is wrong and the fix."""

    def __init__(self, problem: DataProblem):
        super().__init__(problem.message)
        self.problem = problem


def open_image(path: Path, decode: bool = True) -> Image.Image:
    """Open an image file; with ``decode`` (default) decode every pixel now, so truncated files fail here.

    Without ``decode`` only the header is read (size and mode are known, pixels are not checked).
    """
    path = Path(path)
    if not path.is_file():
        raise FileProblemError(DataProblem(path, f"image file not found: {path}", MISSING_FIX))
    try:
        image = Image.open(path)
        if decode:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FileProblemError(
            DataProblem(path, f"cannot read image {path}: it is corrupt or truncated ({exc})", UNREADABLE_FIX)
        ) from exc
    return image


def mask_size_problem(mask_path: Path, mask_shape: tuple[int, int], image_shape: tuple[int, int],
                      image_path: Path | None = None) -> DataProblem:
    """The problem of a mask of shape (H, W) ``mask_shape`` whose image has shape ``image_shape``."""
    return DataProblem(
        Path(mask_path),
        f"mask {mask_path} has size {mask_shape[1]}x{mask_shape[0]} (WxH) but its image "
        f"{image_path if image_path else ''} has size {image_shape[1]}x{image_shape[0]}",
        MASK_SIZE_FIX,
    )


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3); grayscale and palette images become 3-channel."""
    return np.asarray(open_image(path).convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: Path, expected_shape: tuple[int, int] | None = None, image_path: Path | None = None) -> np.ndarray:
    """Read a ground-truth mask as uint8 {0, 1} (H, W); any non-zero pixel is anomalous.

    If ``expected_shape`` is given and differs from the mask's, raise a :class:`DatasetError` naming both files.
    """
    mask = np.asarray(open_image(path).convert("L"), dtype=np.uint8)
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        raise FileProblemError(mask_size_problem(path, mask.shape, tuple(expected_shape), image_path))
    return (mask > 0).astype(np.uint8)
