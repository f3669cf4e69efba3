"""Camera images through the package's one inference path, `SurroundDepthPipeline.process`, for tests that start
from images rather than a frame set."""

from __future__ import annotations

import math

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.core.pipeline import DepthOutputs, SurroundDepthPipeline
from surround_depth_ros.inference.engine import DepthEngine
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.rig import Camera, CameraRig


def ring_rig(sizes: list[tuple[int, int]], K: np.ndarray | None = None) -> CameraRig:
    """Cameras of `sizes` (height, width) looking out around the car in list order, evenly spaced.

    Each is 1.5 spacings wide unless `K` (3, 3) is given, so that only neighbours overlap: the rig's
    adjacency is `ring_adjacency(n)`, what an engine of a bare model assumes, and the pipeline's binding
    leaves it as it is.
    """
    n = len(sizes)
    cameras = []
    for i, (height, width) in enumerate(sizes):
        focal = 0.5 * width / math.tan(0.75 * math.tau / n)
        camera_K = np.array([[focal, 0, width / 2 - 0.5], [0, focal, height / 2 - 0.5], [0, 0, 1]]) if K is None else K
        yaw = math.tau * i / n
        rotation = geometry.rpy_to_matrix(0.0, 0.0, yaw) @ geometry.rpy_to_matrix(-math.pi / 2, 0.0, -math.pi / 2)
        cameras.append(Camera(f"CAM_{i}", width, height, camera_K, geometry.make_transform(rotation, [0, 0, 1.5])))
    return CameraRig(tuple(cameras))


def frame_set(images: list[np.ndarray], rig: CameraRig | None = None) -> FrameSet:
    """One set of `images` on `rig` (default: a `ring_rig` of their sizes)."""
    rig = rig or ring_rig([image.shape[:2] for image in images])
    return FrameSet(rig, images, np.zeros(len(images), np.int64))


def process(engine: DepthEngine, images: list[np.ndarray], rig: CameraRig | None = None, **options) -> DepthOutputs:
    """Depth and confidence per camera of `images` through a new pipeline without a cloud (`options`: its others)."""
    return SurroundDepthPipeline(engine, cloud=None, **options).process(frame_set(images, rig))
