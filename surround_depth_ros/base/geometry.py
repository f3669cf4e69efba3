"""Vectorized camera geometry shared by readers, training and the node.

One implementation of projection, back-projection and rigid transforms serves numpy (readers,
ground truth, the node's cloud) and torch (training, batched inference), so that the depth a
network is trained on and the cloud the node publishes use the same conventions.

Conventions:
- `T_a_b` is a 4x4 rigid transform mapping points from frame b to frame a.
- Camera frames are REP 103 optical frames (z forward, x right, y down).
- Pixel centres lie at integer coordinates: pixel (col, row) covers [col - 0.5, col + 0.5) and
  a projected point (u, v) falls in pixel (round(u), round(v)). This is the OpenCV / ROS
  CameraInfo convention, and `cv2.resize` samples with it, so `resize_intrinsics` maps
  u' = sx * (u + 0.5) - 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor
else:
    Array = Any


def _is_torch(value: object) -> bool:
    return type(value).__module__.startswith("torch")


def _as_array(value: Array) -> Array:
    """Tensors stay tensors; anything else (lists, scalars) becomes a numpy array."""
    return value if _is_torch(value) else np.asarray(value)


def _swap_last(matrix: Array) -> Array:
    return matrix.transpose(-1, -2) if _is_torch(matrix) else np.swapaxes(matrix, -1, -2)


def _matmul_points(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points (..., P, 3) times M^T (..., k, 3) -> (..., P, k) column by column.

    NumPy's matmul has no fast path for an inner dimension of 3 (about 25x slower than this on
    a 1600x900 image's worth of points), so the small product is written out.
    """
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    rows = [M[..., i, 0, None] * x + M[..., i, 1, None] * y + M[..., i, 2, None] * z for i in range(M.shape[-2])]
    return np.stack(rows, axis=-1)


def _check_last_dims(value: Array, dims: tuple[int, ...], what: str) -> None:
    shape = tuple(value.shape)
    if len(shape) < len(dims) or any(d is not None and s != d for s, d in zip(shape[-len(dims) :], dims, strict=True)):
        wanted = "(..., " + ", ".join("N" if d is None else str(d) for d in dims) + ")"
        raise ValueError(f"{what} must have shape {wanted}, got {shape}")


# --------------------------------------------------------------------------- rotations


def quaternion_to_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    """Rotation matrix (3, 3) of a unit quaternion (w, x, y, z); normalizes slightly off-unit input."""
    q = np.array([w, x, y, z], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion (w, x, y, z) = {q.tolist()} has no direction (norm {norm})")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix (Shepperd's method, stable near 180 deg)."""
    R = np.asarray(rotation, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3), got {R.shape}")
    trace = np.trace(R)
    diagonal = np.diag(R)
    k = int(np.argmax([trace, *diagonal]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = k - 1
        j, m = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + R[i, i] - R[j, j] - R[m, m], 1e-300))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (R[m, j] - R[j, m]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + m] = (R[m, i] + R[i, m]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), angles in radians: the URDF / tf2 `setRPY` convention."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


# --------------------------------------------------------------------------- rigid transforms


def make_transform(rotation: Array, translation: Array) -> Array:
    """4x4 transform(s) from rotation (..., 3, 3) and translation (..., 3); numpy or torch."""
    rotation, translation = _as_array(rotation), _as_array(translation)
    _check_last_dims(rotation, (3, 3), "rotation")
    _check_last_dims(translation, (3,), "translation")
    if _is_torch(rotation):
        import torch

        batch = torch.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
        T = torch.zeros((*batch, 4, 4), dtype=rotation.dtype, device=rotation.device)
    else:
        rotation, translation = np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64)
        batch = np.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
        T = np.zeros((*batch, 4, 4))
    T[..., :3, :3] = rotation
    T[..., :3, 3] = translation
    T[..., 3, 3] = 1.0
    return T


def invert_transform(T: Array) -> Array:
    """Inverse of rigid transform(s) (..., 4, 4) using R^T (exact for rotations, no general inverse)."""
    T = _as_array(T)
    _check_last_dims(T, (4, 4), "transform")
    R_inv = _swap_last(T[..., :3, :3])
    t_inv = -(R_inv @ T[..., :3, 3:4])[..., 0]
    return make_transform(R_inv, t_inv)


def transform_points(T: Array, points: Array) -> Array:
    """Apply transform(s) T (..., 4, 4) to points (..., P, 3) -> (..., P, 3); numpy or torch."""
    T, points = _as_array(T), _as_array(points)
    _check_last_dims(T, (4, 4), "transform")
    _check_last_dims(points, (None, 3), "points")
    if not _is_torch(points):
        dtype = np.result_type(points.dtype, np.float32)
        T = np.asarray(T).astype(dtype, copy=False)
        return (_matmul_points(T[..., :3, :3], points.astype(dtype, copy=False)) + T[..., None, :3, 3]).astype(dtype)
    T = T.to(points)
    return points @ _swap_last(T[..., :3, :3]) + T[..., None, :3, 3]


# --------------------------------------------------------------------------- projection


def project_points(K: Array, points_cam: Array, eps: float = 1e-6) -> tuple[Array, Array]:
    """Pinhole projection of camera-frame points (..., P, 3) with K (..., 3, 3) -> (uv (..., P, 2), z (..., P)).

    Points with z <= eps get uv = NaN (numpy) / inf-free garbage masked by z (torch uses z.clamp);
    callers keep `z > eps` anyway.
    """
    K, points_cam = _as_array(K), _as_array(points_cam)
    _check_last_dims(K, (3, 3), "K")
    _check_last_dims(points_cam, (None, 3), "points_cam")
    if _is_torch(points_cam):
        K = K.to(points_cam)
        pix = points_cam @ _swap_last(K)
        z = points_cam[..., 2]
        return pix[..., :2] / z.clamp(min=eps)[..., None], z
    pix = _matmul_points(np.asarray(K, dtype=np.result_type(points_cam.dtype, np.float32))[..., :2, :], points_cam)
    z = points_cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.where((z > eps)[..., None], pix[..., :2] / z[..., None], np.nan)
    return uv, z


def points_to_depth_map(
    points_cam: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    max_depth: float | None = None,
    min_depth: float = 1e-3,
    values: np.ndarray | None = None,
    return_index: bool = False,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Sparse depth image (height, width) float32 of camera-frame points, 0 where no point lands.

    The nearest point wins each pixel (sorted, no loop over points). `values` (P, C) gives
    extra channels taken from the winning point, returned as (C, H, W) float32 after the depth;
    `return_index` appends an int64 (H, W) map of the winning point's index (-1 = empty).
    """
    points_cam = np.asarray(points_cam)
    if points_cam.ndim != 2 or points_cam.shape[1] != 3:
        raise ValueError(f"points_cam must have shape (P, 3), got {points_cam.shape}")
    if values is not None:
        values = np.asarray(values)
        values = values[:, None] if values.ndim == 1 else values
        if values.ndim != 2 or len(values) != len(points_cam):
            raise ValueError(f"values must have shape (P, C) with P = {len(points_cam)}, got {values.shape}")
    uv, z = project_points(np.asarray(K, dtype=np.float64), points_cam.astype(np.float64, copy=False))
    keep = z > min_depth
    if max_depth is not None:
        keep &= z <= max_depth
    cols = np.floor(uv[:, 0] + 0.5)
    rows = np.floor(uv[:, 1] + 0.5)
    with np.errstate(invalid="ignore"):
        keep &= (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    index = np.flatnonzero(keep)
    pixel = rows[index].astype(np.int64) * width + cols[index].astype(np.int64)
    order = np.lexsort((z[index], pixel))  # by pixel, nearest first within a pixel
    pixel, index = pixel[order], index[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    pixel, index = pixel[first], index[first]

    depth = np.zeros(height * width, dtype=np.float32)
    depth[pixel] = z[index]
    outputs: list[np.ndarray] = [depth.reshape(height, width)]
    if values is not None:
        channels = np.zeros((values.shape[1], height * width), dtype=np.float32)
        channels[:, pixel] = values[index].T
        outputs.append(channels.reshape(-1, height, width))
    if return_index:
        winner = np.full(height * width, -1, dtype=np.int64)
        winner[pixel] = index
        outputs.append(winner.reshape(height, width))
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def pixel_rays(K: Array, width: int, height: int) -> Array:
    """Camera-frame rays with z = 1 through every pixel centre, shape (..., H*W, 3), row-major."""
    K = _as_array(K)
    _check_last_dims(K, (3, 3), "K")
    if _is_torch(K):
        import torch

        rows, cols = torch.meshgrid(
            torch.arange(height, dtype=K.dtype, device=K.device),
            torch.arange(width, dtype=K.dtype, device=K.device),
            indexing="ij",
        )
        pixels = torch.stack([cols.reshape(-1), rows.reshape(-1), torch.ones_like(cols).reshape(-1)], dim=-1)
        return pixels @ _swap_last(torch.linalg.inv(K))
    K = np.asarray(K, dtype=np.float64)
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([cols.ravel(), rows.ravel(), np.ones(height * width)], axis=-1)
    return _matmul_points(np.linalg.inv(K), pixels)


def backproject_depth(depth: Array, K: Array) -> Array:
    """Camera-frame points (..., H*W, 3) of depth maps (..., H, W) with K (..., 3, 3); numpy or torch.

    Depth is the z coordinate (REP 118); invalid pixels (0 or NaN) give points at the origin or
    NaN and are left to the caller to mask, so that the output keeps a fixed pixel layout.
    """
    depth, K = _as_array(depth), _as_array(K)
    _check_last_dims(depth, (None, None), "depth")
    _check_last_dims(K, (3, 3), "K")
    height, width = depth.shape[-2:]
    if _is_torch(depth):
        rays = pixel_rays(K.to(depth), width, height)
        return rays * depth.reshape(*depth.shape[:-2], height * width, 1)
    rays = pixel_rays(K, width, height).astype(np.float32)
    return rays * np.asarray(depth, dtype=np.float32).reshape(*depth.shape[:-2], height * width, 1)


# --------------------------------------------------------------------------- intrinsics under resize / crop


def resize_intrinsics(K: Array, sx: float, sy: float) -> Array:
    """K of an image scaled by (sx, sy) with pixel centres at integers: c' = s (c + 0.5) - 0.5, f' = s f."""
    K = _as_array(K)
    _check_last_dims(K, (3, 3), "K")
    K = K.clone() if _is_torch(K) else np.array(K, dtype=np.float64)
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    K[..., 0, 2] += 0.5 * sx - 0.5
    K[..., 1, 2] += 0.5 * sy - 0.5
    return K


def crop_intrinsics(K: Array, left: float, top: float) -> Array:
    """K of an image cropped so that original pixel (left, top) becomes (0, 0)."""
    K = _as_array(K)
    _check_last_dims(K, (3, 3), "K")
    K = K.clone() if _is_torch(K) else np.array(K, dtype=np.float64)
    K[..., 0, 2] -= left
    K[..., 1, 2] -= top
    return K


def calibration_for_maps(k: Sequence[float], p: Sequence[float], K_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A CameraInfo's K (9 values) and P (12) for maps whose camera matrix is `K_maps` (`DepthOutputs.cameras[i].K`).

    REP 118 lets a depth image be published at another resolution than its camera's when its
    CameraInfo describes it. The maps are the image under a scale and shift of its pixels (a resize,
    or the network's placement inside a border), A = K_maps K^-1; P becomes A P, so that a stereo
    or rectified P keeps its meaning.
    """
    K = np.reshape(np.asarray(k, dtype=np.float64), (3, 3))
    A = np.asarray(K_maps, dtype=np.float64) @ np.linalg.inv(K)
    return (A @ K).reshape(-1), (A @ np.reshape(np.asarray(p, dtype=np.float64), (3, 4))).reshape(-1)


def resample_to_intrinsics(
    image: np.ndarray, K_source: np.ndarray, K_target: np.ndarray, size: tuple[int, int], fill: float = 0
) -> np.ndarray:
    """`image` (H, W[, C]) as a camera at the same pose with `K_target` and `size` (height, width) sees it.

    Nearest source pixel, so depth is never blended across an edge; `fill` where the target pixel
    lies outside the source image. Used to compare depth published at another resolution (REP 118,
    its CameraInfo's K) with a camera-sized ground truth.
    """
    height, width = size
    A = np.asarray(K_source, np.float64) @ np.linalg.inv(np.asarray(K_target, np.float64))
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    w = A[2, 0] * u + A[2, 1] * v + A[2, 2]
    cols = np.rint((A[0, 0] * u + A[0, 1] * v + A[0, 2]) / w).astype(np.int64)
    rows = np.rint((A[1, 0] * u + A[1, 1] * v + A[1, 2]) / w).astype(np.int64)
    inside = (cols >= 0) & (cols < image.shape[1]) & (rows >= 0) & (rows < image.shape[0])
    out = np.full((height, width, *image.shape[2:]), fill, dtype=image.dtype)
    out[inside] = image[rows[inside], cols[inside]]
    return out
