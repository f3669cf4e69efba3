"""One interface for every teacher, so losses and the trainer never care which model produced the targets.

Input convention: `predict(images)` takes RGB images (B, N, 3, H, W) as floats in [0, 1]
(not normalised); each teacher applies its own normalisation and input size and returns maps
at the input's H x W (depth) or its own feature resolution (features, bins, saliency).
Everything returned is detached: a teacher never receives gradients.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from surround_depth_ros.base.teacher_output import TeacherOutput
from surround_depth_ros.losses.saliency import mean_depth_target, saliency_from_gradients


@dataclass
class ForwardResult:
    """What a teacher's forward pass gives `Teacher.predict`: the output (with graph) and the Grad-CAM layer.

    `activation` is a tensor the depth was computed from; `to_map` turns it (and its gradient,
    same shape) into (B*N, C, h, w) maps.
    """

    output: TeacherOutput
    activation: torch.Tensor | None = None
    to_map: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x)


def check_images(images: torch.Tensor) -> torch.Tensor:
    """Clear error unless images are (B, N, 3, H, W) floats in [0, 1]."""
    if images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(f"teacher images must be (B, N, 3, H, W) RGB, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"teacher images must be floats in [0, 1] (divide uint8 by 255), got dtype {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"teacher images must be in [0, 1] before normalisation (each teacher normalises itself), "
            f"got values in [{low:.3f}, {high:.3f}]"
        )
    return images


class Teacher(ABC):
    """A frozen model that gives distillation targets; see the module docstring for the input convention."""

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the predictions would (weights, config, input size): the cache key."""

    @abstractmethod
    def forward(
        self, images: torch.Tensor, radar: torch.Tensor | None, adjacency: torch.Tensor | None
    ) -> ForwardResult:
        """The model's pass on checked [0, 1] images (B, N, 3, H, W); may keep the autograd graph."""

    def predict(
        self,
        images: torch.Tensor,
        radar: torch.Tensor | None = None,
        adjacency: torch.Tensor | None = None,
        saliency: bool = False,
    ) -> TeacherOutput:
        """Detached predictions; with saliency=True also the Grad-CAM map of the mean depth (XD-RCDepth)."""
        images = check_images(images)
        if not saliency:
            with torch.no_grad():
                return self.forward(images, radar, adjacency).output.map(torch.Tensor.detach)
        with torch.enable_grad():
            # the weights are frozen: a graph from the activation to the depth needs the input in it
            result = self.forward(images.detach().clone().requires_grad_(True), radar, adjacency)
            if result.activation is None:
                raise ValueError(f"teacher {self.identity} exposes no feature layer for Grad-CAM saliency")
            target = mean_depth_target(result.output.depth)
            (gradient,) = torch.autograd.grad(target.sum(), result.activation)
            cam = saliency_from_gradients(result.to_map(result.activation.detach()), result.to_map(gradient))
        batch, views = images.shape[:2]
        output = dataclasses.replace(result.output, saliency=cam.unflatten(0, (batch, views)))
        return output.map(torch.Tensor.detach)
