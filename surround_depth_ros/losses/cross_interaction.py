"""Cross-interaction knowledge distillation (arXiv 2512.08700): scale-invariant bins from a relative teacher.

The student predicts depth = sum_k p_k c_k with metric centres c_k (learned from ground truth by
`bin_centre_loss`) and per-pixel probabilities p_k. The teacher (e.g. Depth Anything V2) knows
structure but not scale, so only the probabilities are distilled: teacher and centres are both
mapped into the same scale-and-shift-free space and the teacher's value at each pixel is softly
assigned to the nearest normalised centres. That target is independent of the teacher's scale and shift.

Domain: a "relative_inverse" teacher (disparity, Depth Anything's relative output) is affine in
1/depth, so the comparison happens in inverse depth: the student's centres become 1/c_k. For
"relative" and "metric" teachers it happens in depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from surround_depth_ros.base.teacher_output import TEACHER_KINDS
from surround_depth_ros.losses.masked import flatten_centres, flatten_views, masked_mean, resize_masked
from surround_depth_ros.losses.scale_shift import scale_shift_statistics


def _to_teacher_domain(depth: torch.Tensor, kind: str) -> torch.Tensor:
    return 1.0 / depth.clamp(min=1e-6) if kind == "relative_inverse" else depth


def cross_interaction_targets(
    teacher: torch.Tensor,
    teacher_kind: str,
    centres: torch.Tensor,
    reference_depth: torch.Tensor,
    size: tuple[int, int],
    mask: torch.Tensor | None = None,
    assignment_temperature: float = 0.1,
    normalisation: str = "median_mad",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-invariant target bin probabilities q (M, K, h, w) and their validity (M, 1, h, w).

    Eq. (2512.08700, cross-interaction KD): t' = (t - loc(t)) / spread(t) per image;
    c'_k = (g(c_k) - loc(g(D))) / spread(g(D)), with g = identity or 1/x by teacher kind and D the
    student's (detached) metric depth, so centres live in the space the teacher is normalised into;
    q_k = softmax_k(-|t' - c'_k| / tau). Everything is detached: targets carry no gradient.
    teacher: (B, N, 1, H, W) any resolution; centres: (B, N, K); reference_depth: (B, N, 1, H', W').
    """
    if teacher_kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind must be one of {TEACHER_KINDS}, got {teacher_kind!r}")
    if assignment_temperature <= 0:
        raise ValueError(f"assignment_temperature must be > 0, got {assignment_temperature}")
    with torch.no_grad():
        teacher = flatten_views(teacher.detach(), "teacher depth", channels=1).float()
        centres = flatten_centres(centres.detach()).float()
        reference = flatten_views(reference_depth.detach(), "student reference depth", channels=1).float()
        if not teacher.shape[0] == centres.shape[0] == reference.shape[0]:
            raise ValueError(
                f"views differ: teacher {teacher.shape[0]}, centres {centres.shape[0]}, reference {reference.shape[0]}"
            )
        valid = torch.isfinite(teacher)
        if teacher_kind == "metric":
            valid &= teacher > 0
        if mask is not None:
            valid &= flatten_views(mask, "teacher mask", channels=1).bool()
        teacher, valid = resize_masked(torch.where(valid, teacher, torch.zeros_like(teacher)), valid, size)

        location, spread = scale_shift_statistics(teacher.flatten(1), valid.flatten(1), normalisation)
        t_norm = (teacher - location.view(-1, 1, 1, 1)) / spread.view(-1, 1, 1, 1)

        ref_valid = torch.isfinite(reference) & (reference > 0)
        ref = _to_teacher_domain(torch.where(ref_valid, reference, torch.ones_like(reference)), teacher_kind)
        ref_location, ref_spread = scale_shift_statistics(ref.flatten(1), ref_valid.flatten(1), normalisation)
        c_norm = (_to_teacher_domain(centres, teacher_kind) - ref_location[:, None]) / ref_spread[:, None]

        logits = -(t_norm - c_norm[:, :, None, None]).abs() / assignment_temperature
        return torch.softmax(logits, dim=1), valid


def soft_bin_kl_loss(
    student_logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """T^2 * mean over valid pixels of KL(q || softmax(z / T)), Hinton's temperature-scaled KD.

    student_logits, target: (B, N, K, h, w) or (M, K, h, w); valid: (M, 1, h, w). The target is detached.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = flatten_views(student_logits, "student bin logits")
    target = flatten_views(target.detach(), "target bin probabilities")
    if logits.shape != target.shape:
        raise ValueError(f"student bin logits {tuple(logits.shape)} and targets {tuple(target.shape)} differ")
    log_p = F.log_softmax(logits / temperature, dim=1)
    kl = (torch.xlogy(target, target) - target * log_p).sum(dim=1, keepdim=True)
    return temperature**2 * masked_mean(kl, valid)


def cross_interaction_kd_loss(
    student_logits: torch.Tensor,
    student_centres: torch.Tensor,
    student_depth: torch.Tensor,
    teacher: torch.Tensor,
    teacher_kind: str,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    assignment_temperature: float = 0.1,
    normalisation: str = "median_mad",
) -> torch.Tensor:
    """Cross-interaction KD: KL(scale-invariant teacher bins || student bins), see `cross_interaction_targets`.

    student_logits (B, N, K, h, w), student_centres (B, N, K), student_depth (B, N, 1, H, W) (only its
    statistics are used, detached), teacher (B, N, 1, H', W') of `teacher_kind`. The centres get no
    gradient from here: ground truth trains them (`bin_centre_loss`), the teacher trains the probabilities.
    """
    size = tuple(student_logits.shape[-2:])
    target, valid = cross_interaction_targets(
        teacher, teacher_kind, student_centres, student_depth, size, mask, assignment_temperature, normalisation
    )
    return soft_bin_kl_loss(student_logits, target.to(student_logits.dtype), valid, temperature)
