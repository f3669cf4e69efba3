"""rosbag2 (mcap or sqlite3) -> FrameSets, so that recorded drives train and evaluate like any dataset.

Reads the layout of `bag/topics.py` with `rosbags` (no ROS distribution), or any other layout the
node's topic patterns describe (`settings`, a params file's values: its `image_topic`,
`camera_info_topic`, `radar_topic`, and its `cameras` and `radars`, in that order). The rig comes from
/tf_static (chains such as base_link -> cam body -> optical frame are composed) and the first
CameraInfo of each camera unless one is given. Frame sets are built by the node's own
`FrameAssembler`, fed in log order: the same synchronizer policy, the same TF lookups at each
image's stamp, the same radar attachment (the `radar_sweeps` newest per radar, with their poses).
`settings` (the node's parameters) sets that policy; by default it is the node's, except that
sets with a missing camera are dropped (training wants complete sets) and the window is
`max_camera_skew_ns`. Each set also gets the lidar sweep nearest to its cameras, from
`max_sweep_age_ns` before its first camera to `sweep_slack_ns` after its last. `complete=False`
yields every set the assembler emits, as the node would get it (a set missing a camera under the
`partial` policy included); by default only sets with every rig camera.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from surround_depth_ros.bag import storage, topics
from surround_depth_ros.bag.storage import BagFormatError, ReadFaults
from surround_depth_ros.base.images import ImageFormatError, decode_compressed_rgb
from surround_depth_ros.conversion.messages import camera_from_info, cloud_points, image_rgb, stamp_ns, transform_batch
from surround_depth_ros.core import params
from surround_depth_ros.core.assembler import FrameAssembler, Intrinsics, assembler_from_settings
from surround_depth_ros.core.camera_model import camera_model_problems
from surround_depth_ros.core.transforms import TransformBuffer, TransformError
from surround_depth_ros.sensors import pointcloud
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.pointcloud import PointCloudError
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar

__all__ = ["BagFormatError", "RosbagReader"]


class RosbagReader:
    """The FrameSets of a bag, a `FrameSource`: `rig`, `len()` (an estimate, see `__len__`), `T_base_lidar`,
    `transforms_ignored` (TF the node would ignore too, by cause), `faults` (messages the reading skipped and why,
    and why it stopped early: a damaged bag's usable part is read), and, during and after a pass, `dropped`
    (images in no set) and `sync_stats`.

    During a pass `camera_info` holds each camera's latest CameraInfo message (what the node republishes
    with its depth). Without `topic_names` the topics are the patterns of `settings` (the node's defaults).
    A bag that cannot be opened, or holds no rig, raises BagFormatError (FileNotFoundError without metadata).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        rig: CameraRig | None = None,
        topic_names: topics.TopicNames | None = None,
        base_frame: str = "base_link",
        max_camera_skew_ns: int = 150_000_000,
        radar_sweeps: int = 1,
        sweep_slack_ns: int = 50_000_000,
        max_sweep_age_ns: int = 500_000_000,
        settings: dict[str, Any] | None = None,
        complete: bool = True,
    ) -> None:
        self.path = Path(path)
        self.complete = complete
        self.camera_info: dict[str, Any] = {}
        self.rejected: Counter[str] = Counter()  # "camera: cause" -> undecodable images
        self.transforms_ignored: Counter[str] = Counter()  # cause -> transforms of /tf and /tf_static
        self.faults = ReadFaults()
        self.max_camera_skew_ns = max_camera_skew_ns
        self.radar_sweeps = radar_sweeps
        self.sweep_slack_ns = sweep_slack_ns
        self.max_sweep_age_ns = max_sweep_age_ns
        self.clock_resets = 0  # time jumps back (a bag of several recordings) so far: temporal state must reset
        self._assembler: FrameAssembler | None = None  # the current (or last) pass's, with what it holds
        self._ready: deque[FrameSet] = deque()
        self._offered = self._used = 0
        values = {
            "missing_camera_policy": "drop",
            "sync_window_s": max_camera_skew_ns / 1e9,
            "radar_sweeps": radar_sweeps,
            "radar_window_s": max_sweep_age_ns / 1e9,
            "base_frame": base_frame,
            **(settings or {}),
        }
        self.settings = params.settings_from_values(values, "RosbagReader settings")
        self.names = topic_names or topics.TopicNames.from_settings(self.settings)
        # A params file names the sensors (in its order); without one they are found from the bag's topics.
        named = {key: list(settings[key]) for key in ("cameras", "radars") if key in (settings or {})}
        with storage.open_bag(self.path) as reader:
            expected = {c.topic: self._type_of(c.topic) for c in reader.connections}
            self.topics = storage.main_types(reader.connections, expected)  # topic -> the type it is read as
            self._connections = [c for c in reader.connections if self.topics[c.topic] == c.msgtype]
            self.message_counts = Counter()
            for c in self._connections:
                self.message_counts[c.topic] += storage.declared_count(c)
            self.message_duration_s = max(reader.duration, 0) / 1e9
            self.transforms = self._transforms(reader)
            self._rig = rig or self._rig_from_bag(reader, base_frame, named)
            self.lidar_frame = self._lidar_frame(reader)
            read = {t: m for t, m in self.topics.items() if t in self._pass_topics()}
            storage.count_other_types(reader.connections, read, self.faults)
        lidar_known = self.lidar_frame in self.transforms.frames()
        self.T_base_lidar = self._extrinsic(self.lidar_frame) if lidar_known else None
        image_types = (topics.IMAGE_TYPE, topics.COMPRESSED_IMAGE_TYPE)
        for cam in self.rig.cameras:
            if self.topics.get(self.names.image(cam.name)) not in image_types:
                raise self._format_error(
                    f"no topic {self.names.image(cam.name)} for camera {cam.name} (image_topic "
                    f"{self.names.image_pattern!r}, image_transport {self.names.image_transport}); "
                    f"image topics in the bag: {sorted(t for t, m in self.topics.items() if m in image_types)}"
                )

    def _type_of(self, topic: str) -> str | None:
        """The type the node (or the set-up) reads `topic` as, None for a topic it does not read."""
        if topic in (topics.TF_TOPIC, topics.TF_STATIC_TOPIC):
            return topics.TF_TYPE
        if topic == self.names.lidar:
            return topics.POINT_CLOUD_TYPE
        kind = self.names.sensor_of(topic)
        image = topics.COMPRESSED_IMAGE_TYPE if self.names.compressed else topics.IMAGE_TYPE
        return {"image": image, "camera_info": topics.CAMERA_INFO_TYPE, "points": topics.POINT_CLOUD_TYPE}.get(
            kind[0] if kind else ""
        )

    def _pass_topics(self) -> list[str]:
        """Every topic a pass (and the set-up) reads: the rig's images, CameraInfo and radars, the lidar, TF."""
        rig = self.rig
        return [
            *(self.names.image(c.name) for c in rig.cameras),
            *(self.names.camera_info(c.name) for c in rig.cameras),
            *(self.names.radar(r.name) for r in rig.radars),
            self.names.lidar,
            topics.TF_STATIC_TOPIC,
            topics.TF_TOPIC,
        ]

    def _format_error(self, problem: str) -> BagFormatError:
        """`problem` of this bag, with why reading stopped when it did (a damaged storage hides what it lacks)."""
        stopped = f" (reading stopped early: {self.faults.stopped})" if self.faults.stopped else ""
        return BagFormatError(f"{self.path}: {problem}{stopped}")

    @property
    def sync_stats(self) -> dict[str, int]:
        """The synchronizer's counters of the current (or last) pass; empty before one."""
        return self._assembler.stats() if self._assembler is not None else {}

    def reading_summary(self) -> dict[str, Any]:
        """What the current (or last) pass could not use and why, for a command's summary (JSON types)."""
        return {
            "images_in_no_frame_set": self.dropped,
            "images_undecodable": dict(self.rejected),
            **self.faults.summary(),
            "transforms_ignored": dict(self.transforms_ignored),
            "sync": {key: value for key, value in self.sync_stats.items() if value},
        }

    @property
    def has_lidar(self) -> bool:
        """Whether the bag has lidar clouds on the lidar topic and /tf_static places their frame (ground truth)."""
        return self.topics.get(self.names.lidar) == topics.POINT_CLOUD_TYPE and self.T_base_lidar is not None

    # ------------------------------------------------------------------ set-up passes
    def _messages(
        self, reader: Reader, topic_list: list[str], faults: ReadFaults | None = None
    ) -> Iterator[tuple[str, str, Any]]:
        """(topic, type, message) of `topic_list`'s messages of the type each is read as; faults counted in
        `faults` (default `self.faults`)."""
        connections = [c for c in self._connections if c.topic in topic_list]
        for connection, _, msg in storage.messages(reader, connections, self.faults if faults is None else faults):
            yield connection.topic, connection.msgtype, msg

    def _first_messages(self, reader: Reader, topic_list: list[str]) -> Iterator[tuple[str, str, Any]]:
        """`_messages` for the set-up's look at topics a pass reads again: the pass counts their skipped messages
        (here they would be counted twice); a stop is kept."""
        scratch = ReadFaults()
        yield from self._messages(reader, topic_list, scratch)
        self.faults.stopped = self.faults.stopped or scratch.stopped

    def _transforms(self, reader: Reader) -> TransformBuffer:
        """/tf_static and the whole /tf history of the bag (poses are interpolated, never extrapolated), with the
        node's frame limit."""
        buffer = TransformBuffer(cache_s=self.message_duration_s + 1.0, max_frames=self.settings.tf_max_frames)
        for topic, _, msg in self._messages(reader, [topics.TF_STATIC_TOPIC, topics.TF_TOPIC]):
            report = buffer.set_transforms(transform_batch(msg.transforms), static=topic == topics.TF_STATIC_TOPIC)
            self.transforms_ignored.update(report.ignored())
        return buffer

    def _extrinsic(self, frame: str, base_frame: str | None = None) -> np.ndarray:
        base_frame = base_frame or self.rig.base_frame
        try:
            return self.transforms.lookup(base_frame, frame)
        except TransformError as error:
            raise self._format_error(f"no transform from {base_frame!r} to {frame!r}: {error}") from error

    def pose_at(self, stamp: int) -> np.ndarray | None:
        """T_world_base (odom -> base_frame on /tf) at `stamp`, None where the bag has no pose around it."""
        try:
            return self.transforms.lookup(topics.ODOM_FRAME, self.rig.base_frame, stamp)
        except TransformError:
            return None

    def _lidar_frame(self, reader: Reader) -> str:
        """The frame of the lidar topic's first message ("lidar" when the bag has no lidar topic)."""
        for _, _, msg in self._first_messages(reader, [self.names.lidar]):
            return msg.header.frame_id
        return topics.LIDAR_NAME

    def _sensor_topics(self, named: dict[str, list[str]]) -> tuple[dict[str, str], dict[str, str]]:
        """{camera: CameraInfo topic} and {radar: PointCloud2 topic}: the named sensors, else all the bag has in
        the layout."""
        if "cameras" in named:
            cameras = {name: self.names.camera_info(name) for name in named["cameras"]}
            missing = [t for t in cameras.values() if self.topics.get(t) != topics.CAMERA_INFO_TYPE]
            if missing:
                found = sorted(t for t, m in self.topics.items() if m == topics.CAMERA_INFO_TYPE)
                pattern = self.names.camera_info_pattern
                raise self._format_error(
                    f"no CameraInfo topic {missing[0]} (camera_info_topic {pattern!r}); CameraInfo topics in the bag: "
                    f"{found}"
                )
        else:
            found = [(self.names.sensor_of(t), t) for t, m in self.topics.items() if m == topics.CAMERA_INFO_TYPE]
            cameras = {kind[1]: t for kind, t in found if kind and kind[0] == "camera_info"}
        clouds = [t for t, m in self.topics.items() if m == topics.POINT_CLOUD_TYPE and t != self.names.lidar]
        if "radars" in named:  # a radar the bag lacks is simply absent, as it is for the node
            radars = {name: self.names.radar(name) for name in named["radars"] if self.names.radar(name) in clouds}
        else:
            found = [(self.names.sensor_of(t), t) for t in clouds]
            radars = {kind[1]: t for kind, t in found if kind and kind[0] == "points"}
        return cameras, radars

    def _rig_from_bag(self, reader: Reader, base_frame: str, named: dict[str, list[str]]) -> CameraRig:
        """Cameras from each one's first usable CameraInfo, radars from their first cloud (a radar without one is
        left out, as the node would never hear it), all placed by /tf_static."""
        info_topics, radar_topics = self._sensor_topics(named)
        if not info_topics:
            raise self._format_error(
                f"no {self.names.camera_info('<camera>')} topics to build the rig from; "
                "pass rig=... (e.g. load_rig(config/rig_nuscenes.yaml)) for bags without camera_info"
            )
        if not self.transforms.frames():
            raise self._format_error("no /tf_static transforms to place the cameras; pass rig=...")
        cameras_of = {topic: name for name, topic in info_topics.items()}
        first: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for topic, _, msg in self._first_messages(reader, [*info_topics.values(), *radar_topics.values()]):
            if topic in cameras_of and (problem := _camera_problems(cameras_of[topic], msg)):
                problems.setdefault(topic, problem)
                continue
            first.setdefault(topic, msg)
            if len(first) == len(info_topics) + len(radar_topics):
                break
        cameras: list[Camera] = []
        for name, topic in info_topics.items():
            if topic not in first:
                why = problems.get(topic, "none could be read")
                raise self._format_error(f"no usable CameraInfo on {topic}: {why}")
            msg = first[topic]
            cameras.append(camera_from_info(name, msg, self._extrinsic(msg.header.frame_id, base_frame)))
        radars = []
        for name, topic in radar_topics.items():
            if topic in first:
                frame = first[topic].header.frame_id
                radars.append(Radar(name, self._extrinsic(frame, base_frame), frame))
        return CameraRig(cameras, radars, base_frame)

    # ------------------------------------------------------------------ frame sets
    @property
    def rig(self) -> CameraRig:
        """The rig given, else the one /tf_static and each camera's first CameraInfo describe."""
        return self._rig

    def __len__(self) -> int:
        """The best count of frame sets known before a pass: the fewest images of any camera.

        A bound, not a promise: sets the synchronizer drops (a late or undecodable image) make a pass
        yield fewer. Good for progress bars and caps; a pass is the only exact count.
        """
        return min(self.message_counts.get(self.names.image(c.name), 0) for c in self.rig.cameras)

    def __iter__(self) -> Iterator[FrameSet]:
        rig = self.rig
        cameras = {self.names.image(c.name): c.name for c in rig.cameras}
        infos = {self.names.camera_info(c.name): c.name for c in rig.cameras}
        radars = {self.names.radar(r.name): r.name for r in rig.radars}
        # A recorded bag has no skewed sensor clocks to guard against, and some (DDAD samples) run at 1 Hz.
        skew = max(1.0, self.message_duration_s)
        assembler = assembler_from_settings(
            replace(self.settings, cameras=tuple(rig.camera_names), base_frame=rig.base_frame),
            rig.radar_names,
            max_skew_s=skew,
            transforms=self.transforms,  # the whole bag's TF history: poses interpolate, never extrapolate
        )
        for cam in rig.cameras:  # the given (or first) calibration; CameraInfo in the bag updates it
            assembler.set_intrinsics(cam.name, Intrinsics(cam.K, cam.width, cam.height, cam.frame_id))
            if cam.frame_id not in self.transforms.frames():
                self.transforms.set_transform(rig.base_frame, cam.frame_id, cam.T_base_cam, static=True)
        for radar in rig.radars:
            if radar.frame_id not in self.transforms.frames():
                self.transforms.set_transform(rig.base_frame, radar.frame_id, radar.T_base_radar, static=True)
        lidar: deque[PointSweep] = deque()
        ready: deque[FrameSet] = deque()
        self._assembler, self._ready, self._offered, self._used = assembler, ready, 0, 0
        wanted = [t for t in (*cameras, *infos, *radars, self.names.lidar) if t in self.topics]
        count = 0
        with storage.open_bag(self.path) as reader:
            for topic, msgtype, msg in self._messages(reader, wanted):
                stamp = stamp_ns(msg.header.stamp)
                while ready and int(ready[0].camera_stamps_ns.max()) + self.sweep_slack_ns < stamp:
                    self._used += len(ready[0].images)
                    yield self._with_lidar(ready.popleft(), lidar, count)
                    count += 1
                if topic in infos:
                    self._camera_info(assembler, infos[topic], topic, msg)
                    continue
                if topic in cameras:
                    self._offered += 1
                    try:
                        rgb = self._decode(msgtype, msg)
                    except ImageFormatError as error:  # the node rejects it too; its camera misses this set
                        self.rejected[f"{cameras[topic]}: {error.cause}"] += 1
                        continue
                    assembler.add_image(cameras[topic], stamp, msg.header.frame_id, rgb)
                else:
                    try:
                        sweep = self._sweep(radars.get(topic), stamp, msg)
                    except (PointCloudError, ValueError) as error:  # as the node's answer to a bad radar cloud
                        self.faults.skip(topic, f"bad cloud ({storage.fault_text(error, 120)})")
                        continue
                    if topic in radars:
                        assembler.add_radar(radars[topic], stamp, msg.header.frame_id, sweep)
                    else:
                        lidar.append(sweep)
                        self._prune(lidar, ready, assembler.oldest_pending_ns())
                ready.extend(self._complete(assembler.poll(), rig))
                self.clock_resets = assembler.clock_resets()
            ready.extend(self._complete(assembler.flush(), rig))
            while ready:
                self._used += len(ready[0].images)
                yield self._with_lidar(ready.popleft(), lidar, count)
                count += 1

    def _camera_info(self, assembler: FrameAssembler, camera: str, topic: str, msg: Any) -> None:  # noqa: ANN401
        """A CameraInfo of the pass, as the node takes it: a usable one updates the camera's model (and is what
        run-bag republishes), an unusable one leaves the camera out until a usable one comes (counted)."""
        if problem := _camera_problems(camera, msg):
            assembler.forget_intrinsics(camera, problem)
            self.faults.skip(topic, f"camera_info unusable ({problem})")
            return
        self.camera_info[camera] = msg
        K = np.asarray(msg.k, np.float64).reshape(3, 3)
        assembler.set_intrinsics(camera, Intrinsics(K, msg.width, msg.height, msg.header.frame_id))

    def _sweep(self, radar: str | None, stamp: int, msg: Any) -> PointSweep:  # noqa: ANN401 - a rosbags PointCloud2
        """A radar's sweep, or (radar None) a lidar sweep with the ego pose and the lidar's extrinsic."""
        if radar is not None:
            return pointcloud.sweep_from_array(radar, stamp, cloud_points(msg))
        pose = self.pose_at(stamp)
        return pointcloud.sweep_from_array(topics.LIDAR_NAME, stamp, cloud_points(msg), pose, self.T_base_lidar)

    @property
    def dropped(self) -> int:
        """Images read in a pass (the current or last) that are in no set yielded and wait for none."""
        if self._assembler is None:
            return 0
        lengths = self._assembler.sync.buffer_lengths()
        waiting = sum(len(f.images) for f in self._ready) + sum(lengths.get(c, 0) for c in self.rig.camera_names)
        return self._offered - self._used - waiting

    def _decode(self, msgtype: str, msg: Any) -> np.ndarray:  # noqa: ANN401 - a rosbags message
        """H x W x 3 RGB of an Image (zero-copy for rgb8) or a CompressedImage (within max_image_pixels)."""
        if msgtype == topics.COMPRESSED_IMAGE_TYPE:
            return decode_compressed_rgb(msg.format, msg.data, self.settings.max_image_pixels)
        return image_rgb(msg)

    def _complete(self, assembled: list, rig: CameraRig) -> list[FrameSet]:
        """The sets with every rig camera, in rig order (every set when not `complete`); the images of others
        (a camera left out for geometry) are counted in `dropped`."""
        sets = [item.frame_set for item in assembled]
        return sets if not self.complete else [f for f in sets if f.rig.camera_names == rig.camera_names]

    def _prune(self, lidar: deque[PointSweep], ready: deque[FrameSet], pending: int | None) -> None:
        """Forget lidar sweeps too old for any frame set still to come (bounded memory on long bags)."""
        oldest = [int(f.camera_stamps_ns.min()) for f in ready] + ([pending] if pending is not None else [])
        if not oldest:
            return
        horizon = min(oldest) - self.max_sweep_age_ns - self.settings.sync_window_s * 1e9
        while len(lidar) > 1 and lidar[0].stamp_ns < horizon:
            lidar.popleft()

    def _with_lidar(self, frame_set: FrameSet, lidar: deque[PointSweep], index: int) -> FrameSet:
        first, last = int(frame_set.camera_stamps_ns.min()), int(frame_set.camera_stamps_ns.max())
        middle = (first + last) // 2
        near = [s for s in lidar if first - self.max_sweep_age_ns < s.stamp_ns <= last + self.sweep_slack_ns]
        frame_set.lidar = min(near, key=lambda s: abs(s.stamp_ns - middle), default=None)
        frame_set.name = f"{self.path.name}:{index}"
        return frame_set


def _camera_problems(camera: str, msg: Any) -> str:  # noqa: ANN401 - a rosbags CameraInfo
    """Why a CameraInfo cannot place its camera (the node's checks), "" when it can."""
    problems = camera_model_problems(camera, msg.k, msg.p, msg.d, msg.distortion_model, msg.width, msg.height)
    return "; ".join(problems)
