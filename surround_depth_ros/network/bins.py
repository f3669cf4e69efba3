"""The depth-bin head: per-view metric bin centres and per-pixel bin probabilities.

Hybrid regression of 2512.08700 (AdaBins / BinsFormer style, kept light): the bin widths of
each view come from its globally pooled features (so a view that sees a wall gets near bins),
the per-pixel logits choose among the bins, and depth = sum_k prob_k * centre_k. Splitting
scale (centres) from structure (probabilities) is what lets the distillation losses supervise
the probabilities with a relative-depth teacher and the centres with metric ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from surround_depth_ros.network.encoders import ConvNormAct


def unit_to_depth(unit: torch.Tensor, min_depth: float, max_depth: float, log_space: bool) -> torch.Tensor:
    """Map values in [0, 1] to metres in [min_depth, max_depth], linearly or log-spaced."""
    if log_space:
        return torch.exp(math.log(min_depth) + unit * (math.log(max_depth) - math.log(min_depth)))
    return min_depth + unit * (max_depth - min_depth)


@dataclass
class BinOutput:
    """What the head predicts at its own resolution (1/2 of the input)."""

    depth: torch.Tensor  # (S, 1, h, w) metres
    confidence: torch.Tensor  # (S, 1, h, w) in [0, 1]
    centres: torch.Tensor  # (S, K) metres, increasing
    logits: torch.Tensor  # (S, K, h, w)
    probs: torch.Tensor  # (S, K, h, w)


class BinHead(nn.Module):
    """Adaptive bins from pooled global features, per-pixel bin logits from decoder features.

    `temperature` divides the logits before the softmax. Confidence = exp(-std / depth), the
    relative spread of the per-pixel distribution around its mean: 1 for a single sharp bin,
    about 0.9 when the spread is 10 % of the depth.
    """

    def __init__(
        self,
        pixel_channels: int,
        global_channels: int,
        n_bins: int,
        min_depth: float,
        max_depth: float,
        log_space: bool = True,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"depth range must satisfy 0 < min_depth < max_depth, got [{min_depth}, {max_depth}]")
        if n_bins < 2 or temperature <= 0:
            raise ValueError(f"need n_bins >= 2 and temperature > 0, got {n_bins} and {temperature}")
        self.min_depth, self.max_depth, self.log_space, self.temperature = min_depth, max_depth, log_space, temperature
        hidden = max(64, global_channels)
        self.widths = nn.Sequential(
            nn.Linear(global_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_bins)
        )
        self.logits = nn.Sequential(
            ConvNormAct(pixel_channels, pixel_channels, 3, act=nn.ReLU), nn.Conv2d(pixel_channels, n_bins, 1)
        )

    def centres(self, global_features: torch.Tensor) -> torch.Tensor:
        """(S, C, h, w) bottleneck features -> (S, K) increasing metric bin centres."""
        widths = torch.softmax(self.widths(global_features.mean(dim=(2, 3))), dim=1)
        edges = torch.cumsum(widths, dim=1)
        return unit_to_depth(edges - 0.5 * widths, self.min_depth, self.max_depth, self.log_space)

    def forward(self, pixel_features: torch.Tensor, global_features: torch.Tensor) -> BinOutput:
        centres = self.centres(global_features)
        logits = self.logits(pixel_features)
        probs = torch.softmax(logits / self.temperature, dim=1)
        c = centres[:, :, None, None]
        depth = (probs * c).sum(dim=1, keepdim=True)
        spread = ((probs * (c - depth) ** 2).sum(dim=1, keepdim=True)).clamp_min(1e-12).sqrt()
        confidence = torch.exp(-spread / depth)
        return BinOutput(depth, confidence, centres, logits, probs)


class DepthHead(nn.Module):
    """A light intermediate depth head (LiRCDepth's 1/8, 1/4 heads): 3x3 conv -> sigmoid -> metres."""

    def __init__(self, channels: int, min_depth: float, max_depth: float, log_space: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)
        self.min_depth, self.max_depth, self.log_space = min_depth, max_depth, log_space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unit_to_depth(torch.sigmoid(self.conv(x)), self.min_depth, self.max_depth, self.log_space)
