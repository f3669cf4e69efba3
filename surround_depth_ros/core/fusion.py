"""The fused cloud as tensor ops on the engine's device: depth maps in, packed PointCloud2 bytes out.

`CloudFusion` does what the numpy reference (`test/fusion_reference.py`) and the node's range,
confidence and voxel filters do, on CPU or CUDA with the same code, and packs the result into
`pointcloud.FUSED_CLOUD_DTYPE` bytes on the device, ready for one copy to the host. It is faster
because:
- what depends only on the rig (sampled pixels, their rays, which camera pairs can see each other)
  is computed once per rig and map size (`RigGeometry`), not per set;
- for each camera pair, the rig geometry also holds the pixels of one camera whose ray can land in
  the other's image at all, with the interval of depths at which it does; per set only those are
  projected into the other camera, a point counting there when its depth lies in that interval, and
  the pairs that share a target camera are projected together (six groups of ops for a ring, not twelve);
- a point budget (`CloudOptions.max_points`) samples min(budget, all) depth pixels spread evenly
  over every map (`pixel_counts`, `even_pixels`), so a 1936x1216 rig costs what a 1600x900 one
  does, and more cameras or a larger budget never give fewer points;
- a point's colour is the image pixel it projects to through the image's own intrinsics, which
  for a pinhole camera depends on the depth pixel only, so it is looked up once per rig too: the
  network's maps of a camera placed as the canonical camera are not a plain resize of its image.
The per-point float32 arithmetic is written in the reference's order, so on the CPU both give the
same bits. Python loops run over cameras and camera pairs only, never over pixels.

On a GPU the host never waits for the device before the cloud's last step: every stage (overlap
removal, limits, voxels, packing) works on all sampled pixels, whose number depends on the rig and
options only, with a mask of the kept ones, never picking them out (nonzero, masked_select, boolean
indexing, unique and .item() make the host wait for the device's answer). `packed` moves the kept
packed rows first; `cloud` then reads their count, the one host sync a set, inherent: the message's size
is the point count. benchmarks/gpu_sync_check.py checks it under `torch.cuda.set_sync_debug_mode`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from surround_depth_ros.base import geometry
from surround_depth_ros.base.threads import POSTPROCESS_THREADS, torch_threads
from surround_depth_ros.sensors.pointcloud import FUSED_CLOUD_DTYPE
from surround_depth_ros.sensors.rig import Camera, CameraRig

OVERLAP_MODES = ("keep_all", "most_confident")
# The coarse "can these two cameras see each other at all" check of the numpy reference
# (`test/fusion_reference.py`): the same pairs are compared here, so that both give the same cloud.
PAIR_CHECK_DEPTHS = (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
PAIR_CHECK_GRID = 16
# Slack of the cached pair windows, so that float32 rounding per set never leaves a point out of them.
WINDOW_MARGIN_PX = 1.0
WINDOW_MARGIN_DEPTH = 1e-4  # relative
# A depth pixel's centre can fall exactly on an edge between image pixels (224 network columns over
# 1600 image columns put every 7th there): it takes the right / lower pixel, as integer resize
# arithmetic does, whatever the last bit of the float64 projection says.
COLOR_TIE_PX = 1e-6
# sensor_msgs/PointField never says "little-endian": packing writes native ints and floats.
assert np.little_endian, "the packed cloud layout assumes a little-endian host"

Maps = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


@dataclass(frozen=True)
class CloudOptions:
    """How per-camera depth maps become one cloud.

    `overlap` "most_confident" keeps each surface seen by two cameras once; `stride` samples every
    n-th pixel of the depth maps in both directions; without it, `max_points` pixels (or all, when
    fewer) are spread evenly over the maps; points farther than `max_range_m` from the base origin or
    less confident than `min_confidence` are dropped; `voxel_size_m` > 0 keeps the first point of
    each voxel. `depth_tolerance` (relative) decides when two cameras see the same surface.
    """

    overlap: str = "most_confident"
    max_points: int = 200_000
    stride: int | None = None
    max_range_m: float = 80.0
    min_confidence: float = 0.0
    voxel_size_m: float = 0.0
    depth_tolerance: float = 0.1

    def __post_init__(self) -> None:
        if self.overlap not in OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {self.overlap!r}")
        if self.max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {self.max_points}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1 or None (from max_points), got {self.stride}")


def pixel_counts(sizes: Sequence[tuple[int, int]], max_points: int) -> tuple[int, ...]:
    """How many pixels of each map of (height, width) the cloud samples: all when they fit `max_points`, else shares
    of exactly `max_points` in proportion to each map's area (the largest remainders get the last few).

    The cloud then uses min(max_points, all pixels) depth pixels, which never falls when the
    budget or the number of cameras grows (a stride jumps from 1 to 2 and loses 3/4 of them).
    """
    areas = [h * w for h, w in sizes]
    total = sum(areas)
    if total <= max_points:
        return tuple(areas)
    shares = [max_points * area for area in areas]  # / total: kept as integers, so the split is exact
    counts = [share // total for share in shares]
    by_remainder = sorted(range(len(areas)), key=lambda i: (-(shares[i] % total), i))
    for i in by_remainder[: max_points - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def even_pixels(height: int, width: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (int64, row-major) of `count` pixels spread evenly over a height x width map.

    About sqrt(count * height / width) rows, equally spaced, each holding its share of `count`
    (they differ by at most one) at equally spaced columns, every position at the centre of its
    interval: rows and columns are about as far apart, the largest gap along either axis is the
    ceiling of its step, and the choice depends on the three numbers alone, so it never shimmers.
    """
    if count >= height * width:
        return np.divmod(np.arange(height * width, dtype=np.int64), width)
    n_rows = min(height, count, max(-(-count // width), round(math.sqrt(count * height / width))))
    row = np.arange(n_rows, dtype=np.int64)
    first = row * count // n_rows  # the row's first pixel in the output
    per_row = (row + 1) * count // n_rows - first
    of = np.repeat(row, per_row)
    within = np.arange(count, dtype=np.int64) - first[of]
    return (2 * of + 1) * height // (2 * n_rows), (2 * within + 1) * width // (2 * per_row[of])


@dataclass(frozen=True)
class Sampling:
    """Which depth pixels the cloud uses: every `stride`-th row and column, or `counts[i]` spread evenly over map i."""

    stride: int = 1
    counts: tuple[int, ...] | None = None

    def pixels(self, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns (int64, row-major) of map `index`'s sampled pixels."""
        if self.counts is not None:
            return even_pixels(height, width, self.counts[index])
        rows, cols = np.meshgrid(np.arange(0, height, self.stride), np.arange(0, width, self.stride), indexing="ij")
        return rows.reshape(-1), cols.reshape(-1)


class FusedPoints(NamedTuple):
    """Cloud points as tensors on the fusion's device, one row per kept pixel, camera by camera."""

    points: torch.Tensor  # (P, 3) float32, base frame
    rgb: torch.Tensor  # (P, 3) uint8
    camera: torch.Tensor  # (P,) int64, position of the camera in the inputs
    confidence: torch.Tensor  # (P,) float32
    pixel: torch.Tensor  # (P,) int64, row * width + col in its camera's depth map

    def select(self, index: torch.Tensor) -> FusedPoints:
        """The rows `index`; the points as a view of (3, len(index)), whose coordinates are contiguous rows."""
        points = self.points.T.index_select(1, index).T
        return FusedPoints(points, *(column.index_select(0, index) for column in self[1:]))


class PackedCloud(NamedTuple):
    """Every sampled pixel's `FUSED_CLOUD_DTYPE` row on the fusion's device, the cloud's `count` rows first, in
    input order (the rest are the dropped pixels' rows). Its sizes depend on the rig and options only, not on the
    data, so making it never waits for the device."""

    rows: torch.Tensor  # (P * 24,) uint8
    count: torch.Tensor  # () int64


@dataclass(frozen=True)
class _CameraSlot:
    """One camera of the rig geometry: where its pixels live in the flat maps and points, its float32 pose."""

    start: int  # its points are [start, end) of the flat point list
    end: int
    depth_offset: int  # its depth map starts here in the flattened maps
    width: int
    height: int
    R: np.ndarray  # float32 T_base_cam rotation, translation: what the reference computes with
    t: np.ndarray
    T_cam_base: np.ndarray  # float32 (4, 4)
    K: np.ndarray  # float32 (3, 3)


@dataclass(frozen=True)
class _TargetWindow:
    """Points of other cameras whose rays can land in camera `target`'s image, with the depths at which they do."""

    target: int
    index: torch.Tensor  # (W,) int64 into the flat point list
    near: torch.Tensor  # (W,) float32
    far: torch.Tensor  # (W,) float32, inf when the ray never leaves the image
    source_after: torch.Tensor  # (W,) bool: the point's camera has a higher index than the target (which wins ties)
    compared: int  # points of the compared source cameras, windows or not


def _affine_rows(
    M: np.ndarray, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, t: np.ndarray | None = None
) -> list[torch.Tensor]:
    """Rows k of M (float32) @ (x, y, z) [+ t], in the float32 operation order of `geometry._matmul_points`."""
    rows = [float(M[k, 0]) * x + float(M[k, 1]) * y + float(M[k, 2]) * z for k in range(M.shape[0])]
    return rows if t is None else [row + float(t[k]) for k, row in enumerate(rows)]


def _depth_interval(a: np.ndarray, b: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Per ray, the depths d > 0 at which d * a + b (homogeneous pixels in a camera, (P, 3)) lies in its image.

    Each image bound, multiplied by the positive z, is linear in d: d * alpha >= beta. Bounds are
    widened by WINDOW_MARGIN_PX. Returns (near, far); near > far where the ray never lands.
    """
    lo_u, hi_u = -0.5 - WINDOW_MARGIN_PX, width - 0.5 + WINDOW_MARGIN_PX
    lo_v, hi_v = -0.5 - WINDOW_MARGIN_PX, height - 0.5 + WINDOW_MARGIN_PX
    u, v, w = a[:, 0], a[:, 1], a[:, 2]
    alphas = [w, u - lo_u * w, hi_u * w - u, v - lo_v * w, hi_v * w - v]
    betas = [-b[2], lo_u * b[2] - b[0], b[0] - hi_u * b[2], lo_v * b[2] - b[1], b[1] - hi_v * b[2]]
    near = np.zeros(len(a))
    far = np.full(len(a), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for alpha, beta in zip(alphas, betas, strict=True):
            ratio = beta / alpha
            near = np.where(alpha > 0, np.maximum(near, ratio), near)
            far = np.where(alpha < 0, np.minimum(far, ratio), far)
            far = np.where((alpha == 0) & (beta > 0), -np.inf, far)
    return near, far


class RigGeometry:
    """Everything the cloud needs that depends only on the rig, the map and image sizes and the sampling.

    Built once and reused until intrinsics, extrinsics, sizes or sampling change (`matches`).
    `image_K` (N, 3, 3) are the colour images' intrinsics (a camera's own CameraInfo K, while `K`
    may be that of the network's maps of it).
    """

    def __init__(
        self,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        sizes: Sequence[tuple[int, int]],
        image_sizes: Sequence[tuple[int, int]],
        image_K: np.ndarray,
        sampling: Sampling,
        device: torch.device,
    ) -> None:
        self.K, self.T_base_cam = np.array(K, np.float64), np.array(T_base_cam, np.float64)
        self.image_K = np.array(image_K, np.float64)
        self.sizes, self.image_sizes, self.sampling = tuple(sizes), tuple(image_sizes), sampling
        self.device = device
        cameras = [Camera(f"camera_{i}", w, h, self.K[i], self.T_base_cam[i]) for i, (h, w) in enumerate(self.sizes)]
        self.rig = CameraRig(tuple(cameras))
        pixel, local, color, camera, rays, rays64 = [], [], [], [], [], []
        self.slots: list[_CameraSlot] = []
        depth_offset = start = 0
        for i, ((h, w), (image_h, image_w)) in enumerate(zip(self.sizes, self.image_sizes, strict=True)):
            rows, cols = sampling.pixels(i, h, w)
            grid_r, grid_c = torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)
            local.append(grid_r * w + grid_c)
            pixel.append(local[-1] + depth_offset)
            camera.append(torch.full_like(grid_r, i))
            K_inv = np.linalg.inv(self.K[i])
            ones = torch.ones_like(grid_r, dtype=torch.float32)
            rays.append(torch.stack(_affine_rows(K_inv.astype(np.float32), grid_c.float(), grid_r.float(), ones)))
            rays64.append(np.stack([cols, rows, np.ones(len(rows))], axis=-1) @ K_inv.T)
            # The image pixel every point of the ray projects to through the image's own K (a pinhole camera's
            # projection does not depend on the depth): nearest, ties to the right / lower, clamped to the image.
            uv = geometry.project_points(self.image_K[i], rays64[-1])[0] + 0.5 + COLOR_TIE_PX
            image_c = np.clip(np.floor(uv[:, 0]), 0, image_w - 1).astype(np.int64)
            image_r = np.clip(np.floor(uv[:, 1]), 0, image_h - 1).astype(np.int64)
            color.append(torch.as_tensor(image_r * image_w + image_c, device=device))
            T32 = self.T_base_cam[i].astype(np.float32)
            end = start + len(grid_r)
            self.slots.append(
                _CameraSlot(
                    start,
                    end,
                    depth_offset,
                    w,
                    h,
                    T32[:3, :3],
                    T32[:3, 3],
                    geometry.invert_transform(self.T_base_cam[i]).astype(np.float32),
                    self.K[i].astype(np.float32),
                )
            )
            depth_offset, start = depth_offset + h * w, end
        self.pixel, self.local_pixel = torch.cat(pixel), torch.cat(local)
        self.color, self.camera = torch.cat(color), torch.cat(camera)  # color: pixel index in its camera's image
        self.rays = torch.cat(rays, dim=1)  # (3, P): rows are contiguous, which elementwise ops need to be fast
        self.windows = self._target_windows(rays64)

    def _target_windows(self, rays64: list[np.ndarray]) -> list[_TargetWindow]:
        """Per target camera, the windows of the camera pairs the reference compares (its coarse check)."""
        may_see = self.rig.overlap_matrix(depths=PAIR_CHECK_DEPTHS, grid=PAIR_CHECK_GRID) > 0
        windows = []
        for j, target in enumerate(self.slots):
            index, near, far, after, compared = [], [], [], [], 0
            for i, source in enumerate(self.slots):
                if i == j or not may_see[i, j]:
                    continue
                compared += source.end - source.start
                T_target_source = geometry.invert_transform(self.T_base_cam[j]) @ self.T_base_cam[i]
                a = rays64[i] @ (self.K[j] @ T_target_source[:3, :3]).T
                lo, hi = _depth_interval(a, self.K[j] @ T_target_source[:3, 3], target.width, target.height)
                inside = np.flatnonzero(lo <= hi)
                index.append(inside + source.start)
                near.append(lo[inside] * (1 - WINDOW_MARGIN_DEPTH))
                far.append(hi[inside] * (1 + WINDOW_MARGIN_DEPTH))
                after.append(np.full(len(inside), i > j))
            if sum(len(part) for part in index):
                windows.append(
                    _TargetWindow(
                        j,
                        torch.as_tensor(np.concatenate(index), device=self.device),
                        torch.as_tensor(np.concatenate(near), dtype=torch.float32, device=self.device),
                        torch.as_tensor(np.concatenate(far), dtype=torch.float32, device=self.device),
                        torch.as_tensor(np.concatenate(after), device=self.device),
                        compared,
                    )
                )
        return windows

    def __len__(self) -> int:
        return len(self.pixel)

    def window_fraction(self) -> float:
        """Point-pair projections per set over what projecting every point into every compared camera costs."""
        return sum(len(w.index) for w in self.windows) / max(sum(w.compared for w in self.windows), 1)

    def matches(
        self,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        sizes: Sequence[tuple[int, int]],
        image_sizes: Sequence[tuple[int, int]],
        image_K: np.ndarray,
        sampling: Sampling,
    ) -> bool:
        return (
            (self.sizes, self.image_sizes, self.sampling) == (tuple(sizes), tuple(image_sizes), sampling)
            and np.array_equal(self.K, K)
            and np.array_equal(self.T_base_cam, T_base_cam)
            and np.array_equal(self.image_K, image_K)
        )


def _flatten(maps: Maps) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """One flat tensor of all maps (a view of an (N, H, W[, C]) tensor; a concatenation of a list) and their sizes."""
    if isinstance(maps, torch.Tensor | np.ndarray):
        maps = torch.as_tensor(maps)
        return maps.reshape(-1, *maps.shape[3:]), [tuple(maps.shape[1:3])] * len(maps)
    maps = [torch.as_tensor(m) for m in maps]
    return torch.cat([m.reshape(-1, *m.shape[2:]) for m in maps]), [tuple(m.shape[:2]) for m in maps]


class CloudFusion:
    """Per-camera depth (+ confidence, colour) to one packed cloud in the base frame, on `device`.

    Call `cloud(...)` per frame set; the rig geometry is rebuilt only when K, T or sizes change.
    On the CPU the work runs with `threads` torch threads (see `surround_depth_ros.base.threads`).
    """

    def __init__(
        self,
        options: CloudOptions | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = POSTPROCESS_THREADS,
    ) -> None:
        self.options = options or CloudOptions()
        self.device = torch.device(device)
        self.threads = threads if self.device.type == "cpu" else None
        self._geometry: RigGeometry | None = None
        self._camera_ids: tuple[tuple[int, ...], torch.Tensor] | None = None

    def geometry(
        self,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        sizes: Sequence[tuple[int, int]],
        image_sizes: Sequence[tuple[int, int]] | None = None,
        image_K: np.ndarray | None = None,
    ) -> RigGeometry:
        """The cached rig geometry for these cameras and depth map sizes (height, width), rebuilt on change.

        `image_K` (N, 3, 3): the colour images' intrinsics; default, each map's K scaled to its image's size.
        """
        K, T_base_cam = np.asarray(K, np.float64).reshape(-1, 3, 3), np.asarray(T_base_cam, np.float64)
        T_base_cam = T_base_cam.reshape(-1, 4, 4)
        if not len(K) == len(T_base_cam) == len(sizes):
            raise ValueError(f"{len(sizes)} depth maps, {len(K)} intrinsics and {len(T_base_cam)} extrinsics")
        image_sizes = list(sizes) if image_sizes is None else list(image_sizes)
        if image_K is None:
            image_K = np.stack(
                [
                    geometry.resize_intrinsics(k, image_w / w, image_h / h)
                    for k, (h, w), (image_h, image_w) in zip(K, sizes, image_sizes, strict=True)
                ]
            )
        image_K = np.asarray(image_K, np.float64).reshape(-1, 3, 3)
        if len(image_K) != len(K):
            raise ValueError(f"{len(K)} depth maps' intrinsics and {len(image_K)} images' intrinsics")
        sampling = (
            Sampling(stride=self.options.stride)
            if self.options.stride
            else Sampling(counts=pixel_counts(sizes, self.options.max_points))
        )
        if self._geometry is None or not self._geometry.matches(K, T_base_cam, sizes, image_sizes, image_K, sampling):
            self._geometry = RigGeometry(K, T_base_cam, sizes, image_sizes, image_K, sampling, self.device)
        return self._geometry

    def fuse(
        self,
        depth: Maps,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        confidence: Maps | None = None,
        images: Maps | None = None,
        image_K: np.ndarray | None = None,
    ) -> FusedPoints:
        """The numpy reference (`test/fusion_reference.py`) on tensors: back-projection and overlap removal, no filters.

        `depth` (N, h, w) or a list of (h, w) (metres, NaN or 0 = none) with `K` (N, 3, 3) at that
        resolution and `T_base_cam` (N, 4, 4); `confidence` like depth; `images` (N, H, W, 3) uint8 (or a list)
        at any size, with their intrinsics `image_K` (N, 3, 3; default: `K` scaled to the image's size,
        a plain resize). A point takes the colour of the image pixel it projects to: for maps of a
        camera the network saw through a canonical placement, only the camera's own K says where that is.
        The kept points are compacted here (a host sync); the node's `cloud` compacts only its packed bytes.
        """
        with torch_threads(self.threads):
            return _kept(*self._every_pixel(depth, K, T_base_cam, confidence, images, image_K))

    def _every_pixel(
        self,
        depth: Maps,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        confidence: Maps | None,
        images: Maps | None,
        image_K: np.ndarray | None,
        limits: bool = False,
    ) -> tuple[FusedPoints, torch.Tensor]:
        """Every sampled pixel as a point, and which of them `fuse` keeps (with `limits`, within the range and
        confidence limits too): sizes fixed by the rig geometry, so nothing here waits for the device."""
        flat_depth, sizes = _flatten(depth)
        flat_depth = flat_depth.to(self.device, torch.float32)
        images = None if images is None else [torch.as_tensor(image) for image in images]
        image_sizes = None if images is None else [im.shape[:2] for im in images]
        rig = self.geometry(K, T_base_cam, sizes, image_sizes, None if images is None else image_K)
        if confidence is None:
            flat_conf = torch.ones_like(flat_depth)
        else:
            flat_conf = _flatten(confidence)[0].to(self.device, torch.float32)
            if flat_conf.shape != flat_depth.shape:
                raise ValueError("confidence maps must have the depth maps' sizes")

        z = flat_depth.index_select(0, rig.pixel)  # index_select: 4x faster than [] here
        valid = torch.isfinite(z) & (z > 0)
        points = torch.empty((3, len(rig)), dtype=torch.float32, device=self.device)
        for slot in rig.slots:
            part = slice(slot.start, slot.end)
            x, y, zz = (rig.rays[k, part] * z[part] for k in range(3))
            for k, row in enumerate(_affine_rows(slot.R, x, y, zz, slot.t)):
                points[k, part] = row
        conf = flat_conf.index_select(0, rig.pixel)
        if self.options.overlap == "most_confident":
            valid &= ~self._overlapped(rig, points, z, conf, flat_depth, flat_conf)
        if limits:
            valid &= self._within_limits(*points, conf)
        if images is None:
            rgb = torch.zeros((len(rig), 3), dtype=torch.uint8, device=self.device)
        else:  # each camera's sampled pixels from its own image: no copy of the images
            rgb = torch.cat(
                [
                    image.to(self.device).reshape(-1, image.shape[-1]).index_select(0, rig.color[slot.start : slot.end])
                    for image, slot in zip(images, rig.slots, strict=True)
                ]
            )[:, :3]
        return FusedPoints(points.T, rgb, rig.camera, conf, rig.local_pixel), valid

    def _overlapped(
        self,
        rig: RigGeometry,
        points: torch.Tensor,
        z: torch.Tensor,
        conf: torch.Tensor,
        flat_depth: torch.Tensor,
        flat_conf: torch.Tensor,
    ) -> torch.Tensor:
        """Points another camera sees on the same surface with more confidence (ties: the lower index).

        Every point of a window is projected and masked (the depth interval, the image), never picked out:
        picking needs the count of the picked ones on the host.
        """
        drop = torch.zeros(len(rig) + 1, dtype=torch.bool, device=self.device)  # the last: a sink for the kept
        for window in rig.windows:
            depth = z.index_select(0, window.index)
            target = rig.slots[window.target]
            qx, qy, qz = _affine_rows(
                target.T_cam_base[:3, :3], *points.index_select(1, window.index), target.T_cam_base[:3, 3]
            )
            u, v = (row / qz for row in _affine_rows(target.K[:2], qx, qy, qz))
            col, row = torch.floor(u + 0.5), torch.floor(v + 0.5)
            hit = (depth >= window.near) & (depth <= window.far) & (qz > 1e-6)
            hit &= (col >= 0) & (col < target.width) & (row >= 0) & (row < target.height)
            # a miss reads the target's first pixel (its row and column may be NaN): its answer is masked out
            row, col = (torch.where(hit, t, 0.0).long() for t in (row, col))
            where = target.depth_offset + row * target.width + col
            d_j, c_j, c_i = (
                flat_depth.index_select(0, where),
                flat_conf.index_select(0, where),
                conf.index_select(0, window.index),
            )
            same_surface = torch.isfinite(d_j) & (d_j > 0) & ((d_j - qz).abs() <= self.options.depth_tolerance * qz)
            j_wins = (c_j > c_i) | ((c_j == c_i) & window.source_after)
            drop.index_fill_(0, torch.where(hit & same_surface & j_wins, window.index, len(rig)), True)
        return drop[:-1]

    def filter(self, fused: FusedPoints) -> FusedPoints:
        """Range and confidence limits, then one point per voxel (the first met), in input order."""
        with torch_threads(self.threads):
            # unbind(1): contiguous rows of the (3, P) points behind the (P, 3) view; a norm over dim 1 is 10x slower
            keep = self._within_limits(*fused.points.unbind(1), fused.confidence)
            return _kept(fused, self._first_in_voxel(fused.points, keep))

    def _within_limits(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, confidence: torch.Tensor
    ) -> torch.Tensor:
        """Points within `max_range_m` of the base origin and at least `min_confidence` confident."""
        keep = x * x + y * y + z * z <= self.options.max_range_m**2
        if self.options.min_confidence > 0:
            keep &= confidence >= self.options.min_confidence
        return keep

    def _first_in_voxel(self, points: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """`keep` less the kept points whose voxel holds an earlier kept point (all of `keep` when voxels are off).

        A stable sort of voxel keys puts each voxel's points together in input order, its first one
        where the key changes: no `unique`, whose size (the number of voxels) only the host could know.
        """
        if self.options.voxel_size_m <= 0 or len(keep) == 0:
            return keep
        # (3, P): the coordinates' contiguous rows; garbage where not kept (NaN, far away), masked below
        cells = torch.floor(points.T / self.options.voxel_size_m).long()
        lowest = torch.where(keep, cells, torch.iinfo(torch.int64).max).amin(dim=1, keepdim=True)
        cells = torch.where(keep, cells - lowest, 0)
        extent = cells.amax(dim=1) + 1
        key = torch.where(keep, (cells[0] * extent[1] + cells[1]) * extent[2] + cells[2], -1)
        key, order = torch.sort(key, stable=True)
        first = torch.ones_like(keep)
        first[1:] = key[1:] != key[:-1]
        return keep & torch.empty_like(keep).index_copy_(0, order, first)

    def pack(
        self, fused: FusedPoints, camera_ids: Sequence[int] | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The points as `FUSED_CLOUD_DTYPE` bytes (P * 24 uint8) on their device, written into `out` when given.

        `camera_ids[k]` is what the `camera` field says for the k-th input camera (default k).
        """
        with torch_threads(self.threads):
            return self._pack(fused, camera_ids, out)

    def _pack(self, fused: FusedPoints, camera_ids: Sequence[int] | None, out: torch.Tensor | None) -> torch.Tensor:
        count = len(fused.points)
        itemsize = FUSED_CLOUD_DTYPE.itemsize
        if out is not None and out.numel() != count * itemsize:
            raise ValueError(f"out holds {out.numel()} bytes, the cloud needs {count * itemsize}")
        if out is None:
            out = torch.empty(count * itemsize, dtype=torch.uint8, device=fused.points.device)
        words = out.view(torch.int32).view(count, itemsize // 4)
        words[:, :3] = fused.points.view(torch.int32)
        rgb = fused.rgb.to(torch.int32)
        words[:, 3] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        camera = fused.camera if camera_ids is None else self._camera_table(camera_ids).index_select(0, fused.camera)
        words[:, 4] = camera.to(torch.int32)  # the uint8 field and its three zero bytes of padding
        words[:, 5] = fused.confidence.view(torch.int32)
        return words.view(torch.uint8).reshape(-1)

    def _camera_table(self, camera_ids: Sequence[int]) -> torch.Tensor:
        """`camera_ids` on the device, copied there only when they change: a copy from the host waits for the device."""
        ids = tuple(camera_ids)
        if self._camera_ids is None or self._camera_ids[0] != ids:
            self._camera_ids = ids, torch.tensor(ids, dtype=torch.int64).to(self.device)
        return self._camera_ids[1]

    def packed(
        self,
        depth: Maps,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        confidence: Maps | None = None,
        images: Maps | None = None,
        camera_ids: Sequence[int] | None = None,
        image_K: np.ndarray | None = None,
    ) -> PackedCloud:
        """fuse + filter + pack without one host sync: every sampled pixel's row, the cloud's first (see `PackedCloud`).

        Once the rig geometry is cached (and `camera_ids` unchanged), it only queues work on the device.
        """
        with torch_threads(self.threads):
            fused, keep = self._every_pixel(depth, K, T_base_cam, confidence, images, image_K, limits=True)
            keep = self._first_in_voxel(fused.points, keep)
            # packed in input order, then the 24-byte rows moved as 3 int64 (as 6 int32 they take 2x as long)
            rows = self._pack(fused, camera_ids, None).view(torch.int64).view(len(keep), -1)
            moved, count = _kept_first(rows, keep)
            return PackedCloud(moved.view(torch.uint8).reshape(-1), count)

    def cloud(
        self,
        depth: Maps,
        K: np.ndarray,
        T_base_cam: np.ndarray,
        confidence: Maps | None = None,
        images: Maps | None = None,
        camera_ids: Sequence[int] | None = None,
        image_K: np.ndarray | None = None,
    ) -> torch.Tensor:
        """The cloud's bytes on the device (see `fuse` for the arguments): `packed`, cut to the cloud's points.

        The cut is the set's one host sync, inherent: the message's size is the point count, which only
        the device knows. Everything before it is queued without waiting, so a GPU runs ahead until here.
        """
        rows, count = self.packed(depth, K, T_base_cam, confidence, images, camera_ids, image_K)
        return rows[: int(count) * FUSED_CLOUD_DTYPE.itemsize]


def _kept_first(rows: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` with the kept ones first, in input order (the others' places hold scratch), and their count (0-d).

    Each kept row moves to the number of kept rows before it, every other row to one spare row past
    the end: sizes fixed by `rows`, where nonzero would make the host wait for the device's count.
    """
    kept_so_far = keep.cumsum(0)
    destination = torch.where(keep, kept_so_far - 1, len(rows))
    moved = rows.new_empty((len(rows) + 1, *rows.shape[1:])).index_copy_(0, destination, rows)
    return moved[:-1], keep.sum()


def _kept(fused: FusedPoints, keep: torch.Tensor) -> FusedPoints:
    """The kept points, in input order, compacted: nonzero reads their count on the host (one sync)."""
    return fused.select(keep.nonzero()[:, 0])


def cloud_points(packed: torch.Tensor) -> np.ndarray:
    """Packed cloud bytes as a `FUSED_CLOUD_DTYPE` structured array (a view on the CPU, one copy from a GPU)."""
    return packed.cpu().numpy().view(FUSED_CLOUD_DTYPE)
