"""Depth evaluation metrics, computed the way the surround and radar-camera benchmarks report them.

Every metric is computed per image on its valid ground-truth pixels, then averaged over images:
per camera, per ground-truth range bin, and over the rig (mean of the per-camera means, the
surround protocol). Both the scale-aware ("metric") numbers and the per-image median-scaled
ones are produced, since papers report one or the other and users compare against both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "mae", "silog")
DEFAULT_RANGE_BINS: tuple[tuple[float, float], ...] = ((0.0, 50.0), (50.0, 70.0), (70.0, 80.0), (80.0, math.inf))
DEPTH_CAPS = {"nuscenes": (0.1, 80.0), "ddad": (0.1, 200.0)}


def _as_images(value: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    """(B, N, 1, H, W), (B, N, H, W), (N, H, W) or (H, W) -> float64 tensor (B, N, H, W)."""
    tensor = torch.as_tensor(np.asarray(value) if isinstance(value, np.ndarray) else value).detach()
    tensor = tensor.to(device="cpu", dtype=torch.float64)
    if tensor.dim() == 5:
        if tensor.shape[2] != 1:
            raise ValueError(f"{what} with 5 dims must be (B, N, 1, H, W), got {tuple(tensor.shape)}")
        tensor = tensor[:, :, 0]
    while tensor.dim() < 4:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4:
        raise ValueError(
            f"{what} must be (B, N, 1, H, W), (B, N, H, W), (N, H, W) or (H, W), got {tuple(tensor.shape)}"
        )
    return tensor


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of `values` (M, P) over `mask` per row (mean of the two middle values, as numpy); NaN if empty."""
    count = mask.sum(dim=1)
    ordered = torch.where(mask, values, torch.full_like(values, math.inf)).sort(dim=1).values
    low = ((count - 1).clamp(min=0) // 2).unsqueeze(1)
    high = (count // 2).clamp(max=values.shape[1] - 1).unsqueeze(1)
    median = 0.5 * (ordered.gather(1, low) + ordered.gather(1, high)).squeeze(1)
    return torch.where(count > 0, median, torch.full_like(median, math.nan))


def per_image_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each metric of each image (M,) over its masked pixels (pred, gt, mask are (M, P)); NaN where none is valid.

    AbsRel = mean|g-p|/g, SqRel = mean (g-p)^2/g, RMSE, RMSElog, a_k = fraction with
    max(p/g, g/p) < 1.25^k, MAE = mean|g-p|, SILog = 100 sqrt(mean e^2 - (mean e)^2), e = log p - log g.
    """
    weight = mask.to(pred.dtype)
    count = weight.sum(dim=1)
    safe_gt = torch.where(mask, gt, torch.ones_like(gt))
    safe_pred = torch.where(mask, pred, torch.ones_like(pred))

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * weight).sum(dim=1) / count

    diff = safe_gt - safe_pred
    log_diff = torch.log(safe_pred) - torch.log(safe_gt)
    ratio = torch.maximum(safe_pred / safe_gt, safe_gt / safe_pred)
    metrics = {
        "abs_rel": mean(diff.abs() / safe_gt),
        "sq_rel": mean(diff**2 / safe_gt),
        "rmse": mean(diff**2).sqrt(),
        "rmse_log": mean(log_diff**2).sqrt(),
        "a1": mean((ratio < 1.25).to(pred.dtype)),
        "a2": mean((ratio < 1.25**2).to(pred.dtype)),
        "a3": mean((ratio < 1.25**3).to(pred.dtype)),
        "mae": mean(diff.abs()),
        "silog": 100.0 * (mean(log_diff**2) - mean(log_diff) ** 2).clamp(min=0).sqrt(),
    }
    return {name: torch.where(count > 0, value, torch.full_like(value, math.nan)) for name, value in metrics.items()}


def _range_label(low: float, high: float) -> str:
    return f">{low:g}" if math.isinf(high) else f"{low:g}-{high:g}"


@dataclass
class _Running:
    """Sums and counts of per-image metrics for one group of images."""

    sums: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls) -> _Running:
        return cls(np.zeros(len(METRIC_NAMES)))

    def add(self, rows: np.ndarray) -> None:
        rows = rows[~np.isnan(rows).any(axis=1)]
        self.sums += rows.sum(axis=0)
        self.count += len(rows)

    def means(self) -> dict[str, float] | None:
        if self.count == 0:
            return None
        return {name: float(v) for name, v in zip(METRIC_NAMES, self.sums / self.count, strict=True)}


class DepthMetrics:
    """Accumulates per-image metrics over batches; `summary()` gives a JSON-serialisable dict.

    Ground truth is valid where min_depth < g < max_depth (and finite, and in the optional
    mask); predictions are clamped to [min_depth, max_depth] after the optional median scaling,
    the monodepth2 / SurroundDepth protocol. Range bins select ground-truth pixels by distance.
    """

    def __init__(
        self,
        camera_names: Sequence[str] | None = None,
        min_depth: float = 0.1,
        max_depth: float = 80.0,
        range_bins: Sequence[tuple[float, float]] = DEFAULT_RANGE_BINS,
    ) -> None:
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"depth caps must satisfy 0 <= min_depth < max_depth, got [{min_depth}, {max_depth}]")
        for low, high in range_bins:
            if not low < high:
                raise ValueError(f"range bin ({low}, {high}) must have low < high")
        self.camera_names = list(camera_names) if camera_names is not None else None
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.range_bins = [(float(lo), float(hi)) for lo, hi in range_bins]
        self._groups: dict[tuple[str, str, str], _Running] = {}

    def _camera_name(self, index: int) -> str:
        if self.camera_names is None:
            return f"camera_{index}"
        if index >= len(self.camera_names):
            raise ValueError(
                f"batch has camera index {index} but only {len(self.camera_names)} camera names were given"
            )
        return self.camera_names[index]

    def _add(self, mode: str, camera: str, selection: str, values: dict[str, torch.Tensor]) -> None:
        rows = torch.stack([values[name] for name in METRIC_NAMES], dim=1).numpy()
        self._groups.setdefault((mode, camera, selection), _Running.empty()).add(rows)

    def update(
        self,
        pred: np.ndarray | torch.Tensor,
        gt: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Add a batch: pred and gt (B, N, 1, H, W) / (B, N, H, W) / (N, H, W) / (H, W); gt 0 or NaN = invalid."""
        pred_t, gt_t = _as_images(pred, "pred"), _as_images(gt, "gt")
        if pred_t.shape != gt_t.shape:
            raise ValueError(f"pred {tuple(pred_t.shape)} and gt {tuple(gt_t.shape)} must have the same shape")
        valid = torch.isfinite(gt_t) & (gt_t > self.min_depth) & (gt_t < self.max_depth)
        if mask is not None:
            mask_t = _as_images(mask, "mask")
            if mask_t.shape != gt_t.shape:
                raise ValueError(f"mask {tuple(mask_t.shape)} must have the shape of gt {tuple(gt_t.shape)}")
            valid &= mask_t > 0
        batch, cameras = gt_t.shape[:2]
        flat = (batch * cameras, -1)
        gt_f, valid_f = gt_t.reshape(flat), valid.reshape(flat)
        pred_f = torch.nan_to_num(pred_t.reshape(flat), nan=self.min_depth)
        scale = masked_median(gt_f, valid_f) / masked_median(pred_f, valid_f)
        modes = {"metric": pred_f, "median_scaled": pred_f * torch.nan_to_num(scale, nan=1.0).unsqueeze(1)}
        camera_of_row = [self._camera_name(i % cameras) for i in range(batch * cameras)]
        for mode, scaled in modes.items():
            scaled = scaled.clamp(self.min_depth, self.max_depth)
            selections = {"all": valid_f}
            for low, high in self.range_bins:
                selections[_range_label(low, high)] = valid_f & (gt_f >= low) & (gt_f < high)
            for selection, selected in selections.items():
                values = per_image_metrics(scaled, gt_f, selected)
                for camera in dict.fromkeys(camera_of_row):
                    rows = torch.tensor([c == camera for c in camera_of_row])
                    self._add(mode, camera, selection, {k: v[rows] for k, v in values.items()})

    def summary(self) -> dict:
        """{mode: {"mean": metrics, "per_camera": {cam: metrics}, "per_range": {bin: metrics}, "images": n}}.

        "mean" is the mean of the per-camera means (each camera weighs the same); "per_range"
        averages over all images that have ground truth in that bin; a group without images is None.
        """
        result: dict = {"min_depth": self.min_depth, "max_depth": self.max_depth}
        cameras = list(dict.fromkeys(camera for (_, camera, _) in self._groups))
        for mode in ("metric", "median_scaled"):
            per_camera = {
                c: self._groups[(mode, c, "all")].means() for c in cameras if (mode, c, "all") in self._groups
            }
            filled = [m for m in per_camera.values() if m is not None]
            mean = {name: float(np.mean([m[name] for m in filled])) for name in METRIC_NAMES} if filled else None
            per_range = {}
            for low, high in self.range_bins:
                label = _range_label(low, high)
                total = _Running.empty()
                for camera in cameras:
                    group = self._groups.get((mode, camera, label))
                    if group is not None:
                        total.sums += group.sums
                        total.count += group.count
                per_range[label] = total.means()
            images = sum(self._groups[(mode, c, "all")].count for c in cameras if (mode, c, "all") in self._groups)
            result[mode] = {"mean": mean, "per_camera": per_camera, "per_range": per_range, "images": images}
        return result
