"""ASPP and the decoder of BGMv2's base network (torchvision DeepLabV3 ASPP layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    padding = 0 if kernel == 1 else dilation
    return [
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ASPPPooling(nn.Sequential):
    """Global average pool -> 1x1 conv -> BN -> ReLU, broadcast back with bilinear resize."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(cin, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        # Bilinear from 1x1, as torchvision does: kept (not expand) to stay float-identical.
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling, 256 output channels (keys `convs.*`, `project.*`)."""

    def __init__(self, cin: int, rates: tuple[int, ...] = (3, 6, 9), cout: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(cin, cout, 1))]
        branches += [nn.Sequential(*_conv_bn_relu(cin, cout, 3, rate)) for rate in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * cout, cout, 1), nn.Dropout(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class Decoder(nn.Module):
    """Four stages of: bilinear resize to the skip's size, concat the skip, 3x3 conv.

    `channels` = [256, 128, 64, 48, out]; `skip_channels` = channels of x3, x2, x1, x0.
    """

    def __init__(self, channels: list[int], skip_channels: list[int]) -> None:
        super().__init__()
        c, s = channels, skip_channels
        self.conv1 = nn.Conv2d(c[0] + s[0], c[1], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[1])
        self.conv2 = nn.Conv2d(c[1] + s[1], c[2], 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c[2])
        self.conv3 = nn.Conv2d(c[2] + s[2], c[3], 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c[3])
        self.conv4 = nn.Conv2d(c[3] + s[3], c[4], 3, padding=1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _up_cat(x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], dim=1)

    def forward(self, x4: Tensor, x3: Tensor, x2: Tensor, x1: Tensor, x0: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(self._up_cat(x4, x3))))  # (B, 128, H/8, W/8)
        x = self.relu(self.bn2(self.conv2(self._up_cat(x, x2))))  # (B, 64, H/4, W/4)
        x = self.relu(self.bn3(self.conv3(self._up_cat(x, x1))))  # (B, 48, H/2, W/2)
        return self.conv4(self._up_cat(x, x0))  # (B, out, H, W)
