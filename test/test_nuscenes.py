"""nuScenes reader on the real keyframe: rig, poses, images and lidar depth against the tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg

from surround_depth_ros.base import geometry as g
from surround_depth_ros.datasets.nuscenes import CAMERA_CHANNELS, NuScenesReader, rig_from_nuscenes


@pytest.fixture(scope="module")
def dataroot(shared_data_path):
    return shared_data_path("nuscenes_sample")


@pytest.fixture(scope="module")
def frameset(dataroot):
    return NuScenesReader(dataroot)[0]


def rotate_by_quaternion(q, points):
    """v' = q v q* written out with the vector form v' = v + 2w (u x v) + 2 u x (u x v): no matrices."""
    w, u = q[0], np.asarray(q[1:])
    u, w = u / np.linalg.norm(q), w / np.linalg.norm(q)
    cross = np.cross(u, points)
    return points + 2 * w * cross + 2 * np.cross(u, cross)


def independent_pixels(dataroot, channel):
    """Lidar points of the sample in `channel`'s image straight from the tables: (uv, z)."""
    tables = dataroot / "v1.0-mini"
    load = {name: json.loads((tables / f"{name}.json").read_text()) for name in ("sensor", "calibrated_sensor")}
    records = json.loads((tables / "sample_data.json").read_text())
    poses = {p["token"]: p for p in json.loads((tables / "ego_pose.json").read_text())}
    calib = {c["token"]: c for c in load["calibrated_sensor"]}
    sensor = {s["token"]: s["channel"] for s in load["sensor"]}
    by_channel = {sensor[calib[r["calibrated_sensor_token"]]["sensor_token"]]: r for r in records}
    lidar, cam = by_channel["LIDAR_TOP"], by_channel[channel]
    points = np.fromfile(dataroot / lidar["filename"], dtype=np.float32).reshape(-1, 5)[:, :3].astype(np.float64)
    steps_forward = [calib[lidar["calibrated_sensor_token"]], poses[lidar["ego_pose_token"]]]
    for record in steps_forward:  # lidar -> ego(t_lidar) -> global
        points = rotate_by_quaternion(record["rotation"], points) + record["translation"]
    for record in (poses[cam["ego_pose_token"]], calib[cam["calibrated_sensor_token"]]):  # -> ego(t_cam) -> cam
        inverse = [record["rotation"][0], *(-np.asarray(record["rotation"][1:]))]
        points = rotate_by_quaternion(inverse, points - record["translation"])
    K = np.asarray(calib[cam["calibrated_sensor_token"]]["camera_intrinsic"])
    z = points[:, 2]
    uv = np.stack([K[0, 0] * points[:, 0] / z + K[0, 2], K[1, 1] * points[:, 1] / z + K[1, 2]], axis=1)
    return uv, z


def test_every_lidar_point_projects_where_the_tables_say(dataroot, frameset):
    reader = NuScenesReader(dataroot)
    T_base_lidar = reader.lidar_extrinsic()
    for i, cam in enumerate(frameset.rig.cameras):
        T_cam_lidar = (
            g.invert_transform(cam.T_base_cam)
            @ g.invert_transform(frameset.T_world_base[i])
            @ frameset.lidar.T_world_base
            @ T_base_lidar
        )
        uv, z = g.project_points(cam.K, g.transform_points(T_cam_lidar, frameset.lidar.points.astype(np.float64)))
        uv_ref, z_ref = independent_pixels(dataroot, cam.name)
        front = z_ref > 1.0
        assert np.abs(uv[front] - uv_ref[front]).max() < 0.5, cam.name
        np.testing.assert_allclose(z, z_ref, atol=1e-4)

        # the sparse depth map holds, per pixel, the nearest of the points that land there
        inside = (
            front & (uv_ref[:, 0] > -0.5) & (uv_ref[:, 0] < 1599.5) & (uv_ref[:, 1] > -0.5) & (uv_ref[:, 1] < 899.5)
        )
        rows, cols = np.floor(uv_ref[inside, 1] + 0.5).astype(int), np.floor(uv_ref[inside, 0] + 0.5).astype(int)
        nearest = np.full((900, 1600), np.inf)
        np.minimum.at(nearest, (rows, cols), z_ref[inside])
        expected = np.where(np.isfinite(nearest), nearest, 0.0)
        np.testing.assert_allclose(frameset.depth[i], expected, atol=1e-3)


def test_sparse_depth_has_thousands_of_points_per_camera(frameset):
    for cam, depth in zip(frameset.rig.cameras, frameset.depth, strict=True):
        assert depth.shape == (900, 1600) and depth.dtype == np.float32
        valid = depth[depth > 0]
        assert 2500 < np.count_nonzero((valid >= 1) & (valid <= 100)) < 6000, cam.name
        assert valid.min() >= 1.0  # points on the car are left out


def test_rig_stamps_and_poses_come_from_the_tables(dataroot, frameset):
    tables = dataroot / "v1.0-mini"
    sample_data = {r["filename"].split("/")[1]: r for r in json.loads((tables / "sample_data.json").read_text())}
    poses = {p["token"]: p for p in json.loads((tables / "ego_pose.json").read_text())}
    assert frameset.rig.camera_names == list(CAMERA_CHANNELS)
    for i, channel in enumerate(CAMERA_CHANNELS):
        record = sample_data[channel]
        assert frameset.camera_stamps_ns[i] == record["timestamp"] * 1000
        pose = poses[record["ego_pose_token"]]
        np.testing.assert_allclose(frameset.T_world_base[i, :3, 3], pose["translation"])
        np.testing.assert_allclose(
            g.transform_points(frameset.T_world_base[i], np.eye(3)) - pose["translation"],
            rotate_by_quaternion(pose["rotation"], np.eye(3)),
            atol=1e-12,
        )
    assert len(frameset.lidar) == 34688 and set(frameset.lidar.fields) == {"intensity", "ring"}
    assert frameset.radar == []  # the sample ships no radar files
    assert frameset.rig.camera("CAM_BACK").K[0, 0] == pytest.approx(809.2, abs=0.1)
    rig = rig_from_nuscenes(dataroot)
    np.testing.assert_array_equal(rig.extrinsics(), frameset.rig.extrinsics())


def test_images_are_rgb(dataroot, frameset):
    path = next((dataroot / "samples" / "CAM_FRONT").glob("*.jpg"))
    reference = mpimg.imread(path)  # Pillow's decoder, RGB
    image = frameset.images[0]
    assert image.dtype == np.uint8 and image.shape == (900, 1600, 3)
    assert np.abs(image.astype(int) - reference.astype(int)).mean() < 2.0
    assert np.abs(image[..., ::-1].astype(int) - reference.astype(int)).mean() > 5.0


def test_missing_dataroot_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="v1.0-mini does not exist: expected a nuScenes dataroot"):
        NuScenesReader(tmp_path)
    (tmp_path / "v1.0-mini").mkdir()
    with pytest.raises(FileNotFoundError, match="sensor.json is missing"):
        NuScenesReader(tmp_path)
