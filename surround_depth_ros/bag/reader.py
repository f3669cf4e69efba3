"""rosbag2 (mcap or sqlite3) -> FrameSets, so that recorded drives train and evaluate like any dataset.

Reads the layout of `bag/topics.py` with `rosbags` (no ROS distribution). The rig comes from
/tf_static (chains such as base_link -> cam body -> optical frame are composed) and the first
CameraInfo of each camera unless one is given. Camera messages are grouped into frame sets the
way the node does it live: the oldest image of every camera forms a set when all lie within
`max_camera_skew_ns`; otherwise the oldest is dropped and counted. Each set then gets the sweeps
stamped from `max_sweep_age_ns` before its first camera to `sweep_slack_ns` after its last: per radar
the latest `radar_sweeps` of them, of the lidar the one nearest to the cameras; and ego poses
interpolated from /tf odom -> base_frame (through `TransformBuffer`, as the node looks them up).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from surround_depth_ros import pointcloud
from surround_depth_ros.bag import topics
from surround_depth_ros.bag.messages import camera_from_info, cloud_points, image_rgb, stamp_ns, transform_matrix
from surround_depth_ros.bag.writer import TYPESTORE
from surround_depth_ros.frameset import FrameSet, PointSweep
from surround_depth_ros.rig import Camera, CameraRig, Radar
from surround_depth_ros.transforms import TransformBuffer, TransformError


class BagFormatError(ValueError):
    """A bag that lacks what a FrameSet needs; the message names the topic, frame or field."""


class RosbagReader:
    """Iterates the FrameSets of a bag; `rig`, `T_base_lidar`, `dropped` (unsynchronized images) are attributes."""

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
    ) -> None:
        self.path = Path(path)
        if not (self.path / "metadata.yaml").is_file():
            raise FileNotFoundError(f"{self.path} is not a rosbag2 directory (no metadata.yaml in it)")
        self.names = topic_names or topics.TopicNames()
        self.max_camera_skew_ns = max_camera_skew_ns
        self.radar_sweeps = radar_sweeps
        self.sweep_slack_ns = sweep_slack_ns
        self.max_sweep_age_ns = max_sweep_age_ns
        self.dropped = 0
        with Reader(self.path) as reader:
            self.topics = {c.topic: c.msgtype for c in reader.connections}
            self.message_counts = {topic: info.msgcount for topic, info in reader.topics.items()}
            self.transforms = self._transforms(reader)
            self.rig = rig or self._rig_from_bag(reader, base_frame)
        lidar_known = topics.LIDAR_NAME in self.transforms.frames()
        self.T_base_lidar = self._extrinsic(topics.LIDAR_NAME) if lidar_known else None
        for cam in self.rig.cameras:
            if self.names.image(cam.name) not in self.topics:
                raise BagFormatError(
                    f"{self.path}: no topic {self.names.image(cam.name)} for camera {cam.name}; "
                    f"image topics in the bag: {sorted(t for t, m in self.topics.items() if m == topics.IMAGE_TYPE)}"
                )

    # ------------------------------------------------------------------ set-up passes
    def _messages(self, reader: Reader, topic_list: list[str]) -> Iterator[tuple[str, int, Any]]:
        connections = [c for c in reader.connections if c.topic in topic_list]
        for connection, _, raw in reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, TYPESTORE.deserialize_cdr(raw, connection.msgtype)

    def _transforms(self, reader: Reader) -> TransformBuffer:
        """/tf_static and the whole /tf history of the bag (poses are interpolated, never extrapolated)."""
        buffer = TransformBuffer(cache_s=reader.duration / 1e9 + 1.0)
        for topic, _, msg in self._messages(reader, [topics.TF_STATIC_TOPIC, topics.TF_TOPIC]):
            for t in msg.transforms:
                static = topic == topics.TF_STATIC_TOPIC
                stamp = stamp_ns(t.header.stamp)
                buffer.set_transform(t.header.frame_id, t.child_frame_id, transform_matrix(t.transform), stamp, static)
        return buffer

    def _extrinsic(self, frame: str, base_frame: str | None = None) -> np.ndarray:
        base_frame = base_frame or self.rig.base_frame
        try:
            return self.transforms.lookup(base_frame, frame)
        except TransformError as error:
            raise BagFormatError(f"{self.path}: no transform from {base_frame!r} to {frame!r}: {error}") from error

    def pose_at(self, stamp: int) -> np.ndarray | None:
        """T_world_base (odom -> base_frame on /tf) at `stamp`, None where the bag has no pose around it."""
        try:
            return self.transforms.lookup(topics.ODOM_FRAME, self.rig.base_frame, stamp)
        except TransformError:
            return None

    def _rig_from_bag(self, reader: Reader, base_frame: str) -> CameraRig:
        info_topics, radar_topics = [], []
        for topic, msgtype in self.topics.items():
            kind_sensor = self.names.sensor_of(topic)
            if kind_sensor and kind_sensor[0] == "camera_info" and msgtype == topics.CAMERA_INFO_TYPE:
                info_topics.append(topic)
            elif kind_sensor and kind_sensor[0] == "points" and topic != self.names.lidar:
                radar_topics.append(topic)
        if not info_topics:
            raise BagFormatError(
                f"{self.path}: no {self.names.prefix}<camera>/camera_info topics to build the rig from; "
                "pass rig=... (e.g. load_rig(config/rig_nuscenes.yaml)) for bags without camera_info"
            )
        if not self.transforms.frames():
            raise BagFormatError(f"{self.path}: no /tf_static transforms to place the cameras; pass rig=...")
        first: dict[str, Any] = {}
        for topic, _, msg in self._messages(reader, info_topics + radar_topics):
            first.setdefault(topic, msg)
            if len(first) == len(info_topics) + len(radar_topics):
                break
        cameras: list[Camera] = []
        for topic in info_topics:
            name = self.names.sensor_of(topic)[1]
            msg = first[topic]
            cameras.append(camera_from_info(name, msg, self._extrinsic(msg.header.frame_id, base_frame)))
        radars = []
        for topic in radar_topics:
            frame = first[topic].header.frame_id
            radars.append(Radar(self.names.sensor_of(topic)[1], self._extrinsic(frame, base_frame), frame))
        return CameraRig(cameras, radars, base_frame)

    # ------------------------------------------------------------------ frame sets
    @property
    def expected_frames(self) -> int:
        """Frame sets the bag can hold at most: the fewest images of any camera (for progress bars)."""
        return min(self.message_counts.get(self.names.image(c.name), 0) for c in self.rig.cameras)

    def __iter__(self) -> Iterator[FrameSet]:
        cameras = {self.names.image(c.name): i for i, c in enumerate(self.rig.cameras)}
        radars = {self.names.radar(r.name): r.name for r in self.rig.radars}
        lidar_topic = self.names.lidar
        pending: list[deque[tuple[int, np.ndarray]]] = [deque() for _ in cameras]
        sweeps: dict[str, deque[PointSweep]] = {name: deque() for name in [*radars.values(), topics.LIDAR_NAME]}
        ready: deque[tuple[int, list[tuple[int, np.ndarray]]]] = deque()  # (deadline, images)
        wanted = [*cameras, *radars, lidar_topic]
        count = 0
        with Reader(self.path) as reader:
            for topic, _, msg in self._messages(reader, [t for t in wanted if t in self.topics]):
                stamp = stamp_ns(msg.header.stamp)
                while ready and ready[0][0] < stamp:
                    yield self._frameset(ready.popleft()[1], sweeps, count)
                    count += 1
                if topic in cameras:
                    pending[cameras[topic]].append((stamp, image_rgb(msg)))
                    self._synchronize(pending, ready)
                else:
                    sensor = radars.get(topic, topics.LIDAR_NAME)
                    extrinsic = self.rig.radar(sensor).T_base_radar if topic in radars else self.T_base_lidar
                    points = cloud_points(msg)
                    sweep = pointcloud.sweep_from_array(sensor, stamp, points, self.pose_at(stamp), extrinsic)
                    sweeps[sensor].append(sweep)
                    self._prune(sweeps, pending, ready)
            while ready:
                yield self._frameset(ready.popleft()[1], sweeps, count)
                count += 1

    def _synchronize(self, pending: list[deque], ready: deque) -> None:
        while all(pending):
            heads = [queue[0][0] for queue in pending]
            if max(heads) - min(heads) <= self.max_camera_skew_ns:
                images = [queue.popleft() for queue in pending]
                ready.append((max(heads) + self.sweep_slack_ns, images))
            else:
                pending[int(np.argmin(heads))].popleft()
                self.dropped += 1

    def _prune(self, sweeps: dict[str, deque[PointSweep]], pending: list[deque], ready: deque) -> None:
        """Forget sweeps too old for any frame set still to come (bounded memory on long bags)."""
        oldest = [queue[0][0] for queue in pending if queue] + [images[0][0] for _, images in ready]
        if not oldest:
            return
        horizon = min(oldest) - self.max_sweep_age_ns
        for queue in sweeps.values():
            while len(queue) > self.radar_sweeps and queue[0].stamp_ns < horizon:
                queue.popleft()

    def _frameset(self, images: list[tuple[int, np.ndarray]], sweeps: dict[str, deque], index: int) -> FrameSet:
        stamps = np.array([stamp for stamp, _ in images], dtype=np.int64)
        first, last = int(stamps.min()), int(stamps.max())

        def window(sensor: str) -> list[PointSweep]:
            return [
                s for s in sweeps[sensor] if first - self.max_sweep_age_ns < s.stamp_ns <= last + self.sweep_slack_ns
            ]

        radar = [sweep for name in self.rig.radar_names for sweep in window(name)[-self.radar_sweeps :]]
        middle = (first + last) // 2
        lidar = min(window(topics.LIDAR_NAME), key=lambda s: abs(s.stamp_ns - middle), default=None)
        poses = [self.pose_at(int(s)) for s in stamps]
        return FrameSet(
            rig=self.rig,
            images=[image for _, image in images],
            camera_stamps_ns=stamps,
            radar=radar,
            lidar=lidar,
            T_world_base=np.stack(poses) if all(p is not None for p in poses) else None,
            name=f"{self.path.name}:{index}",
        )
