"""Rasterising ground truth that is given as shapes rather than mask files (DAGM's weak-label ellipses)."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

Ellipse = tuple[float, float, float, float, float]  # (cx, cy, semi_major, semi_minor, angle_rad)


def draw_ellipses(ellipses: Iterable[Ellipse], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise filled ellipses into a uint8 {0, 1} mask of ``shape`` (H, W).

    Each ellipse is ``(cx, cy, semi_major, semi_minor, angle_rad)`` in pixel units, the centre measured from the
    top-left pixel centre (x to the right, y down). ``angle_rad`` rotates the major axis counter-clockwise *as seen
    on screen* from the x axis. Pixel (x, y) is inside when its rotated offsets satisfy
    ``(u / semi_major)^2 + (v / semi_minor)^2 <= 1``. Written with numpy rather than ``cv2.ellipse`` because
    OpenCV rounds centre and axes to integers and takes degrees; the DAGM labels are sub-pixel floats.
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=np.uint8)
    ellipses = list(ellipses)
    if not ellipses:
        return mask
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    for cx, cy, semi_major, semi_minor, angle in ellipses:
        a, b = max(float(semi_major), 0.5), max(float(semi_minor), 0.5)  # a degenerate axis still marks a line
        dx, dy = xs - float(cx), ys - float(cy)
        cos, sin = math.cos(float(angle)), math.sin(float(angle))
        u = dx * cos - dy * sin  # along the major axis (y points down, hence the signs)
        v = dx * sin + dy * cos
        mask[(u / a) ** 2 + (v / b) ** 2 <= 1.0] = 1
    return mask
