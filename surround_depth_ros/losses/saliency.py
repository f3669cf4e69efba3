"""XD-RCDepth (arXiv 2510.13565) explainability-aligned KD: the student should look where the teacher looks.

Grad-CAM (Selvaraju et al. 2017) adapted to regression: the "class score" is a scalar depth
target (the mean predicted depth of each view, or of a region), channel weights are the
spatially pooled gradients of that target w.r.t. a feature map, and the saliency map is
ReLU(sum_c w_c A_c), normalised to sum 1. Matching the student's map to the teacher's transfers
which image regions drive the depth, not only the depth values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from surround_depth_ros.losses.masked import flatten_views


def mean_depth_target(depth: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Per-view Grad-CAM target (M,): mean depth of each view, or over `region` (same shape, nonzero = in)."""
    depth = flatten_views(depth, "depth", channels=1)
    if region is None:
        return depth.mean(dim=(1, 2, 3))
    weight = flatten_views(region, "region", channels=1).to(depth)
    return (depth * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp(min=1)


def saliency_from_gradients(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM map (M, 1, h, w) from activations A and dTarget/dA, both (M, C, h, w); each map sums to 1.

    A view whose weighted activations are negative everywhere (ReLU leaves nothing, common on a
    small bottleneck) says "no region in particular": its map is uniform, not all zero, so the
    KD loss never pulls a student towards an empty map that no normalised map can reach.
    """
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    total = cam.sum(dim=(2, 3), keepdim=True)
    uniform = torch.full_like(cam, 1.0 / (cam.shape[-2] * cam.shape[-1]))
    return torch.where(total > 1e-12, cam / total.clamp(min=1e-12), uniform)


def grad_cam(target: torch.Tensor, features: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Grad-CAM saliency (M, 1, h, w) of `target` (M,) w.r.t. `features` it was computed from.

    `features` is (M, C, h, w) or (B, N, C, h, w) with M = B * N views (the student's layout); the
    gradient is taken w.r.t. the tensor as given, then views are flattened. create_graph=True
    keeps the map differentiable (the student's, inside training); for the teacher use False and
    the map is detached.
    """
    if features.dim() not in (4, 5):
        raise ValueError(f"features for Grad-CAM must be (M, C, h, w) or (B, N, C, h, w), got {tuple(features.shape)}")
    if not target.requires_grad:
        raise ValueError("the Grad-CAM target does not depend on anything with gradients; compute it with grad enabled")
    (gradients,) = torch.autograd.grad(target.sum(), features, create_graph=create_graph, retain_graph=True)
    if features.dim() == 5:
        features, gradients = features.flatten(0, 1), gradients.flatten(0, 1)
    cam = saliency_from_gradients(features, gradients)
    return cam if create_graph else cam.detach()


def saliency_kd_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, mode: str = "l1") -> torch.Tensor:
    """Explainability-aligned KD: L = sum_p |s_p - t_p| ("l1"; maps sum to 1, so L is in [0, 2]) or
    1 - cos(s, t) ("cosine"), per view then averaged.

    Maps (M, 1, h, w) or (B, N, 1, h, w); the teacher's is detached and resized to the student's size.
    """
    s = flatten_views(student_map, "student saliency", channels=1)
    t = flatten_views(teacher_map.detach(), "teacher saliency", channels=1).to(s)
    if t.shape[-2:] != s.shape[-2:]:
        t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
    t = t / t.sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)
    if mode == "l1":
        return (s - t).abs().sum(dim=(1, 2, 3)).mean()
    if mode == "cosine":
        return (1.0 - F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1, eps=1e-12)).mean()
    raise ValueError(f"saliency KD mode must be 'l1' or 'cosine', got {mode!r}")
