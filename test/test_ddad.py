"""DDAD / DGP reader on the DGP toolkit's test scene: rig, both pose paths, lidar depth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surround_depth_ros.base import geometry as g
from surround_depth_ros.datasets.ddad import DGPSceneReader, rig_from_dgp


@pytest.fixture(scope="module")
def scene_dir(shared_data_path):
    return shared_data_path("ddad_dgp_sample", "scene_01")


@pytest.fixture(scope="module")
def reader(scene_dir):
    with pytest.warns(UserWarning, match="relative to the scene's first datum"):
        return DGPSceneReader(scene_dir)


def test_rig_from_the_calibration_json(scene_dir):
    path = next((scene_dir / "calibration").glob("*.json"))
    table = json.loads(path.read_text())
    rig = rig_from_dgp(path)
    assert rig.camera_names == ["CAMERA_01", "CAMERA_05", "CAMERA_06"]  # LIDAR is not a camera
    for cam in rig.cameras:
        index = table["names"].index(cam.name)
        intrinsic, pose = table["intrinsics"][index], table["extrinsics"][index]
        np.testing.assert_allclose(cam.K[[0, 1, 0, 1], [0, 1, 2, 2]], [intrinsic[k] for k in ("fx", "fy", "cx", "cy")])
        np.testing.assert_allclose(cam.T_base_cam[:3, 3], [pose["translation"][k] for k in "xyz"])
        assert (cam.width, cam.height) == (1936, 1216)
    # CAMERA_01 looks forward: its optical z axis is the vehicle's x axis
    assert rig.camera("CAMERA_01").T_base_cam[0, 2] > 0.99


def test_calibration_path_and_world_pose_path_agree(reader):
    frameset = reader[0]
    T_base_lidar = reader.lidar_extrinsic(0)
    T_world_lidar = reader.datum_pose(0, "LIDAR")
    points = frameset.lidar.points.astype(np.float64)
    for cam in frameset.rig.cameras:
        via_calibration = g.transform_points(g.invert_transform(cam.T_base_cam) @ T_base_lidar, points)
        via_world = g.transform_points(g.invert_transform(reader.datum_pose(0, cam.name)) @ T_world_lidar, points)
        near = (via_calibration[:, 2] > 1) & (np.linalg.norm(via_calibration, axis=1) < 80)
        assert np.count_nonzero(near) > 1000
        assert np.linalg.norm(via_calibration - via_world, axis=1)[near].max() < 0.03, cam.name
        uv_a, _ = g.project_points(cam.K, via_calibration[near])
        uv_b, _ = g.project_points(cam.K, via_world[near])
        inside = (uv_a[:, 0] >= 0) & (uv_a[:, 0] < cam.width) & (uv_a[:, 1] >= 0) & (uv_a[:, 1] < cam.height)
        assert np.count_nonzero(inside) > 1000
        assert np.abs(uv_a - uv_b)[inside].max() < 1.0
    # the vehicle pose derived from each camera and from the lidar agree (the car stands still here)
    lidar_base = frameset.lidar.T_world_base
    for pose in frameset.T_world_base:
        assert np.linalg.norm(pose[:3, 3] - lidar_base[:3, 3]) < 0.03


def test_frame_sets_of_the_scene(reader):
    assert len(reader) == 3
    sets = list(reader)
    for index, frameset in enumerate(sets):
        assert frameset.rig.camera_names == ["CAMERA_01", "CAMERA_05", "CAMERA_06"]
        assert all(image.shape == (1216, 1936, 3) and image.dtype == np.uint8 for image in frameset.images)
        assert frameset.lidar.points.shape[0] > 40000 and "intensity" in frameset.lidar.fields
        for depth in frameset.depth:
            valid = depth[depth > 0]
            assert valid.size > 4000 and valid.min() >= 1.0
        # stamps: relative to the first datum, one second apart between samples, cameras 0.21 s after the lidar
        assert frameset.camera_stamps_ns[0] == 211_478_000 + index * 1_000_000_000 + (12_000 if index == 2 else 0)
        assert frameset.lidar.stamp_ns == [0, 999_728_000, 1_999_822_000][index]


def test_depth_from_lidar_lands_on_the_right_pixels(reader):
    frameset = reader[1]
    cam = frameset.rig.camera("CAMERA_05")
    T_cam_lidar = g.invert_transform(reader.datum_pose(1, "CAMERA_05")) @ reader.datum_pose(1, "LIDAR")
    points = g.transform_points(T_cam_lidar, frameset.lidar.points.astype(np.float64))
    depth, index = g.points_to_depth_map(points, cam.K, cam.width, cam.height, min_depth=1.0, return_index=True)
    np.testing.assert_array_equal(frameset.depth[1], depth)
    hit = index >= 0
    np.testing.assert_allclose(depth[hit], points[index[hit], 2], rtol=1e-6)


def test_bad_dgp_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no scene_\\*.json in this folder"):
        DGPSceneReader(tmp_path)
    bad = tmp_path / "calibration.json"
    bad.write_text(json.dumps({"names": ["CAMERA_01"], "extrinsics": []}))
    with pytest.raises(ValueError, match="calibration.json: DGP calibration lacks 'intrinsics'"):
        rig_from_dgp(bad)
    bad.write_text(json.dumps({"names": ["LIDAR"], "extrinsics": [{"rotation": {"qw": 1}}], "intrinsics": [{}]}))
    with pytest.raises(ValueError, match="no CAMERA_\\* sensor among \\['LIDAR'\\]"):
        rig_from_dgp(bad)
