"""A large model of the project's own student family as teacher: the radar-camera papers' setting.

LiRCDepth and XD-RCDepth distil from a bigger radar-camera network trained with ground truth.
Here that is the "large" preset of `SurroundDepthStudent` loaded from a checkpoint, frozen, in
eval mode; it gives metric depth plus everything the feature, bin and inter-depth losses read.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from surround_depth_ros.losses.masked import resize_masked
from surround_depth_ros.network.checkpoint import load_checkpoint
from surround_depth_ros.teachers.base import ForwardResult, Teacher, TeacherOutput

OUTPUTS = ("metric", "relative_inverse")


class OwnFamilyTeacher(Teacher):
    """Metric depth, encoder/decoder features, bins and intermediate depths from a frozen checkpoint.

    Images are resized to the checkpoint's input size (and radar maps (B, N, 4, H, W) with them,
    averaging returns without mixing in empty pixels); depth comes back at the input size, the
    rest at the model's resolutions. `adjacency` (E, 2) defaults to the checkpoint's.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str | torch.device = "cpu",
        expected: str | None = None,
        output: str = "metric",
    ) -> None:
        """`output`: "metric" (trained with ground truth) or "relative_inverse" (trained with the affine-invariant
        loss: its 1/depth is disparity up to scale and shift, served like Depth Anything's relative output)."""
        if output not in OUTPUTS:
            raise ValueError(f"own-family teacher output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.model, self.info = load_checkpoint(checkpoint, expected)
        self.device = torch.device(device)
        self.model.to(self.device).eval().requires_grad_(False)
        self.adjacency = None if self.info.adjacency is None else torch.tensor(self.info.adjacency, dtype=torch.long)
        self._identity = f"own_family:{self.info.path.resolve()}:{self.info.checksum[:16]}:{output}"

    @property
    def identity(self) -> str:
        return self._identity

    def forward(
        self, images: torch.Tensor, radar: torch.Tensor | None, adjacency: torch.Tensor | None
    ) -> ForwardResult:
        batch, views, _, height, width = images.shape
        adjacency = adjacency if adjacency is not None else self.adjacency
        if adjacency is None:
            raise ValueError(f"checkpoint {self.info.path} records no camera adjacency; pass adjacency (E, 2)")
        size = self.info.input_size
        x = F.interpolate(images.flatten(0, 1).to(self.device), size=size, mode="bilinear", align_corners=False)
        x = x.unflatten(0, (batch, views))  # [0, 1]: the student normalises its input
        if radar is not None and not self.model.config.radar:
            radar = None  # a camera-only teacher ignores the radar the batch happens to carry
        if radar is not None:
            maps = radar.flatten(0, 1).to(self.device)
            maps, _ = resize_masked(maps, maps[:, :1] > 0, size)
            radar = maps.unflatten(0, (batch, views))
        out = self.model(x, adjacency.to(self.device), radar=radar, return_aux=True)
        depth = F.interpolate(out.depth.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False)
        if self.output == "relative_inverse":
            # only what a relative model has: disparity up to scale and shift, and its features
            output = TeacherOutput(
                depth=(1.0 / depth).unflatten(0, (batch, views)),
                kind="relative_inverse",
                features=list(out.features),
                decoder_features=list(out.decoder_features),
                image_features=list(out.image_features),
            )
            return ForwardResult(output, activation=out.features[-1], to_map=lambda x: x.flatten(0, 1))
        output = TeacherOutput(
            depth=depth.unflatten(0, (batch, views)),
            kind="metric",
            features=list(out.features),
            decoder_features=list(out.decoder_features),
            bin_centres=out.bin_centres,
            bin_probs=out.bin_probs,
            intermediate_depths=list(out.intermediate_depths),
            image_features=list(out.image_features),
            radar_features=list(out.radar_features) or None,
        )
        # Grad-CAM on the layer the student's saliency is taken from (its post-attention bottleneck,
        # `features[-1]`), so that identical networks give identical maps (XD-RCDepth pairs like layers)
        return ForwardResult(output, activation=out.features[-1], to_map=lambda x: x.flatten(0, 1))
