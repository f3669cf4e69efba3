"""FrameSets -> rosbag2 (mcap or sqlite3), in the layout of `bag/topics.py`, without a ROS distribution.

Uses `rosbags` for storage and CDR, with the ROS 2 kilted type store so that metadata.yaml carries
the real type hashes and `ros2 bag play` / rviz / Foxglove read the bag as if it was recorded.
QoS offered in the metadata: /tf_static transient local + reliable (so `ros2 bag play` latches it),
everything else reliable keep-last 10 (a reliable publisher serves reliable and best-effort subscribers).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from surround_depth_ros.bag import storage, topics
from surround_depth_ros.bag.storage import TYPESTORE, ReadFaults
from surround_depth_ros.base import geometry
from surround_depth_ros.conversion.messages import MessageKit
from surround_depth_ros.sensors import pointcloud
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.rig import CameraRig

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
ENCODINGS = ("rgb8", "bgr8", "png", "jpeg")  # png, jpeg: CompressedImage on <image topic>/compressed
_DEFAULT_TIME = QosTime(0, 0)


def _qos(durability: QosDurability, depth: int) -> Qos:
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        QosReliability.RELIABLE,
        durability,
        _DEFAULT_TIME,
        _DEFAULT_TIME,
        QosLiveliness.AUTOMATIC,
        _DEFAULT_TIME,
        False,
    )


LATCHED_QOS = _qos(QosDurability.TRANSIENT_LOCAL, 1)
STREAM_QOS = _qos(QosDurability.VOLATILE, 10)


def static_transforms(rig: CameraRig, T_base_lidar: np.ndarray | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(parent, child, T_parent_child) of a rig: base -> camera body -> optical frame, base -> radars, lidar."""
    inverse_optical = geometry.invert_transform(topics.T_BODY_OPTICAL)
    edges = []
    for cam in rig.cameras:
        body = topics.body_frame(cam.frame_id)
        edges.append((rig.base_frame, body, cam.T_base_cam @ inverse_optical))
        edges.append((body, cam.frame_id, topics.T_BODY_OPTICAL))
    edges += [(rig.base_frame, radar.frame_id, radar.T_base_radar) for radar in rig.radars]
    if T_base_lidar is not None:
        edges.append((rig.base_frame, topics.LIDAR_NAME, np.asarray(T_base_lidar, dtype=np.float64)))
    return edges


@dataclass
class BagStats:
    """What a writer wrote: frame sets, messages, payload bytes."""

    frames: int = 0
    messages: int = 0
    bytes: int = 0


class BagWriter:
    """Writes FrameSets to a new rosbag2 directory; use as a context manager.

    The rig (and so /tf_static and the topic list) comes from the first frame set; a radar first seen in a later
    set (its first sweeps were lost) gets its /tf_static edge in a message of its own then. Radar and lidar
    sweeps shared by consecutive frame sets (multi-sweep accumulation) are written once; poses
    (`T_world_base` of cameras and sweeps) become /tf odom -> base_frame at their stamps. The lidar
    extrinsic on /tf_static is `T_base_lidar` if given, else the first lidar sweep's `T_base_sensor`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        storage: str = "mcap",
        encoding: str = "rgb8",
        topic_names: topics.TopicNames | None = None,
        T_base_lidar: np.ndarray | None = None,
        clock_period_ns: int = 10_000_000,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage {storage!r}: expected one of {sorted(STORAGES)}")
        if encoding not in ENCODINGS:
            raise ValueError(f"image encoding {encoding!r}: expected one of {ENCODINGS}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} exists already; choose a new path or delete it")
        self.encoding = encoding
        self.names = topic_names or topics.TopicNames()
        if encoding in ("png", "jpeg"):
            self.names = self.names.with_transport("compressed")
        elif self.names.compressed:
            raise ValueError(f"image encoding {encoding!r} on compressed image topics: use png or jpeg")
        self.T_base_lidar = T_base_lidar
        self.clock_period_ns = clock_period_ns
        self.stats = BagStats()
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        self._kit = MessageKit(lambda name: TYPESTORE.types[name], lambda data: np.frombuffer(data, np.uint8))
        self._connections: dict[str, Connection] = {}
        self._rig: CameraRig | None = None
        self._radar_frames: set[str] = set()  # radars placed on /tf_static so far
        self._written: set[tuple[str, int]] = set()
        self._next_clock_ns: int | None = None

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._writer.close()

    @property
    def kit(self) -> MessageKit:
        """The message builders bound to the bag's (rosbags) classes, for `put`."""
        return self._kit

    def put(self, topic: str, msgtype: str, stamp_ns: int, msg: Any, qos: Qos = STREAM_QOS) -> None:
        """Append one message (a `kit` message of `msgtype`) on any topic, logged at `stamp_ns`."""
        self.put_raw(topic, msgtype, stamp_ns, TYPESTORE.serialize_cdr(msg, msgtype), qos)

    def put_raw(self, topic: str, msgtype: str, stamp_ns: int, raw: bytes | memoryview, qos: Qos = STREAM_QOS) -> None:
        """Append one CDR-serialized message; a topic's first message fixes its type and offered QoS."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[qos]
            )
        self._writer.write(self._connections[topic], int(stamp_ns), raw)
        self.stats.messages += 1
        self.stats.bytes += len(raw)

    def copy_topics(self, bag: str | os.PathLike, types: dict[str, str], faults: ReadFaults | None = None) -> int:
        """Copy every message of the topics of `types` ({topic: its type}) from another bag as it is (bytes, log
        time, the offered QoS it recorded; /tf_static latched when it recorded none), but those that do not
        deserialize (counted in `faults` when given); returns how many were copied."""
        copied = 0
        with storage.open_bag(bag) as reader:
            connections = [c for c in reader.connections if types.get(c.topic) == c.msgtype]
            for connection, stamp, raw in storage.messages(reader, connections, faults or ReadFaults(), decode=False):
                recorded = getattr(connection.ext, "offered_qos_profiles", None)
                latched = connection.topic == topics.TF_STATIC_TOPIC
                qos = recorded[0] if recorded else (LATCHED_QOS if latched else STREAM_QOS)
                self.put_raw(connection.topic, connection.msgtype, stamp, raw, qos)
                copied += 1
        return copied

    def _start(self, frameset: FrameSet) -> None:
        self._rig = frameset.rig
        stamp = min([frameset.stamp_ns] + [s.stamp_ns for s in frameset.radar + [frameset.lidar] if s is not None])
        T_base_lidar = self.T_base_lidar
        if T_base_lidar is None and frameset.lidar is not None:
            T_base_lidar = frameset.lidar.T_base_sensor
        transforms = [
            self._kit.transform(T, parent, child, stamp)
            for parent, child, T in static_transforms(frameset.rig, T_base_lidar)
        ]
        self.put(topics.TF_STATIC_TOPIC, topics.TF_TYPE, stamp, self._kit.tf_message(transforms), LATCHED_QOS)
        self._radar_frames.update(radar.frame_id for radar in frameset.rig.radars)
        self._next_clock_ns = stamp

    def _place_new_radars(self, frameset: FrameSet) -> None:
        """/tf_static for the radars of `frameset` the first set did not have (latched topics keep every message)."""
        new = [r for r in frameset.rig.radars if r.frame_id not in self._radar_frames]
        if not new:
            return
        base = self._rig.base_frame
        transforms = [self._kit.transform(r.T_base_radar, base, r.frame_id, frameset.stamp_ns) for r in new]
        message = self._kit.tf_message(transforms)
        self.put(topics.TF_STATIC_TOPIC, topics.TF_TYPE, frameset.stamp_ns, message, LATCHED_QOS)
        self._radar_frames.update(r.frame_id for r in new)

    def _check_rig(self, frameset: FrameSet) -> None:
        rig = self._rig
        if frameset.rig is rig:
            return
        same = rig.camera_names == frameset.rig.camera_names and all(
            a.width == b.width and a.height == b.height and np.allclose(a.K, b.K)
            for a, b in zip(rig.cameras, frameset.rig.cameras, strict=True)
        )
        if not same:
            raise ValueError(
                f"frame set {frameset.name!r} has a different rig ({frameset.rig.camera_names}) from the first "
                f"frame set ({rig.camera_names}); a bag holds one rig"
            )

    def _pose(self, stamp_ns: int, T_world_base: np.ndarray | None) -> None:
        if T_world_base is None or ("/tf", stamp_ns) in self._written:
            return
        self._written.add(("/tf", stamp_ns))
        transform = self._kit.transform(T_world_base, topics.ODOM_FRAME, self._rig.base_frame, stamp_ns)
        self.put(topics.TF_TOPIC, topics.TF_TYPE, stamp_ns, self._kit.tf_message([transform]))

    def _sweep(self, topic: str, frame_id: str, sweep: PointSweep) -> None:
        if (topic, sweep.stamp_ns) in self._written:
            return
        self._written.add((topic, sweep.stamp_ns))
        cloud = self._kit.point_cloud(pointcloud.sweep_to_array(sweep), sweep.stamp_ns, frame_id)
        self.put(topic, topics.POINT_CLOUD_TYPE, sweep.stamp_ns, cloud)
        self._pose(sweep.stamp_ns, sweep.T_world_base)

    def write(self, frameset: FrameSet) -> None:
        """Append one frame set: images + camera_info per camera, new sweeps, poses, and /clock up to its end."""
        if self._rig is None:
            self._start(frameset)
        self._check_rig(frameset)
        self._place_new_radars(frameset)
        rig = self._rig
        for index, (cam, image) in enumerate(zip(rig.cameras, frameset.images, strict=True)):
            stamp = int(frameset.camera_stamps_ns[index])
            if self.names.compressed:
                msgtype = topics.COMPRESSED_IMAGE_TYPE
                msg = self._kit.compressed_image(image, stamp, cam.frame_id, self.encoding)
            else:
                msg, msgtype = self._kit.image(image, stamp, cam.frame_id, self.encoding), topics.IMAGE_TYPE
            self.put(self.names.image(cam.name), msgtype, stamp, msg)
            self.put(
                self.names.camera_info(cam.name), topics.CAMERA_INFO_TYPE, stamp, self._kit.camera_info(cam, stamp)
            )
            if frameset.T_world_base is not None:
                self._pose(stamp, frameset.T_world_base[index])
        for sweep in frameset.radar:
            try:
                frame_id = frameset.rig.radar(sweep.sensor).frame_id
            except KeyError as error:
                raise ValueError(f"frame set {frameset.name!r}: radar sweep from unknown sensor: {error}") from None
            self._sweep(self.names.radar(sweep.sensor), frame_id, sweep)
        if frameset.lidar is not None:
            self._sweep(self.names.lidar, topics.LIDAR_NAME, frameset.lidar)
        self._tick_clock(int(frameset.camera_stamps_ns.max()))
        self.stats.frames += 1

    def _tick_clock(self, until_ns: int) -> None:
        if self.clock_period_ns <= 0:
            return
        while self._next_clock_ns <= until_ns:
            self.put(topics.CLOCK_TOPIC, topics.CLOCK_TYPE, self._next_clock_ns, self._kit.clock(self._next_clock_ns))
            self._next_clock_ns += self.clock_period_ns


def write_bag(
    framesets: Iterable[FrameSet],
    path: str | os.PathLike,
    *,
    total: int | None = None,
    progress: bool = True,
    **options: Any,
) -> BagStats:
    """Write every frame set of an iterable to a new bag at `path` (options: see `BagWriter`), with a progress bar."""
    with BagWriter(path, **options) as writer:
        bar = tqdm(framesets, total=total, unit="frame set", desc=f"writing {Path(path).name}", disable=not progress)
        for frameset in bar:
            writer.write(frameset)
            bar.set_postfix(MB=f"{writer.stats.bytes / 1e6:.1f}", refresh=False)
    return writer.stats
