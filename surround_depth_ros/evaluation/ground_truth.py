"""The depth a prediction is held against: a frame set's dense depth, else its lidar sweep projected into each camera.

Pure geometry on a `FrameSet`, so that training (its ground-truth losses), evaluation and run-bag's scores
all see the same truth.
"""

from __future__ import annotations

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.sensors.frameset import FrameSet


def lidar_depth_maps(frame: FrameSet, min_depth: float = 1.0) -> list[np.ndarray]:
    """Ground truth of a frame set without dense depth: its lidar sweep projected into every camera.

    Chain lidar -> base at lidar time -> world -> base at each camera's time -> camera, when both
    poses are known (0.1-0.3 m matter at speed); the static chain otherwise.
    """
    lidar = frame.lidar
    if lidar is None:
        raise ValueError(f"frame set {frame.name!r} has neither depth nor a lidar sweep: no ground truth")
    if lidar.T_base_sensor is None:
        raise ValueError(f"frame set {frame.name!r}: lidar sweep {lidar.sensor!r} has no T_base_sensor extrinsic")
    maps = []
    for i, cam in enumerate(frame.rig.cameras):
        T_base_lidar = lidar.T_base_sensor
        if frame.T_world_base is not None and lidar.T_world_base is not None:
            T_base_lidar = geometry.invert_transform(frame.T_world_base[i]) @ lidar.T_world_base @ T_base_lidar
        T_cam_lidar = geometry.invert_transform(cam.T_base_cam) @ T_base_lidar
        points = geometry.transform_points(T_cam_lidar, lidar.points.astype(np.float64))
        maps.append(geometry.points_to_depth_map(points, cam.K, cam.width, cam.height, min_depth=min_depth))
    return maps


def ground_truth(frame: FrameSet) -> list[np.ndarray] | None:
    """Full-resolution depth per camera to score against: dense depth, else the lidar sweep projected with the
    set's own extrinsics, intrinsics and poses; None when the set has neither."""
    if frame.depth is None and frame.lidar is None:
        return None
    gt = frame.depth if frame.depth is not None else lidar_depth_maps(frame)
    return [np.asarray(g, dtype=np.float32) for g in gt]
