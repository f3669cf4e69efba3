"""Shared image (and radar) encoders: MobileNetV2-style and ResNet-18-style, width-scalable.

All views of a frame set go through one encoder as one batch. Every encoder returns five
feature maps at strides 2, 4, 8, 16 and 32 and lists their channel counts in `.channels`, so
the decoders, the radar FiLM and the distillation adapters do not care which one is used.
Strided convolutions pad, so any input size works (sizes not divisible by 32 round up).
"""

from __future__ import annotations

import torch
from torch import nn

# MobileNetV2 stages: (expansion t, output channels c, repeats n, first stride s).
_MBV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Index of the stage after which each of the five feature maps is taken (strides 2..32).
_MBV2_TAPS = (0, 1, 2, 4, 6)


def scaled_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Channels times the width multiplier, rounded to a multiple of `divisor` (never below it)."""
    scaled = max(divisor, int(channels * width + divisor / 2) // divisor * divisor)
    return scaled + divisor if scaled < 0.9 * channels * width else scaled


class ConvNormAct(nn.Sequential):
    """Conv -> BatchNorm -> activation (ReLU6 by default); `act=None` leaves it linear."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: type[nn.Module] | None = nn.ReLU6,
    ) -> None:
        padding = dilation * (kernel - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ skip when shapes match)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [ConvNormAct(cin, hidden, 1)]
        layers += [ConvNormAct(hidden, hidden, 3, stride, groups=hidden), ConvNormAct(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 features (no 1280-channel head): the image and radar encoder of LiRCDepth / XD-RCDepth."""

    def __init__(self, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        cin = scaled_channels(32, width)
        self.stem = ConvNormAct(in_channels, cin, 3, 2)
        self.stages = nn.ModuleList()
        for t, c, n, s in _MBV2_STAGES:
            cout = scaled_channels(c, width)
            blocks = [InvertedResidual(cin if i == 0 else cout, cout, s if i == 0 else 1, t) for i in range(n)]
            self.stages.append(nn.Sequential(*blocks))
            cin = cout
        self.channels = [scaled_channels(_MBV2_STAGES[i][1], width) for i in _MBV2_TAPS]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in _MBV2_TAPS:
                features.append(x)
        return features


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with an identity (or 1x1 strided) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride, act=nn.ReLU)
        self.conv2 = ConvNormAct(cout, cout, 3, act=None)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else ConvNormAct(cin, cout, 1, stride, act=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet18Encoder(nn.Module):
    """ResNet-18 layout (the VFDepth / SurroundDepth encoder family) with a width multiplier."""

    def __init__(self, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        widths = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.stem = ConvNormAct(in_channels, widths[0], 7, 2, act=nn.ReLU)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.ModuleList()
        cin = widths[0]
        for index, cout in enumerate(widths):
            stride = 1 if index == 0 else 2
            self.layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.channels = [widths[0], *widths]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


ENCODERS: dict[str, type[nn.Module]] = {"mobilenetv2": MobileNetV2Encoder, "resnet18": ResNet18Encoder}


def build_encoder(name: str, width: float, in_channels: int = 3) -> nn.Module:
    """The encoder called `name` (one of ENCODERS) with its width multiplier."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    if width <= 0:
        raise ValueError(f"encoder width multiplier must be positive, got {width}")
    return ENCODERS[name](width=width, in_channels=in_channels)
