"""Decoders from the five encoder scales to features at strides 16, 8, 4 and 2.

Two kinds share one skeleton (upsample to the skip's size, concatenate, fuse):
- "unet": two 3x3 convs per scale (monodepth2 / LiRCDepth style);
- "daspp": XD-RCDepth's lighter point-wise variant: a densely connected atrous context module
  (DenseASPP) at the bottleneck built from 1x1 (point-wise) + dilated depthwise convs, and
  point-wise / depthwise separable fusion blocks, for fewer parameters at a wide receptive field.
Upsampling targets the skip's exact size so inputs not divisible by 32 work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surround_depth_ros.network.encoders import ConvNormAct

DECODERS = ("unet", "daspp")


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of `x` to the spatial size of `like`."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def fusion_block(cin: int, cout: int, kind: str) -> nn.Sequential:
    """The block that fuses upsampled and skip features at one scale."""
    if kind == "unet":
        return nn.Sequential(ConvNormAct(cin, cout, 3, act=nn.ReLU), ConvNormAct(cout, cout, 3, act=nn.ReLU))
    return nn.Sequential(
        ConvNormAct(cin, cout, 1, act=nn.ReLU),
        ConvNormAct(cout, cout, 3, groups=cout, act=nn.ReLU),
        ConvNormAct(cout, cout, 1, act=nn.ReLU),
    )


class DenseASPP(nn.Module):
    """Densely connected atrous branches: each sees the input and every earlier branch's output."""

    def __init__(self, channels: int, growth: int, dilations: tuple[int, ...] = (1, 2, 4, 6)) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        cin = channels
        for d in dilations:
            self.branches.append(
                nn.Sequential(
                    ConvNormAct(cin, growth, 1, act=nn.ReLU),
                    ConvNormAct(growth, growth, 3, groups=growth, dilation=d, act=nn.ReLU),
                )
            )
            cin += growth
        self.project = ConvNormAct(cin, channels, 1, act=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for branch in self.branches:
            features.append(branch(torch.cat(features, dim=1)))
        return x + self.project(torch.cat(features, dim=1))


class DepthDecoder(nn.Module):
    """`kind` "unet" or "daspp"; `channels` are the output widths at strides 16, 8, 4, 2."""

    def __init__(self, encoder_channels: list[int], channels: tuple[int, int, int, int], kind: str = "unet") -> None:
        super().__init__()
        if kind not in DECODERS:
            raise ValueError(f"unknown decoder {kind!r}; choose one of {list(DECODERS)}")
        if len(encoder_channels) != 5 or len(channels) != 4:
            raise ValueError(f"need 5 encoder widths and 4 decoder widths, got {encoder_channels} and {channels}")
        bottleneck = encoder_channels[4]
        self.context = DenseASPP(bottleneck, max(16, bottleneck // 4)) if kind == "daspp" else nn.Identity()
        self.blocks = nn.ModuleList()
        cin = bottleneck
        for skip, cout in zip(reversed(encoder_channels[:4]), channels, strict=True):
            self.blocks.append(fusion_block(cin + skip, cout, kind))
            cin = cout
        self.channels = list(channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encoder features (strides 2..32) -> decoder features at strides 16, 8, 4, 2."""
        x = self.context(features[4])
        outputs = []
        for block, skip in zip(self.blocks, reversed(features[:4]), strict=True):
            x = block(torch.cat([upsample_to(x, skip), skip], dim=1))
            outputs.append(x)
        return outputs
