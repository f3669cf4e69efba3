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

from surround_depth_ros.losses.cross_interaction import TEACHER_KINDS
from surround_depth_ros.losses.saliency import mean_depth_target, saliency_from_gradients

_LIST_FIELDS = ("features", "decoder_features", "intermediate_depths", "image_features", "radar_features")
_TENSOR_FIELDS = ("depth", "bin_centres", "bin_probs", "saliency")


@dataclass
class TeacherOutput:
    """What a teacher predicts for a batch; every tensor has leading dims (B, N).

    depth (B, N, 1, H, W): metres ("metric"), relative inverse depth / disparity, larger = nearer
    ("relative_inverse", Depth Anything's relative output), or depth up to scale and shift
    ("relative"). features / decoder_features: lists of (B, N, C, h, w). bin_centres (B, N, K),
    bin_probs (B, N, K, h, w), intermediate_depths list of (B, N, 1, h, w), saliency (B, N, 1, h, w)
    (Grad-CAM of the mean depth, only when asked for). image_features / radar_features: the image and
    radar encoders' maps (own-family teachers; LiRCDepth's pixel-wise KD reads them).
    """

    depth: torch.Tensor
    kind: str
    features: list[torch.Tensor] | None = None
    decoder_features: list[torch.Tensor] | None = None
    bin_centres: torch.Tensor | None = None
    bin_probs: torch.Tensor | None = None
    intermediate_depths: list[torch.Tensor] | None = None
    saliency: torch.Tensor | None = None
    image_features: list[torch.Tensor] | None = None
    radar_features: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.kind not in TEACHER_KINDS:
            raise ValueError(f"teacher output kind must be one of {TEACHER_KINDS}, got {self.kind!r}")
        if self.depth.dim() != 5 or self.depth.shape[2] != 1:
            raise ValueError(f"teacher depth must be (B, N, 1, H, W), got {tuple(self.depth.shape)}")

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TeacherOutput:
        """A copy with `fn` applied to every tensor (detach, device moves, dtype round trips)."""
        changes = {}
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            changes[name] = None if value is None else fn(value)
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            changes[name] = None if value is None else [fn(v) for v in value]
        return dataclasses.replace(self, **changes)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat {name: tensor} (lists as name.i), e.g. for storage."""
        out = {name: getattr(self, name) for name in _TENSOR_FIELDS if getattr(self, name) is not None}
        for name in _LIST_FIELDS:
            for i, value in enumerate(getattr(self, name) or []):
                out[f"{name}.{i}"] = value
        return out

    @classmethod
    def from_tensors(cls, kind: str, tensors: dict[str, torch.Tensor]) -> TeacherOutput:
        """Inverse of `to_tensors`."""
        lists: dict[str, list[torch.Tensor]] = {}
        for key in sorted((k for k in tensors if "." in k), key=lambda k: int(k.rsplit(".", 1)[1])):
            lists.setdefault(key.rsplit(".", 1)[0], []).append(tensors[key])
        singles = {k: v for k, v in tensors.items() if "." not in k}
        return cls(kind=kind, **singles, **lists)


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
