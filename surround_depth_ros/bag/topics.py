"""The topic, frame and QoS conventions of surround_depth_ros bags, shared by the writer, reader, replayer and node.

One place decides the names so that a bag written here, replayed live, is what the node subscribes
to by default. Layout (prefix "/" by default; /tf, /tf_static and /clock are always global, as
tf2 and `use_sim_time` expect):

| topic | type | frame_id / content |
|---|---|---|
| /tf_static | tf2_msgs/msg/TFMessage | base_frame -> <cam> (body, x forward) -> <cam>_optical_frame, base -> radar and lidar frames; offered transient local + reliable |
| {prefix}<CAMERA>/image_raw | sensor_msgs/msg/Image (rgb8 or bgr8) | the camera's optical frame, stamp = that camera's capture time |
| {prefix}<CAMERA>/camera_info | sensor_msgs/msg/CameraInfo | plumb_bob, zero distortion, K, R = I, P = [K 0] |
| {prefix}<RADAR>/points | sensor_msgs/msg/PointCloud2 | radar frame; every nuScenes radar field with its type |
| {prefix}lidar/points | sensor_msgs/msg/PointCloud2 | lidar frame; x y z intensity ring |
| /tf | tf2_msgs/msg/TFMessage | odom -> base_frame at each sensor stamp with a known ego pose |
| /clock | rosgraph_msgs/msg/Clock | bag time every 10 ms |

Camera and radar names are used as they are (`/CAM_FRONT/image_raw`, as nuScenes2bag and the
node's default `image_topic` "{camera}/image_raw" do). Other layouts are the node's topic patterns
(`image_topic`, `camera_info_topic`, `radar_topic` of a params file, `TopicNames.from_settings`) resolved
in a namespace as the node resolves them. Every bag message is logged at its header stamp.
"""  # noqa: E501

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from surround_depth_ros.core.params import NodeSettings, name_problem, resolve_topic

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
TF_TYPE = "tf2_msgs/msg/TFMessage"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"

TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
CLOCK_TOPIC = "/clock"
ODOM_FRAME = "odom"
LIDAR_NAME = "lidar"
OPTICAL_SUFFIX = "_optical_frame"

# REP 103: the optical frame (z forward, x right, y down) seen from the camera body (x forward, y left, z up).
T_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def body_frame(optical_frame: str) -> str:
    """The camera body frame that parents an optical frame: `cam_front_optical_frame` -> `cam_front`."""
    if optical_frame.endswith(OPTICAL_SUFFIX) and len(optical_frame) > len(OPTICAL_SUFFIX):
        return optical_frame[: -len(OPTICAL_SUFFIX)]
    return f"{optical_frame}_body"


@dataclass(frozen=True)
class TopicNames:
    """Topic names of one bag layout: the node's topic patterns resolved under `prefix` (its namespace, "/" or
    "/vehicle/"). The defaults are the node's default patterns; `from_settings` takes a params file's. With
    `image_transport` "compressed" the images are sensor_msgs/CompressedImage on `<image topic>/compressed`, as
    image_transport publishes them and the node subscribes."""

    prefix: str = "/"
    image_pattern: str = "{camera}/image_raw"
    camera_info_pattern: str = "{camera}/camera_info"
    radar_pattern: str = "{radar}/points"
    lidar_topic: str = f"{LIDAR_NAME}/points"
    image_transport: str = "raw"

    def __post_init__(self) -> None:
        prefix = "/" + self.prefix.strip("/")
        object.__setattr__(self, "prefix", prefix if prefix == "/" else prefix + "/")

    @classmethod
    def from_settings(cls, settings: NodeSettings, namespace: str = "/", lidar_topic: str | None = None) -> TopicNames:
        """The topics a node with these parameters subscribes to in `namespace`; the lidar topic, which the node
        does not read, is `lidar_topic` (default lidar/points, relative to the namespace)."""
        return cls(
            namespace,
            settings.image_topic,
            settings.camera_info_topic,
            settings.radar_topic,
            lidar_topic or cls.lidar_topic,
            settings.image_transport,
        )

    def with_transport(self, image_transport: str) -> TopicNames:
        return replace(self, image_transport=image_transport)

    @property
    def compressed(self) -> bool:
        return self.image_transport == "compressed"

    @property
    def _image_topic_pattern(self) -> str:
        return self.image_pattern + ("/compressed" if self.compressed else "")

    def _resolve(self, pattern: str, **names: str) -> str:
        return resolve_topic(pattern.format(**names), self.prefix)

    def image(self, camera: str) -> str:
        return self._resolve(self._image_topic_pattern, camera=camera)

    def camera_info(self, camera: str) -> str:
        return self._resolve(self.camera_info_pattern, camera=camera)

    def radar(self, radar: str) -> str:
        return self._resolve(self.radar_pattern, radar=radar)

    @property
    def lidar(self) -> str:
        return self._resolve(self.lidar_topic)

    def sensor_of(self, topic: str) -> tuple[str, str] | None:
        """(kind, sensor) of a per-sensor topic: ("image", "CAM_FRONT"), ("camera_info", ...), ("points", ...)."""
        patterns = (
            ("image", self._image_topic_pattern, "camera"),
            ("camera_info", self.camera_info_pattern, "camera"),
            ("points", self.radar_pattern, "radar"),
        )
        for kind, pattern, placeholder in patterns:
            head, _, tail = self._resolve(pattern, **{placeholder: "\x00"}).partition("\x00")
            sensor = topic[len(head) : len(topic) - len(tail)] if len(topic) > len(head) + len(tail) else ""
            if (
                topic.startswith(head)
                and topic.endswith(tail)
                and not name_problem(sensor)
                and self._resolve(pattern, **{placeholder: sensor}) == topic
            ):
                return kind, sensor
        return None
