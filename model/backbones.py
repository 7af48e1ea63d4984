"""Encoders of BGMv2: torchvision's ResNet and MobileNetV2 rebuilt in plain torch.

Module names follow torchvision exactly, because the published checkpoints use them as
state_dict keys (`backbone.layer1.0.conv1.weight`, `backbone.features.3.conv.1.0.weight`).
Each encoder takes the 6-channel `cat([src, bgr])` and returns five features, deepest first:
`(x4, x3, x2, x1, x0)`.
"""

from __future__ import annotations

from torch import Tensor, nn


def _init_like_torchvision(module: nn.Module) -> None:
    # Random-weight exports (speed tests) should have sane activations, as torchvision's would.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------
# ResNet (torchvision's v1.5 Bottleneck: the stride sits on the 3x3 convolution)
# ----------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-50/101 with output stride 16 (layer4 dilated) and a 6-channel stem."""

    LAYERS = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
    feature_channels = (2048, 512, 256, 64)

    def __init__(self, in_channels: int, variant: str = "resnet50") -> None:
        super().__init__()
        blocks = self.LAYERS[variant]
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, blocks[0])
        self.layer2 = self._make_layer(128, blocks[1], stride=2)
        self.layer3 = self._make_layer(256, blocks[2], stride=2)
        self.layer4 = self._make_layer(512, blocks[3], stride=2, dilate=True)
        _init_like_torchvision(self)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False):
        previous_dilation = self.dilation
        if dilate:  # trade the stride for dilation: output stride 16 instead of 32
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x0 = x  # (B, 6, H, W)
        x = self.relu(self.bn1(self.conv1(x)))
        x1 = x  # (B, 64, H/2, W/2)
        x = self.layer1(self.maxpool(x))
        x2 = x  # (B, 256, H/4, W/4)
        x = self.layer2(x)
        x3 = x  # (B, 512, H/8, W/8)
        x = self.layer4(self.layer3(x))
        x4 = x  # (B, 2048, H/16, W/16)
        return x4, x3, x2, x1, x0


# ----------------------------------------------------------------------------------------------
# MobileNetV2
# ----------------------------------------------------------------------------------------------


class ConvBNReLU6(nn.Sequential):
    """torchvision's Conv2dNormActivation with ReLU6: keys `<i>.0` conv, `<i>.1` BN."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, oup, 1, bias=False),  # linear bottleneck
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 (width 1.0) without its last 1x1 conv and classifier, output stride 16."""

    # (expansion t, channels c, repeats n, stride s), torchvision's table
    SETTINGS = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    feature_channels = (320, 32, 24, 16)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBNReLU6(in_channels, 32, stride=2)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*features)  # indices 0..17
        # Output stride 16: the stride of block 14 becomes dilation 2 in blocks 15..17.
        self.features[14].conv[1][0].stride = (1, 1)
        for block in self.features[15:]:
            block.conv[1][0].dilation = (2, 2)
            block.conv[1][0].padding = (2, 2)
        _init_like_torchvision(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x0 = x  # (B, 6, H, W)
        x = self.features[1](self.features[0](x))
        x1 = x  # (B, 16, H/2, W/2)
        x = self.features[3](self.features[2](x))
        x2 = x  # (B, 24, H/4, W/4)
        for i in range(4, 7):
            x = self.features[i](x)
        x3 = x  # (B, 32, H/8, W/8)
        for i in range(7, 18):
            x = self.features[i](x)
        x4 = x  # (B, 320, H/16, W/16)
        return x4, x3, x2, x1, x0


def build_encoder(backbone: str, in_channels: int) -> nn.Module:
    if backbone in ResNetEncoder.LAYERS:
        return ResNetEncoder(in_channels, backbone)
    if backbone == "mobilenetv2":
        return MobileNetV2Encoder(in_channels)
    # Internal: MattingBase validates the name first and raises the user-facing error.
    raise AssertionError(f"unknown backbone {backbone!r}")


__all__ = ["build_encoder", "ResNetEncoder", "MobileNetV2Encoder"]
