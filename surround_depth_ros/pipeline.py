"""One assembled `FrameSet` in, per-camera depth and one fused cloud out.

This is everything the node does between "a set is complete" and "publish", kept ROS-free so
that the node stays a thin adapter and the same path runs in `run-bag`, the demo, the
benchmarks and the tests. The set's rig is what the assembler knew at its stamps (CameraInfo
intrinsics, TF extrinsics), so a recalibration takes effect on the next frame set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from surround_depth_ros.binding import Binding, BindingError, bind_cameras
from surround_depth_ros.frameset import FrameSet
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


def trained_rig(rig: dict | None) -> CameraRig | None:
    """The rig a checkpoint records (`checkpoint.rig_to_dict` layout) as a `CameraRig`."""
    if not rig:
        return None
    cameras = [Camera(c["name"], c["width"], c["height"], np.asarray(c["K"]), np.asarray(c["T_base_cam"]),
                      c.get("frame_id", "")) for c in rig["cameras"]]  # fmt: skip
    return CameraRig(tuple(cameras), base_frame=rig.get("base_frame", "base_link"))


class SurroundDepthPipeline:
    """Engine + radar maps + cloud fusion; `process(frame_set)` is called once per assembled frame set.

    Live cameras are bound to the checkpoint's slots by where they look (`binding.bind_cameras`),
    once per change of the rig's cameras or extrinsics, so the order cameras are listed in never
    changes depth. Slots without a live camera get a black placeholder at the training camera's
    size and intrinsics, so the other views' depth scale is untouched. `camera_ids` names the
    cameras for the cloud's `camera` field (their index in it); by default the bound slot.
    Not thread-safe: its owner (the node's worker) calls it from one thread.
    """

    def __init__(
        self,
        engine: DepthEngine,
        cloud: CloudOptions | None = CloudOptions(),
        camera_ids: list[str] | None = None,
    ) -> None:
        self.engine = engine
        self.cloud_options = cloud
        self.camera_ids = list(camera_ids or [])
        self.trained = trained_rig(engine.info.rig if engine.info else None)
        self.binding: Binding | None = None
        self._binding_key: tuple | None = None
        self._placeholders = [
            (np.zeros((c.height, c.width, 3), np.uint8), c.K) for c in (self.trained.cameras if self.trained else [])
        ]

    @property
    def uses_radar(self) -> bool:
        return bool(self.engine.config.radar)

    def bind(self, rig: CameraRig) -> bool:
        """Bind the rig's cameras to slots (BindingError when impossible); True when the binding changed."""
        key = tuple((c.name, c.T_base_cam.round(4).tobytes()) for c in rig.cameras)
        if key == self._binding_key:
            return False
        if self.trained is None:  # a bare model: slots in list order
            n = len(rig.cameras)
            if n > self.engine.n_views:
                raise BindingError(f"{n} cameras for a model of {self.engine.n_views} views")
            binding = Binding(tuple(range(n)), tuple(rig.camera_names), (0.0,) * n, tuple(rig.adjacency()))
        else:
            binding = bind_cameras(rig, self.trained)
        changed = self.binding is None or binding.slots != self.binding.slots or binding.names != self.binding.names
        self.binding, self._binding_key = binding, key
        return changed

    def process(self, frame_set: FrameSet) -> DepthOutputs:
        """Depth and confidence per camera of `frame_set.rig` (in its order) and the fused cloud in its base frame."""
        rig = frame_set.rig
        self.bind(rig)
        slots = self.binding.slots
        timings: dict[str, float] = {}

        start = time.perf_counter()
        maps = None
        if self.uses_radar and frame_set.radar:
            h, w = self.engine.input_size
            live = radar_to_maps(frame_set.radar, rig, image_size=(w, h), target_pose=self._target_pose(frame_set),
                                 radar_extrinsics={s.sensor: s.T_base_sensor for s in frame_set.radar})  # fmt: skip
            maps = np.zeros((self.engine.n_views, len(RADAR_CHANNELS), h, w), np.float32)
            maps[list(slots)] = live
        timings["radar_ms"] = 1000 * (time.perf_counter() - start)

        start = time.perf_counter()
        images, K = self._slot_inputs(frame_set)
        results = self.engine.infer(images, intrinsics=K, radar=maps)
        timings["inference_ms"] = 1000 * (time.perf_counter() - start)
        depth = [results[slot].depth for slot in slots]
        confidence = [results[slot].confidence for slot in slots]

        cloud = None
        if self.cloud_options is not None:
            start = time.perf_counter()
            fused = fuse_depth_maps(depth, rig, colors=frame_set.images, confidences=confidence,
                                    overlap=self.cloud_options.overlap, stride=self.cloud_options.stride)  # fmt: skip
            fused.camera_index = np.asarray(self._camera_ids(rig), dtype=np.int16)[fused.camera_index]
            cloud = cloud_array(fused, self.cloud_options)
            timings["cloud_ms"] = 1000 * (time.perf_counter() - start)
        return DepthOutputs(depth, confidence, cloud, timings)

    def _camera_ids(self, rig: CameraRig) -> list[int]:
        if not self.camera_ids:
            return list(self.binding.slots)
        return [self.camera_ids.index(name) if name in self.camera_ids else -1 for name in rig.camera_names]

    @staticmethod
    def _target_pose(frame_set: FrameSet) -> np.ndarray | None:
        """T_world_base at the set's stamp, when every sweep carries its own pose (else no compensation)."""
        if frame_set.T_world_base is None or any(s.T_world_base is None for s in frame_set.radar):
            return None
        stamps = frame_set.camera_stamps_ns
        index = int(np.argmin(np.abs(stamps - frame_set.stamp_ns)))
        return frame_set.T_world_base[index]

    def _slot_inputs(self, frame_set: FrameSet) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Images and intrinsics in slot order, placeholders standing in for slots without a live camera."""
        n = self.engine.n_views
        images: list[np.ndarray | None] = [None] * n
        K: list[np.ndarray | None] = [None] * n
        for slot, camera, image in zip(self.binding.slots, frame_set.rig.cameras, frame_set.images, strict=True):
            images[slot], K[slot] = image, camera.K
        for slot in range(n):
            if images[slot] is None:
                if self._placeholders:
                    images[slot], K[slot] = self._placeholders[slot]
                else:
                    h, w = self.engine.input_size
                    images[slot] = np.zeros((h, w, 3), np.uint8)
        if not self._placeholders or any(k is None for k in K):
            return images, None  # nothing to compare focal lengths with
        return images, np.stack(K)
