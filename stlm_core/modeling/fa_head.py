"""Feature-aggregation (FA) head: DeSTSeg's ``SegmentationNet``.

Hand-written because no installed library provides it (DeSTSeg is not a package). Input: the
concatenated negated products of the normalised stream features, (B, 256 * levels, h, w). Output: an anomaly
probability map (B, 1, h, w) in [0, 1] (sigmoid).

- ``res``: 2 ResNet BasicBlocks ``in -> c`` (the first with a 1x1 conv + BN shortcut), Kaiming-normal init
  (fan_out, relu), BatchNorm weight 1 / bias 0;
- ``head``: ASPP(c -> c; branches: global-average-pool -> 1x1-BN-ReLU (upsampled), 1x1-BN-ReLU,
  3x3 dilation-3-BN-ReLU; concat 3c -> 3x3-BN-ReLU c) -> 3x3 conv (no bias)-BN-ReLU -> 1x1 conv c -> 1 (bias),
  at PyTorch's **default** initialisation.

Initialisation as in the official code: its ``SegmentationNet`` runs the Kaiming loop over ``self.modules()``
before ``head`` is assigned, so only ``res`` gets it. (Kaiming fan_out on the final 128 -> 1 conv gives weights of
std about 1.4 instead of about 0.05, logits of std about 9 and most pixels saturated at the start.)

With 512 inputs and c = 128 it has 1,870,465 parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with a pooled branch, a 1x1 branch and one dilated 3x3 branch."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 3):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(in_channels, out_channels, 1))
        self.branches = nn.ModuleList([_conv_bn_relu(in_channels, out_channels, 1),
                                       _conv_bn_relu(in_channels, out_channels, 3, dilation)])
        self.project = _conv_bn_relu(3 * out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([pooled] + [branch(x) for branch in self.branches], dim=1))


class FAHead(nn.Module):
    """(B, in_channels, h, w) -> (B, 1, h, w) anomaly probability."""

    def __init__(self, in_channels: int = 512, channels: int = 128, *, prior: float | None = None):
        """``prior``: a probability p in (0, 1) sets the last bias to log(p / (1 - p)), so that the head starts
        near p on every pixel (focal-loss detectors' prior init); ``None`` keeps PyTorch's default bias."""
        super().__init__()
        shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.res = nn.Sequential(BasicBlock(in_channels, channels, downsample=shortcut),
                                 BasicBlock(channels, channels))
        for module in self.res.modules():  # res only: the head keeps PyTorch's default init (official code)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.head = nn.Sequential(ASPP(channels, channels), _conv_bn_relu(channels, channels, 3),
                                  nn.Conv2d(channels, 1, 1, bias=True))
        if prior is not None:
            if not 0.0 < prior < 1.0:
                raise ValueError(f"prior must be a probability in (0, 1), got {prior}")
            nn.init.constant_(self.head[-1].bias, math.log(prior / (1.0 - prior)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output (B, 1, h, w); training computes its losses from these (see ``train.focal_loss``)."""
        return self.head(self.res(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
