"""Semi-SMD (arXiv 2503.19713) self-supervision: photometric consistency across time and across cameras, and
a curvature loss guided by a pretrained depth model.

Where lidar is absent, depth is still constrained by geometry: a pixel of camera i at time t,
back-projected with the predicted depth and moved by a known rigid motion, must look the same
in the other image. Anchoring that motion on the rig's extrinsics (cameras move together with
the base: T_cam' <- cam = inv(T_base_cam') . ego . T_base_cam) and on metric extrinsics between
overlapping cameras is what fixes metric scale, which a monocular photometric loss cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from surround_depth_ros.base.geometry import backproject_depth, invert_transform, project_points, transform_points
from surround_depth_ros.base.teacher_output import TEACHER_KINDS
from surround_depth_ros.losses.masked import flatten_views, masked_mean, resize_masked
from surround_depth_ros.losses.scale_shift import normalise_scale_shift


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (M, C, H, W) over 3x3 windows with reflection padding (the monodepth2 choice)."""
    c1, c2 = 0.01**2, 0.03**2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return (numerator / denominator).clamp(-1, 1)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """pe = alpha (1 - SSIM) / 2 + (1 - alpha) |pred - target|, channel-averaged: (M, 1, H, W); images in [0, 1]."""
    l1 = (pred - target).abs().mean(dim=1, keepdim=True)
    structure = ((1 - ssim(pred, target)) / 2).mean(dim=1, keepdim=True)
    return alpha * structure + (1 - alpha) * l1


def camera_motion(
    T_base_cam_target: torch.Tensor,
    T_base_cam_source: torch.Tensor,
    T_world_base_target: torch.Tensor | None = None,
    T_world_base_source: torch.Tensor | None = None,
) -> torch.Tensor:
    """T_source_cam <- target_cam = inv(T_world_base_s . T_base_cam_s) . T_world_base_t . T_base_cam_t, (..., 4, 4).

    The base poses are those at each camera's own capture time (identity when omitted: one instant).
    One rigid motion of the car reaches every camera through the extrinsics (Semi-SMD's
    extrinsic-anchored pose), so its translation, and hence the depth, is metric; giving each
    camera the pose at its own stamp compensates the rig's capture-time stagger.
    """
    target = T_base_cam_target if T_world_base_target is None else T_world_base_target @ T_base_cam_target
    source = T_base_cam_source if T_world_base_source is None else T_world_base_source @ T_base_cam_source
    return invert_transform(source) @ target


def warp_from_source(
    source_image: torch.Tensor,
    target_depth: torch.Tensor,
    K_target: torch.Tensor,
    K_source: torch.Tensor,
    T_source_target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source image resampled into the target view (M, 3, H, W) and where that is valid (M, 1, H, W).

    Each target pixel is back-projected with its depth, moved into the source camera and
    projected; the source is sampled there bilinearly. Valid: positive depth, in front of the
    source camera, inside its image. Gradients reach the depth through the sampling coordinates.
    """
    height, width = target_depth.shape[-2:]
    points = backproject_depth(target_depth[:, 0], K_target)  # (M, HW, 3)
    uv, z = project_points(K_source, transform_points(T_source_target, points))
    grid = torch.stack([(uv[..., 0] + 0.5) / width * 2 - 1, (uv[..., 1] + 0.5) / height * 2 - 1], dim=-1)
    inside = (grid.abs() <= 1).all(dim=-1) & (z > 1e-3) & (target_depth.flatten(1) > 0)
    grid = torch.where(inside[..., None], grid, torch.zeros_like(grid)).reshape(-1, height, width, 2)
    warped = F.grid_sample(source_image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped, inside.reshape(-1, 1, height, width)


def _min_error(
    target: torch.Tensor, warped: Sequence[torch.Tensor], valid: Sequence[torch.Tensor], alpha: float
) -> torch.Tensor:
    """Per-pixel minimum photometric error (M, 1, H, W) over the sources that see each pixel; inf where none does."""
    best = torch.full_like(target[:, :1], float("inf"))
    for image, ok in zip(warped, valid, strict=True):
        error = photometric_error(image, target, alpha)
        best = torch.minimum(best, torch.where(ok, error, torch.full_like(error, float("inf"))))
    return best


def _mean_seen(best: torch.Tensor) -> torch.Tensor:
    seen = torch.isfinite(best)
    return masked_mean(torch.where(seen, best, torch.zeros_like(best)), seen)


def surround_photometric_loss(
    images: torch.Tensor,
    depth: torch.Tensor,
    intrinsics: torch.Tensor,
    extrinsics: torch.Tensor,
    pairs: torch.Tensor | None = None,
    adjacent_images: Sequence[torch.Tensor] = (),
    poses: torch.Tensor | None = None,
    adjacent_poses: Sequence[torch.Tensor] = (),
    alpha: float = 0.85,
    auto_mask: bool = True,
) -> torch.Tensor:
    """Semi-SMD photometric loss of every view against its adjacent frames (temporal) and neighbour cameras (spatial).

    images (B, N, 3, H, W) in [0, 1] (un-jittered: colour jitter would be error at the true depth) and
    depth (B, N, 1, H, W) of the current frame set; intrinsics (B, N, 3, 3) at H x W; extrinsics
    T_base_cam (B, N, 4, 4); pairs (E, 2) of overlapping cameras, used in both directions;
    adjacent_images[s] (B, N, 3, H, W) of another frame set. poses (B, N, 4, 4) T_world_base at each
    camera's capture time (None: all cameras at one instant) and adjacent_poses[s] likewise, in the
    same world frame. Per pixel the minimum error over all sources of a view (min-reprojection);
    with `auto_mask` (monodepth2) pixels whose error against an unwarped adjacent frame is lower
    than the best reprojection (static scenes, objects moving with the car) are left out.
    """
    if images.dim() != 5 or depth.shape != (*images.shape[:2], 1, *images.shape[-2:]):
        raise ValueError(
            f"images must be (B, N, 3, H, W) and depth (B, N, 1, H, W), got {tuple(images.shape)}, {tuple(depth.shape)}"
        )
    if len(adjacent_images) != len(adjacent_poses):
        raise ValueError(f"{len(adjacent_images)} adjacent frames but {len(adjacent_poses)} adjacent poses")
    if adjacent_images and poses is None:
        raise ValueError("temporal sources need the current poses too (poses=None means one instant, no motion)")
    batch, views = images.shape[:2]
    K, T = intrinsics.to(depth), extrinsics.to(depth)
    P = None if poses is None else poses.to(depth)
    sources: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(views)]
    identity: list[list[torch.Tensor]] = [[] for _ in range(views)]
    for source, source_poses in zip(adjacent_images, adjacent_poses, strict=True):
        motion = camera_motion(T, T, P, source_poses.to(depth))
        warped, ok = warp_from_source(
            source.flatten(0, 1), depth.flatten(0, 1), K.flatten(0, 1), K.flatten(0, 1), motion.flatten(0, 1)
        )
        warped, ok = warped.unflatten(0, (batch, views)), ok.unflatten(0, (batch, views))
        for view in range(views):
            sources[view].append((warped[:, view], ok[:, view]))
            identity[view].append(photometric_error(source[:, view], images[:, view], alpha))
    if pairs is not None:
        pairs = torch.as_tensor(pairs, dtype=torch.long)
        for tgt, src in torch.cat([pairs, pairs.flip(1)]).tolist():
            P_tgt, P_src = (None, None) if P is None else (P[:, tgt], P[:, src])
            motion = camera_motion(T[:, tgt], T[:, src], P_tgt, P_src)
            sources[tgt].append(warp_from_source(images[:, src], depth[:, tgt], K[:, tgt], K[:, src], motion))
    if not any(sources):
        raise ValueError("surround photometric loss needs adjacent frames or camera pairs as sources")
    best = []
    for v in range(views):
        error = _min_error(images[:, v], [w for w, _ in sources[v]], [ok for _, ok in sources[v]], alpha)
        if auto_mask and identity[v]:
            unwarped = torch.stack(identity[v]).amin(dim=0)
            error = torch.where(error < unwarped, error, torch.full_like(error, float("inf")))
        best.append(error)
    return _mean_seen(torch.stack(best, dim=1))


def second_derivatives(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Central second differences along x and y of (M, 1, H, W) maps and where all three taps are valid."""
    dxx = x[..., :, 2:] - 2 * x[..., :, 1:-1] + x[..., :, :-2]
    dyy = x[..., 2:, :] - 2 * x[..., 1:-1, :] + x[..., :-2, :]
    vx = valid[..., :, 2:] & valid[..., :, 1:-1] & valid[..., :, :-2]
    vy = valid[..., 2:, :] & valid[..., 1:-1, :] & valid[..., :-2, :]
    return dxx, dyy, vx, vy


def curvature_consistency_loss(
    student_depth: torch.Tensor,
    teacher: torch.Tensor,
    teacher_kind: str,
    mask: torch.Tensor | None = None,
    normalisation: str = "median_mad",
) -> torch.Tensor:
    """Semi-SMD curvature loss: L = mean |d2x(n(S)) - d2x(n(T))| + mean |d2y(n(S)) - d2y(n(T))|.

    n() is per-image scale-and-shift normalisation, applied to the student's depth mapped into the
    teacher's domain (1/d for a "relative_inverse" teacher), so only the shape (edges, planes,
    curvature) of the pretrained model is imposed, never its unknown scale. Teacher resized to
    the student's size and detached. student_depth (B, N, 1, H, W); teacher (B, N, 1, H', W').
    """
    if teacher_kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind must be one of {TEACHER_KINDS}, got {teacher_kind!r}")
    s = flatten_views(student_depth, "student depth", channels=1)
    t = flatten_views(teacher.detach(), "teacher depth", channels=1).to(s)
    t_valid = torch.isfinite(t) & ((t > 0) if teacher_kind == "metric" else torch.ones_like(t, dtype=torch.bool))
    if mask is not None:
        t_valid &= flatten_views(mask, "mask", channels=1).bool()
    t, t_valid = resize_masked(torch.where(t_valid, t, torch.zeros_like(t)), t_valid, s.shape[-2:])
    valid = t_valid & torch.isfinite(s) & (s > 0)
    s_domain = 1.0 / s.clamp(min=1e-6) if teacher_kind == "relative_inverse" else s
    s_norm = normalise_scale_shift(torch.where(valid, s_domain, torch.zeros_like(s)), valid, normalisation)
    t_norm = normalise_scale_shift(t, valid, normalisation)
    sxx, syy, vx, vy = second_derivatives(s_norm, valid)
    txx, tyy, _, _ = second_derivatives(t_norm, valid)
    return masked_mean((sxx - txx).abs(), vx) + masked_mean((syy - tyy).abs(), vy)
