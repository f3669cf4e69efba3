"""Radar: the nuScenes PCD reader against an independent parse, and the sparse radar maps."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from surround_depth_ros.base import geometry as g
from surround_depth_ros.sensors.frameset import PointSweep
from surround_depth_ros.sensors.radar import (
    RADAR_CHANNELS,
    radar_points_in_base,
    radar_to_maps,
    read_nuscenes_radar_pcd,
)
from surround_depth_ros.sensors.rig import default_rig

NUSCENES_POINT = struct.Struct("<fffbhfffffbbbbbbbb")  # x y z dyn_prop id rcs vx vy vx_comp vy_comp + 8 int8


@pytest.fixture
def radar_pcd(shared_data_path):
    return next(shared_data_path("nuscenes_radar_sample").glob("*.pcd"))


def test_reads_the_nuscenes_sample_like_an_independent_parse(radar_pcd):
    sweep = read_nuscenes_radar_pcd(radar_pcd)
    assert sweep.sensor == "RADAR_FRONT" and sweep.stamp_ns == 1526915243042374000
    assert len(sweep) == 125 and sweep.points.shape == (125, 3)
    assert set(sweep.fields) == {
        "dyn_prop",
        "id",
        "rcs",
        "vx",
        "vy",
        "vx_comp",
        "vy_comp",
        "is_quality_valid",
        "ambig_state",
        "x_rms",
        "y_rms",
        "invalid_state",
        "pdh0",
        "vx_rms",
        "vy_rms",
    }
    raw = radar_pcd.read_bytes()
    start = raw.index(b"DATA binary\n") + len(b"DATA binary\n")
    assert NUSCENES_POINT.size == 43 and len(raw) > start + 125 * 43  # the trailing bytes exist and are ignored
    for k in (0, 1, 57, 124):
        x, y, z, dyn_prop, ident, rcs, vx, vy, vx_comp, vy_comp, *rest = NUSCENES_POINT.unpack_from(raw, start + 43 * k)
        np.testing.assert_array_equal(sweep.points[k], np.float32([x, y, z]))
        assert sweep.fields["dyn_prop"][k] == dyn_prop and sweep.fields["id"][k] == ident
        assert sweep.fields["rcs"][k] == np.float32(rcs) and sweep.fields["vx"][k] == np.float32(vx)
        assert sweep.fields["vx_comp"][k] == np.float32(vx_comp) and sweep.fields["vy_comp"][k] == np.float32(vy_comp)
        assert sweep.fields["vy_rms"][k] == rest[-1] and sweep.fields["invalid_state"][k] == rest[4]
    assert sweep.fields["id"].tolist() == list(range(125))  # nuScenes numbers the returns of a sweep
    assert 0 < np.abs(sweep.points[:, 0]).max() < 260 and np.all(sweep.points[:, 2] == 0)


def write_pcd(path, header_lines, body: bytes) -> None:
    path.write_bytes(("\n".join(header_lines) + "\n").encode() + body)


def test_layout_comes_from_the_header_not_fixed_offsets(tmp_path):
    table = np.zeros(3, dtype=[("rcs", "<f4"), ("z", "<f8"), ("x", "<f4"), ("flag", "<u2"), ("y", "<f4")])
    table["x"], table["y"], table["z"], table["rcs"], table["flag"] = [1, 2, 3], [4, 5, 6], [7, 8, 9], [-1, 0, 1], 7
    header = ["VERSION 0.7", "FIELDS rcs z x flag y", "SIZE 4 8 4 2 4", "TYPE F F F U F", "COUNT 1 1 1 1 1"]
    header += ["WIDTH 3", "HEIGHT 1", "POINTS 3", "DATA binary"]
    write_pcd(tmp_path / "a.pcd", header, table.tobytes() + b"\x00trailing")
    sweep = read_nuscenes_radar_pcd(tmp_path / "a.pcd", sensor="RADAR_X", stamp_ns=5)
    np.testing.assert_array_equal(sweep.points, [[1, 4, 7], [2, 5, 8], [3, 6, 9]])
    np.testing.assert_array_equal(sweep.fields["rcs"], [-1, 0, 1])
    assert sweep.fields["flag"].dtype == np.uint16 and sweep.sensor == "RADAR_X" and sweep.stamp_ns == 5


def test_bad_pcd_files_get_clear_errors(tmp_path, radar_pcd):
    header = [
        "VERSION 0.7",
        "FIELDS x y z",
        "SIZE 4 4 4",
        "TYPE F F F",
        "COUNT 1 1 1",
        "WIDTH 1",
        "HEIGHT 1",
        "POINTS 1",
    ]
    write_pcd(tmp_path / "ascii.pcd", [*header, "DATA ascii"], b"1 2 3\n")
    with pytest.raises(ValueError, match=r"ascii.pcd: PCD DATA is 'ascii'; only 'binary'"):
        read_nuscenes_radar_pcd(tmp_path / "ascii.pcd")
    raw = radar_pcd.read_bytes()
    cut = tmp_path / "cut.pcd"
    cut.write_bytes(raw[: raw.index(b"DATA binary\n") + 12 + 43 * 100])
    with pytest.raises(ValueError, match=r"cut.pcd: truncated: header announces 125 points of 43 bytes"):
        read_nuscenes_radar_pcd(cut)
    (tmp_path / "junk.pcd").write_bytes(b"hello")
    with pytest.raises(ValueError, match="junk.pcd: PCD header has no DATA line"):
        read_nuscenes_radar_pcd(tmp_path / "junk.pcd")
    write_pcd(tmp_path / "noz.pcd", ["FIELDS x y", "SIZE 4 4", "TYPE F F", "POINTS 1", "DATA binary"], bytes(8))
    with pytest.raises(ValueError, match=r"noz.pcd: PCD has no field\(s\) \['z'\]"):
        read_nuscenes_radar_pcd(tmp_path / "noz.pcd")


def sweep_at(rig, sensor, points_base, stamp_ns=0, pose=None, **fields):
    """A sweep whose returns lie at `points_base` (base frame), expressed in the radar frame."""
    points = g.transform_points(g.invert_transform(rig.radar(sensor).T_base_radar), np.asarray(points_base, float))
    fields = {k: np.asarray(v, np.float32) for k, v in fields.items()}
    return PointSweep(sensor, stamp_ns, points, fields, pose)


def pixel_of(cam, point_base):
    uv, z = g.project_points(cam.K, g.transform_points(g.invert_transform(cam.T_base_cam), np.array([point_base])))
    return int(np.floor(uv[0, 1] + 0.5)), int(np.floor(uv[0, 0] + 0.5)), float(z[0])


def test_radar_maps_nearest_return_with_rcs_and_base_velocity():
    rig = default_rig()
    size = (320, 180)
    small = rig.scaled(*size)
    far, near = np.array([20.0, 1.0, 0.6]), np.array([10.0, -1.5, 0.6])
    # a return half way between CAM_FRONT and `far`: same pixel, nearer, so it wins
    on_ray = small.camera("CAM_FRONT").T_base_cam[:3, 3] + 0.5 * (far - small.camera("CAM_FRONT").T_base_cam[:3, 3])
    sweep = sweep_at(rig, "RADAR_FRONT", [far, on_ray, near], rcs=[5, 9, -3], vx_comp=[1, 2, 3], vy_comp=[0, 0, 0.5])
    maps = radar_to_maps([sweep], rig, image_size=size)
    assert maps.shape == (6, len(RADAR_CHANNELS), 180, 320) and maps.dtype == np.float32
    row, col, z = pixel_of(small.camera("CAM_FRONT"), on_ray)
    assert maps[0, 0, row, col] == pytest.approx(z, rel=1e-5)  # the nearer of the two returns on one ray
    assert maps[0, 1, row, col] == 9
    # velocity (2, 0) in the radar frame turned into base_link by RADAR_FRONT's 0.2 deg yaw
    yaw = np.radians(0.2)
    np.testing.assert_allclose(maps[0, 2:, row, col], [2 * np.cos(yaw), 2 * np.sin(yaw)], rtol=1e-5)
    row, col, z = pixel_of(small.camera("CAM_FRONT"), near)
    assert maps[0, 0, row, col] == pytest.approx(z, rel=1e-5) and maps[0, 1, row, col] == -3
    assert np.count_nonzero(maps[0, 0]) == 2
    # the back cameras see none of these returns
    assert np.count_nonzero(maps[3:, 0]) == 0


def test_zero_returns_give_zero_maps():
    rig = default_rig()
    empty = PointSweep("RADAR_FRONT", 0, np.zeros((0, 3)), {"rcs": np.zeros(0)})
    maps = radar_to_maps([empty], rig, image_size=(64, 36))
    assert maps.shape == (6, 4, 36, 64) and not maps.any()
    assert not radar_to_maps([], rig, image_size=(64, 36)).any()


def test_older_sweeps_are_compensated_for_ego_motion():
    rig = default_rig()
    T_world_base_old = g.make_transform(g.rpy_to_matrix(0, 0, 0.3), [100.0, 50.0, 0.0])
    moved = g.make_transform(g.rpy_to_matrix(0, 0, 0.05), [2.0, 0.1, 0.0])  # the car drove 2 m and turned
    T_world_base_now = T_world_base_old @ moved
    landmark_old = np.array([[15.0, 3.0, 0.5]])  # where the return was in the old base frame
    old = sweep_at(rig, "RADAR_FRONT", landmark_old, 0, T_world_base_old, rcs=[1.0])
    current = radar_points_in_base([old], rig, target_pose=T_world_base_now)
    expected = g.transform_points(g.invert_transform(moved), landmark_old)
    np.testing.assert_allclose(current.points_base, expected, atol=1e-5)
    maps = radar_to_maps([old], rig, image_size=(320, 180), target_pose=T_world_base_now)
    row, col, z = pixel_of(rig.scaled(320, 180).camera("CAM_FRONT"), expected[0])
    assert maps[0, 0, row, col] == pytest.approx(z, rel=1e-5)
    uncompensated = radar_points_in_base([old], rig)
    np.testing.assert_allclose(uncompensated.points_base, landmark_old, atol=1e-5)


def test_radar_errors_name_the_sensor():
    rig = default_rig()
    sweep = PointSweep("RADAR_ROOF", 0, np.ones((1, 3)))
    with pytest.raises(KeyError, match="RADAR_ROOF"):
        radar_to_maps([sweep], rig)
    no_pose = PointSweep("RADAR_FRONT", 7, np.ones((1, 3)))
    with pytest.raises(ValueError, match="RADAR_FRONT at 7 ns has no T_world_base"):
        radar_to_maps([no_pose], rig, image_size=(32, 18), target_pose=np.eye(4))
    extra = radar_points_in_base([sweep], rig, radar_extrinsics={"RADAR_ROOF": g.make_transform(np.eye(3), [0, 0, 2])})
    np.testing.assert_allclose(extra.points_base, [[1, 1, 3]])
    np.testing.assert_array_equal(extra.velocity_base, [[0, 0]])  # no velocity fields: zero velocity
