"""Losses against sparse metric ground truth (projected lidar): what anchors the student's scale.

2512.08700 supervises the student's metric output and its bin centres with ground truth while
the teacher shapes the bin probabilities; these are those ground-truth terms.
"""

from __future__ import annotations

import torch

from surround_depth_ros.losses.masked import flatten_centres, flatten_views, masked_mean, valid_depth
from surround_depth_ros.losses.scale_shift import normalise_scale_shift


def _pair(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    pred = flatten_views(pred, "predicted depth", channels=1)
    gt = flatten_views(gt, "ground-truth depth", channels=1)
    if mask is not None:
        mask = flatten_views(mask, "mask", channels=1)
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"predicted depth has {pred.shape[0]} views, ground truth {gt.shape[0]}")
    if pred.shape[-2:] != gt.shape[-2:]:
        raise ValueError(
            f"predicted depth {tuple(pred.shape[-2:])} and ground truth {tuple(gt.shape[-2:])} differ in size; "
            "resize the prediction to the ground-truth resolution first (sparse lidar does not resize well)"
        )
    return pred, gt, valid_depth(gt, mask) & torch.isfinite(pred) & (pred > 0)


def silog_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    variance_focus: float = 0.85,
    scale: float = 10.0,
) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, BTS/AdaBins form), per image then averaged.

    L = scale * sqrt(mean(e^2) - lambda * mean(e)^2), e = log p - log g over valid pixels;
    lambda = 1 is fully scale invariant, lambda < 1 (variance focus) keeps some pull on the scale.
    pred, gt: (B, N, 1, H, W) or (M, 1, H, W); gt <= 0 is invalid.
    """
    pred, gt, valid = _pair(pred, gt, mask)
    e = torch.where(valid, torch.log(pred.clamp(min=1e-6)) - torch.log(gt.clamp(min=1e-6)), torch.zeros_like(pred))
    count = valid.flatten(1).sum(dim=1)
    mean_e = e.flatten(1).sum(dim=1) / count.clamp(min=1)
    centred = torch.where(valid, e - mean_e.view(-1, 1, 1, 1), torch.zeros_like(e))
    variance = (centred**2).flatten(1).sum(dim=1) / count.clamp(min=1)
    # mean(e^2) - lambda mean(e)^2 written as var(e) + (1 - lambda) mean(e)^2: no cancellation in float32
    per_image = scale * (variance + (1.0 - variance_focus) * mean_e**2).clamp(min=1e-12).sqrt()
    return masked_mean(per_image, count > 0)


def masked_l1_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error in metres over valid ground-truth pixels: L = mean |p - g|."""
    pred, gt, valid = _pair(pred, gt, mask)
    return masked_mean((pred - gt).abs(), valid)


def affine_invariant_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scale-and-shift-invariant loss in inverse depth (MiDaS / Depth Anything): what makes a relative model.

    L = mean |n(1/p) - n(1/g)| over valid pixels, n() the per-image median / mean-absolute-deviation
    normalisation: any p with 1/p = s/g + b (s > 0) scores 0, so the network learns relative
    disparity only and its output scale means nothing (serve it as a "relative_inverse" teacher).
    """
    pred, gt, valid = _pair(pred, gt, mask)
    p = torch.where(valid, 1.0 / pred.clamp(min=1e-6), torch.zeros_like(pred))
    g = torch.where(valid, 1.0 / gt.clamp(min=1e-6), torch.zeros_like(gt))
    return masked_mean((normalise_scale_shift(p, valid) - normalise_scale_shift(g, valid)).abs(), valid)


def bin_centre_loss(centres: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Chamfer loss between each image's bin centres and its set of valid ground-truth depths (AdaBins eq. 4).

    L = sum_{x in X} min_{c} (x - c)^2 / |X| + sum_{c} min_{x in X} (x - c)^2 / K, per image, averaged
    over images with ground truth. Exact 1-D nearest neighbours by sorting, so a full-resolution
    lidar map costs O(P log P), not O(P K). centres: (B, N, K) metres; gt: (B, N, 1, H, W).
    """
    centres = flatten_centres(centres)
    gt = flatten_views(gt, "ground-truth depth", channels=1)
    if centres.shape[0] != gt.shape[0]:
        raise ValueError(f"bin centres are given for {centres.shape[0]} views, ground truth for {gt.shape[0]}")
    valid = valid_depth(gt, None if mask is None else flatten_views(mask, "mask", channels=1)).flatten(1)
    points = torch.where(valid, gt.flatten(1), torch.full_like(gt.flatten(1), float("inf")))
    count = valid.sum(dim=1)
    has_gt = count > 0

    # ground truth -> nearest centre
    sorted_c, _ = centres.sort(dim=1)
    k = sorted_c.shape[1]
    filled = torch.where(valid, gt.flatten(1), torch.zeros_like(points))  # finite everywhere: no inf * 0 in backward
    right = torch.searchsorted(sorted_c.detach(), filled.contiguous()).clamp(max=k - 1)
    left = (right - 1).clamp(min=0)
    dist_gt = torch.minimum((filled - sorted_c.gather(1, left)) ** 2, (filled - sorted_c.gather(1, right)) ** 2)
    term_gt = torch.where(valid, dist_gt, torch.zeros_like(dist_gt)).sum(dim=1) / count.clamp(min=1)

    # centre -> nearest ground truth
    sorted_p, _ = points.sort(dim=1)
    last = (count - 1).clamp(min=0).unsqueeze(1)
    right = torch.minimum(torch.searchsorted(sorted_p, centres.detach().contiguous()), last)
    left = (right - 1).clamp(min=0)
    nearest = torch.where(
        (centres - sorted_p.gather(1, left)).abs() <= (centres - sorted_p.gather(1, right)).abs(),
        sorted_p.gather(1, left),
        sorted_p.gather(1, right),
    )
    nearest = torch.where(has_gt.unsqueeze(1), nearest, centres.detach())
    term_c = ((centres - nearest) ** 2).mean(dim=1)
    return masked_mean(term_gt + term_c, has_gt)
