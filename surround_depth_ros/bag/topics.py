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
node's default `image_topic` "{camera}/image_raw" do). Every bag message is logged at its header stamp.
"""  # noqa: E501

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_TYPE = "sensor_msgs/msg/Image"
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
    """Topic names of one bag layout under `prefix` (a namespace such as "/" or "/vehicle/")."""

    prefix: str = "/"

    def __post_init__(self) -> None:
        prefix = "/" + self.prefix.strip("/")
        object.__setattr__(self, "prefix", prefix if prefix == "/" else prefix + "/")

    def image(self, camera: str) -> str:
        return f"{self.prefix}{camera}/image_raw"

    def camera_info(self, camera: str) -> str:
        return f"{self.prefix}{camera}/camera_info"

    def radar(self, radar: str) -> str:
        return f"{self.prefix}{radar}/points"

    @property
    def lidar(self) -> str:
        return f"{self.prefix}{LIDAR_NAME}/points"

    def sensor_of(self, topic: str) -> tuple[str, str] | None:
        """(kind, sensor) of a per-sensor topic: ("image", "CAM_FRONT"), ("camera_info", ...), ("points", ...)."""
        if not topic.startswith(self.prefix):
            return None
        sensor, _, leaf = topic[len(self.prefix) :].rpartition("/")
        if not sensor or "/" in sensor:
            return None
        kind = {"image_raw": "image", "camera_info": "camera_info", "points": "points"}.get(leaf)
        return (kind, sensor) if kind else None
