"""The embedded default dataset: procedurally generated images in MVTec AD layout.

Four categories, two textures and two objects, each with four defect kinds and exact pixel masks::

    carpet_like  (texture)  scratch, crack, hole, contamination
    wood_like    (texture)  scratch, crack, hole, contamination
    bottle_like  (object)   scratch, crack, missing_part, contamination
    nut_like     (object)   scratch, crack, missing_part, contamination

Normal images vary in lighting (gain/offset/gradient), position (small shifts and rotations) and texture phase,
so a detector must model the normal appearance rather than memorise one image. Defects vary in size and in contrast
(blend strength 0.15-1.0) down to subtle ones. The mask of a defect is exactly the set of pixels the defect changed
(computed from the rendering, before any noise that is shared by normal images).

Determinism: every image is drawn from its own ``numpy.random.SeedSequence((seed, category, split, index))`` and
written as PNG with fixed settings, so the same seed gives byte-identical files.

This is synthetic data: results on it say that the pipeline works and learns, not how a method does on real parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

CATEGORIES: dict[str, str] = {
    "carpet_like": "texture",
    "wood_like": "texture",
    "bottle_like": "object",
    "nut_like": "object",
}
DEFECTS: dict[str, tuple[str, ...]] = {
    "texture": ("scratch", "crack", "hole", "contamination"),
    "object": ("scratch", "crack", "missing_part", "contamination"),
}
N_TRAIN = 40
N_TEST_GOOD = 10
N_TEST_PER_DEFECT = 5  # 4 defect kinds x 5 + 10 good = 30 test images, a third good


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of the generated dataset (per category)."""

    size: int = 256
    n_train: int = N_TRAIN
    n_test_good: int = N_TEST_GOOD
    n_test_per_defect: int = N_TEST_PER_DEFECT


# ---------------------------------------------------------------- noise helpers

def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a cells x cells random grid upsampled bicubically to size x size."""
    grid = rng.random((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(grid, (size + 3 * size // cells, size + 3 * size // cells), interpolation=cv2.INTER_CUBIC)
    off = size // cells
    out = big[off : off + size, off : off + size]
    return np.clip((out - out.min()) / (np.ptp(out) + 1e-6), 0, 1)


def _blob_mask(rng: np.random.Generator, size: int, center: tuple[float, float], radius: float) -> np.ndarray:
    """An irregular blob: an ellipse whose boundary is perturbed by smooth noise. Bool (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ratio = rng.uniform(0.5, 1.0)
    dx, dy = xx - center[0], yy - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ratio
    dist = np.sqrt(u * u + v * v) / max(radius, 1.0)
    wobble = (_smooth_noise(rng, size, 8) - 0.5) * 0.8
    return dist + wobble < 1.0


def _polyline_mask(rng: np.random.Generator, size: int, n_points: int, step: float, width: int,
                   start: tuple[float, float], branch: bool) -> np.ndarray:
    """A random-walk polyline (scratch: smooth, crack: jagged and branching). Bool (size, size)."""
    canvas = np.zeros((size, size), np.uint8)

    def walk(origin: tuple[float, float], heading: float, n: int, jitter: float) -> None:
        points = [origin]
        x, y = origin
        for _ in range(n):
            heading += rng.normal(0, jitter)
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
            points.append((x, y))
        pts = np.round(np.array(points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 255, thickness=width, lineType=cv2.LINE_8)

    heading = rng.uniform(0, 2 * np.pi)
    walk(start, heading, n_points, 0.6 if branch else 0.08)
    if branch:
        for _ in range(int(rng.integers(1, 4))):
            walk(start, heading + rng.uniform(-2.0, 2.0), max(2, n_points // 2), 0.6)
    return canvas > 0


# ---------------------------------------------------------------- normal images

def _lighting(rng: np.random.Generator, size: int) -> np.ndarray:
    """Multiplicative lighting field around 1: global gain and a gentle linear gradient."""
    gain = rng.uniform(0.85, 1.15)
    gx, gy = rng.uniform(-0.12, 0.12, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return (gain * (1.0 + gx * xx + gy * yy)).astype(np.float32)


def _carpet(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = size / 16
    px, py = rng.uniform(0, 2 * np.pi, size=2)
    weave = 0.5 + 0.25 * np.sin(2 * np.pi * xx / period + px) * np.sin(2 * np.pi * yy / period + py)
    fibre = _smooth_noise(rng, size, size // 4) * 0.35
    base = np.clip(weave + fibre - 0.15, 0, 1)
    colour = np.array([0.55, 0.42, 0.35], np.float32) * rng.uniform(0.95, 1.05, size=3)
    return base[..., None] * colour[None, None] * 1.6, np.ones((size, size), bool)


def _wood(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    warp = _smooth_noise(rng, size, 4) * size * 0.08
    phase = rng.uniform(0, 2 * np.pi)
    freq = rng.uniform(0.9, 1.1) * 2 * np.pi / (size / 12)
    grain = 0.5 + 0.5 * np.sin((xx + warp) * freq + phase)
    fine = _smooth_noise(rng, size, size // 8) * 0.2
    base = np.clip(0.45 + 0.3 * grain + fine, 0, 1)
    colour = np.array([0.78, 0.56, 0.34], np.float32)
    return base[..., None] * colour[None, None], np.ones((size, size), bool)


def _object_pose(rng: np.random.Generator, size: int) -> tuple[float, float, float]:
    cx, cy = size / 2 + rng.uniform(-0.04, 0.04, size=2) * size
    return cx, cy, rng.uniform(-8, 8)


def _bottle(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top view of a bottle: dark background, glossy disk with a rim and a central opening."""
    cx, cy, _ = _object_pose(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / size
    outer, rim, opening = 0.36, 0.30, 0.12
    body = r < outer
    shade = np.where(r < opening, 0.12, np.where(r < rim, 0.55 - 0.6 * (r - opening), 0.75 - 1.5 * (r - rim)))
    shade = shade + 0.06 * np.cos(r * 80)  # concentric ridges
    background = 0.08 + 0.04 * _smooth_noise(rng, size, 4)
    grey = np.where(body, shade, background).astype(np.float32)
    colour = np.array([0.55, 0.75, 0.45], np.float32)  # green glass
    image = grey[..., None] * np.where(body[..., None], colour[None, None] * 1.3, 1.0)
    return image, body


def _nut(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A hexagonal metal nut with a round hole, rotated, on a light background."""
    cx, cy, tilt = _object_pose(rng, size)
    angle0 = np.deg2rad(rng.uniform(0, 60) + tilt)
    radius = size * 0.34
    hexagon = np.array(
        [[cx + radius * np.cos(angle0 + k * np.pi / 3), cy + radius * np.sin(angle0 + k * np.pi / 3)] for k in range(6)]
    )
    body_u8 = np.zeros((size, size), np.uint8)
    cv2.fillPoly(body_u8, [np.round(hexagon).astype(np.int32)], 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    hole = r < size * 0.13
    body = (body_u8 > 0) & ~hole
    brushed = 0.5 + 0.12 * np.sin((xx * np.cos(angle0) + yy * np.sin(angle0)) * 0.6) + 0.1 * _smooth_noise(rng, size, 16)
    chamfer = np.clip(1.0 - np.abs(r - size * 0.2) / (size * 0.2), 0, 1) * 0.15
    background = 0.82 + 0.05 * _smooth_noise(rng, size, 4)
    grey = np.where(body, brushed + chamfer, background).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2) * np.array([1.0, 0.98, 0.95], np.float32), body


RENDERERS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "carpet_like": _carpet,
    "wood_like": _wood,
    "bottle_like": _bottle,
    "nut_like": _nut,
}


# ---------------------------------------------------------------- defects

def _defect_region(rng: np.random.Generator, kind: str, size: int, support: np.ndarray) -> np.ndarray:
    """Bool mask of the pixels a defect of ``kind`` covers, restricted to ``support`` (the object)."""
    ys, xs = np.nonzero(support)
    for _ in range(50):
        i = int(rng.integers(len(xs)))
        centre = (float(xs[i]), float(ys[i]))
        scale = rng.uniform(0.4, 1.0)  # defect size factor: small to large
        if kind == "scratch":
            region = _polyline_mask(rng, size, int(6 + 14 * scale), size / 40, int(rng.integers(1, 3)), centre, False)
        elif kind == "crack":
            region = _polyline_mask(rng, size, int(5 + 10 * scale), size / 50, int(rng.integers(1, 3)), centre, True)
        elif kind == "hole":
            region = _blob_mask(rng, size, centre, size * 0.03 * (1 + 2 * scale))
        elif kind == "missing_part":
            region = _blob_mask(rng, size, centre, size * 0.06 * (1 + 1.5 * scale))
        elif kind == "contamination":
            region = _blob_mask(rng, size, centre, size * 0.025 * (1 + 2.5 * scale))
        else:  # pragma: no cover - guarded by DEFECTS
            raise ValueError(kind)
        region &= support
        if region.sum() >= 12:
            return region
    raise RuntimeError("could not place a defect")  # pragma: no cover - 50 tries always suffice in practice


def _apply_defect(rng: np.random.Generator, kind: str, image: np.ndarray, region: np.ndarray,
                  background: np.ndarray) -> np.ndarray:
    """Paint the defect into ``image`` (float RGB in [0, ~1]) over ``region``; strength varies down to subtle."""
    strength = rng.uniform(0.15, 1.0)
    alpha = region.astype(np.float32)[..., None] * strength
    if kind == "scratch":
        target = np.full(3, 1.0 if rng.random() < 0.5 else 0.05, np.float32)[None, None]
    elif kind == "crack":
        target = np.full(3, 0.02, np.float32)[None, None]
    elif kind == "hole":
        target = np.full(3, 0.03, np.float32)[None, None]
    elif kind == "missing_part":
        target = background  # the object is missing: the background shows through
        alpha = region.astype(np.float32)[..., None]
    else:  # contamination: a coloured spot
        hue = rng.uniform(0, 1, size=3).astype(np.float32)
        target = (hue / (hue.max() + 1e-6))[None, None] * rng.uniform(0.4, 1.0)
    return image * (1 - alpha) + target * alpha


def _background_for(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    level = 0.08 if category == "bottle_like" else 0.82
    return np.full((size, size, 3), level, np.float32) + 0.04 * _smooth_noise(rng, size, 4)[..., None]


def render_pair(category: str, defect: str | None, rng: np.random.Generator,
                size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, clean, mask): the image of ``category`` with the defect, the same image without it (same pose,
    lighting and sensor noise), both uint8 RGB (size, size, 3), and the mask uint8 {0, 1} (size, size).

    The mask is exactly the set of pixels where ``image`` and ``clean`` differ; zeros when ``defect`` is None.
    """
    clean, support = RENDERERS[category](rng, size)
    image = clean
    if defect is not None:
        region = _defect_region(rng, defect, size, support)
        image = _apply_defect(rng, defect, clean, region, _background_for(category, size, rng))
    light = _lighting(rng, size)[..., None]
    noise = rng.normal(0, 0.012, size=clean.shape).astype(np.float32)  # sensor noise, on every image

    def finish(picture: np.ndarray) -> np.ndarray:
        return np.clip((picture * light + noise) * 255 + 0.5, 0, 255).astype(np.uint8)

    image_u8, clean_u8 = finish(image), finish(clean)
    mask = (image_u8 != clean_u8).any(axis=2).astype(np.uint8)
    return image_u8, clean_u8, mask


def render_image(category: str, defect: str | None, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``category`` (uint8 RGB, (size, size, 3)) and its exact mask (uint8 {0, 1})."""
    image, _, mask = render_pair(category, defect, rng, size)
    return image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=6)


def generate(out: str | Path, size: int = 256, seed: int = 0, spec: SyntheticSpec | None = None,
             categories: list[str] | None = None, progress: bool = True) -> Path:
    """Write the synthetic dataset in MVTec AD layout under ``out`` and return ``out``.

    Files: ``<cat>/train/good/NNN.png``, ``<cat>/test/<defect>/NNN.png``, ``<cat>/ground_truth/<defect>/NNN_mask.png``
    (0/255), and ``README.txt`` stating what the data is. Existing files are overwritten with identical bytes.
    """
    spec = spec or SyntheticSpec(size=size)
    out = Path(out)
    names = categories or list(CATEGORIES)
    jobs: list[tuple[str, str, str | None, int]] = []
    for category in names:
        kind = CATEGORIES[category]
        jobs += [(category, "train", None, i) for i in range(spec.n_train)]
        jobs += [(category, "test", None, i) for i in range(spec.n_test_good)]
        for defect in DEFECTS[kind]:
            jobs += [(category, "test", defect, i) for i in range(spec.n_test_per_defect)]
    for category, split, defect, index in tqdm(jobs, desc="synthetic dataset", disable=not progress, unit="img"):
        cat_idx = list(CATEGORIES).index(category)
        split_idx = 0 if split == "train" else 1 + (0 if defect is None else 1 + DEFECTS[CATEGORIES[category]].index(defect))
        rng = np.random.default_rng(np.random.SeedSequence((seed, cat_idx, split_idx, index)))
        image, mask = render_image(category, defect, rng, spec.size)
        folder = "good" if defect is None else defect
        _write_png(out / category / split / folder / f"{index:03d}.png", image)
        if defect is not None:
            _write_png(out / category / "ground_truth" / defect / f"{index:03d}_mask.png", mask * 255)
    (out / "README.txt").write_text(
        "SYNTHETIC DATA generated by stlm_core.data.synthetic "
        f"(size={spec.size}, seed={seed}). Procedural images in MVTec AD layout; not real inspection data.\n"
    )
    return out
