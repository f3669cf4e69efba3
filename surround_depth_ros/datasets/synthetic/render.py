"""Render the world into a rig camera: RGB uint8 and exact metric depth (z in the optical frame).

Pixel centres sit at integer pixel coordinates (the convention of `geometry`), so a pixel (u, v)
with depth z back-projects to z * K^-1 [u, v, 1]. Camera rays have z = 1 in the optical frame,
which makes the ray parameter of the nearest hit the depth itself. Pixels are cast in tiles,
each against only the primitives inside its own frustum: the caster's cost is rays x primitives.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from surround_depth_ros.base.geometry import pixel_rays
from surround_depth_ros.datasets.synthetic.appearance import Lighting, shade, to_srgb8
from surround_depth_ros.datasets.synthetic.raycast import RayBundles, cast_rays
from surround_depth_ros.datasets.synthetic.world import Scene
from surround_depth_ros.sensors.rig import Camera

DEFAULT_MAX_RANGE_M = 250.0
_TILES = 1000


def frustum_planes(corners: np.ndarray) -> np.ndarray:
    """Inward unit normals (..., 4, 3) of the side planes of pyramids with apex at the origin.

    `corners` (..., 4, 3) are rays through the four corners of each pyramid, in order around it.
    """
    normals = np.cross(corners, np.roll(corners, -1, axis=-2))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    inward = np.sign(np.einsum("...kj,...j->...k", normals, corners.mean(-2)))
    return normals * inward[..., None]


@dataclass(frozen=True)
class _PixelGrid:
    """What a camera's rendering needs that depends only on its intrinsics: cached across frames."""

    rays: torch.Tensor  # (H*W, 3) optical-frame rays with z = 1, row-major
    group: torch.Tensor  # (H*W,) tile of each pixel
    tile_corners: np.ndarray  # (G, 4, 3) optical-frame rays through each tile's corners
    frame_corners: np.ndarray  # (4, 3) rays through the image's corners


@functools.lru_cache(maxsize=32)
def _pixel_grid(K_bytes: bytes, width: int, height: int) -> _PixelGrid:
    """Tiles of about 1/1000 of the image: enough to cull tightly, few enough for a cheap tile x primitive test."""
    K = np.frombuffer(K_bytes, dtype=np.float64).reshape(3, 3)
    K_inv = np.linalg.inv(K)
    size = max(8, int(np.ceil(np.sqrt(width * height / _TILES))))
    nx, ny = -(-width // size), -(-height // size)
    rows, cols = np.mgrid[0:height, 0:width]
    ty, tx = np.mgrid[0:ny, 0:nx]
    u0, v0 = tx * size - 0.5, ty * size - 0.5
    u1, v1 = np.minimum(u0 + size, width - 0.5), np.minimum(v0 + size, height - 0.5)
    corners = np.stack([np.stack(uv, -1) for uv in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))], -2).reshape(-1, 4, 2)
    w, h = width - 0.5, height - 0.5
    frame = np.array([[-0.5, -0.5], [w, -0.5], [w, h], [-0.5, h]])

    def rays_through(uv: np.ndarray) -> np.ndarray:
        return np.concatenate([uv, np.ones((*uv.shape[:-1], 1))], -1) @ K_inv.T

    return _PixelGrid(
        torch.as_tensor(pixel_rays(K, width, height), dtype=torch.float32),
        torch.as_tensor(((rows // size) * nx + cols // size).ravel()),
        rays_through(corners),
        rays_through(frame),
    )


def _grid(camera: Camera) -> _PixelGrid:
    return _pixel_grid(np.ascontiguousarray(camera.K, dtype=np.float64).tobytes(), camera.width, camera.height)


def tile_bundles(camera: Camera, R_world_cam: np.ndarray, device: torch.device | str = "cpu") -> RayBundles:
    """The camera's pixels (row-major) grouped into square tiles, each bounded by its own frustum (world frame)."""
    grid = _grid(camera)
    planes = frustum_planes(grid.tile_corners @ R_world_cam.T)
    outer = frustum_planes(grid.frame_corners @ R_world_cam.T)
    return RayBundles(grid.group.to(device), planes, outer)


def render_camera(
    scene: Scene,
    camera: Camera,
    T_world_cam: np.ndarray,
    lighting: Lighting,
    max_range_m: float = DEFAULT_MAX_RANGE_M,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H,W,3) uint8 and depth (H,W) float32 metres (0 = nothing within `max_range_m`) of one camera."""
    rays_cam = _grid(camera).rays.to(device)
    R = torch.as_tensor(T_world_cam[:3, :3], dtype=torch.float32, device=device)
    rays_world = rays_cam @ R.T
    bundles = tile_bundles(camera, T_world_cam[:3, :3], device)
    hits = cast_rays(scene, T_world_cam[:3, 3], rays_world, max_range_m, bundles)
    rgb = to_srgb8(shade(hits, rays_world, scene, lighting))
    depth = torch.where(hits.hit, hits.t, 0.0)
    shape = (camera.height, camera.width)
    return rgb.reshape(*shape, 3).cpu().numpy(), depth.reshape(shape).cpu().numpy().astype(np.float32)
