"""Losses by name, each with a weight and parameters, so a YAML training config switches and weighs them.

config = {"silog": 1.0, "bin_centre": {"weight": 0.1}, "cross_interaction": {"weight": 1.0, "temperature": 2.0}}
build_losses(config) -> LossSet, an nn.Module (some terms own parameters: the LiRCDepth adapters,
which the trainer must give to its optimiser). LossSet(inputs) -> (total, {name: weighted value}).
Every term reads what it needs from one `LossInputs`, so the trainer fills that once per batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from surround_depth_ros.base.teacher_output import TeacherOutput
from surround_depth_ros.losses.cross_interaction import cross_interaction_kd_loss
from surround_depth_ros.losses.distribution import depth_distribution_kd_loss, log_spaced_centres
from surround_depth_ros.losses.radar_kd import PixelwiseFeatureKD, inter_depth_kd_loss, pairwise_kd_loss
from surround_depth_ros.losses.saliency import grad_cam, mean_depth_target, saliency_kd_loss
from surround_depth_ros.losses.self_supervised import curvature_consistency_loss, surround_photometric_loss
from surround_depth_ros.losses.supervised import affine_invariant_loss, bin_centre_loss, masked_l1_loss, silog_loss
from surround_depth_ros.losses.view_relational import find_view_overlap, view_relational_kd_loss


@dataclass
class LossInputs:
    """Everything a loss may read for one batch. Shapes: views (B, N, C, H, W), centres (B, N, K).

    `teacher` is what a teacher predicted for the batch (depth, kind, features, bins, saliency).
    `features` / `decoder_features` are the
    student's (B, N, C, h, w) or (B*N, C, h, w) maps in the order the student returns them;
    `intermediate_depths` its 1/8, 1/4, 1/2 depths. Feature losses pick the set with `feature_set`.
    """

    depth: torch.Tensor
    gt_depth: torch.Tensor | None = None
    bin_logits: torch.Tensor | None = None
    bin_centres: torch.Tensor | None = None
    features: Sequence[torch.Tensor] | None = None
    decoder_features: Sequence[torch.Tensor] | None = None
    image_features: Sequence[torch.Tensor] | None = None
    radar_features: Sequence[torch.Tensor] | None = None
    intermediate_depths: Sequence[torch.Tensor] | None = None
    teacher: TeacherOutput | None = None
    images: torch.Tensor | None = None
    intrinsics: torch.Tensor | None = None
    extrinsics: torch.Tensor | None = None
    camera_pairs: torch.Tensor | None = None
    adjacent_images: Sequence[torch.Tensor] = field(default_factory=tuple)
    poses: torch.Tensor | None = None
    adjacent_poses: Sequence[torch.Tensor] = field(default_factory=tuple)


def _need(inputs: LossInputs, loss: str, *names: str) -> list:
    values = []
    for name in names:
        obj = inputs
        for part in name.split("."):
            obj = getattr(obj, part, None) if obj is not None else None
        if obj is None:
            raise ValueError(
                f"loss {loss!r} needs {name!r}, which this batch does not have (check the training config)"
            )
        values.append(obj)
    return values


FEATURE_SETS = ("features", "decoder_features", "image_features", "radar_features")


def _feature_pair(x: LossInputs, loss: str, feature_set: str) -> list:
    """The student's and the teacher's maps of one set: "features" (what the decoder consumes: fused encoder
    maps and the attended bottleneck), "decoder_features", "image_features" or "radar_features" (the encoders')."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"loss {loss!r}: feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    pair = _need(x, loss, feature_set, f"teacher.{feature_set}")
    if not all(len(maps) for maps in pair):
        raise ValueError(f"loss {loss!r}: the student or the teacher has no {feature_set} (a camera-only network?)")
    return pair


def _at_size(depth: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Student depth (B, N, 1, h, w) upsampled to the ground truth's size (sparse GT must not be resized)."""
    if depth.shape[-2:] == like.shape[-2:]:
        return depth
    up = F.interpolate(depth.flatten(0, 1), size=like.shape[-2:], mode="bilinear", align_corners=False)
    return up.reshape(*depth.shape[:2], 1, *like.shape[-2:])


def _silog(x: LossInputs, variance_focus: float = 0.85, scale: float = 10.0) -> torch.Tensor:
    (gt,) = _need(x, "silog", "gt_depth")
    return silog_loss(_at_size(x.depth, gt), gt, variance_focus=variance_focus, scale=scale)


def _l1(x: LossInputs) -> torch.Tensor:
    (gt,) = _need(x, "l1", "gt_depth")
    return masked_l1_loss(_at_size(x.depth, gt), gt)


def _affine_invariant(x: LossInputs) -> torch.Tensor:
    (gt,) = _need(x, "affine_invariant", "gt_depth")
    return affine_invariant_loss(_at_size(x.depth, gt), gt)


def _bin_centre(x: LossInputs) -> torch.Tensor:
    centres, gt = _need(x, "bin_centre", "bin_centres", "gt_depth")
    return bin_centre_loss(centres, gt)


def _cross_interaction(
    x: LossInputs, temperature: float = 1.0, assignment_temperature: float = 0.1, normalisation: str = "median_mad"
) -> torch.Tensor:
    logits, centres, teacher = _need(x, "cross_interaction", "bin_logits", "bin_centres", "teacher.depth")
    return cross_interaction_kd_loss(
        logits, centres, x.depth, teacher, x.teacher.kind, None, temperature, assignment_temperature, normalisation
    )


def _view_relational(
    x: LossInputs,
    student_feature: int = -1,
    teacher_feature: int = -1,
    overlap_depth: str = "ground_truth",
    grid_size: Sequence[int] = (16, 32),
    feature_set: str = "features",
) -> torch.Tensor:
    features, teacher_features = _feature_pair(x, "view_relational", feature_set)
    K, T, pairs = _need(x, "view_relational", "intrinsics", "extrinsics", "camera_pairs")
    sources = {"ground_truth": x.gt_depth, "student": x.depth.detach(), "teacher": None}
    if overlap_depth == "teacher" and x.teacher.kind == "metric":
        sources["teacher"] = x.teacher.depth
    if overlap_depth not in sources:
        raise ValueError(f"view_relational: overlap_depth must be one of {list(sources)}, got {overlap_depth!r}")
    depth = sources[overlap_depth]
    if depth is None:
        raise ValueError(
            f"view_relational: overlap_depth={overlap_depth!r} is unavailable (no GT or teacher not metric)"
        )
    K = _scale_intrinsics(K, x.depth, depth)
    overlap = find_view_overlap(depth, K, T, pairs, tuple(grid_size))
    return view_relational_kd_loss(features[student_feature], teacher_features[teacher_feature], overlap)


def _scale_intrinsics(K: torch.Tensor, reference: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Intrinsics are given at the student's output size; rescale them for a depth map of another size."""
    from surround_depth_ros.base.geometry import resize_intrinsics

    (h, w), (H, W) = reference.shape[-2:], depth.shape[-2:]
    return K if (h, w) == (H, W) else resize_intrinsics(K, W / w, H / h)


def _pairwise(
    x: LossInputs,
    scales: Sequence[int] | None = None,
    teacher_scales: Sequence[int] | None = None,
    patch_fraction: float = 0.2,
    feature_set: str = "decoder_features",
) -> torch.Tensor:
    """Summed over `scales` (indices into the set; default every decoder scale, as the authors do)."""
    features, teacher_features = _feature_pair(x, "pairwise", feature_set)
    scales = list(range(len(features))) if scales is None else list(scales)
    teacher_scales = scales if teacher_scales is None else list(teacher_scales)
    if len(teacher_scales) != len(scales):
        raise ValueError(f"pairwise: {len(scales)} student scales but {len(teacher_scales)} teacher scales")
    return pairwise_kd_loss(
        [features[i] for i in scales], [teacher_features[i] for i in teacher_scales], patch_fraction
    )


def _inter_depth(x: LossInputs) -> torch.Tensor:
    depths, teacher = _need(x, "inter_depth", "intermediate_depths", "teacher.intermediate_depths")
    if x.teacher.kind != "metric":
        raise ValueError(f"loss 'inter_depth' needs a metric teacher, this one predicts {x.teacher.kind!r} depth")
    return inter_depth_kd_loss(depths, teacher)


def _depth_distribution(
    x: LossInputs,
    tau: float = 1.0,
    bins: str = "fixed",
    n_bins: int = 64,
    min_depth: float = 0.5,
    max_depth: float = 80,
) -> torch.Tensor:
    (teacher,) = _need(x, "depth_distribution", "teacher.depth")
    if x.teacher.kind != "metric":
        raise ValueError(f"loss 'depth_distribution' needs a metric teacher, this one predicts {x.teacher.kind!r}")
    if bins == "student":
        (centres,) = _need(x, "depth_distribution", "bin_centres")
    elif bins == "fixed":
        centres = log_spaced_centres(min_depth, max_depth, n_bins)
    else:
        raise ValueError(f"depth_distribution: bins must be 'fixed' or 'student', got {bins!r}")
    return depth_distribution_kd_loss(x.depth, teacher, centres, tau)


def _saliency(x: LossInputs, student_feature: int = -1, mode: str = "l1") -> torch.Tensor:
    features, teacher_map = _need(x, "saliency", "features", "teacher.saliency")
    student_map = grad_cam(mean_depth_target(x.depth), features[student_feature], create_graph=True)
    return saliency_kd_loss(student_map, teacher_map, mode)


def _photometric(x: LossInputs, alpha: float = 0.85, auto_mask: bool = True, spatial: bool = True) -> torch.Tensor:
    images, K, T = _need(x, "photometric", "images", "intrinsics", "extrinsics")
    depth = _at_size(x.depth, images)
    pairs = x.camera_pairs if spatial else None
    return surround_photometric_loss(
        images,
        depth,
        _scale_intrinsics(K, x.depth, depth),
        T,
        pairs,
        x.adjacent_images,
        x.poses,
        x.adjacent_poses,
        alpha,
        auto_mask,
    )


def _curvature(x: LossInputs, normalisation: str = "median_mad") -> torch.Tensor:
    (teacher,) = _need(x, "curvature", "teacher.depth")
    return curvature_consistency_loss(x.depth, teacher, x.teacher.kind, None, normalisation)


class LossTerm(nn.Module):
    """One weighted loss: weight * fn(inputs, **params)."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], weight: float, params: dict) -> None:
        super().__init__()
        self.name, self.fn, self.weight, self.params = name, fn, float(weight), dict(params)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        return self.weight * self.fn(inputs, **self.params)


class PixelwiseFeatureTerm(LossTerm):
    """LiRCDepth pixel-wise KD on the image- and radar-encoder features, one adapter set per feature set.

    `scales` index each set's maps (finest first gets weight 1, then 2^-i); `student_channels` /
    `teacher_channels` give, per set, the channel count at each of those scales. The adapters train
    (pass LossSet.parameters() to the optimiser). The sets' losses are summed.
    """

    def __init__(
        self,
        name: str,
        weight: float,
        student_channels: Sequence[Sequence[int]],
        teacher_channels: Sequence[Sequence[int]],
        scales: Sequence[int] = (1, 2, 3),
        feature_sets: Sequence[str] = ("image_features", "radar_features"),
    ) -> None:
        super().__init__(name, self._loss, weight, {})
        self.feature_sets, self.scales = list(feature_sets), list(scales)
        unknown = sorted(set(self.feature_sets) - set(FEATURE_SETS))
        if unknown or not self.feature_sets:
            raise ValueError(f"{name}: feature_sets must be a non-empty subset of {FEATURE_SETS}, got {feature_sets}")
        if len(student_channels) != len(self.feature_sets) or len(teacher_channels) != len(self.feature_sets):
            raise ValueError(
                f"{name}: give student_channels and teacher_channels as one list per feature set {self.feature_sets}"
            )
        for channels in (*student_channels, *teacher_channels):
            if len(channels) != len(self.scales):
                raise ValueError(f"{name}: each channel list needs one count per scale {self.scales}, got {channels}")
        self.kd = nn.ModuleList(
            PixelwiseFeatureKD(cs, ct) for cs, ct in zip(student_channels, teacher_channels, strict=True)
        )

    def _loss(self, x: LossInputs) -> torch.Tensor:
        total = x.depth.new_zeros(())
        for feature_set, kd in zip(self.feature_sets, self.kd, strict=True):
            features, teacher = _feature_pair(x, self.name, feature_set)
            total = total + kd([features[i] for i in self.scales], [teacher[i] for i in self.scales])
        return total


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "silog": _silog,
    "l1": _l1,
    "affine_invariant": _affine_invariant,
    "bin_centre": _bin_centre,
    "cross_interaction": _cross_interaction,
    "view_relational": _view_relational,
    "pairwise": _pairwise,
    "inter_depth": _inter_depth,
    "depth_distribution": _depth_distribution,
    "saliency": _saliency,
    "photometric": _photometric,
    "curvature": _curvature,
}
MODULE_LOSSES: dict[str, type[LossTerm]] = {"pixelwise_feature": PixelwiseFeatureTerm}


@dataclass
class LossConfig:
    """One configured loss: its registry name, weight and keyword parameters."""

    name: str
    weight: float = 1.0
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, value: float | Mapping | None) -> LossConfig:
        if value is None or isinstance(value, bool):
            raise ValueError(f"loss {name!r}: give a weight or a mapping with 'weight' and parameters, got {value!r}")
        if isinstance(value, int | float):
            return cls(name, float(value))
        params = dict(value)
        weight = params.pop("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ValueError(f"loss {name!r}: weight must be a number, got {weight!r}")
        return cls(name, float(weight), params)


class LossSet(nn.Module):
    """The configured losses; forward(inputs) -> (weighted total, {name: weighted value, detached})."""

    def __init__(self, terms: Sequence[LossTerm]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("no losses configured: the training config needs at least one entry under 'losses'")
        self.terms = nn.ModuleDict({t.name: t for t in terms})

    def forward(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        values = {name: term(inputs) for name, term in self.terms.items()}
        total = sum(values.values(), inputs.depth.new_zeros(()))
        return total, {name: float(v.detach()) for name, v in values.items()}


def _check_params(name: str, fn: Callable, params: dict, skip: int) -> None:
    allowed = list(inspect.signature(fn).parameters)[skip:]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"loss {name!r}: unknown parameter(s) {unknown}; it accepts {allowed} and 'weight'")


def build_losses(config: Mapping[str, float | Mapping]) -> LossSet:
    """LossSet from {name: weight} or {name: {weight: w, **params}}; a weight of 0 leaves the loss out."""
    terms: list[LossTerm] = []
    for name, value in config.items():
        entry = LossConfig.parse(name, value)
        if name in LOSSES:
            _check_params(name, LOSSES[name], entry.params, skip=1)
            term: LossTerm = LossTerm(name, LOSSES[name], entry.weight, entry.params)
        elif name in MODULE_LOSSES:
            _check_params(name, MODULE_LOSSES[name].__init__, entry.params, skip=3)
            term = MODULE_LOSSES[name](name, entry.weight, **entry.params)
        else:
            raise ValueError(f"unknown loss {name!r}; known losses: {sorted([*LOSSES, *MODULE_LOSSES])}")
        if entry.weight != 0:
            terms.append(term)
    return LossSet(terms)
