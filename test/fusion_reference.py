"""The numpy reference of the fused cloud, written pixel by pixel in the plainest way, for test_fusion.

`CloudFusion` (the node's tensor path) must give the same points, colours, camera indices and
confidences; the two share no code beyond the projection helpers of `geometry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from surround_depth_ros.base import geometry as g
from surround_depth_ros.sensors.rig import CameraRig

# A depth pixel's centre exactly on the edge between two image pixels takes the right / lower one.
COLOR_TIE_PX = 1e-6


@dataclass
class FusedCloud:
    """All cameras' depth back-projected into the base frame, one row per kept pixel."""

    points_base: np.ndarray  # (P, 3) float32
    rgb: np.ndarray  # (P, 3) uint8
    camera_index: np.ndarray  # (P,) int16
    confidence: np.ndarray  # (P,) float32

    def __len__(self) -> int:
        return len(self.points_base)


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def fuse_depth_maps(
    depths: list[np.ndarray] | np.ndarray,
    rig: CameraRig,
    colors: list[np.ndarray] | None = None,
    confidences: list[np.ndarray] | None = None,
    overlap: str = "keep_all",
    stride: int = 1,
    depth_tolerance: float = 0.1,
    pixels: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    color_K: np.ndarray | None = None,
) -> FusedCloud:
    """One cloud in the rig's base frame from per-camera depth maps (0 or NaN = invalid).

    `overlap="most_confident"` drops a point of camera i when another camera j sees the same
    surface there (j's depth at the projected pixel within `depth_tolerance` relative of the
    point's depth) and j is more confident, ties going to the lower camera index, so that
    overlapping regions appear once. A point that j sees occluded is kept: j has no say on it.
    Camera pairs that see nothing of each other on a coarse check (`CameraRig.overlap_matrix`
    from 1 m outwards) are not compared. `stride` keeps every stride-th pixel in both directions;
    `pixels` (rows, columns per camera, row-major) names the sampled pixels instead. `colors` may
    have any size: a point takes the colour of the image pixel it projects to through `color_K`
    (N, 3, 3; default the camera's K scaled to its image's size), the nearest one, clamped to the image.
    """
    if overlap not in ("keep_all", "most_confident"):
        raise ValueError(f"overlap must be 'keep_all' or 'most_confident', got {overlap!r}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n = len(rig.cameras)
    for what, maps in (("depth maps", depths), ("color images", colors), ("confidence maps", confidences)):
        if maps is not None and len(maps) != n:
            raise ValueError(f"{len(maps)} {what} for a rig of {n} cameras")
    depths = [np.asarray(d, dtype=np.float32) for d in depths]
    for i, cam in enumerate(rig.cameras):
        if depths[i].shape != (cam.height, cam.width):
            raise ValueError(
                f"camera {cam.name}: depth map is {depths[i].shape[1]}x{depths[i].shape[0]}, rig says "
                f"{cam.width}x{cam.height} (use rig.scaled(width, height) for network-sized outputs)"
            )
        if confidences is not None and np.shape(confidences[i]) != depths[i].shape:
            raise ValueError(
                f"camera {cam.name}: confidence map shape {np.shape(confidences[i])} does not match depth "
                f"{depths[i].shape}"
            )
    conf_maps = [
        np.ones_like(d) if confidences is None else np.asarray(confidences[i], np.float32) for i, d in enumerate(depths)
    ]

    cam_from_base = [g.invert_transform(cam.T_base_cam) for cam in rig.cameras]
    # cameras that can see each other's points at all (coarse, from 1 m to far away): skip the rest
    may_see = rig.overlap_matrix(depths=(1.0, 3.0, 10.0, 30.0, 100.0, 1000.0), grid=16) > 0
    parts: list[tuple[np.ndarray, ...]] = []
    for i, cam in enumerate(rig.cameras):
        if pixels is None:
            rows, cols = (a.reshape(-1) for a in np.mgrid[0 : cam.height : stride, 0 : cam.width : stride])
        else:
            rows, cols = pixels[i]
        valid = np.flatnonzero(_valid_depth(depths[i][rows, cols]))
        rows, cols = rows[valid], cols[valid]
        z, conf = depths[i][rows, cols], conf_maps[i][rows, cols]
        homogeneous = np.stack([cols, rows, np.ones_like(cols)], -1).astype(np.float32)
        rays = homogeneous @ np.linalg.inv(cam.K).astype(np.float32).T
        points = g.transform_points(cam.T_base_cam, rays * z[:, None])
        if overlap == "most_confident":
            drop = np.zeros(len(points), dtype=bool)
            for j, other in enumerate(rig.cameras):
                if j == i or not may_see[i, j]:
                    continue
                uv, z_j = g.project_points(other.K, g.transform_points(cam_from_base[j], points))
                col_j, row_j = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)
                with np.errstate(invalid="ignore"):
                    inside = (z_j > 0) & (col_j >= 0) & (col_j < other.width) & (row_j >= 0) & (row_j < other.height)
                hit = np.flatnonzero(inside)
                r, c = row_j[hit].astype(np.int64), col_j[hit].astype(np.int64)
                d_j, c_j = depths[j][r, c], conf_maps[j][r, c]
                with np.errstate(invalid="ignore"):
                    same_surface = _valid_depth(d_j) & (np.abs(d_j - z_j[hit]) <= depth_tolerance * z_j[hit])
                    j_wins = (c_j > conf[hit]) | ((c_j == conf[hit]) & (j < i))
                drop[hit[same_surface & j_wins]] = True
            keep = np.flatnonzero(~drop)
            rows, cols, points, conf = rows[keep], cols[keep], points[keep], conf[keep]
        if colors is None:
            rgb = np.zeros((len(points), 3), np.uint8)
        else:
            image = np.asarray(colors[i])
            height, width = image.shape[:2]
            K_image = (
                g.resize_intrinsics(cam.K, width / cam.width, height / cam.height) if color_K is None else color_K[i]
            )
            # every point of the pixel's ray projects to the same image pixel
            ray = np.stack([cols, rows, np.ones_like(cols)], -1).astype(np.float64) @ np.linalg.inv(cam.K).T
            uv = np.floor(g.project_points(K_image, ray)[0] + 0.5 + COLOR_TIE_PX).astype(np.int64)
            rgb = image[np.clip(uv[:, 1], 0, height - 1), np.clip(uv[:, 0], 0, width - 1), :3]
        parts.append((points, rgb.astype(np.uint8), np.full(len(points), i, np.int16), conf.astype(np.float32)))
    points, rgb, index, conf = (np.concatenate(column) for column in zip(*parts, strict=True))
    return FusedCloud(points.astype(np.float32).reshape(-1, 3), rgb.reshape(-1, 3), index, conf)


def cylinder_depths(rig: CameraRig, radius: float) -> list[np.ndarray]:
    """Exact depth of a vertical cylinder around the base origin, per camera (ray-cylinder intersection)."""
    depths = []
    for cam in rig.cameras:
        rays = g.pixel_rays(cam.K, cam.width, cam.height)  # z = 1 in the camera frame
        d = rays @ cam.T_base_cam[:3, :3].T
        o = cam.T_base_cam[:3, 3]
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = 2 * (o[0] * d[:, 0] + o[1] * d[:, 1])
        c = o[0] ** 2 + o[1] ** 2 - radius**2
        t = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
        depths.append(t.reshape(cam.height, cam.width).astype(np.float32))
    return depths
