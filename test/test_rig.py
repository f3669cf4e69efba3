"""The rig: YAML format, the shipped nuScenes-like rig, adjacency from geometry, scaling."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml

from surround_depth_ros.base import geometry as g
from surround_depth_ros.base.resources import packaged_file_candidates
from surround_depth_ros.sensors.rig import (
    Camera,
    CameraRig,
    RigFileError,
    default_rig,
    load_rig,
    rig_from_dict,
    rig_to_dict,
    save_rig,
)

RING = {
    ("CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_FRONT_RIGHT", "CAM_BACK_RIGHT"),
    ("CAM_BACK_RIGHT", "CAM_BACK"),
    ("CAM_BACK", "CAM_BACK_LEFT"),
    ("CAM_BACK_LEFT", "CAM_FRONT_LEFT"),
    ("CAM_FRONT_LEFT", "CAM_FRONT"),
}


def test_default_rig_is_nuscenes_like():
    rig = default_rig()
    assert rig.camera_names == [
        "CAM_FRONT",
        "CAM_FRONT_LEFT",
        "CAM_FRONT_RIGHT",
        "CAM_BACK",
        "CAM_BACK_LEFT",
        "CAM_BACK_RIGHT",
    ]
    assert rig.radar_names == [
        "RADAR_FRONT",
        "RADAR_FRONT_LEFT",
        "RADAR_FRONT_RIGHT",
        "RADAR_BACK_LEFT",
        "RADAR_BACK_RIGHT",
    ]
    assert rig.base_frame == "base_link"
    assert all((c.width, c.height) == (1600, 900) for c in rig.cameras)
    assert abs(rig.camera("CAM_FRONT").K[0, 0] - 1266) < 10 and abs(rig.camera("CAM_BACK").K[0, 0] - 800) < 15
    # optical z axis of each camera points along its name's direction in base_link (x forward, y left)
    expected_yaw = {"CAM_FRONT": 0, "CAM_FRONT_LEFT": 55, "CAM_FRONT_RIGHT": -55, "CAM_BACK": 180}
    for name, yaw in expected_yaw.items():
        z_axis = rig.camera(name).T_base_cam[:3, 2]
        error = (np.degrees(np.arctan2(z_axis[1], z_axis[0])) - yaw + 180) % 360 - 180
        assert abs(error) < 3, (name, error)
    assert rig.radar("RADAR_FRONT").T_base_radar[0, 3] > 3.0
    assert any(str(sys.prefix) in str(p) for p in packaged_file_candidates("config", "rig_nuscenes.yaml"))


def test_default_rig_is_close_to_the_nuscenes_calibration(shared_data_path):
    tables = shared_data_path("nuscenes_sample", "v1.0-mini")
    sensors = {s["token"]: s["channel"] for s in json.loads((tables / "sensor.json").read_text())}
    rig = default_rig()
    for record in json.loads((tables / "calibrated_sensor.json").read_text()):
        channel = sensors[record["sensor_token"]]
        if not channel.startswith("CAM"):
            continue
        cam = rig.camera(channel)
        np.testing.assert_allclose(cam.T_base_cam[:3, 3], record["translation"], atol=2e-3)
        R = g.quaternion_to_matrix(*record["rotation"])
        angle = np.degrees(np.arccos(np.clip((np.trace(R.T @ cam.T_base_cam[:3, :3]) - 1) / 2, -1, 1)))
        assert angle < 0.05, channel
        np.testing.assert_allclose(cam.K, record["camera_intrinsic"], atol=0.1)


def test_adjacency_of_the_default_rig_is_the_ring():
    rig = default_rig()
    names = rig.camera_names
    pairs = rig.adjacency()
    assert all(i < j for i, j in pairs)
    assert {tuple(sorted((names[i], names[j]))) for i, j in pairs} == {tuple(sorted(p)) for p in RING}
    overlap = rig.overlap_matrix()
    assert overlap.shape == (6, 6) and np.allclose(np.diag(overlap), 1.0)
    assert overlap[0, 3] == 0.0  # front and back share nothing
    assert rig.adjacency(min_overlap=0.5) == []


def test_adjacency_follows_geometry_not_names():
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    forward = g.rpy_to_matrix(-np.pi / 2, 0, -np.pi / 2)
    cams = [
        Camera(f"C{i}", 640, 480, K, g.make_transform(g.rpy_to_matrix(0, 0, yaw) @ forward, [0, 0, 1.5]))
        for i, yaw in enumerate(np.radians([0, 40, 90, 180]))
    ]
    # 65 deg horizontal field of view: 0-40 and 40-90 overlap, 0-90 and anything-180 do not
    assert CameraRig(cams).adjacency() == [(0, 1), (1, 2)]


def test_rig_yaml_round_trip(tmp_path):
    rig = default_rig()
    path = tmp_path / "rig.yaml"
    save_rig(rig, path)
    assert path.read_text().startswith("# Sensor rig")
    again = load_rig(path)
    assert again.camera_names == rig.camera_names and again.radar_names == rig.radar_names
    for a, b in zip(rig.cameras, again.cameras, strict=True):
        assert (a.width, a.height, a.frame_id) == (b.width, b.height, b.frame_id)
        np.testing.assert_allclose(a.K, b.K, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.T_base_cam, b.T_base_cam, rtol=0, atol=1e-12)
    for a, b in zip(rig.radars, again.radars, strict=True):
        np.testing.assert_allclose(a.T_base_radar, b.T_base_radar, rtol=0, atol=1e-12)


def test_rpy_form_of_the_optical_frame(tmp_path):
    path = tmp_path / "rig.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {
                        "name": "FRONT",
                        "width": 640,
                        "height": 480,
                        "intrinsics": {"fx": 500, "fy": 500, "cx": 319.5, "cy": 239.5},
                        "extrinsics": {"translation": [1, 0, 1.5], "rpy_deg": [-90, 0, -90]},
                    }
                ]
            }
        )
    )
    cam = load_rig(path).camera("FRONT")
    # optical z -> base x (forward), optical x -> base -y (right), optical y -> base -z (down)
    np.testing.assert_allclose(cam.T_base_cam[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    assert cam.frame_id == "front_optical_frame"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("cameras"), "missing key 'cameras'"),
        (
            lambda d: d["cameras"][1]["intrinsics"].pop("fx"),
            r"cameras\[1\] \(CAM_FRONT_LEFT\).intrinsics: missing key 'fx'",
        ),
        (lambda d: d["cameras"][0].pop("width"), r"cameras\[0\] \(CAM_FRONT\): missing key 'width'"),
        (
            lambda d: d["cameras"][2]["extrinsics"].pop("quaternion_wxyz"),
            r"cameras\[2\] \(CAM_FRONT_RIGHT\).extrinsics: missing key 'quaternion_wxyz' or 'rpy_deg'",
        ),
        (
            lambda d: d["cameras"][0]["extrinsics"].update(translation=[1, 2]),
            r"cameras\[0\] \(CAM_FRONT\).extrinsics.translation: expected exactly 3 entries, got 2",
        ),
        (
            lambda d: d["cameras"][0]["intrinsics"].update(fx="500"),
            r"cameras\[0\] \(CAM_FRONT\).intrinsics.fx: expected float, got str '500'",
        ),
        (
            lambda d: d["cameras"][0].update(heigth=900),
            r"cameras\[0\] \(CAM_FRONT\).heigth: unknown key \(did you mean 'height'",
        ),
        (lambda d: d.update(cameras=[]), "cameras: needs at least 1 entries, got 0"),
        (
            lambda d: d["cameras"][0]["extrinsics"].update(quaternion_wxyz=[0, 0, 0, 0]),
            r"cameras\[0\] \(CAM_FRONT\): .*quaternion",
        ),
        (lambda d: d["radars"][0].pop("extrinsics"), r"radars\[0\] \(RADAR_FRONT\): missing key 'extrinsics'"),
        (lambda d: d["cameras"][3].update(width=-5), r"cameras\[3\] \(CAM_BACK\).width: must be > 0, got -5"),
        (lambda d: d["cameras"][4].update(name="CAM_FRONT"), "sensor names must be unique"),
    ],
)
def test_bad_rig_files_name_the_problem(tmp_path, edit, message):
    path = tmp_path / "rig.yaml"
    save_rig(default_rig(), path)
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RigFileError, match=message) as info:
        load_rig(path)
    assert str(path) in str(info.value)


def test_every_rig_file_problem_is_listed_at_once(tmp_path):
    data = rig_to_dict(default_rig())
    data["cameras"][0].pop("width")
    data["cameras"][2]["intrinsics"]["fy"] = True
    data["radars"][0]["extrinsics"]["rpy_deg"] = [0, 0]
    data["radars"][0]["extrinsics"].pop("quaternion_wxyz")
    with pytest.raises(RigFileError) as info:
        rig_from_dict(data, "rig.yaml")
    assert info.value.problems == [
        "cameras[0] (CAM_FRONT): missing key 'width'",
        "cameras[2] (CAM_FRONT_RIGHT).intrinsics.fy: expected float, got bool True",
        "radars[0] (RADAR_FRONT).extrinsics.rpy_deg: expected exactly 3 entries, got 2",
    ]


def test_missing_rig_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.yaml does not exist"):
        load_rig(tmp_path / "nothing.yaml")
    (tmp_path / "bad.yaml").write_text("cameras: [unclosed")
    with pytest.raises(RigFileError, match="not valid YAML"):
        load_rig(tmp_path / "bad.yaml")


def test_scaled_rig_updates_every_camera():
    rig = default_rig()
    small = rig.scaled(640, 352)
    for a, b in zip(rig.cameras, small.cameras, strict=True):
        assert (b.width, b.height) == (640, 352)
        sx, sy = 640 / 1600, 352 / 900
        np.testing.assert_allclose(b.K[0], [a.K[0, 0] * sx, 0, (a.K[0, 2] + 0.5) * sx - 0.5])
        np.testing.assert_allclose(b.K[1], [0, a.K[1, 1] * sy, (a.K[1, 2] + 0.5) * sy - 0.5])
        np.testing.assert_array_equal(a.T_base_cam, b.T_base_cam)
    assert small.radar_names == rig.radar_names and small.adjacency() == rig.adjacency()
