"""XD-RCDepth (arXiv 2510.13565) depth-distribution KD: depth regression recast as soft classification over bins.

A single depth per pixel says nothing about how sure the teacher is between neighbouring
depths; turning both depths into distributions over shared bins and matching them with a KL
gives the student a smoother, classification-style signal (the paper's MAE gain).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from surround_depth_ros.losses.masked import flatten_views, masked_mean, resize_depth, valid_depth


def log_spaced_centres(min_depth: float, max_depth: float, n_bins: int) -> torch.Tensor:
    """(K,) bin centres spaced evenly in log depth: finer bins near the car, where errors matter more."""
    if not 0 < min_depth < max_depth or n_bins < 2:
        raise ValueError(f"need 0 < min_depth < max_depth and n_bins >= 2, got {min_depth}, {max_depth}, {n_bins}")
    return torch.exp(torch.linspace(math.log(min_depth), math.log(max_depth), n_bins))


def depth_distribution_logits(depth: torch.Tensor, centres: torch.Tensor, tau: float) -> torch.Tensor:
    """z_k = -|d - c_k| / tau (XD-RCDepth): depth (M, 1, h, w), centres (K,) or (M, K) -> (M, K, h, w)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    centres = centres.to(depth)
    centres = centres.view(1, -1, 1, 1) if centres.dim() == 1 else centres.view(*centres.shape, 1, 1)
    return -(depth - centres).abs() / tau


def depth_distribution_kd_loss(
    student_depth: torch.Tensor,
    teacher_depth: torch.Tensor,
    centres: torch.Tensor,
    tau: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(p^T || p^S) per pixel, p = softmax_k(-|d - c_k| / tau), averaged over pixels with teacher depth.

    student_depth (B, N, 1, H, W) metres; teacher_depth metric, resized to the student's size;
    centres (K,) shared or (B, N, K) per view (detached: they are the discretisation, not a
    prediction here); tau in metres, about one bin width.
    """
    ds = flatten_views(student_depth, "student depth", channels=1)
    dt = flatten_views(teacher_depth.detach(), "teacher depth", channels=1).to(ds)
    valid_t = valid_depth(dt, None if mask is None or mask.shape[-2:] != dt.shape[-2:] else flatten_views(mask, "mask"))
    dt = resize_depth(torch.where(valid_t, dt, torch.zeros_like(dt)), ds.shape[-2:])
    centres = centres.detach()
    if centres.dim() == 3:
        centres = centres.flatten(0, 1)
    valid = valid_depth(dt) & torch.isfinite(ds)
    log_p_t = F.log_softmax(depth_distribution_logits(dt, centres, tau), dim=1)
    log_p_s = F.log_softmax(depth_distribution_logits(torch.where(valid, ds, dt), centres, tau), dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1, keepdim=True)
    return masked_mean(kl, valid)
