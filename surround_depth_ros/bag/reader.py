"""rosbag2 (mcap or sqlite3) -> FrameSets, so that recorded drives train and evaluate like any dataset.

Reads the layout of `bag/topics.py` with `rosbags` (no ROS distribution), or any other layout the
node's topic patterns describe (`settings`, the node's `NodeSettings`: its `image_topic`,
`camera_info_topic`, `radar_topic`, and its `cameras` and `radars`, in that order). The rig comes from
/tf_static and the first CameraInfo of each camera unless one is given (`bag/rig.py`). Messages pass the
node's own checks (`SensorIngest`: CameraInfo, image decoding and size, radar clouds, stamps) and frame sets are
built by the node's own `FrameAssembler`, fed in log order: the same synchronizer policy, the same TF
lookups at each image's stamp, the same radar attachment (the `radar_sweeps` newest per radar, with their
poses). Without `settings` the bag is read as a dataset (`dataset_settings()`: sets with a missing camera
are dropped, as training wants complete sets) with the sensors its topics show. Each set also gets the
lidar sweep nearest to its cameras (`bag/lidar.py`). `complete=False` yields every set the assembler
emits, as the node would get it (a set missing a camera under the `partial` policy included); by default
only sets with every rig camera.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from surround_depth_ros.bag import rig as bag_rig
from surround_depth_ros.bag import storage, topics
from surround_depth_ros.bag.lidar import LidarPairing
from surround_depth_ros.bag.storage import BagFormatError, ReadFaults
from surround_depth_ros.conversion.messages import cloud_points, stamp_ns
from surround_depth_ros.core import params
from surround_depth_ros.core.assembler import FrameAssembler, Intrinsics, assembler_from_settings
from surround_depth_ros.core.ingest import Rejection, SensorIngest
from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.core.stats import PipelineStats
from surround_depth_ros.core.transforms import TransformBuffer, TransformError, transform_batch
from surround_depth_ros.sensors import pointcloud
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.pointcloud import PointCloudError
from surround_depth_ros.sensors.rig import CameraRig

__all__ = ["BagFormatError", "RosbagReader", "dataset_settings"]


def dataset_settings(**values: Any) -> NodeSettings:  # noqa: ANN401 - parameter values
    """The node's settings as a bag is read for training and evaluation: sets missing a camera are dropped and radar
    sweeps up to 0.5 s old attached; `values` over them, validated (a SchemaError lists every problem)."""
    defaults = {"missing_camera_policy": "drop", "radar_window_s": 0.5}
    return params.settings_from_values(defaults | values, "RosbagReader settings")


class RosbagReader:
    """The FrameSets of a bag, a `FrameSource`: `rig`, `len()` (an estimate, see `__len__`), `T_base_lidar`,
    `transforms_ignored` (TF the node would ignore too, by cause), `faults` (messages the reading skipped and why,
    and why it stopped early: a damaged bag's usable part is read), and, during and after a pass, `dropped`
    (images in no set) and `sync_stats`.

    `settings` name the sensors (as a params file names them for the node); without them the reader finds the
    sensors in the bag's topics and reads with `dataset_settings()`. During a pass `camera_info` holds each
    camera's latest CameraInfo message (what the node republishes with its depth). Without `topic_names` the
    topics are the patterns of the settings. A bag that cannot be opened, or holds no rig, raises BagFormatError
    (FileNotFoundError without metadata).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        settings: NodeSettings | None = None,
        *,
        rig: CameraRig | None = None,
        topic_names: topics.TopicNames | None = None,
        complete: bool = True,
    ) -> None:
        self.path = Path(path)
        self.complete = complete
        self.stats = PipelineStats(
            []
        )  # the current (or last) pass's: refusals by input and cause, and what run-bag adds
        self.transforms_ignored: Counter[str] = Counter()  # cause -> transforms of /tf and /tf_static
        self.faults = ReadFaults()
        self.clock_resets = 0  # time jumps back (a bag of several recordings) so far: temporal state must reset
        self._assembler: FrameAssembler | None = None  # the current (or last) pass's, with what it holds
        self._ingest: SensorIngest | None = None  # the current (or last) pass's checks, with the CameraInfo taken
        self._ready: deque[FrameSet] = deque()
        self._offered = self._used = self._yielded = 0
        self.settings = settings if settings is not None else dataset_settings()
        self.names = topic_names or topics.TopicNames.from_settings(self.settings)
        with storage.open_bag(self.path) as reader:
            expected = {c.topic: self._type_of(c.topic) for c in reader.connections}
            self.topics = storage.main_types(reader.connections, expected)  # topic -> the type it is read as
            self._connections = [c for c in reader.connections if self.topics[c.topic] == c.msgtype]
            self.message_counts = Counter()
            for c in self._connections:
                self.message_counts[c.topic] += storage.declared_count(c)
            self.message_duration_s = max(reader.duration, 0) / 1e9
            self.transforms = self._transforms(reader)
            self.lidar_frame = self._lidar_frame(reader)
            try:
                self._rig = rig or self._rig_from_bag(reader, settings)
                self.T_base_lidar: np.ndarray | None = None
                if self.lidar_frame in self.transforms.frames():
                    self.T_base_lidar = bag_rig.place(self.transforms, self.rig.base_frame, self.lidar_frame)
            except bag_rig.RigProblem as problem:
                raise self._format_error(str(problem)) from problem
            read = {t: m for t, m in self.topics.items() if t in self._pass_topics()}
            storage.count_other_types(reader.connections, read, self.faults)
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
    def camera_info(self) -> dict[str, Any]:
        """Each camera's latest usable CameraInfo of the current (or last) pass: what the node republishes with its
        depth."""
        return self._ingest.camera_infos() if self._ingest is not None else {}

    @property
    def sync_stats(self) -> dict[str, int]:
        """The synchronizer's counters of the current (or last) pass; empty before one."""
        return self._assembler.stats() if self._assembler is not None else {}

    def reading_summary(self) -> dict[str, Any]:
        """What the current (or last) pass could not use and why, for a command's summary (JSON types)."""
        return {
            "images_in_no_frame_set": self.dropped,
            "inputs_rejected": self.stats.rejected(),
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

    def _rig_from_bag(self, reader: Reader, named: NodeSettings | None) -> CameraRig:
        """The rig of the sensors `named` (else all in the bag) from their first messages (`bag/rig.py`)."""
        cameras, radars = bag_rig.sensor_topics(self.names, self.topics, named)
        first = self._first_messages(reader, [*cameras.values(), *radars.values()])
        # CameraInfos are judged by the node's own check, the one a pass applies; this ingest's assembler is scratch
        scratch = assembler_from_settings(replace(self.settings, cameras=tuple(cameras)), [])
        judge = SensorIngest(scratch, self.settings.max_image_pixels, self.settings.sync_max_skew_s).camera_info
        return bag_rig.rig_from_messages(first, cameras, radars, self.transforms, self.settings.base_frame, judge)

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
        ingest = SensorIngest(assembler, self.settings.max_image_pixels, skew)
        self.stats = PipelineStats([*rig.camera_names, *rig.radar_names], window=None)
        lidar = LidarPairing(self.settings.sync_window_s)
        ready: deque[FrameSet] = deque()
        self._ingest = ingest
        self._assembler, self._ready, self._offered, self._used, self._yielded = assembler, ready, 0, 0, 0
        wanted = [t for t in (*cameras, *infos, *radars, self.names.lidar) if t in self.topics]
        with storage.open_bag(self.path) as reader:
            for topic, _, msg in self._messages(reader, wanted):
                stamp = stamp_ns(msg.header.stamp)
                yield from self._settled(lidar, stamp)
                if topic in infos:  # a usable one updates the camera's model, an unusable one leaves it out
                    if rejection := ingest.camera_info(infos[topic], msg):
                        self.faults.skip(topic, f"camera_info unusable ({rejection.message})")
                    continue
                if topic in cameras:
                    self._offered += 1
                    self._count(ingest.image(cameras[topic], msg))
                elif topic in radars:
                    self._count(ingest.radar(radars[topic], msg))
                else:
                    try:
                        sweep = self._lidar_sweep(stamp, msg)
                    except (PointCloudError, ValueError) as error:  # refused as the node refuses a bad radar cloud
                        self.faults.skip(topic, f"bad cloud ({storage.fault_text(error, 120)})")
                        continue
                    lidar.add(sweep, ready, assembler.oldest_pending_ns())
                ready.extend(self._complete(assembler.poll(), rig))
                self.clock_resets = assembler.clock_resets()
            ready.extend(self._complete(assembler.flush(), rig))
            yield from self._settled(lidar, None)

    def _settled(self, lidar: LidarPairing, log_stamp: int | None) -> Iterator[FrameSet]:
        """The ready sets no lidar sweep logged at `log_stamp` or later can pair with (all at the end: None), each
        with its sweep and named by the bag and its place in the pass."""
        while self._ready and (log_stamp is None or lidar.settled(self._ready[0], log_stamp)):
            self._used += len(self._ready[0].images)
            frame_set = lidar.attach(self._ready.popleft())
            frame_set.name = f"{self.path.name}:{self._yielded}"
            self._yielded += 1
            yield frame_set

    def _count(self, rejections: list[Rejection]) -> None:
        """Messages the node's checks refuse (the sensor misses its set), by input and cause."""
        for rejection in rejections:
            self.stats.reject(rejection, time.monotonic())

    def _lidar_sweep(self, stamp: int, msg: Any) -> PointSweep:  # noqa: ANN401 - a rosbags PointCloud2
        """A lidar sweep with the ego pose at its stamp and the lidar's extrinsic."""
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

    def _complete(self, assembled: list, rig: CameraRig) -> list[FrameSet]:
        """The sets with every rig camera, in rig order (every set when not `complete`); the images of others
        (a camera left out for geometry) are counted in `dropped`."""
        sets = [item.frame_set for item in assembled]
        return sets if not self.complete else [f for f in sets if f.rig.camera_names == rig.camera_names]
