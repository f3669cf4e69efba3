"""`FrameAssembler`: stamped sensor inputs in, complete `FrameSet`s out; the one place a frame set is built.

The node (from its subscriptions) and `RosbagReader` (from a bag, in log order) both feed it, so a
live vehicle and an offline evaluation group the same messages into the same sets, with the same
extrinsics. It owns the synchronizer, the transform buffer and each camera's latest intrinsics;
a set leaves it only with full geometry: every camera in it has intrinsics and T_base_cam looked
up at its own stamp, every radar sweep its T_base_sensor, and where odom -> base is on /tf, ego
poses at each camera stamp and each sweep's stamp (for motion compensation).

Threading: one lock guards all state; every public method takes it, so callbacks on several
threads, a timer and a reader may call in any order. Nothing here blocks on the network.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.core.sync import FrameSetSynchronizer, SyncedSet
from surround_depth_ros.core.transforms import TransformBuffer, TransformError
from surround_depth_ros.frameset import FrameSet, PointSweep
from surround_depth_ros.rig import Camera, CameraRig, Radar


@dataclass(frozen=True)
class Intrinsics:
    """What a CameraInfo says that the depth path needs: K (3x3), the image size and the optical frame."""

    K: np.ndarray
    width: int
    height: int
    frame_id: str = ""


@dataclass
class AssembledSet:
    """A frame set plus what it lost: cameras absent from sync or left out for missing geometry, and why."""

    frame_set: FrameSet
    left_out: dict[str, str] = field(default_factory=dict)


class FrameAssembler:
    """Synchronizer + TF buffer + CameraInfo + ego pose -> `FrameSet`s (see the module docstring).

    `sync_options` go to `FrameSetSynchronizer`. `odom_frame` is the world frame of ego poses on
    /tf; without it (or without such transforms) sets carry no pose and radar is not compensated.
    `transforms` lets an offline reader hand over a buffer already holding a whole bag's TF history.
    """

    def __init__(
        self,
        camera_names: list[str],
        radar_names: list[str] = (),  # type: ignore[assignment]
        *,
        base_frame: str = "base_link",
        odom_frame: str = "odom",
        transforms: TransformBuffer | None = None,
        **sync_options: Any,  # noqa: ANN401 - forwarded keyword arguments
    ) -> None:
        self.camera_names, self.radar_names = list(camera_names), list(radar_names)
        self.base_frame, self.odom_frame = base_frame, odom_frame
        self.sync = FrameSetSynchronizer(self.camera_names, self.radar_names, **sync_options)
        self.tf = TransformBuffer() if transforms is None else transforms
        self.intrinsics: dict[str, Intrinsics] = {}
        self.left_out: Counter[str] = Counter()  # "reason: camera" -> sets that lacked it for that reason
        self.motion_compensated = False  # whether the last set's radar sweeps carried ego poses
        self._waiting: dict[str, str] = {}  # camera -> why its latest image was left out (geometry missing)
        self._resets_seen = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ input
    def add_image(self, camera: str, stamp_ns: int, frame_id: str, image: np.ndarray) -> bool:
        """Offer one decoded H x W x 3 uint8 RGB image; False when the synchronizer rejected it (counted)."""
        with self._lock:
            return self.sync.add_camera(camera, stamp_ns, (frame_id, image))

    def add_radar(self, radar: str, stamp_ns: int, frame_id: str, sweep: PointSweep) -> bool:
        with self._lock:
            return self.sync.add_radar(radar, stamp_ns, (frame_id, sweep))

    def set_intrinsics(self, camera: str, intrinsics: Intrinsics) -> None:
        with self._lock:
            self.intrinsics[camera] = intrinsics

    def forget_intrinsics(self, camera: str) -> None:
        """Drop a camera's model (its CameraInfo turned invalid): its images are left out until a valid one comes."""
        with self._lock:
            self.intrinsics.pop(camera, None)

    def add_transform(self, parent: str, child: str, T: np.ndarray, stamp_ns: int, static: bool) -> None:
        """Store one /tf or /tf_static edge (ValueError for a malformed one, nothing stored)."""
        with self._lock:
            self.tf.set_transform(parent, child, T, stamp_ns, static)

    # ------------------------------------------------------------------ output
    def poll(self, now_stamp_ns: int | None = None) -> list[AssembledSet]:
        """Sets decided so far (see `FrameSetSynchronizer.poll`), with their geometry."""
        with self._lock:
            return self._assemble(self.sync.poll(now_stamp_ns))

    def flush(self) -> list[AssembledSet]:
        """End of a stream (a bag): decide every waiting set."""
        with self._lock:
            return self._assemble(self.sync.flush())

    def oldest_pending_ns(self) -> int | None:
        with self._lock:
            return self.sync.oldest_pending_ns()

    def stats(self) -> dict[str, int]:
        """The synchronizer's counters and the cameras left out for missing geometry."""
        with self._lock:
            return {**self.sync.stats(), **{f"left out ({k})": v for k, v in self.left_out.items()}}

    def waiting(self) -> dict[str, str]:
        """Cameras whose latest images were left out for missing geometry, and why (until one makes it in)."""
        with self._lock:
            return dict(self._waiting)

    def clock_resets(self) -> int:
        """How many times time jumped back or stepped: the owner resets temporal state on a change."""
        with self._lock:
            return self.sync.stats()["clock_jump_reset"]

    def _assemble(self, decided: list[SyncedSet]) -> list[AssembledSet]:
        resets = self.sync.stats()["clock_jump_reset"]
        if resets != self._resets_seen:  # dynamic transforms of the old timeline would interpolate nonsense
            self._resets_seen = resets
            self.tf.clear()
        return [assembled for synced in decided if (assembled := self._frame_set(synced)) is not None]

    def _frame_set(self, synced: SyncedSet) -> AssembledSet | None:
        left_out = dict.fromkeys(synced.missing, "no message in sync")
        cameras, images, stamps = [], [], []
        for name, (stamp, (frame_id, image)) in synced.cameras.items():
            camera, why = self._camera(name, stamp, frame_id, image)
            if camera is None:
                left_out[name] = self._waiting[name] = why
                self.left_out[f"{why.split(':')[0]}: {name}"] += 1  # counted by cause and camera
                continue
            self._waiting.pop(name, None)
            cameras.append(camera)
            images.append(image)
            stamps.append(stamp)
        if not cameras:
            return None
        radar = self._radar(synced)
        rig = CameraRig(
            tuple(cameras), tuple(Radar(s.sensor, s.T_base_sensor) for s in _one_per_sensor(radar)), self.base_frame
        )
        poses = [self._pose(stamp) for stamp in stamps]
        frame_set = FrameSet(
            rig=rig,
            images=images,
            camera_stamps_ns=np.asarray(stamps, np.int64),
            radar=radar,
            T_world_base=np.stack(poses) if all(p is not None for p in poses) else None,
            name=f"set@{synced.anchor_stamp_ns}",
            anchor_stamp_ns=synced.anchor_stamp_ns,
        )
        return AssembledSet(frame_set, left_out)

    def _camera(self, name: str, stamp: int, frame_id: str, image: np.ndarray) -> tuple[Camera | None, str]:
        info = self.intrinsics.get(name)
        if info is None:
            return None, "no camera_info: none received yet"
        height, width = image.shape[:2]
        if (info.width, info.height) != (width, height):
            said = f"{info.width}x{info.height}"
            return None, f"camera_info mismatch: image is {width}x{height}, its camera_info says {said}"
        frame = frame_id or info.frame_id
        try:
            T = self._lookup(frame, stamp)
        except TransformError as error:
            return None, f"no transform: {self.base_frame} <- {frame!r} ({error})"
        try:
            return Camera(name, width, height, info.K, T, frame), ""
        except ValueError as error:  # a camera model the Camera type refuses (the node validates before)
            return None, f"camera_info invalid: {error}"

    def _lookup(self, frame: str, stamp: int) -> np.ndarray:
        """T_base_frame at the stamp: static edges hold at any time, dynamic ones must bracket it (as in tf2)."""
        return self.tf.lookup(self.base_frame, frame, stamp)

    def _pose(self, stamp: int) -> np.ndarray | None:
        try:
            return self.tf.lookup(self.odom_frame, self.base_frame, stamp)
        except TransformError:
            return None

    def _radar(self, synced: SyncedSet) -> list[PointSweep]:
        sweeps = []
        compensated = True
        for name, stamped in synced.radar.items():
            for stamp, (frame_id, sweep) in stamped:
                try:
                    T = self._lookup(frame_id, stamp)
                except TransformError:
                    self.left_out[f"no transform: {name}"] += 1
                    continue
                pose = self._pose(stamp)
                compensated &= pose is not None
                sweeps.append(PointSweep(name, stamp, sweep.points, sweep.fields, pose, T))
        sweeps.sort(key=lambda sweep: sweep.stamp_ns)  # oldest first, as every reader gives them
        self.motion_compensated = bool(sweeps) and compensated
        return sweeps


def _one_per_sensor(sweeps: list[PointSweep]) -> list[PointSweep]:
    seen: dict[str, PointSweep] = {}
    for sweep in sweeps:
        seen.setdefault(sweep.sensor, sweep)
    return list(seen.values())


def assembler_from_settings(
    settings: NodeSettings,
    radars: list[str] | None = None,
    **overrides: Any,  # noqa: ANN401 - forwarded keyword arguments
) -> FrameAssembler:
    """The assembler the node's parameters describe: the node, `RosbagReader` and `run-bag` build theirs here."""
    return FrameAssembler(
        list(settings.cameras),
        list(settings.radars) if radars is None else radars,
        base_frame=settings.base_frame,
        anchor=settings.sync_anchor or None,
        window_s=settings.sync_window_s,
        wait_s=settings.sync_wait_s,
        radar_window_s=settings.radar_window_s,
        radar_sweeps=settings.radar_sweeps,
        missing_camera_policy=settings.missing_camera_policy,
        buffer_size=settings.sync_buffer_size,
        **{"max_skew_s": settings.sync_max_skew_s, **overrides},
    )
