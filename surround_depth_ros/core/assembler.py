"""`FrameAssembler`: stamped sensor inputs in, complete `FrameSet`s out; the one place a frame set is built.

The node (from its subscriptions) and `RosbagReader` (from a bag, in log order) both feed it, so a
live vehicle and an offline evaluation group the same messages into the same sets, with the same
extrinsics. It owns the synchronizer, the transform buffer and each camera's latest intrinsics;
a set leaves it only with full geometry: every camera in it has intrinsics and T_base_cam looked
up at its own stamp, every radar sweep its T_base_sensor, and where odom -> base is on /tf, ego
poses at each camera stamp and each sweep's stamp (for motion compensation).

A camera whose transform comes on /tf just after its image (a camera on a moving mount) would
miss its set: a set in which a camera's lookup fails only because its transform has not arrived
yet (extrapolation into the future) is held, as tf2_ros's MessageFilter holds a message, until
the transform comes or message time passes that image's stamp + `tf_wait_s`; sets leave in order.

Threading: one lock guards all state; every public method takes it, so callbacks on several
threads, a timer and a reader may call in any order. Nothing here blocks on the network.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.core.sync import FrameSetSynchronizer, SyncedSet
from surround_depth_ros.core.transforms import (
    ForwardExtrapolationError,
    TransformBatch,
    TransformBuffer,
    TransformError,
    TransformReport,
)
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar


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


class _TransformNotYet(Exception):
    """A camera's transform may still come: its set waits (see `FrameAssembler.poll`)."""


class FrameAssembler:
    """Synchronizer + TF buffer + CameraInfo + ego pose -> `FrameSet`s (see the module docstring).

    `sync_options` go to `FrameSetSynchronizer`. `odom_frame` is the world frame of ego poses on
    /tf; without it (or without such transforms) sets carry no pose and radar is not compensated.
    `transforms` lets an offline reader hand over a buffer already holding a whole bag's TF history.
    `tf_wait_s` is how long (message time) a set waits for a camera's transform; 0 decides at once.
    """

    def __init__(
        self,
        camera_names: list[str],
        radar_names: list[str] = (),  # type: ignore[assignment]
        *,
        base_frame: str = "base_link",
        odom_frame: str = "odom",
        transforms: TransformBuffer | None = None,
        tf_wait_s: float = 0.0,
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
        self._info_rejected: dict[str, str] = {}  # camera -> why its latest CameraInfo was rejected
        self._tf_wait = round(tf_wait_s * 1e9)
        self._held: deque[SyncedSet] = deque()  # decided by the synchronizer, waiting for a camera's transform
        self._resets_seen = 0
        self._lock = threading.RLock()

    def retune(self, settings: NodeSettings) -> None:
        """Take the live synchronization parameters (sync_window_s, sync_wait_s) for the next decisions."""
        with self._lock:
            self.sync.retune(window_s=settings.sync_window_s, wait_s=settings.sync_wait_s)

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
            self._info_rejected.pop(camera, None)

    def forget_intrinsics(self, camera: str, reason: str) -> None:
        """Drop a camera's model (its CameraInfo turned invalid, `reason` says why): its images are left out, saying
        why, until a valid one comes."""
        with self._lock:
            self.intrinsics.pop(camera, None)
            self._info_rejected[camera] = reason

    def add_transform(self, parent: str, child: str, T: np.ndarray, stamp_ns: int, static: bool) -> None:
        """Store one /tf or /tf_static edge (ValueError for a malformed one, nothing stored)."""
        with self._lock:
            self.tf.set_transform(parent, child, T, stamp_ns, static)

    def add_transforms(self, batch: TransformBatch, static: bool) -> TransformReport:
        """Store one whole /tf or /tf_static message under one lock; the report counts what was ignored and why."""
        with self._lock:
            return self.tf.set_transforms(batch, static)

    # ------------------------------------------------------------------ output
    def poll(self, now_stamp_ns: int | None = None, stream_stalled: bool = False) -> list[AssembledSet]:
        """Sets decided so far (see `FrameSetSynchronizer.poll`), with their geometry, oldest first.

        A set whose camera's transform has not arrived yet waits for it until message time passes that
        image's stamp + tf_wait_s. `stream_stalled`: the owner's wall clock saw every input silent for
        longer than tf_wait_s (the end of a stream, where message time stops): held sets go now, and a
        stream too short to show its rate is paired nearest-first (see `FrameSetSynchronizer.poll`).
        """
        with self._lock:
            decided = self.sync.poll(now_stamp_ns, stream_ended=stream_stalled)
            now = self.sync.now() if now_stamp_ns is None else int(now_stamp_ns)
            return self._assemble(decided, None if stream_stalled else now)

    def flush(self) -> list[AssembledSet]:
        """End of a stream (a bag): decide every waiting set."""
        with self._lock:
            return self._assemble(self.sync.flush(), None)

    def holding(self) -> bool:
        """Whether a set waits for a camera's transform (new transforms may let it go: poll)."""
        with self._lock:
            return bool(self._held)

    def oldest_pending_ns(self) -> int | None:
        """Anchor stamp of the oldest set not decided yet: waiting for a transform or for its cameras."""
        with self._lock:
            return self._held[0].anchor_stamp_ns if self._held else self.sync.oldest_pending_ns()

    def stats(self) -> dict[str, int]:
        """The synchronizer's counters and the cameras left out for missing geometry."""
        with self._lock:
            return {**self.sync.stats(), **{f"left out ({k})": v for k, v in self.left_out.items()}}

    def waiting(self) -> dict[str, str]:
        """Cameras left out of the sets, and why: unplaced by the synchronizer, or their last image lacked geometry."""
        with self._lock:
            return {**self.sync.unplaced(), **self._waiting}

    def firing_offsets_s(self) -> dict[str, float | None]:
        """Each camera's firing offset after the anchor, given or learned (None while unplaced)."""
        with self._lock:
            return self.sync.offsets_s()

    def take_skewed(self) -> list[tuple[str, int]]:
        """(input, stamp) of the messages the synchronizer gave up on for a clock that is off, since the last call."""
        with self._lock:
            return self.sync.take_skewed()

    def clock_resets(self) -> int:
        """How many times time jumped back or stepped: the owner resets temporal state on a change."""
        with self._lock:
            return self.sync.stats()["clock_jump_reset"]

    def _assemble(self, decided: list[SyncedSet], now: int | None) -> list[AssembledSet]:
        """The held sets and the newly decided ones that can go at message time `now` (None: all of them)."""
        ready = []
        resets = self.sync.stats()["clock_jump_reset"]
        if resets != self._resets_seen:  # dynamic transforms of the old timeline would interpolate nonsense
            self._resets_seen = resets
            ready = self._release(None)  # the old timeline's sets, with its transforms
            self.tf.clear()
        self._held.extend(decided)
        return ready + self._release(now)

    def _release(self, now: int | None) -> list[AssembledSet]:
        """Held sets, oldest first, up to the first one still waiting for a transform at `now` (None: none waits)."""
        ready = []
        while self._held:
            try:
                assembled = self._frame_set(self._held[0], now)
            except _TransformNotYet:
                break
            self._held.popleft()
            if assembled is not None:
                ready.append(assembled)
        return ready

    def _frame_set(self, synced: SyncedSet, now: int | None) -> AssembledSet | None:
        """The set with its geometry (None when no camera has it); _TransformNotYet while a transform may come."""
        looked_up = {
            name: self._camera(name, stamp, frame_id, image, now)
            for name, (stamp, (frame_id, image)) in synced.cameras.items()
        }
        left_out = dict.fromkeys(synced.missing, "no message in sync")
        cameras, images, stamps = [], [], []
        for name, (stamp, (_, image)) in synced.cameras.items():
            camera, why = looked_up[name]
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

    def _camera(
        self, name: str, stamp: int, frame_id: str, image: np.ndarray, now: int | None
    ) -> tuple[Camera | None, str]:
        """The camera at this image, or None and why; _TransformNotYet while its transform may still come."""
        info = self.intrinsics.get(name)
        if info is None and name in self._info_rejected:
            reason = self._info_rejected[name]
            return None, (
                "camera_info rejected: every CameraInfo received since the last valid one (if any) was rejected; "
                f"the latest: {reason}"
            )
        if info is None:
            return None, "no camera_info: none received yet"
        height, width = image.shape[:2]
        if (info.width, info.height) != (width, height):
            said = f"{info.width}x{info.height}"
            return None, f"camera_info mismatch: image is {width}x{height}, its camera_info says {said}"
        frame = frame_id or info.frame_id
        try:
            T = self._lookup(frame, stamp)
        except ForwardExtrapolationError as error:
            if self._tf_wait and now is not None and now <= stamp + self._tf_wait:
                raise _TransformNotYet from error
            waited = f"; waited {self._tf_wait / 1e9:g} s of message time for it" if self._tf_wait else ""
            return None, f"no transform: {self.base_frame} <- {frame!r} ({error}{waited})"
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
    overrides.setdefault("transforms", TransformBuffer(max_frames=settings.tf_max_frames))
    return FrameAssembler(
        list(settings.cameras),
        list(settings.radars) if radars is None else radars,
        base_frame=settings.base_frame,
        tf_wait_s=settings.tf_wait_s,
        anchor=settings.sync_anchor or None,
        window_s=settings.sync_window_s,
        wait_s=settings.sync_wait_s,
        radar_window_s=settings.radar_window_s,
        radar_sweeps=settings.radar_sweeps,
        missing_camera_policy=settings.missing_camera_policy,
        buffer_size=settings.sync_buffer_size,
        offsets_s=settings.firing_offsets(),
        **{"max_skew_s": settings.sync_max_skew_s, **overrides},
    )
