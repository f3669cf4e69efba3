"""Geometry: rotations, transforms, projection round trips, intrinsics under resize/crop, depth maps, fusion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from surround_depth_ros.base import geometry as g
from surround_depth_ros.sensors.rig import Camera, crop_camera, resize_image_and_camera

RNG = np.random.default_rng(0)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Rodrigues' formula from a random axis and angle: independent of the quaternion code."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-np.pi, np.pi)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def random_transform(rng: np.random.Generator) -> np.ndarray:
    return g.make_transform(random_rotation(rng), rng.normal(size=3) * 5)


def test_quaternion_to_matrix_matches_axis_angle():
    for _ in range(20):
        axis = RNG.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = RNG.uniform(-np.pi, np.pi)
        w, xyz = np.cos(angle / 2), np.sin(angle / 2) * axis
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        expected = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
        np.testing.assert_allclose(g.quaternion_to_matrix(w, *xyz), expected, atol=1e-12)
        # non-unit input is normalized
        np.testing.assert_allclose(g.quaternion_to_matrix(3 * w, *(3 * xyz)), expected, atol=1e-12)


def test_matrix_to_quaternion_round_trip_including_half_turns():
    rotations = [random_rotation(RNG) for _ in range(20)]
    rotations += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
    for R in rotations:
        q = g.matrix_to_quaternion(R)
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(g.quaternion_to_matrix(*q), R, atol=1e-12)


def test_quaternion_without_direction_is_an_error():
    with pytest.raises(ValueError, match="no direction"):
        g.quaternion_to_matrix(0, 0, 0, 0)


def test_rpy_matches_elementary_rotations():
    roll, pitch, yaw = 0.3, -0.7, 2.1
    c, s = np.cos, np.sin
    Rx = np.array([[1, 0, 0], [0, c(roll), -s(roll)], [0, s(roll), c(roll)]])
    Ry = np.array([[c(pitch), 0, s(pitch)], [0, 1, 0], [-s(pitch), 0, c(pitch)]])
    Rz = np.array([[c(yaw), -s(yaw), 0], [s(yaw), c(yaw), 0], [0, 0, 1]])
    np.testing.assert_allclose(g.rpy_to_matrix(roll, pitch, yaw), Rz @ Ry @ Rx, atol=1e-12)


def test_transform_points_and_inverse_round_trip_batched():
    T = np.stack([random_transform(RNG) for _ in range(4)])  # (4, 4, 4)
    points = RNG.normal(size=(4, 50, 3)) * 10
    moved = g.transform_points(T, points)
    homogeneous = np.concatenate([points, np.ones((4, 50, 1))], axis=-1)
    np.testing.assert_allclose(moved, np.einsum("bij,bpj->bpi", T, homogeneous)[..., :3], atol=1e-10)
    np.testing.assert_allclose(g.transform_points(g.invert_transform(T), moved), points, atol=1e-10)
    np.testing.assert_allclose(T @ g.invert_transform(T), np.broadcast_to(np.eye(4), T.shape), atol=1e-12)


def test_torch_equals_numpy():
    T = np.stack([random_transform(RNG) for _ in range(3)])
    points = RNG.normal(size=(3, 40, 3)) * 10
    K = np.array([[500.0, 0, 320], [0, 480, 240], [0, 0, 1]])
    np.testing.assert_allclose(
        g.transform_points(torch.from_numpy(T), torch.from_numpy(points)).numpy(),
        g.transform_points(T, points),
        atol=1e-10,
    )
    np.testing.assert_allclose(g.invert_transform(torch.from_numpy(T)).numpy(), g.invert_transform(T), atol=1e-12)
    front = points + np.array([0, 0, 40.0])
    uv_t, z_t = g.project_points(torch.from_numpy(K), torch.from_numpy(front))
    uv_n, z_n = g.project_points(K, front)
    np.testing.assert_allclose(uv_t.numpy(), uv_n, atol=1e-9)
    np.testing.assert_allclose(z_t.numpy(), z_n)
    depth = RNG.uniform(1, 50, size=(12, 16))
    np.testing.assert_allclose(
        g.backproject_depth(torch.from_numpy(depth), torch.from_numpy(K)).numpy(),
        g.backproject_depth(depth, K),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        g.resize_intrinsics(torch.from_numpy(K), 0.5, 0.25).numpy(), g.resize_intrinsics(K, 0.5, 0.25)
    )


def test_project_backproject_round_trip_numpy_and_batched_torch():
    K = np.array([[300.0, 0.0, 63.5], [0.0, 310.0, 47.2], [0.0, 0.0, 1.0]])
    depth = RNG.uniform(0.5, 80.0, size=(30, 40)).astype(np.float32)
    points = g.backproject_depth(depth, K)
    assert points.shape == (30 * 40, 3)
    uv, z = g.project_points(K, points)
    rows, cols = np.mgrid[0:30, 0:40]
    np.testing.assert_allclose(uv[:, 0], cols.ravel(), atol=1e-3)
    np.testing.assert_allclose(uv[:, 1], rows.ravel(), atol=1e-3)
    np.testing.assert_allclose(z, depth.ravel(), rtol=1e-6)

    # the layout the node and training use: (B, N, H, W) depth with (B, N, 3, 3) K
    Ks = torch.tensor(K).repeat(2, 3, 1, 1)
    Ks[1, 2, 0, 0] = 150.0
    depths = torch.from_numpy(RNG.uniform(1, 60, size=(2, 3, 30, 40)))
    batched = g.backproject_depth(depths, Ks)
    assert batched.shape == (2, 3, 1200, 3)
    uv_b, z_b = g.project_points(Ks, batched)
    torch.testing.assert_close(uv_b[1, 2, :, 0], torch.from_numpy(cols.ravel()).double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(z_b, depths.reshape(2, 3, -1))
    np.testing.assert_allclose(
        batched[1, 2].numpy(), g.backproject_depth(depths[1, 2].numpy(), Ks[1, 2].numpy()), rtol=1e-5
    )


def test_project_points_marks_points_behind_the_camera():
    uv, z = g.project_points(np.eye(3), np.array([[1.0, 2.0, -3.0], [1.0, 2.0, 2.0]]))
    assert np.isnan(uv[0]).all() and z[0] == -3.0
    np.testing.assert_allclose(uv[1], [0.5, 1.0])


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., N, 3\), got \(5, 4\)"):
        g.transform_points(np.eye(4), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"transform must have shape \(\.\.\., 4, 4\)"):
        g.invert_transform(np.eye(3))
    with pytest.raises(ValueError, match="K must have shape"):
        g.project_points(np.eye(4), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"points_cam must have shape \(P, 3\)"):
        g.points_to_depth_map(np.zeros((5, 2)), np.eye(3), 4, 4)


def test_resize_intrinsics_matches_direct_computation_and_cv2():
    K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
    point = np.array([[3.2, -1.1, 17.0]])
    uv, _ = g.project_points(K, point)
    sx, sy = 640 / 1600, 352 / 900
    uv_resized, _ = g.project_points(g.resize_intrinsics(K, sx, sy), point)
    np.testing.assert_allclose(uv_resized[0], [sx * (uv[0, 0] + 0.5) - 0.5, sy * (uv[0, 1] + 0.5) - 0.5], atol=1e-9)

    # cv2.resize samples the same way: an image whose value is its own column coordinate keeps the mapping
    ramp = np.tile(np.arange(64, dtype=np.float32), (8, 1))
    up = cv2.resize(ramp, (160, 8), interpolation=cv2.INTER_LINEAR)
    scale = 160 / 64
    cols = np.arange(10, 150)
    np.testing.assert_allclose(up[0, cols], (cols + 0.5) / scale - 0.5, atol=1e-4)


def test_crop_and_resize_camera():
    cam = Camera("CAM", 1600, 900, np.array([[1000.0, 0, 800], [0, 1000, 450], [0, 0, 1]]), np.eye(4))
    point = np.array([[1.0, 0.5, 10.0]])
    uv, _ = g.project_points(cam.K, point)
    cropped = crop_camera(cam, 100, 50, 1400, 800)
    uv_c, _ = g.project_points(cropped.K, point)
    np.testing.assert_allclose(uv_c[0], uv[0] - [100, 50])
    assert (cropped.width, cropped.height) == (1400, 800)
    with pytest.raises(ValueError, match="CAM: crop 1400x800 at \\(300, 50\\) does not fit"):
        crop_camera(cam, 300, 50, 1400, 800)
    image = np.zeros((900, 1600, 3), np.uint8)
    image[440:460, 990:1010, 0] = 255  # a bright square centred on pixel coordinate (999.5, 449.5)
    small, small_cam = resize_image_and_camera(image, cam, 400, 225)
    assert small.shape == (225, 400, 3) and small_cam.K[0, 0] == 250.0
    # the 3D point seen at the square's centre projects onto the centroid of the resized square
    centre = np.array([[(999.5 - 800) / 100, (449.5 - 450) / 100, 10.0]])
    uv_s, _ = g.project_points(small_cam.K, centre)
    weight = small[:, :, 0].astype(np.float64)
    rows, cols = np.mgrid[0:225, 0:400]
    centroid = [(cols * weight).sum() / weight.sum(), (rows * weight).sum() / weight.sum()]
    np.testing.assert_allclose(uv_s[0], centroid, atol=0.02)
    with pytest.raises(ValueError, match="image is 10x10, camera says 1600x900"):
        resize_image_and_camera(np.zeros((10, 10, 3), np.uint8), cam, 400, 225)


def test_depth_map_nearest_wins_with_values_and_index():
    K = np.array([[100.0, 0.0, 10.0], [0.0, 100.0, 5.0], [0.0, 0.0, 1.0]])
    points = np.array(
        [
            [0.0, 0.0, 5.0],  # pixel (10, 5), far
            [0.0, 0.0, 3.0],  # same pixel, nearer: wins
            [0.1, 0.0, 2.0],  # pixel (15, 5)
            [0.0, 0.0, -1.0],  # behind
            [10.0, 0.0, 1.0],  # outside the image
            [0.04, 0.0, 4.0],  # u = 11.0 -> pixel (11, 5)
        ]
    )
    values = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0], [6.0, 60.0]])
    depth, channels, index = g.points_to_depth_map(points, K, 20, 10, values=values, return_index=True)
    assert depth.dtype == np.float32 and depth.shape == (10, 20)
    assert depth[5, 10] == 3.0 and depth[5, 15] == 2.0 and depth[5, 11] == 4.0
    assert np.count_nonzero(depth) == 3
    np.testing.assert_array_equal(channels[:, 5, 10], [2.0, 20.0])
    np.testing.assert_array_equal(channels[:, 5, 15], [3.0, 30.0])
    assert index[5, 10] == 1 and index[5, 11] == 5 and index[0, 0] == -1
    capped = g.points_to_depth_map(points, K, 20, 10, max_depth=3.5)
    assert capped[5, 11] == 0 and capped[5, 10] == 3.0


def test_depth_map_matches_loop_reference_on_random_points():
    K = np.array([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])
    points = RNG.uniform([-10, -8, -2], [10, 8, 30], size=(3000, 3))
    depth = g.points_to_depth_map(points, K, 32, 24)
    expected = np.zeros((24, 32), np.float32)
    for x, y, z in points:
        if z <= 1e-3:
            continue
        col, row = int(np.floor(K[0, 0] * x / z + K[0, 2] + 0.5)), int(np.floor(K[1, 1] * y / z + K[1, 2] + 0.5))
        if 0 <= col < 32 and 0 <= row < 24 and (expected[row, col] == 0 or z < expected[row, col]):
            expected[row, col] = z
    np.testing.assert_allclose(depth, expected, rtol=1e-6)


def test_resample_to_intrinsics_is_a_subsample_a_crop_and_fills_outside():
    rng = np.random.default_rng(5)
    depth = rng.uniform(1, 80, (90, 160)).astype(np.float32)
    K = np.array([[120.0, 0, 79.5], [0, 120.0, 44.5], [0, 0, 1]])
    half = g.resize_intrinsics(K, 0.5, 0.5)  # pixel centres at integers: source pixel 2u + 0.5 rounds to 2u
    np.testing.assert_array_equal(g.resample_to_intrinsics(depth, K, half, (45, 80)), depth[::2, ::2])
    shifted = g.crop_intrinsics(K, 10, -5)  # target (0, 0) is source (10, -5): 5 rows above the image
    out = g.resample_to_intrinsics(depth, K, shifted, (90, 160), fill=np.nan)
    np.testing.assert_array_equal(out[5:, :150], depth[:85, 10:])
    assert np.isnan(out[:5]).all() and np.isnan(out[:, 150:]).all()
    rgb = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)  # trailing channels follow their pixel
    np.testing.assert_array_equal(g.resample_to_intrinsics(rgb, K, half, (45, 80)), rgb[::2, ::2])
