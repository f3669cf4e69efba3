"""Small FrameSets built directly from the core types, for the bag and replay tests."""

from __future__ import annotations

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.pointcloud import NUSCENES_RADAR_DTYPE
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar

T0_NS = 1_532_402_927_600_000_000
FRAME_PERIOD_NS = 100_000_000
CAMERA_OFFSET_NS = 8_000_000
T_BASE_LIDAR = geometry.make_transform(geometry.rpy_to_matrix(0.0, 0.0, np.pi / 2), [0.94, 0.0, 1.84])


def small_rig(n_cameras: int = 4, width: int = 40, height: int = 30) -> CameraRig:
    """n cameras looking out around the car (REP 103 optical frames), two radars."""
    cameras = []
    for i in range(n_cameras):
        yaw = 2 * np.pi * i / n_cameras
        rotation = geometry.rpy_to_matrix(0.0, 0.0, yaw) @ geometry.rpy_to_matrix(-np.pi / 2, 0.0, -np.pi / 2)
        K = np.array([[30.0 + i, 0.0, width / 2 - 0.5], [0.0, 31.0 + i, height / 2 - 0.5], [0.0, 0.0, 1.0]])
        T = geometry.make_transform(rotation, [1.0 + np.cos(yaw), np.sin(yaw), 1.5 + 0.01 * i])
        cameras.append(Camera(f"CAM_{i}", width, height, K, T))
    radars = [
        Radar("RADAR_FRONT", geometry.make_transform(np.eye(3), [3.4, 0.0, 0.5])),
        Radar("RADAR_BACK", geometry.make_transform(geometry.rpy_to_matrix(0, 0, np.pi), [-1.0, 0.0, 0.5])),
    ]
    return CameraRig(cameras, radars)


def _radar_sweep(name: str, stamp_ns: int, rng: np.random.Generator, pose: np.ndarray) -> PointSweep:
    n = int(rng.integers(5, 12))
    fields = {}
    for field_name in NUSCENES_RADAR_DTYPE.names[3:]:
        dtype = NUSCENES_RADAR_DTYPE.fields[field_name][0]
        if dtype.kind == "f":
            fields[field_name] = rng.normal(size=n).astype(dtype)
        else:
            fields[field_name] = rng.integers(-100, 100, size=n).astype(dtype)
    return PointSweep(name, stamp_ns, rng.normal(size=(n, 3)) * 20, fields, T_world_base=pose)


def _pose(stamp_ns: int) -> np.ndarray:
    """Ego driving a gentle curve at 10 m/s."""
    t = (stamp_ns - T0_NS) / 1e9
    return geometry.make_transform(geometry.rpy_to_matrix(0.0, 0.0, 0.05 * t), [10.0 * t, 0.2 * t * t, 0.0])


def make_framesets(n_frames: int = 5, rig: CameraRig | None = None, seed: int = 0) -> list[FrameSet]:
    """Frame sets at 10 Hz: cameras firing 8 ms apart, radar 5 ms before, lidar in the middle, poses at every stamp."""
    rig = rig or small_rig()
    rng = np.random.default_rng(seed)
    framesets = []
    for k in range(n_frames):
        start = T0_NS + k * FRAME_PERIOD_NS
        stamps = start + np.arange(len(rig.cameras)) * CAMERA_OFFSET_NS
        images = [rng.integers(0, 256, (cam.height, cam.width, 3), dtype=np.uint8) for cam in rig.cameras]
        radar = [
            _radar_sweep(r.name, start - 5_000_000 + j, rng, _pose(start - 5_000_000 + j))
            for j, r in enumerate(rig.radars)
        ]
        lidar_stamp = start + 12_000_000
        n_points = 50
        lidar = PointSweep(
            "lidar",
            lidar_stamp,
            rng.normal(size=(n_points, 3)) * 30,
            {
                "intensity": rng.random(n_points).astype(np.float32),
                "ring": rng.integers(0, 32, n_points).astype(np.uint16),
            },
            T_world_base=_pose(lidar_stamp),
            T_base_sensor=T_BASE_LIDAR,
        )
        poses = np.stack([_pose(int(s)) for s in stamps])
        framesets.append(FrameSet(rig, images, stamps, radar, lidar, poses, name=f"sample:{k}"))
    return framesets
