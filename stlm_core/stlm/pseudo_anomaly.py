"""Pseudo-anomalies for STLM training (DRAEM-style Perlin masks).

All randomness comes from one ``numpy.random.Generator`` passed in by the caller, so a training run is
reproducible from its seed and resumable from the generator state stored in its checkpoint.

- :func:`perlin_noise`: 2-D gradient (Perlin) noise, hand-written in numpy (DRAEM's ``rand_perlin_2d_np``
  generalised to sizes not divisible by the scale; no installed package provides it);
- :func:`perlin_mask`: noise at scales (2**tx, 2**ty), tx, ty ~ randint[0, 6) independently, rotated by a
  uniform angle in [-90, 90) degrees (``cv2.warpAffine``, zero fill), thresholded at 0.5 -> {0, 1} mask;
- texture sources: :class:`DtdTextures` (``dtd/images/<class>/*.jpg``, bilinear-resized, no augmentation)
  or :class:`ProceduralTextures` (coloured Perlin noise, stripes or checkers) when DTD is absent;
  :class:`TrainingPatches` (a rescaled, rotated or flipped crop of a normal training image: the anomaly is made
  of the object's own material) and :class:`MixedTextures` (either, half of the time each), chosen by
  :func:`anomaly_fill` from the config's ``anomaly_source``;
- :func:`synthesize`: I_a = (1 - M) N + (1 - beta) M A + beta M N with beta ~ U[0, 0.8), cast to uint8,
  applied with probability ``aug_prob`` (else I_a = N, M = 0);
- :func:`geometric_augment`: the per-category rotation of N before synthesis (none | slight = +-5 degrees |
  full = k * 90 + +-5 degrees), fill (114, 114, 114).

Images are uint8 (H, W, 3) RGB; masks float32 (H, W) in {0, 1}.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

FILL = (114, 114, 114)


def _fade(t: np.ndarray) -> np.ndarray:
    return 6 * t**5 - 15 * t**4 + 10 * t**3


def perlin_noise(shape: tuple[int, int], scale: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Perlin noise of ``shape`` (H, W) with ``scale`` (ry, rx) gradient cells; float32, roughly in [-1, 1]."""
    height, width = shape
    ry, rx = scale
    angles = 2 * np.pi * rng.random((ry + 1, rx + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ys = np.arange(height) * ry / height
    xs = np.arange(width) * rx / width
    iy, ix = ys.astype(int), xs.astype(int)
    fy, fx = ys - iy, xs - ix

    def corner(oy: int, ox: int) -> np.ndarray:
        grad = gradients[iy + oy][:, ix + ox]  # (H, W, 2)
        return grad[..., 0] * (fy - oy)[:, None] + grad[..., 1] * (fx - ox)[None, :]

    ty, tx = _fade(fy)[:, None], _fade(fx)[None, :]
    top = corner(0, 0) + tx * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + tx * (corner(1, 1) - corner(1, 0))
    return (np.sqrt(2) * (top + ty * (bottom - top))).astype(np.float32)


def rotate(image: np.ndarray, angle: float, fill: float | tuple = 0, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Rotate about the centre by ``angle`` degrees (counter-clockwise), same size, constant fill."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def perlin_mask(size: int, rng: np.random.Generator, max_exp: int = 6, threshold: float = 0.5) -> np.ndarray:
    """Binary Perlin mask (size, size) float32 in {0, 1}."""
    sy, sx = 2 ** int(rng.integers(0, max_exp)), 2 ** int(rng.integers(0, max_exp))
    noise = perlin_noise((size, size), (sy, sx), rng)
    noise = rotate(noise, float(rng.uniform(-90, 90)))
    return (noise > threshold).astype(np.float32)


class TextureSource(Protocol):
    name: str

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """A uint8 (size, size, 3) texture."""


class DtdTextures:
    """Textures from the Describable Textures Dataset: ``<dir>/images/<class>/*.jpg`` (or ``<dir>/<class>/*.jpg``)."""

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        base = root / "images" if (root / "images").is_dir() else root
        self.paths = sorted(base.glob("*/*.jpg"))
        if not self.paths:
            from stlm_core.errors import DatasetError

            raise DatasetError(f"no DTD textures (*/*.jpg) under {base}; download DTD with "
                               "'stlm data download dtd --root DIR' or omit --dtd to use procedural textures.")
        self.name = f"dtd ({len(self.paths)} textures)"  # content, not location: moved data keeps its runs
        self.root = Path(root).resolve()

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        path = self.paths[int(rng.integers(0, len(self.paths)))]
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


class ProceduralTextures:
    """Stand-in for DTD when it is absent: coloured Perlin noise, stripes or checkers (uint8 RGB)."""

    name = "procedural"

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        kind = int(rng.integers(0, 3))
        colours = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
        if kind == 0:
            scale = 2 ** int(rng.integers(1, 6))
            weight = np.stack([perlin_noise((size, size), (scale, scale), rng) for _ in range(3)], axis=-1)
            weight = np.clip(0.5 + 0.5 * weight, 0, 1)
        else:
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            angle = rng.uniform(0, np.pi)
            period = rng.uniform(3, max(4.0, size / 4))
            u = (np.cos(angle) * xx + np.sin(angle) * yy) / period
            if kind == 1:  # stripes
                weight = (0.5 + 0.5 * np.sin(2 * np.pi * u))[..., None]
            else:  # checkers
                v = (-np.sin(angle) * xx + np.cos(angle) * yy) / period
                weight = ((np.floor(u) + np.floor(v)) % 2)[..., None]
        texture = colours[0] * (1 - weight) + colours[1] * weight
        texture += rng.normal(0, 8, size=texture.shape)
        return np.clip(texture, 0, 255).astype(np.uint8)


def find_dtd(explicit: str | os.PathLike | None = None) -> Path | None:
    """DTD folder: ``explicit``, else ``$STLM_DTD``, else the repository's ``data/dtd`` (found from the package,
    not the working directory, so notebooks and scripts agree); ``None`` if none exists."""
    from stlm_core.paths import default_data_root

    for candidate in (explicit, os.environ.get("STLM_DTD"), default_data_root("dtd")):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    if explicit:
        from stlm_core.errors import DatasetError

        raise DatasetError(f"--dtd {explicit} is not a folder; point it at the DTD root (with images/<class>/*.jpg).")
    return None


def texture_source(dtd: str | os.PathLike | None = None) -> TextureSource:
    path = find_dtd(dtd)
    return DtdTextures(path) if path is not None else ProceduralTextures()


class TrainingPatches:
    """In-distribution fill: a crop of a random normal training image (side U[1/4, 1) of the image, random
    position), resized to the requested size, rotated by a multiple of 90 degrees and flipped at random. The
    pseudo-anomaly is then the object's own material out of place (a displaced edge, a misplaced print, a
    texture at the wrong scale), closer to real defects than a foreign texture. Hand-written: CutPaste-style
    patch sampling is a few lines and no installed package offers it for a Perlin-mask blend."""

    name = "training-patches"

    def __init__(self, images: list[np.ndarray] | np.ndarray):
        if len(images) == 0:
            raise ValueError("TrainingPatches needs at least one training image")
        self.images = images

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        image = self.images[int(rng.integers(0, len(self.images)))]
        height, width = image.shape[:2]
        side = max(8, int(min(height, width) * rng.uniform(0.25, 1.0)))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        patch = cv2.resize(np.ascontiguousarray(image[top:top + side, left:left + side]), (size, size),
                           interpolation=cv2.INTER_LINEAR)
        patch = np.rot90(patch, int(rng.integers(0, 4)))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch)


class MixedTextures:
    """Half of the pseudo-anomalies from ``foreign`` textures (DTD or procedural), half from ``patches``."""

    def __init__(self, foreign: TextureSource, patches: TrainingPatches):
        self.foreign, self.patches = foreign, patches
        self.name = f"{foreign.name} + {patches.name}"

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return (self.foreign if rng.random() < 0.5 else self.patches).sample(size, rng)


ANOMALY_SOURCES = ("texture", "patches", "mixed")


def anomaly_fill(source: str, textures: TextureSource, images: list[np.ndarray] | np.ndarray) -> TextureSource:
    """What fills the Perlin masks: ``texture`` = ``textures`` (DTD or procedural, the paper's choice),
    ``patches`` = :class:`TrainingPatches` of ``images`` (uint8 (H, W, 3) normal training images), ``mixed`` =
    :class:`MixedTextures` of both."""
    if source == "texture":
        return textures
    if source == "patches":
        return TrainingPatches(images)
    if source == "mixed":
        return MixedTextures(textures, TrainingPatches(images))
    raise ValueError(f"anomaly_source must be one of {', '.join(ANOMALY_SOURCES)}, got {source!r}")


def geometric_augment(image: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Rotation augmentation of a uint8 (H, W, 3) image: ``none`` | ``slight`` | ``full``."""
    if mode == "none":
        return image
    if mode == "full":
        image = np.ascontiguousarray(np.rot90(image, int(rng.integers(0, 4))))
    return rotate(image, float(rng.uniform(-5, 5)), fill=FILL)


def synthesize(image: np.ndarray, textures: TextureSource, rng: np.random.Generator, aug_prob: float = 0.5,
               beta_max: float = 0.8, max_exp: int = 6, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(I_a uint8 (H, W, 3), M float32 (H, W) in {0, 1}) from a normal image N (square, uint8)."""
    size = image.shape[0]
    if rng.random() >= aug_prob:
        return image, np.zeros(image.shape[:2], np.float32)
    mask = perlin_mask(size, rng, max_exp, threshold)
    texture = textures.sample(size, rng).astype(np.float32)
    beta = float(rng.uniform(0, beta_max))
    m = mask[..., None]
    normal = image.astype(np.float32)
    blended = (1 - m) * normal + (1 - beta) * m * texture + beta * m * normal
    return blended.astype(np.uint8), mask
