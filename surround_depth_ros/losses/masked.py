"""Shape and mask plumbing shared by every loss, so that each loss file holds only its formula.

Conventions: per-view tensors arrive as (B, N, C, H, W) or already flattened (B*N, C, H, W);
depth 0 / NaN / inf means "no value"; a loss over zero valid elements is 0 (never NaN) while
still being connected to the student's graph, so `backward()` works on an all-invalid batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flatten_views(x: torch.Tensor, what: str, channels: int | None = None) -> torch.Tensor:
    """(B, N, C, H, W) -> (B*N, C, H, W); 4-D input passes through. Checks C when given."""
    if x.dim() == 5:
        x = x.flatten(0, 1)
    if x.dim() != 4:
        raise ValueError(f"{what} must be (B, N, C, H, W) or (B*N, C, H, W), got {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{what} must have {channels} channel(s), got shape {tuple(x.shape)}")
    return x


def flatten_centres(centres: torch.Tensor, what: str = "bin centres") -> torch.Tensor:
    """(B, N, K) or (B*N, K) -> (B*N, K)."""
    if centres.dim() == 3:
        centres = centres.flatten(0, 1)
    if centres.dim() != 2:
        raise ValueError(f"{what} must be (B, N, K) or (B*N, K), got {tuple(centres.shape)}")
    return centres


def valid_depth(depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean map of usable depth: finite, > 0, and inside `mask` (nonzero = keep) when given."""
    valid = torch.isfinite(depth) & (depth > 0)
    if mask is not None:
        if mask.shape != depth.shape:
            mask = flatten_views(mask, "mask") if mask.dim() == 5 else mask
        if mask.shape != depth.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must have the shape of the depth it masks {tuple(depth.shape)}")
        valid &= mask.bool()
    return valid


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask`; 0 (still in the graph) when nothing is valid; NaNs outside the mask ignored."""
    mask = mask.expand_as(values)
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() / mask.sum().clamp(min=1)


def resize_masked(
    values: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize (M, C, H, W) values with a (M, 1, H, W) validity map: mean of the valid pixels under each output cell.

    Area averaging when shrinking, bilinear when enlarging; invalid pixels never leak into valid
    ones and a cell with no valid pixel comes back invalid. Affine in the values (weights sum to
    1), so resizing commutes with the scale and shift of a relative teacher.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(values.shape[-2:]) == size:
        return values, valid
    weight_in = valid.to(values.dtype)
    filled = torch.where(valid, values, torch.zeros_like(values))
    shrinking = size[0] <= values.shape[-2] and size[1] <= values.shape[-1]
    mode = {"mode": "area"} if shrinking else {"mode": "bilinear", "align_corners": False}
    total = F.interpolate(filled, size=size, **mode)
    weight = F.interpolate(weight_in, size=size, **mode)
    kept = weight > 1e-6
    return torch.where(kept, total / weight.clamp(min=1e-6), torch.zeros_like(total)), kept


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (M, 1, H, W) metric depth with holes (0 = none) without mixing holes into values."""
    return resize_masked(depth, valid_depth(depth), size)[0]
