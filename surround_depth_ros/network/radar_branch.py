"""Radar branch: sparse per-view radar maps -> light encoder -> FiLM into the image features.

Radar maps have 4 channels (depth m, RCS dBsm, vx, vy m/s) with 0 where there is no return
(LiRCDepth's input). XD-RCDepth's FiLM fusion modulates each image scale with the radar
features: f = (1 + gamma(f_r)) * f_i + beta(f_r), gamma and beta being 1x1 convs. With no
radar points the encoder sees zeros and the modulation is a fixed learnt affine map, so the
same model runs with or without radar.
"""

from __future__ import annotations

import torch
from torch import nn

from surround_depth_ros.network.encoders import MobileNetV2Encoder
from surround_depth_ros.sensors.radar import RADAR_CHANNELS  # the radar maps' layout, defined where they are drawn

# Fixed scales that bring each radar channel to roughly unit range before the encoder.
RADAR_RCS_SCALE = 1.0 / 50.0
RADAR_VELOCITY_SCALE = 1.0 / 20.0


class FiLM(nn.Module):
    """Feature-wise linear modulation of image features by radar features of the same stride."""

    def __init__(self, radar_channels: int, image_channels: int) -> None:
        super().__init__()
        self.gamma = nn.Conv2d(radar_channels, image_channels, 1)
        self.beta = nn.Conv2d(radar_channels, image_channels, 1)

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> torch.Tensor:
        return (1 + self.gamma(radar)) * image + self.beta(radar)


class RadarBranch(nn.Module):
    """MobileNetV2-style radar encoder with FiLM fusion at strides 4, 8, 16 and 32."""

    FUSED_SCALES = (1, 2, 3, 4)

    def __init__(self, image_channels: list[int], width: float, max_depth: float) -> None:
        super().__init__()
        self.encoder = MobileNetV2Encoder(width=width, in_channels=len(RADAR_CHANNELS))
        self.films = nn.ModuleList(FiLM(self.encoder.channels[i], image_channels[i]) for i in self.FUSED_SCALES)
        scale = torch.tensor([1.0 / max_depth, RADAR_RCS_SCALE, RADAR_VELOCITY_SCALE, RADAR_VELOCITY_SCALE])
        self.register_buffer("input_scale", scale.view(1, 4, 1, 1), persistent=False)

    def forward(
        self, image_features: list[torch.Tensor], radar: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """image_features at strides 2..32 for S views, radar (S, 4, H, W) -> (modulated features, radar-encoder
        features at strides 2..32; the latter are what LiRCDepth's pixel-wise KD distils)."""
        radar_features = self.encoder(radar * self.input_scale)
        fused = list(image_features)
        for film, i in zip(self.films, self.FUSED_SCALES, strict=True):
            fused[i] = film(image_features[i], radar_features[i])
        return fused, radar_features
