"""The synthetic world: determinism, exact depth, cross-camera and lidar consistency, radar truth, texture."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest
import torch

from surround_depth_ros.base import geometry
from surround_depth_ros.datasets.synthetic import SensorTiming, SyntheticReader, SyntheticWorld
from surround_depth_ros.datasets.synthetic.appearance import Lighting
from surround_depth_ros.datasets.synthetic.raycast import cast_rays
from surround_depth_ros.datasets.synthetic.render import render_camera, tile_bundles
from surround_depth_ros.datasets.synthetic.sensors import ONCOMING, LidarModel, RadarModel, radar_sweep
from surround_depth_ros.datasets.synthetic.world import BUILDING, VEHICLE, Primitives, Scene, StreetLayout
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar, default_rig
from surround_depth_ros.tools import synth

SIZE = (176, 96)


def _camera(name: str, position, yaw_deg: float, pitch_deg: float = 0.0, size=(64, 48), f: float = 50.0) -> Camera:
    """A camera at `position` (base frame) looking along yaw (left-positive) and pitch (down-positive)."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), -np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(forward, right)
    K = np.array([[f, 0, (size[0] - 1) / 2], [0, f, (size[1] - 1) / 2], [0, 0, 1]])
    return Camera(name, size[0], size[1], K, geometry.make_transform(np.stack([right, down, forward], 1), position))


def _empty(n: int = 0) -> Primitives:
    return Primitives(
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        np.zeros(n),
        np.zeros((n, 3)),
        np.full(n, BUILDING),
        np.full((n, 3), 0.5),
        np.tile([3.0, 3.0, 0.5, 0.5], (n, 1)),
        np.arange(n),
    )


def _scene(boxes: Primitives | None = None, cylinders: Primitives | None = None) -> Scene:
    return Scene(
        boxes if boxes is not None else _empty(), cylinders if cylinders is not None else _empty(), StreetLayout(), 0
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small renders gain nothing from a second thread, and lose much when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rig() -> CameraRig:
    return default_rig().scaled(*SIZE)


@pytest.fixture(scope="module")
def synchronous(rig) -> SyntheticReader:
    """All cameras at one stamp, so every camera sees the world at the same ego pose."""
    return SyntheticReader(rig, seed=5, n_frames=3, timing=SensorTiming(camera_interval_ns=0), radar=False)


@pytest.fixture(scope="module")
def frame(rig):
    return SyntheticReader(rig, seed=7, n_frames=4, sweeps=2)[3]


# ------------------------------------------------------------------ helpers


def _sample_inverse_depth(depth: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth at sub-pixel `uv` from bilinear interpolation of inverse depth, and where that is exact.

    On a plane 1/z is affine in (u, v), so the interpolation is exact when the 2x2 neighbourhood
    lies on one plane: all four valid and the bilinear cross term (a - b - c + d) vanishing.
    """
    h, w = depth.shape
    u0, v0 = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (u0 >= 0) & (v0 >= 0) & (u0 + 1 < w) & (v0 + 1 < h)
    u0, v0 = np.where(inside, u0, 0), np.where(inside, v0, 0)
    inv = np.where(depth > 0, 1.0 / np.where(depth > 0, depth, 1.0), 0.0)
    a, b, c, d = inv[v0, u0], inv[v0, u0 + 1], inv[v0 + 1, u0], inv[v0 + 1, u0 + 1]
    fu, fv = uv[:, 0] - u0, uv[:, 1] - v0
    value = (a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv
    planar = np.abs(a - b - c + d) <= 1e-4 * np.maximum(a, 1e-9)
    valid = inside & (a > 0) & (b > 0) & (c > 0) & (d > 0) & planar
    return np.where(valid, 1.0 / np.where(valid, value, 1.0), 0.0), valid


def _compare_in_camera(points_world: np.ndarray, camera: Camera, T_world_cam: np.ndarray, depth: np.ndarray):
    """|z of the points seen by the camera - the camera's own depth there| where both are defined."""
    points_cam = geometry.transform_points(geometry.invert_transform(T_world_cam), points_world)
    in_front = points_cam[:, 2] > 0.5
    uv, z = geometry.project_points(camera.K, points_cam[in_front])
    sampled, valid = _sample_inverse_depth(depth, uv)
    return np.abs(sampled[valid] - z[valid])


# ------------------------------------------------------------------ exact depth


def test_ground_depth_is_exact():
    height = 1.7
    camera = _camera("down", (0.0, 0.0, height), yaw_deg=30.0, pitch_deg=35.0)
    T_world_cam = camera.T_base_cam.copy()
    T_world_cam[:3, 3] += [123.4, -56.7, 0.0]  # far from the world origin: precision must not depend on it
    _, depth = render_camera(_scene(), camera, T_world_cam, Lighting((0.0, 0.0, 1.0)))
    rays = geometry.pixel_rays(camera.K, camera.width, camera.height) @ T_world_cam[:3, :3].T
    drop = -rays[:, 2]  # metres fallen per metre of depth
    expected = np.where(drop > 0, height / np.where(drop > 0, drop, 1), 0).reshape(depth.shape)
    assert (depth > 0).mean() > 0.8
    np.testing.assert_allclose(depth, expected, rtol=2e-6)


def test_box_face_and_cylinder_depth_are_exact():
    camera = _camera("front", (0.0, 0.0, 1.5), yaw_deg=0.0)
    boxes = _empty(2)
    boxes.center[:] = [[12.0, 0.0, 2.0], [30.0, 6.0, 1.0]]
    boxes.half[:] = [[0.5, 2.0, 2.0], [1.0, 1.0, 1.0]]
    boxes.yaw[:] = [0.0, 0.3]
    cylinders = _empty(1)
    cylinders.center[:] = [[8.0, -2.0, 0.0]]
    cylinders.half[:] = [[0.4, 0.4, 3.0]]
    _, depth = render_camera(_scene(boxes, cylinders), camera, camera.T_base_cam, Lighting((0.0, 0.0, 1.0)))
    # the near face of the first box at x = 11.5 faces the camera: depth is 11.5 on all its pixels
    u, v = camera.width // 2, camera.height // 2
    assert depth[v, u] == pytest.approx(11.5, abs=1e-5)
    face = depth[v - 5 : v + 5, u - 3 : u + 3]
    np.testing.assert_allclose(face, 11.5, atol=1e-5)
    # the cylinder axis at (8, -2): the ray through the projected axis hits at distance |c| - r horizontally
    uv, _ = geometry.project_points(
        camera.K, geometry.transform_points(np.linalg.inv(camera.T_base_cam), np.array([[8.0, -2.0, 1.5]]))
    )
    col, row = int(round(uv[0, 0])), int(round(uv[0, 1]))
    ray = geometry.pixel_rays(camera.K, camera.width, camera.height)[row * camera.width + col]
    d_base = camera.T_base_cam[:3, :3] @ ray
    # solve |t d_xy - c|^2 = r^2 for the nearer root
    c = np.array([8.0, -2.0])
    a, b, cc = d_base[:2] @ d_base[:2], -2 * d_base[:2] @ c, c @ c - 0.4**2
    t = (-b - np.sqrt(b * b - 4 * a * cc)) / (2 * a)
    assert depth[row, col] == pytest.approx(t, rel=1e-5)


def test_tile_culling_matches_brute_force(rig):
    world = SyntheticWorld(seed=11, duration_s=2.0)
    scene = world.scene_at(1.0)
    for camera in rig.scaled(88, 48).cameras[::3]:  # front (sees far down the street) and back left
        T = world.T_world_base(1.0) @ camera.T_base_cam
        rays = torch.as_tensor(geometry.pixel_rays(camera.K, camera.width, camera.height) @ T[:3, :3].T).float()
        culled = cast_rays(scene, T[:3, 3], rays, 250.0, tile_bundles(camera, T[:3, :3]))
        brute = cast_rays(scene, T[:3, 3], rays, 250.0)
        assert torch.equal(culled.t, brute.t) and torch.equal(culled.object_id, brute.object_id), camera.name


# ------------------------------------------------------------------ frame sets


def test_same_seed_same_frames_other_seed_other_world(rig, frame):
    a = frame
    b = SyntheticReader(rig, seed=7, n_frames=4, sweeps=2)[3]
    c = SyntheticReader(rig, seed=8, n_frames=4, radar=False, lidar=False)[3]
    for x, y in zip(a.images + a.depth, b.images + b.depth, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.lidar.points, b.lidar.points)
    for x, y in zip(a.radar, b.radar, strict=True):
        np.testing.assert_array_equal(x.points, y.points)
        np.testing.assert_array_equal(x.fields["vx_comp"], y.fields["vx_comp"])
    differing = [np.abs(x.astype(int) - y).mean() for x, y in zip(a.images, c.images, strict=True)]
    assert min(differing) > 5, differing
    assert not np.array_equal(a.depth[0], c.depth[0])


def test_frame_set_layout_and_clocks(frame, rig):
    assert len(frame.images) == 6 and frame.rig is rig
    for image, depth, camera in zip(frame.images, frame.depth, rig.cameras, strict=True):
        assert image.dtype == np.uint8 and image.shape == (camera.height, camera.width, 3)
        assert depth.dtype == np.float32 and depth.shape == (camera.height, camera.width)
        assert depth.min() >= 0 and (depth > 0).mean() > 0.5
    steps = np.diff(frame.camera_stamps_ns)
    assert np.all(steps == 8_000_000) and np.ptp(frame.camera_stamps_ns) <= 50_000_000
    # the ego moves between camera stamps (8 m/s x 8 ms = 6.4 cm)
    moved = np.linalg.norm(frame.T_world_base[1:, :3, 3] - frame.T_world_base[:-1, :3, 3], axis=1)
    np.testing.assert_allclose(moved, 0.064, rtol=0.05)
    assert frame.lidar.stamp_ns <= frame.stamp_ns and set(frame.lidar.fields) == {"intensity", "ring"}
    assert 20_000 < len(frame.lidar) < 32 * 900
    assert [s.sensor for s in frame.radar] == [r.name for r in rig.radars for _ in range(2)]
    for older, newer in zip(frame.radar[::2], frame.radar[1::2], strict=True):
        assert newer.stamp_ns - older.stamp_ns == pytest.approx(1e9 / 13, abs=1)
        assert frame.stamp_ns - 1e9 / 13 < newer.stamp_ns <= frame.stamp_ns
        assert 5 <= len(newer) <= 125


def test_images_have_texture(frame):
    for image in frame.images:
        grey = image.astype(np.float32).mean(2)
        assert grey.std() > 15
        edges = np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean()
        assert edges > 3
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500


def test_dense_depth_agrees_across_cameras(synchronous, rig):
    frame = synchronous[2]
    errors = []
    for i, camera in enumerate(rig.cameras):
        valid = frame.depth[i].ravel() > 0
        points_cam = geometry.backproject_depth(frame.depth[i], camera.K)[valid]
        points_world = geometry.transform_points(frame.T_world_base[i] @ camera.T_base_cam, points_cam)
        for j, other in enumerate(rig.cameras):
            if j != i:
                errors.append(
                    _compare_in_camera(points_world, other, frame.T_world_base[j] @ other.T_base_cam, frame.depth[j])
                )
    errors = np.concatenate(errors)
    assert len(errors) > 2000  # the ring of overlaps is really compared
    assert np.median(errors) < 0.01
    assert np.mean(errors < 0.05) > 0.9  # the rest: surfaces one camera sees and the other has occluded


def test_lidar_agrees_with_dense_depth(frame, rig):
    lidar = frame.lidar
    points_world = geometry.transform_points(lidar.T_world_base @ LidarModel().T_base_lidar, lidar.points)
    errors = np.concatenate(
        [
            _compare_in_camera(points_world, cam, frame.T_world_base[i] @ cam.T_base_cam, frame.depth[i])
            for i, cam in enumerate(rig.cameras)
        ]
    )
    assert len(errors) > 1000
    assert np.median(errors) < 0.03  # 2 cm range noise
    # the rest: moving cars (lidar and cameras sample at other times); skipping the ego-motion chain fails this
    assert np.mean(errors < 0.1) > 0.93


# ------------------------------------------------------------------ radar


def _radar_run(seed: int = 3, t_s: float = 1.0):
    world = SyntheticWorld(seed=seed, duration_s=5.0)
    timing = SensorTiming()
    radar = Radar("RADAR_FRONT", geometry.make_transform(np.eye(3), [3.4, 0.0, 0.5]))
    stamp = timing.start_ns + int(t_s * 1e9)
    returns = radar_sweep(world, radar, RadarModel(), stamp, timing, np.random.default_rng(0))
    return world, radar, returns, t_s


def test_radar_returns_lie_on_surfaces():
    world, radar, returns, t_s = _radar_run()
    sweep, truth = returns.sweep, returns.true_points
    real = returns.object_id >= 0
    assert 20 <= len(sweep) <= 125 and 0 < (~real).sum() < 0.3 * len(sweep)
    assert set(sweep.fields) >= {"rcs", "vx", "vy", "vx_comp", "vy_comp", "dyn_prop", "id"}
    np.testing.assert_array_equal(sweep.points[:, 2], 0)  # reported in the radar's plane, as nuScenes does
    measured = np.hypot(sweep.points[real, 0], sweep.points[real, 1])
    true_range = np.hypot(truth[real, 0], truth[real, 1])
    assert np.all(np.abs(measured - true_range) < 5 * RadarModel().range_noise_m)
    # the true points are surface points: casting toward them hits them
    T_world_radar = world.T_world_base(t_s) @ radar.T_base_radar
    directions = torch.as_tensor(truth[real] @ T_world_radar[:3, :3].T, dtype=torch.float32)
    hits = cast_rays(world.scene_at(t_s), T_world_radar[:3, 3], directions, 200.0)
    np.testing.assert_allclose(hits.t.numpy(), 1.0, atol=1e-4)


def test_radar_velocities_have_the_right_sign():
    world, radar, returns, t_s = _radar_run()
    sweep, ids = returns.sweep, returns.object_id
    v_ego = world.ego_speed_mps
    boxes = world.boxes
    speed = boxes.velocity[:, 0]
    lead = set(boxes.object_id[(boxes.material == VEHICLE) & (speed == v_ego)])
    oncoming = set(boxes.object_id[(boxes.material == VEHICLE) & (speed < 0)])
    static = set(boxes.object_id[speed == 0])
    is_lead, is_oncoming = np.isin(ids, list(lead)), np.isin(ids, list(oncoming))
    is_static = np.isin(ids, list(static))
    f = sweep.fields
    assert is_lead.any() and is_oncoming.any() and is_static.sum() > 10
    # the lead car drives away with the ego: compensated velocity forward, relative velocity about zero
    assert np.all(f["vx_comp"][is_lead] > 0.8 * v_ego) and np.all(np.abs(f["vx"][is_lead]) < 0.6)
    # oncoming cars approach in both senses and are flagged oncoming
    assert np.all(f["vx_comp"][is_oncoming] < 0) and np.all(f["vx"][is_oncoming] < f["vx_comp"][is_oncoming])
    assert np.all(f["dyn_prop"][is_oncoming] == ONCOMING)
    # static objects: zero once compensated, approaching at ego speed along the line of sight before
    assert np.all(np.abs(np.hypot(f["vx_comp"], f["vy_comp"])[is_static]) < 0.5)
    assert np.all(f["vx"][is_static] < 0)


# ------------------------------------------------------------------ bad input


def test_bad_settings_are_named(rig):
    with pytest.raises(ValueError, match="n_frames"):
        SyntheticReader(rig, seed=0, n_frames=0)
    with pytest.raises(ValueError, match="camera_rate_hz"):
        SensorTiming(camera_rate_hz=0)
    with pytest.raises(ValueError, match="duration_s"):
        SyntheticWorld(seed=0, duration_s=-1)
    with pytest.raises(ValueError, match="sector_deg"):
        LidarModel(sector_deg=200)
    with pytest.raises(ValueError, match="fov_deg"):
        RadarModel(fov_deg=0)


# ------------------------------------------------------------------ the synth tool


def test_synth_tool_writes_images_depth_and_sheet(capsys, tmp_path):
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--frames", "1", "--seed", "3", "--size", "88x48"])
    assert synth.run(args) == 0
    folder = tmp_path / "synthetic-3-000000"
    front = cv2.imread(str(folder / "CAM_FRONT.png"))
    assert front.shape == (48, 88, 3)
    data = np.load(folder / "data.npz")
    assert data["depth"].shape == (6, 48, 88) and (data["depth"] > 0).mean() > 0.5
    assert len(data["lidar_points"]) == len(data["lidar_ring"]) > 10_000
    assert set(data["radar_sensor"]) == {
        "RADAR_FRONT",
        "RADAR_FRONT_LEFT",
        "RADAR_FRONT_RIGHT",
        "RADAR_BACK_LEFT",
        "RADAR_BACK_RIGHT",
    }
    sheet = cv2.imread(str(tmp_path / "synthetic-3-000000_sheet.png"))
    assert sheet.shape == (4 * 48, 3 * 88, 3)  # two rows of three cameras, each above its depth
    with pytest.raises(SystemExit):  # argparse refuses the size as a usage error, naming the format
        parser.parse_args(["--out", str(tmp_path), "--size", "large"])
    assert "expected WIDTHxHEIGHT such as 640x352, got 'large'" in capsys.readouterr().err


def test_ego_motion_is_consistent():
    """Velocity and yaw rate (used for radar ego-motion compensation) are the derivatives of the pose."""
    world = SyntheticWorld(seed=1, duration_s=10.0)
    for t in (0.3, 2.0, 4.7):
        position, yaw, velocity, yaw_rate = world.ego_state(t)
        dt = 1e-4
        ahead, behind = world.T_world_base(t + dt), world.T_world_base(t - dt)
        np.testing.assert_allclose((ahead[:3, 3] - behind[:3, 3]) / (2 * dt), velocity, atol=1e-5)
        assert yaw == pytest.approx(np.arctan2(velocity[1], velocity[0]))  # the ego drives where it points
        yaw_ahead, yaw_behind = np.arctan2(ahead[1, 0], ahead[0, 0]), np.arctan2(behind[1, 0], behind[0, 0])
        assert (yaw_ahead - yaw_behind) / (2 * dt) == pytest.approx(yaw_rate, abs=1e-6)
        np.testing.assert_allclose(world.T_world_base(t)[:3, 3], position)
