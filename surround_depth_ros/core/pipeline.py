"""One assembled `FrameSet` in, per-camera depth and one fused cloud out.

This is everything the node does between "a set is complete" and "publish", kept ROS-free so
that the node stays a thin adapter and the same path runs in `run-bag`, the demo, the
benchmarks and the tests. The set's rig is what the assembler knew at its stamps (CameraInfo
intrinsics, TF extrinsics), so a recalibration takes effect on the next frame set.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from surround_depth_ros.base.resources import packaged_file
from surround_depth_ros.base.threads import torch_threads
from surround_depth_ros.core.binding import Binding, BindingError, bind_cameras
from surround_depth_ros.core.fusion import CloudFusion, CloudOptions
from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.inference.backend import BackendUnavailable
from surround_depth_ros.inference.engine import RESOLUTIONS, DepthEngine, host_arrays
from surround_depth_ros.network.checkpoint import CheckpointError
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.pointcloud import FUSED_CLOUD_DTYPE
from surround_depth_ros.sensors.radar import RADAR_CHANNELS, radar_to_maps
from surround_depth_ros.sensors.rig import Camera, CameraRig, resize_camera

# The cloud a pipeline makes unless told otherwise: `fusion.CloudOptions`' point budget picks the pixels.
DEFAULT_CLOUD = CloudOptions()
DEFAULT_CHECKPOINT = ("models", "student_default.pt")  # the shipped student, inside the package
# The keys of `DepthOutputs.timings_ms`, in processing order, each always present (0 when the stage did not
# run), then "total". Stable: the node's diagnostics and the benchmarks show them by these names.
STAGES = ("radar", "upload", "preprocess", "forward", "mask", "upsample", "cloud", "host_copy")


@dataclass
class DepthOutputs:
    """What a publisher publishes for one frame set, per camera of its rig in the rig's order.

    `depth` (metres, NaN = no estimate) and `confidence` ([0, 1]) are at the size of `cameras[i]`,
    the camera model they belong to: the frame set's camera, or that camera scaled to the network's
    output size for `resolution="network"` (its CameraInfo then needs `calibration_for_maps`). `cloud`
    is a `pointcloud.FUSED_CLOUD_DTYPE` structured array in the rig's base frame (None when the
    pipeline makes no cloud). `timings_ms` holds wall-clock milliseconds per stage (`STAGES`) and
    their "total".
    """

    depth: list[np.ndarray]
    confidence: list[np.ndarray]
    cameras: list[Camera]
    cloud: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)


class StageClock:
    """Wall-clock time of consecutive stages of one frame set, without making any stage wait for the device.

    On CUDA each boundary is an event in the stream, so the device runs ahead and a stage's time is
    when the device finished it (read after the host copy, which waits anyway); on the CPU the
    work is synchronous and the clock is `time.perf_counter`.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.start = time.perf_counter()
        self.marks: list[tuple[str, float | torch.cuda.Event]] = [("", self._now())]

    def _now(self) -> float | torch.cuda.Event:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, stage: str) -> None:
        """`stage` ends now (it began at the previous mark)."""
        self.marks.append((stage, self._now()))

    def timings_ms(self) -> dict[str, float]:
        """Milliseconds per name of `STAGES` (0 for stages not marked), and "total" (host wall clock)."""
        times = dict.fromkeys(STAGES, 0.0)
        if self.cuda:
            self.marks[-1][1].synchronize()
        for (_, begin), (stage, end) in pairwise(self.marks):
            times[stage] += begin.elapsed_time(end) if self.cuda else 1000 * (end - begin)
        times["total"] = 1000 * (time.perf_counter() - self.start)
        return times


class SurroundDepthPipeline:
    """Engine + radar maps + cloud fusion; `process(frame_set)` is called once per assembled frame set.

    Live cameras are bound to the checkpoint's slots by where they look (`binding.bind_cameras`),
    once per change of the rig's cameras or extrinsics, so the order cameras are listed in never
    changes depth. Slots without a live camera get a black placeholder at the training camera's
    size and intrinsics, so the other views' depth scale is untouched. `camera_ids` names the
    cameras for the cloud's `camera` field (their index in it); by default the bound slot.
    `resolution` "camera" upsamples depth and confidence on the device to each camera's size,
    "network" keeps the network's output size (and fuses the cloud from those maps).
    `canonical_camera` places each image by its focal length against its slot's training camera
    (`DepthEngine.placements`); False resizes plainly (`evaluate --no-focal-scaling`, to compare).
    Not thread-safe: its owner (the node's worker) calls it from one thread.
    """

    def __init__(
        self,
        engine: DepthEngine,
        cloud: CloudOptions | None = DEFAULT_CLOUD,
        camera_ids: list[str] | None = None,
        resolution: str = "camera",
        canonical_camera: bool = True,
    ) -> None:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
        self.engine = engine
        self.cloud_options = cloud
        self.resolution = resolution
        self.canonical_camera = canonical_camera
        # The cloud is fused on the engine's device from its maps (no copy of the maps in between).
        self.fusion = CloudFusion(cloud, device=engine.device) if cloud is not None else None
        self.camera_ids = list(camera_ids or [])
        self.trained = engine.info.rig if engine.info else None
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
            binding = bind_cameras(rig, self.trained, trained_adjacency=self.engine.info.adjacency)
        self.engine.set_adjacency(binding.adjacency)  # cross-view attention over the bound rig's pairs
        changed = self.binding is None or binding.slots != self.binding.slots or binding.names != self.binding.names
        self.binding, self._binding_key = binding, key
        return changed

    def retune(self, settings: NodeSettings) -> None:
        """Take the live parameters for the next `process`: min_confidence and the cloud's (publish_cloud, cloud_*).

        The fusion keeps its rig geometry unless the sampling changed (`CloudFusion.geometry` rebuilds it then);
        turning the cloud on builds the fusion. Call it between two `process` calls, on the thread that makes them.
        """
        self.engine.min_confidence = settings.min_confidence
        self.cloud_options = cloud_options(settings)
        if self.cloud_options is None:
            self.fusion = None
        elif self.fusion is None:
            self.fusion = CloudFusion(self.cloud_options, device=self.engine.device)
        else:
            self.fusion.options = self.cloud_options

    def process(self, frame_set: FrameSet, cloud: bool = True) -> DepthOutputs:
        """Depth and confidence per camera of `frame_set.rig` (in its order) and the fused cloud in its base frame.

        `cloud` False skips the fusion (nobody listens to it). One path on the engine's device from the uint8
        images to the packed outputs, then one copy of all of them to the host.
        """
        engine, rig = self.engine, frame_set.rig
        self.bind(rig)
        slots = list(self.binding.slots)
        clock = StageClock(engine.device)

        images, K = self._slot_inputs(frame_set)
        # Where each image goes in the network input (the canonical camera); None: plain resize (no training rig).
        placements = None if K is None else engine.placements(K, [image.shape[:2] for image in images])
        h, w = engine.input_size
        # The live cameras as the network sees them: at its input size, with the intrinsics of their placement.
        network_cameras = [
            resize_camera(c, w, h)
            if placements is None
            else dataclasses.replace(c, width=w, height=h, K=placements[slot].K)
            for c, slot in zip(rig.cameras, slots, strict=True)
        ]
        radar = None
        if self.uses_radar and frame_set.radar:
            network_rig = CameraRig(tuple(network_cameras), rig.radars, rig.base_frame)
            live = radar_to_maps(
                frame_set.radar,
                network_rig,
                image_size=(w, h),
                target_pose=self._target_pose(frame_set),
                radar_extrinsics={s.sensor: s.T_base_sensor for s in frame_set.radar},
            )
            radar = np.zeros((engine.n_views, len(RADAR_CHANNELS), h, w), np.float32)
            radar[slots] = live
            clock.mark("radar")
        uploaded = engine.upload(images)
        clock.mark("upload")
        inputs = engine.network_inputs(engine.network_images(uploaded, placements), radar)
        clock.mark("preprocess")
        depth, confidence = engine.run_network(inputs)
        clock.mark("forward")
        depth, confidence = engine.mask(depth, confidence, placements=placements)
        with torch_threads(engine.threads):  # a copy with 2 threads on busy cores took 8 ms, 0.05 with one (threads.py)
            depth, confidence = depth[slots], confidence[slots]  # the live cameras, in the rig's order
        clock.mark("mask")
        if self.resolution == "camera":
            cameras = list(rig.cameras)
            sizes = [(c.height, c.width) for c in cameras]
            live = None if placements is None else [placements[slot] for slot in slots]
            depth, confidence = engine.resize(depth, sizes, live), engine.resize(confidence, sizes, live)
            clock.mark("upsample")
        else:  # the network's cameras at the size of its output maps
            map_h, map_w = depth.shape[-2:]
            cameras = [resize_camera(c, map_w, map_h) for c in network_cameras]
            depth, confidence = depth[:, 0], confidence[:, 0]

        maps = _unbind(depth) + _unbind(confidence)
        fuse = cloud and self.fusion is not None
        if fuse:
            K_maps = np.stack([c.K for c in cameras])
            camera_ids = [index % 256 for index in self._camera_ids(rig)]  # uint8 field: -1 (not listed) is 255
            colors = [uploaded[slot] for slot in slots]  # with their own K: the maps' may be a canonical placement's
            maps.append(
                self.fusion.cloud(depth, K_maps, rig.extrinsics(), confidence, colors, camera_ids, rig.intrinsics())
            )
            clock.mark("cloud")
        host = host_arrays(maps)  # one copy from a GPU (it waits for the device)
        clock.mark("host_copy")
        n = len(cameras)
        fused = host[2 * n].view(FUSED_CLOUD_DTYPE) if fuse else None
        return DepthOutputs(host[:n], host[n : 2 * n], cameras, fused, clock.timings_ms())

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
        if not self.canonical_camera or not self._placeholders or any(k is None for k in K):
            return images, None  # asked not to, or nothing to compare focal lengths with
        return images, np.stack(K)


def _unbind(maps: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-camera maps of an (N, h, w) tensor (views) or a list of them."""
    return list(maps.unbind(0)) if isinstance(maps, torch.Tensor) else list(maps)


class StartupError(RuntimeError):
    """The pipeline the parameters ask for cannot be built (model, back-end); the message says what to fix."""


def pipeline_from_settings(settings: NodeSettings) -> SurroundDepthPipeline:
    """The engine and pipeline the node's parameters describe: the node and `run-bag` build theirs here."""
    try:
        checkpoint = Path(settings.checkpoint) if settings.checkpoint else packaged_file(*DEFAULT_CHECKPOINT)
    except FileNotFoundError as error:
        raise StartupError(
            f"no checkpoint given and the default student is missing: {error}; "
            "set the parameter checkpoint:=/path/to/student.pt"
        ) from error
    try:
        engine = DepthEngine(
            checkpoint,
            backend=settings.backend,
            device=settings.device or None,
            precision=settings.precision,
            min_confidence=settings.min_confidence,
        )
    except (CheckpointError, BackendUnavailable, FileNotFoundError, ValueError, RuntimeError) as error:
        raise StartupError(f"cannot load the depth model {checkpoint}: {error}") from error
    if len(settings.cameras) > engine.n_views:
        raise StartupError(
            f"{checkpoint} has {engine.n_views} camera slots, the parameters list {len(settings.cameras)} "
            f"cameras: list at most {engine.n_views} (cameras are bound to slots by where TF says they look)"
        )
    # First-run work (ONNX Runtime's TensorRT provider builds its engine: minutes) happens here, logged with
    # progress, before the node subscribes, not in the worker on the first frame set.
    try:
        engine.warm_up()
    except Exception as error:  # noqa: BLE001 - CUDA, TensorRT and ONNX Runtime's own types (not RuntimeError) alike
        raise StartupError(
            f"the depth model {checkpoint} fails its first run on the {engine.backend_name} back-end: {error}"
        ) from error
    return SurroundDepthPipeline(
        engine, cloud_options(settings), camera_ids=list(settings.cameras), resolution=settings.depth_resolution
    )


def cloud_options(settings: NodeSettings) -> CloudOptions | None:
    """The cloud the parameters describe (at start and on a retune); None when publish_cloud is off."""
    if not settings.publish_cloud:
        return None
    return CloudOptions(
        overlap=settings.cloud_overlap,
        max_points=settings.cloud_max_points,
        stride=settings.cloud_stride or None,  # 0: from the point budget
        max_range_m=settings.cloud_max_range_m,
        voxel_size_m=settings.cloud_voxel_size_m,
    )
