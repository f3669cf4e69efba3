"""What a teacher hands the losses: the kinds of depth a teacher predicts and its outputs for a batch.

Below both `losses` and `teachers`, so that the losses can type what they read and the teachers
what they return without either importing the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

# metric: metres; relative: depth up to scale and shift; relative_inverse: disparity up to scale and shift
TEACHER_KINDS = ("metric", "relative", "relative_inverse")
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
