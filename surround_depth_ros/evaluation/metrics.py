"""Depth evaluation metrics, computed the way the surround and radar-camera benchmarks report them.

Every metric is computed per image on its valid ground-truth pixels, then averaged over images:
per camera, per ground-truth range bin, and over the rig (mean of the per-camera means, the
surround protocol). Both the scale-aware ("metric") numbers and the per-image median-scaled
ones are produced, since papers report one or the other and users compare against both.

Ground truth from lidar covers a few thousand of a camera's millions of pixels, so each image's
valid pixels are gathered first and every metric is computed on those alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "mae", "silog")
DEFAULT_RANGE_BINS: tuple[tuple[float, float], ...] = ((0.0, 50.0), (50.0, 70.0), (70.0, 80.0), (80.0, math.inf))

Maps = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of `values` (M, P) over `mask` per row (mean of the two middle values, as numpy); NaN if empty."""
    count = mask.sum(dim=1)
    ordered = torch.where(mask, values, torch.full_like(values, math.inf)).sort(dim=1).values
    low = ((count - 1).clamp(min=0) // 2).unsqueeze(1)
    high = (count // 2).clamp(max=values.shape[1] - 1).unsqueeze(1)
    median = 0.5 * (ordered.gather(1, low) + ordered.gather(1, high)).squeeze(1)
    return torch.where(count > 0, median, torch.full_like(median, math.nan))


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The METRIC_NAMES of one image from its valid pixels (1-D float64 pred and gt, at least one pixel).

    AbsRel = mean|g-p|/g, SqRel = mean (g-p)^2/g, RMSE, RMSElog, a_k = fraction with
    max(p/g, g/p) < 1.25^k, MAE = mean|g-p|, SILog = 100 sqrt(mean e^2 - (mean e)^2), e = log p - log g.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # a 0 m prediction (min_depth 0) gives inf / NaN rows
        abs_diff = np.abs(gt - pred)
        squared = abs_diff**2
        log_diff = np.log(pred) - np.log(gt)
        ratio = np.maximum(pred / gt, gt / pred)
        mean_log_sq = np.mean(log_diff**2)
        return np.array(
            [
                np.mean(abs_diff / gt),
                np.mean(squared / gt),
                np.sqrt(np.mean(squared)),
                np.sqrt(mean_log_sq),
                np.mean(ratio < 1.25),
                np.mean(ratio < 1.25**2),
                np.mean(ratio < 1.25**3),
                np.mean(abs_diff),
                100.0 * np.sqrt(np.maximum(mean_log_sq - np.mean(log_diff) ** 2, 0.0)),
            ]
        )


def _numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    """A CPU array view of a tensor or array, in its own dtype (no full-resolution copy)."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _as_images(value: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    """(B, N, 1, H, W), (B, N, H, W), (N, H, W) or (H, W) -> array (B, N, H, W)."""
    array = _numpy(value)
    if array.ndim == 5:
        if array.shape[2] != 1:
            raise ValueError(f"{what} with 5 dims must be (B, N, 1, H, W), got {array.shape}")
        array = array[:, :, 0]
    if not 2 <= array.ndim <= 4:
        raise ValueError(f"{what} must be (B, N, 1, H, W), (B, N, H, W), (N, H, W) or (H, W), got {array.shape}")
    return array.reshape((1,) * (4 - array.ndim) + array.shape)


def _one_map(value: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    """One camera's (H, W) or (1, H, W) map -> array (H, W)."""
    array = _as_images(value, what)
    if array.shape[:2] != (1, 1):
        raise ValueError(f"each camera's {what} must be (H, W) or (1, H, W), got {_numpy(value).shape}")
    return array[0, 0]


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

    def add(self, row: np.ndarray) -> None:
        """One image's metrics; an image with a NaN metric does not count (as it has no valid pixel)."""
        if not np.isnan(row).any():
            self.sums += row
            self.count += 1

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

    def update(self, pred: Maps, gt: Maps, mask: Maps | None = None) -> None:
        """Add images: pred and gt (B, N, 1, H, W) / (B, N, H, W) / (N, H, W) / (H, W), or one frame set as
        lists of per-camera (H, W) maps whose sizes may differ; gt 0 or NaN = invalid, mask 0 = excluded."""
        images = list(_per_image(pred, gt, mask))  # views; every shape and camera checked before anything counts
        names = [self._camera_name(camera) for camera, *_ in images]
        for name, (_, pred_map, gt_map, mask_map) in zip(names, images, strict=True):
            self._add_image(name, pred_map, gt_map, mask_map)

    def _add_image(self, camera: str, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> None:
        """Gather the valid pixels (a float64 bound keeps float32 maps' comparisons exact), then score them."""
        gt_flat = gt.reshape(-1)
        valid = (gt_flat > np.float64(self.min_depth)) & (gt_flat < np.float64(self.max_depth))  # NaN, inf: False
        if mask is not None:
            valid &= mask.reshape(-1) > 0
        index = np.flatnonzero(valid)
        g = gt_flat[index].astype(np.float64)
        p = np.nan_to_num(pred.reshape(-1)[index].astype(np.float64), nan=self.min_depth)
        scale = np.nan_to_num(np.median(g) / np.median(p), nan=1.0) if len(index) else 1.0
        selections = {"all": slice(None)}
        selections |= {_range_label(lo, hi): (g >= lo) & (g < hi) for lo, hi in self.range_bins}
        for mode, factor in (("metric", 1.0), ("median_scaled", scale)):
            scaled = np.clip(p * factor, self.min_depth, self.max_depth)
            for selection, chosen in selections.items():
                group = self._groups.setdefault((mode, camera, selection), _Running.empty())
                selected = g[chosen]
                if len(selected):
                    group.add(image_metrics(scaled[chosen], selected))

    def summary(self) -> dict:
        """{mode: {"mean": metrics, "per_camera": {cam: metrics}, "per_range": {bin: metrics},
        "per_camera_range": {cam: {bin: metrics}}, "images": n}}.

        "mean" is the mean of the per-camera means (each camera weighs the same); "per_range"
        averages over all images that have ground truth in that bin; a group without images is None.
        """
        result: dict = {"min_depth": self.min_depth, "max_depth": self.max_depth}
        cameras = list(dict.fromkeys(camera for (_, camera, _) in self._groups))
        labels = [_range_label(low, high) for low, high in self.range_bins]
        for mode in ("metric", "median_scaled"):
            groups = {c: {s: self._groups[(mode, c, s)] for s in ("all", *labels)} for c in cameras}
            per_camera = {c: g["all"].means() for c, g in groups.items()}
            filled = [m for m in per_camera.values() if m is not None]
            mean = {name: float(np.mean([m[name] for m in filled])) for name in METRIC_NAMES} if filled else None
            per_range = {}
            for label in labels:
                total = _Running.empty()
                for group in (g[label] for g in groups.values()):
                    total.sums += group.sums
                    total.count += group.count
                per_range[label] = total.means()
            result[mode] = {
                "mean": mean,
                "per_camera": per_camera,
                "per_range": per_range,
                "per_camera_range": {c: {b: g[b].means() for b in labels} for c, g in groups.items()},
                "images": sum(g["all"].count for g in groups.values()),
            }
        return result


def _per_image(
    pred: Maps, gt: Maps, mask: Maps | None
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(camera index, pred, gt, mask) of every image of a batch or of per-camera lists, shapes checked."""
    if isinstance(gt, (list, tuple)):
        if not isinstance(pred, (list, tuple)) or len(pred) != len(gt):
            raise ValueError("per-camera ground truth needs a per-camera prediction list of the same length")
        masks = mask if mask is not None else [None] * len(gt)
        for camera, (p, g, m) in enumerate(zip(pred, gt, masks, strict=True)):
            p, g = _one_map(p, "pred"), _one_map(g, "gt")
            m = None if m is None else _one_map(m, "mask")
            _check_shapes(p, g, m)
            yield camera, p, g, m
        return
    pred_a, gt_a = _as_images(pred, "pred"), _as_images(gt, "gt")
    mask_a = None if mask is None else _as_images(mask, "mask")
    _check_shapes(pred_a, gt_a, mask_a)
    for b in range(gt_a.shape[0]):
        for camera in range(gt_a.shape[1]):
            yield camera, pred_a[b, camera], gt_a[b, camera], None if mask_a is None else mask_a[b, camera]


def _check_shapes(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    if mask is not None and mask.shape != gt.shape:
        raise ValueError(f"mask {mask.shape} must have the shape of gt {gt.shape}")
