"""View-relational knowledge distillation (arXiv 2512.08700): relations between adjacent views, teacher -> student.

Adjacent surround cameras see the same surfaces in their overlap. Sampling features at points
that both cameras see (found from metric depth and the rig's calibration) and comparing the
cosine-similarity matrices of those samples, within each view and across the two views,
transfers how the teacher relates the views without asking the student to copy the teacher's
channels. Relations are matched with a masked MSE on cosine similarities (chosen over a KL of
row-softmaxes: no temperature to tune, and a zero-valid-pair case that is simply 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from surround_depth_ros.base.geometry import (
    backproject_depth,
    invert_transform,
    project_points,
    resize_intrinsics,
    transform_points,
)
from surround_depth_ros.losses.masked import masked_mean, resize_depth


@dataclass
class ViewOverlap:
    """Where camera i's sample points land in camera j, for each batch item and camera pair.

    grid_source / grid_target: (B, E, P, 2) grid_sample coordinates (x, y in [-1, 1],
    align_corners=False) in views pairs[:, 0] and pairs[:, 1]; valid: (B, E, P) bool.
    """

    pairs: torch.Tensor
    grid_source: torch.Tensor
    grid_target: torch.Tensor
    valid: torch.Tensor


def _check_pairs(pairs: torch.Tensor, n_views: int) -> torch.Tensor:
    pairs = torch.as_tensor(pairs, dtype=torch.long)
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"camera pairs must be a LongTensor (E, 2), got shape {tuple(pairs.shape)}")
    if pairs.numel() and (pairs.min() < 0 or pairs.max() >= n_views):
        raise ValueError(f"camera pairs index views 0..{n_views - 1}, got {pairs.tolist()}")
    return pairs


@torch.no_grad()
def find_view_overlap(
    depth: torch.Tensor,
    intrinsics: torch.Tensor,
    extrinsics: torch.Tensor,
    pairs: torch.Tensor,
    grid_size: tuple[int, int] = (16, 32),
    occlusion_tolerance: float = 0.1,
) -> ViewOverlap:
    """Points of camera i visible in camera j: back-project, transform through the base frame, project.

    depth: (B, N, 1, H, W) metric (ground truth, a metric teacher, or the student's detached
    output; 0 = unknown); intrinsics (B, N, 3, 3) at H x W; extrinsics T_base_cam (B, N, 4, 4);
    pairs (E, 2). Sample points are the centres of a grid_size grid over view i, with the mean
    of the valid depths in each cell. A point is kept when it lies in front of camera j, inside
    its image, and (where view j's depth is known) not behind view j's surface by more than
    `occlusion_tolerance` (relative).
    """
    if depth.dim() != 5 or depth.shape[2] != 1:
        raise ValueError(f"depth must be (B, N, 1, H, W), got {tuple(depth.shape)}")
    batch, views, _, height, width = depth.shape
    if intrinsics.shape != (batch, views, 3, 3) or extrinsics.shape != (batch, views, 4, 4):
        raise ValueError(
            f"intrinsics must be {(batch, views, 3, 3)} and extrinsics {(batch, views, 4, 4)}, got "
            f"{tuple(intrinsics.shape)} and {tuple(extrinsics.shape)}"
        )
    pairs = _check_pairs(pairs, views).to(depth.device)
    gh, gw = grid_size
    src, dst = pairs[:, 0], pairs[:, 1]
    depth = depth.float()
    intrinsics, extrinsics = intrinsics.to(depth), extrinsics.to(depth)

    cell_depth = resize_depth(depth.flatten(0, 1), (gh, gw)).reshape(batch, views, gh * gw)[:, src]  # (B, E, P)
    cell_K = resize_intrinsics(intrinsics, gw / width, gh / height)[:, src]
    points_src = backproject_depth(cell_depth.reshape(batch, -1, gh, gw), cell_K)  # (B, E, P, 3)
    T_dst_src = invert_transform(extrinsics[:, dst]) @ extrinsics[:, src]
    uv, z = project_points(intrinsics[:, dst], transform_points(T_dst_src, points_src))

    valid = (cell_depth > 0) & (z > 1e-3)
    valid &= (uv[..., 0] >= -0.5) & (uv[..., 0] < width - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] < height - 0.5)
    col = (uv[..., 0] + 0.5).floor().clamp(0, width - 1).long()
    row = (uv[..., 1] + 0.5).floor().clamp(0, height - 1).long()
    depth_dst = depth[:, dst, 0].flatten(2).gather(2, row * width + col)
    valid &= (depth_dst <= 0) | (z <= depth_dst * (1.0 + occlusion_tolerance))

    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    grid_src = torch.stack([(cols + 0.5) / gw * 2 - 1, (rows + 0.5) / gh * 2 - 1], dim=-1).reshape(1, 1, -1, 2)
    grid_dst = torch.stack([(uv[..., 0] + 0.5) / width * 2 - 1, (uv[..., 1] + 0.5) / height * 2 - 1], dim=-1)
    grid_dst = torch.where(valid[..., None], grid_dst, torch.zeros_like(grid_dst))
    return ViewOverlap(pairs, grid_src.to(depth).expand(batch, len(pairs), -1, -1), grid_dst, valid)


def sample_pair_features(features: torch.Tensor, overlap: ViewOverlap) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature vectors (B*E, P, C) at the overlap points in the source and in the target view.

    features: (B, N, C, h, w) or (B*N, C, h, w) at any resolution (grid coordinates are normalised).
    """
    batch, edges, points, _ = overlap.grid_source.shape
    if features.dim() == 4:
        if features.shape[0] % batch:
            raise ValueError(f"{features.shape[0]} feature maps do not split into a batch of {batch}")
        features = features.reshape(batch, -1, *features.shape[1:])
    if features.dim() != 5:
        raise ValueError(f"features must be (B, N, C, h, w) or (B*N, C, h, w), got {tuple(features.shape)}")

    def sample(view_index: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        maps = features[:, view_index].flatten(0, 1)  # (B*E, C, h, w)
        out = F.grid_sample(maps, grid.reshape(batch * edges, points, 1, 2).to(maps), align_corners=False)
        return out[..., 0].transpose(1, 2)

    return sample(overlap.pairs[:, 0], overlap.grid_source), sample(overlap.pairs[:, 1], overlap.grid_target)


def relation_matrices(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (B*E, 3, P, P): within the source view, within the target view, across."""
    a, b = F.normalize(source, dim=-1, eps=1e-6), F.normalize(target, dim=-1, eps=1e-6)
    return torch.stack([a @ a.transpose(1, 2), b @ b.transpose(1, 2), a @ b.transpose(1, 2)], dim=1)


def view_relational_kd_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, overlap: ViewOverlap
) -> torch.Tensor:
    """View-relational KD: L = mean_{pairs, valid p, q} (R^S_pq - R^T_pq)^2 over the three relation matrices.

    R = cosine similarity of features sampled at overlap points (within view i, within view j,
    between i and j). Student and teacher may have different channels and resolutions; the
    teacher is detached. 0 when no pair has a visible point.
    """
    student = relation_matrices(*sample_pair_features(student_features, overlap))
    with torch.no_grad():
        teacher = relation_matrices(*sample_pair_features(teacher_features.detach().to(student), overlap))
    valid = overlap.valid.flatten(0, 1)
    pair_mask = (valid[:, :, None] & valid[:, None, :]).unsqueeze(1)
    return masked_mean((student - teacher) ** 2, pair_mask)
