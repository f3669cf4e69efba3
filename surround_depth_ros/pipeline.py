"""One synchronized frame set in, per-camera depth and one fused cloud out.

This is everything the node does between "a set is complete" and "publish", kept ROS-free so
that the node stays a thin adapter and the same path runs in the demo, the benchmarks and the
tests. The rig passed in is whatever the node currently knows (CameraInfo intrinsics, TF
extrinsics), so a recalibration takes effect on the next frame set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from surround_depth_ros.frameset import PointSweep
from surround_depth_ros.geometry import FusedCloud, fuse_depth_maps
from surround_depth_ros.inference.engine import DepthEngine
from surround_depth_ros.pointcloud import pack_rgb_float
from surround_depth_ros.radar import RADAR_CHANNELS, radar_to_maps
from surround_depth_ros.rig import Camera, CameraRig

# The fused cloud's point layout: what RViz colours by `rgb` and what consumers filter on.
CLOUD_DTYPE = np.dtype(
    [("x", np.float32), ("y", np.float32), ("z", np.float32), ("rgb", np.float32), ("camera", np.uint8),
     ("confidence", np.float32)]
)  # fmt: skip


@dataclass(frozen=True)
class CloudOptions:
    """How the per-camera depth maps become one cloud.

    `overlap` "most_confident" keeps each surface seen by two cameras once; `stride` keeps every
    stride-th pixel in both directions; points beyond `max_range_m` (from the base origin) or
    below `min_confidence` are dropped; `voxel_size_m` > 0 keeps one point per voxel.
    """

    overlap: str = "most_confident"
    stride: int = 2
    max_range_m: float = 80.0
    min_confidence: float = 0.0
    voxel_size_m: float = 0.0


@dataclass
class DepthOutputs:
    """Depth (metres, NaN = no estimate) and confidence per camera at its image size, the cloud, timings."""

    depth: list[np.ndarray]
    confidence: list[np.ndarray]
    cloud: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Indices of one point per occupied voxel (the first one met), in input order."""
    if voxel_size <= 0 or len(points) == 0:
        return np.arange(len(points))
    cells = np.floor(points / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    extent = cells.max(axis=0) + 1
    keys = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def cloud_array(cloud: FusedCloud, options: CloudOptions) -> np.ndarray:
    """The fused cloud as a structured array of `CLOUD_DTYPE`, range/confidence filtered and voxelized."""
    keep = np.linalg.norm(cloud.points_base, axis=1) <= options.max_range_m
    if options.min_confidence > 0:
        keep &= cloud.confidence >= options.min_confidence
    points = cloud.points_base[keep]
    index = np.flatnonzero(keep)[voxel_downsample(points, options.voxel_size_m)]
    out = np.empty(len(index), dtype=CLOUD_DTYPE)
    out["x"], out["y"], out["z"] = cloud.points_base[index].T
    out["rgb"] = pack_rgb_float(cloud.rgb[index])
    out["camera"] = cloud.camera_index[index]
    out["confidence"] = cloud.confidence[index]
    return out


class SurroundDepthPipeline:
    """Engine + radar maps + cloud fusion; `process` is called once per accepted frame set."""

    def __init__(self, engine: DepthEngine, cloud: CloudOptions | None = CloudOptions()) -> None:
        self.engine = engine
        self.cloud_options = cloud
        rig = engine.info.rig if engine.info else None
        # What the network sees for an absent camera: a black image at the training camera's size,
        # with the training intrinsics, so that the depth scale of the other views is untouched.
        self._placeholders = [
            (np.zeros((c["height"], c["width"], 3), np.uint8), np.asarray(c["K"], np.float64))
            for c in (rig["cameras"] if rig else [])
        ]

    @property
    def uses_radar(self) -> bool:
        return bool(self.engine.config.radar)

    def process(
        self,
        images: list[np.ndarray | None],
        intrinsics: list[np.ndarray | None],
        extrinsics: list[np.ndarray | None],
        base_frame: str = "base_link",
        radar: list[PointSweep] | None = None,
        radar_extrinsics: dict[str, np.ndarray] | None = None,
        target_pose: np.ndarray | None = None,
    ) -> DepthOutputs:
        """Depth per camera (rig order) and the fused cloud in `base_frame`.

        `images[i]` is H x W x 3 uint8 RGB or None for a camera absent from this set; its depth
        is then None. `intrinsics[i]` (3 x 3, from CameraInfo) rescales depth for a focal length
        other than the training one; `extrinsics[i]` (T_base_cam, from TF) puts the camera into
        the cloud; None leaves the camera out of the cloud (and of the radar maps).
        `radar_extrinsics` maps each sweep's sensor to T_base_radar; `target_pose` (T_world_base
        at the set's stamp) enables ego-motion compensation of sweeps carrying their own pose.
        """
        n = self.engine.n_views
        if not len(images) == len(intrinsics) == len(extrinsics) == n:
            raise ValueError(f"expected {n} images, intrinsics and extrinsics, got {len(images)}, "
                             f"{len(intrinsics)}, {len(extrinsics)}")  # fmt: skip
        present = [i for i in range(n) if images[i] is not None]
        if not present:
            raise ValueError("a frame set needs at least one camera image")
        geometric = [i for i in present if intrinsics[i] is not None and extrinsics[i] is not None]
        rig = None
        if geometric:
            cameras = [
                Camera(f"camera_{i}", images[i].shape[1], images[i].shape[0], intrinsics[i], extrinsics[i])
                for i in geometric
            ]
            rig = CameraRig(tuple(cameras), base_frame=base_frame)
        timings: dict[str, float] = {}

        start = time.perf_counter()
        maps = None
        if self.uses_radar and radar and rig is not None:
            h, w = self.engine.input_size
            maps = np.zeros((n, len(RADAR_CHANNELS), h, w), np.float32)
            maps[geometric] = radar_to_maps(
                radar, rig, image_size=(w, h), target_pose=target_pose, radar_extrinsics=radar_extrinsics
            )
        timings["radar_ms"] = 1000 * (time.perf_counter() - start)

        start = time.perf_counter()
        network_images, network_K = self._complete(images, intrinsics)
        results = self.engine.infer(network_images, intrinsics=network_K, radar=maps)
        timings["inference_ms"] = 1000 * (time.perf_counter() - start)
        depth = [results[i].depth if i in present else None for i in range(n)]
        confidence = [results[i].confidence if i in present else None for i in range(n)]

        cloud = None
        if self.cloud_options is not None and rig is not None:
            start = time.perf_counter()
            fused = fuse_depth_maps(
                [depth[i] for i in geometric],
                rig,
                colors=[images[i] for i in geometric],
                confidences=[confidence[i] for i in geometric],
                overlap=self.cloud_options.overlap,
                stride=self.cloud_options.stride,
            )
            fused.camera_index = np.asarray(geometric, dtype=np.int16)[fused.camera_index]
            cloud = cloud_array(fused, self.cloud_options)
            timings["cloud_ms"] = 1000 * (time.perf_counter() - start)
        return DepthOutputs(depth, confidence, cloud, timings)

    def _complete(
        self, images: list[np.ndarray | None], intrinsics: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Images and intrinsics for all views, placeholders standing in for absent cameras."""
        full_images, full_K = [], []
        for i, (image, K) in enumerate(zip(images, intrinsics, strict=True)):
            if image is None and not self._placeholders:
                h, w = self.engine.input_size
                image = np.zeros((h, w, 3), np.uint8)
            elif image is None:
                image, K = self._placeholders[i]
            full_images.append(image)
            full_K.append(K)
        if not self._placeholders or any(K is None for K in full_K):
            return full_images, None  # nothing to compare focal lengths with, or some unknown
        return full_images, np.stack(full_K)
