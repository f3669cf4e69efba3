"""One assembled `FrameSet` in, per-camera depth and one fused cloud out.

This is everything the node does between "a set is complete" and "publish", kept ROS-free so
that the node stays a thin adapter and the same path runs in `run-bag`, the demo, the
benchmarks and the tests. The set's rig is what the assembler knew at its stamps (CameraInfo
intrinsics, TF extrinsics), so a recalibration takes effect on the next frame set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surround_depth_ros.binding import Binding, BindingError, bind_cameras
from surround_depth_ros.checkpoint import CheckpointError
from surround_depth_ros.frameset import FrameSet
from surround_depth_ros.fusion import CloudFusion, CloudOptions, cloud_points
from surround_depth_ros.inference.backend import BackendUnavailable
from surround_depth_ros.inference.engine import DepthEngine, host_arrays
from surround_depth_ros.radar import RADAR_CHANNELS, radar_to_maps
from surround_depth_ros.resources import packaged_file
from surround_depth_ros.rig import Camera, CameraRig

# The cloud a pipeline makes unless told otherwise: `fusion.CloudOptions`' point budget picks the stride.
DEFAULT_CLOUD = CloudOptions()
DEFAULT_CHECKPOINT = ("models", "student_default.pt")  # the shipped student, inside the package


@dataclass
class DepthOutputs:
    """Depth (metres, NaN = no estimate) and confidence per camera at its image size, the cloud, timings.

    `cloud` is a `pointcloud.FUSED_CLOUD_DTYPE` structured array in the rig's base frame (None when
    the pipeline makes no cloud).
    """

    depth: list[np.ndarray]
    confidence: list[np.ndarray]
    cloud: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)


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
        cloud: CloudOptions | None = DEFAULT_CLOUD,
        camera_ids: list[str] | None = None,
    ) -> None:
        self.engine = engine
        self.cloud_options = cloud
        # The cloud is fused on the engine's device from its maps (no copy of the maps in between).
        self.fusion = CloudFusion(cloud, device=engine.device) if cloud is not None else None
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
        # On the engine's device, at each camera's image size; the cloud starts from these tensors.
        result = self.engine.infer_maps(images, intrinsics=K, radar=maps, resolution="camera")
        depth_maps, confidence_maps = (_per_slot(m, slots) for m in (result.depth, result.confidence))
        host = host_arrays(depth_maps + confidence_maps)  # one copy from a GPU (it waits for the network)
        depth, confidence = host[: len(slots)], host[len(slots) :]
        timings["inference_ms"] = 1000 * (time.perf_counter() - start)

        cloud = None
        if self.fusion is not None:
            start = time.perf_counter()
            K_live = np.stack([camera.K for camera in rig.cameras])  # the maps are at the cameras' sizes
            T_live = np.stack([camera.T_base_cam for camera in rig.cameras])
            colors = [result.images[slot] for slot in slots]
            camera_ids = [index % 256 for index in self._camera_ids(rig)]  # uint8 field: -1 (not listed) is 255
            packed = self.fusion.cloud(depth_maps, K_live, T_live, confidence_maps, colors, camera_ids)
            cloud = cloud_points(packed)
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


def _per_slot(maps: torch.Tensor | list[torch.Tensor], slots: tuple[int, ...]) -> list[torch.Tensor]:
    """The maps of the bound slots, in the rig's camera order."""
    return [maps[slot] for slot in slots]


class StartupError(RuntimeError):
    """The pipeline the parameters ask for cannot be built (model, back-end); the message says what to fix."""


def pipeline_from_settings(settings: dict[str, Any]) -> SurroundDepthPipeline:
    """The engine and pipeline the node's parameters describe: the node and `run-bag` build theirs here."""
    try:
        checkpoint = Path(settings["checkpoint"]) if settings["checkpoint"] else packaged_file(*DEFAULT_CHECKPOINT)
    except FileNotFoundError as error:
        raise StartupError(f"no checkpoint given and the default student is missing: {error}; "
                           "set the parameter checkpoint:=/path/to/student.pt") from error  # fmt: skip
    try:
        engine = DepthEngine(
            checkpoint,
            backend=settings["backend"],
            device=settings["device"] or None,
            precision=settings["precision"],
            min_confidence=settings["min_confidence"],
        )
    except (CheckpointError, BackendUnavailable, FileNotFoundError, ValueError, RuntimeError) as error:
        raise StartupError(f"cannot load the depth model {checkpoint}: {error}") from error
    if len(settings["cameras"]) > engine.n_views:
        raise StartupError(
            f"{checkpoint} has {engine.n_views} camera slots, the parameters list {len(settings['cameras'])} "
            f"cameras: list at most {engine.n_views} (cameras are bound to slots by where TF says they look)"
        )
    cloud = None
    if settings["publish_cloud"]:
        cloud = CloudOptions(
            overlap=settings["cloud_overlap"],
            stride=settings["cloud_stride"],
            max_range_m=settings["cloud_max_range_m"],
            voxel_size_m=settings["cloud_voxel_size_m"],
        )
    return SurroundDepthPipeline(engine, cloud, camera_ids=list(settings["cameras"]))
