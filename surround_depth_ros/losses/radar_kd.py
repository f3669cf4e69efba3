"""LiRCDepth (arXiv 2412.16380) distillation: pixel-wise features, pair-wise affinity, uncertainty-aware inter-depth.

A large radar-camera teacher and a light student share the decoder layout (intermediate depth
heads at 1/8, 1/4, 1/2), so knowledge moves at three levels: feature values (through learned
1x1 adapters, since channel counts differ), feature structure (patch affinities), and the
intermediate depths themselves, weighted towards pixels where student and teacher disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from surround_depth_ros.losses.masked import flatten_views, resize_depth, valid_depth


class PixelwiseFeatureKD(nn.Module):
    """Pixel-wise feature KD: L = sum_i 2^-i * mean |A_i(F^S_i) - F^T_i| (LiRCDepth eq. for L_pix).

    A_i is a 1x1 conv adapter from student to teacher channels at scale i; its parameters train
    with the student (add `.parameters()` to the optimiser). An adapter between equal channel
    counts starts as the identity, so a student that equals its teacher has zero loss from step 0.
    Index 0 gets weight 1: list the scales in the order of importance the paper uses (finest
    first). Teacher maps are resized (bilinear) to the student's resolution and detached.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError(
                f"pixel-wise KD needs one teacher channel count per student scale, got {list(student_channels)} "
                f"and {list(teacher_channels)}"
            )
        self.adapters = nn.ModuleList(
            nn.Conv2d(int(cs), int(ct), kernel_size=1)
            for cs, ct in zip(student_channels, teacher_channels, strict=True)
        )
        with torch.no_grad():
            for adapter in self.adapters:
                if adapter.in_channels == adapter.out_channels:
                    adapter.weight.copy_(torch.eye(adapter.in_channels)[:, :, None, None])
                    adapter.bias.zero_()

    def forward(
        self, student_features: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        if len(student_features) != len(self.adapters) or len(teacher_features) != len(self.adapters):
            raise ValueError(
                f"pixel-wise KD was built for {len(self.adapters)} scales, got {len(student_features)} student and "
                f"{len(teacher_features)} teacher feature maps"
            )
        total = student_features[0].new_zeros(())
        for i, (adapter, fs, ft) in enumerate(zip(self.adapters, student_features, teacher_features, strict=True)):
            fs = flatten_views(fs, f"student features at scale {i}")
            ft = flatten_views(ft.detach(), f"teacher features at scale {i}").to(fs)
            if ft.shape[1] != adapter.out_channels or fs.shape[1] != adapter.in_channels:
                raise ValueError(
                    f"scale {i}: adapter maps {adapter.in_channels} -> {adapter.out_channels} channels, got student "
                    f"{fs.shape[1]} and teacher {ft.shape[1]}"
                )
            if ft.shape[-2:] != fs.shape[-2:]:
                ft = F.interpolate(ft, size=fs.shape[-2:], mode="bilinear", align_corners=False)
            total = total + 2.0**-i * (adapter(fs) - ft).abs().mean()
        return total


def _patch_affinity(features: torch.Tensor, patches: tuple[int, int]) -> torch.Tensor:
    pooled = F.adaptive_max_pool2d(features, patches).flatten(2)  # (M, C, hw)
    pooled = F.normalize(pooled, dim=1, eps=1e-6)
    return pooled.transpose(1, 2) @ pooled  # (M, hw, hw)


def pairwise_kd_loss(
    student_features: torch.Tensor | Sequence[torch.Tensor],
    teacher_features: torch.Tensor | Sequence[torch.Tensor],
    patch_fraction: float = 0.2,
) -> torch.Tensor:
    """Pair-wise (affinity) KD: L = sum_scales sum_{p,q} (a^S_pq - a^T_pq)^2 / (hw)^2, a = F^T F (LiRCDepth L_pair).

    One map or a list of maps per side (the decoder scales; the authors sum over them). Features are
    max-pooled into patches of patch_fraction x (H, W) (a 5 x 5 grid for 0.2), each patch vector
    L2-normalised over channels, so student and teacher may differ in channels and resolution.
    Averaged over views. Each map: (B, N, C, H, W) or (M, C, H, W).
    """
    if not 0 < patch_fraction <= 1:
        raise ValueError(f"patch_fraction must be in (0, 1], got {patch_fraction}")
    students = [student_features] if isinstance(student_features, torch.Tensor) else list(student_features)
    teachers = [teacher_features] if isinstance(teacher_features, torch.Tensor) else list(teacher_features)
    if len(students) != len(teachers) or not students:
        raise ValueError(f"pair-wise KD needs one teacher map per student map, got {len(teachers)}/{len(students)}")
    side = max(1, round(1.0 / patch_fraction))
    total = None
    for i, (fs, ft) in enumerate(zip(students, teachers, strict=True)):
        fs = flatten_views(fs, f"student features {i}")
        ft = flatten_views(ft.detach(), f"teacher features {i}").to(fs)
        if fs.shape[0] != ft.shape[0]:
            raise ValueError(f"scale {i}: student has {fs.shape[0]} feature maps, teacher {ft.shape[0]}")
        a_s, a_t = _patch_affinity(fs, (side, side)), _patch_affinity(ft, (side, side))
        term = ((a_s - a_t) ** 2).sum(dim=(1, 2)).mean() / (side * side) ** 2
        total = term if total is None else total + term
    return total


def disagreement_weight(teacher_depth: torch.Tensor, student_depth: torch.Tensor) -> torch.Tensor:
    """LiRCDepth uncertainty u = 1 - exp(-5 |dT - dS| / (dT + dS)), in [0, 1), detached (a weight, not a target)."""
    with torch.no_grad():
        return 1.0 - torch.exp(
            -5.0 * (teacher_depth - student_depth).abs() / (teacher_depth + student_depth).clamp(min=1e-6)
        )


def _masked_teacher(teacher: torch.Tensor, mask: torch.Tensor | None, what: str) -> torch.Tensor:
    teacher = flatten_views(teacher.detach(), what, channels=1)
    if mask is None:
        return teacher
    mask = flatten_views(mask, "mask", channels=1).float()
    if mask.shape[-2:] != teacher.shape[-2:]:
        mask = F.interpolate(mask, size=teacher.shape[-2:], mode="nearest")
    return torch.where(mask > 0, teacher, torch.zeros_like(teacher))


def inter_depth_kd_loss(
    student_depths: Sequence[torch.Tensor],
    teacher_depths: Sequence[torch.Tensor],
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uncertainty-aware inter-depth KD (LiRCDepth L_depth, as the authors' code computes it).

    L = sum_i 2^-i * sum_p u_p |dT_i,p - dS_i,p| / sum_p u_p, u = `disagreement_weight`, i = 0 at the
    finest scale. student_depths and teacher_depths: the intermediate depths of each network in the
    order the student returns them (1/8, 1/4, 1/2: coarse to fine), (B, N, 1, h, w) each; every
    teacher map is resized (valid-pixel area mean) to its student scale. Pixels without teacher
    depth (0) or outside `mask` are ignored. 0 when student and teacher agree everywhere.
    """
    if not student_depths:
        raise ValueError("inter-depth KD needs at least one intermediate student depth")
    if isinstance(teacher_depths, torch.Tensor) or len(teacher_depths) != len(student_depths):
        count = 1 if isinstance(teacher_depths, torch.Tensor) else len(teacher_depths)
        raise ValueError(
            f"inter-depth KD needs the teacher's intermediate depths, one per student scale: got {count} for "
            f"{len(student_depths)} (LiRCDepth distils intermediate depths, not the final one at every scale)"
        )
    total = student_depths[0].new_zeros(())
    last = len(student_depths) - 1
    for i, (ds, dt) in enumerate(zip(student_depths, teacher_depths, strict=True)):
        ds = flatten_views(ds, f"student intermediate depth {i}", channels=1)
        dt = resize_depth(_masked_teacher(dt, mask, f"teacher intermediate depth {i}"), ds.shape[-2:]).to(ds)
        valid = valid_depth(dt) & torch.isfinite(ds)
        ds_safe = torch.where(valid, ds, dt)
        u = torch.where(valid, disagreement_weight(dt, ds_safe), torch.zeros_like(ds))
        weighted = (u * (dt - ds_safe).abs()).sum() / u.sum().clamp(min=1e-6)
        total = total + 2.0 ** -(last - i) * weighted
    return total
