"""What the node publishes for one frame set, and which of it is worth building: the output policy, ROS-free.

The node publishes these messages and `run-bag` writes them, built with either message kit (rclpy's
or rosbags' classes), so a bag holds exactly what a live subscriber gets. Topics are relative to the
node's namespace. Work nobody asked for is skipped: the node passes the topics that have subscribers.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import numpy as np

from surround_depth_ros.conversion.messages import MessageKit
from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.core.pipeline import DepthOutputs
from surround_depth_ros.sensors.frameset import FrameSet

CLOUD_TOPIC = "depth/points"


def camera_topics(camera: str, settings: NodeSettings) -> list[tuple[str, str]]:
    """(topic, message type) of one camera's outputs, as `settings` switch them on."""
    topics = [
        (f"{camera}/depth/image", "sensor_msgs/msg/Image"),
        (f"{camera}/depth/camera_info", "sensor_msgs/msg/CameraInfo"),
    ]
    if settings.publish_confidence:
        topics.append((f"{camera}/depth/confidence", "sensor_msgs/msg/Image"))
    return topics


def output_topics(cameras: Sequence[str], settings: NodeSettings) -> list[tuple[str, str]]:
    """(topic, message type) of everything the node publishes, in publishing order: per camera, then the cloud."""
    topics = [topic for camera in cameras for topic in camera_topics(camera, settings)]
    if settings.publish_cloud:
        topics.append((CLOUD_TOPIC, "sensor_msgs/msg/PointCloud2"))
    return topics


def output_messages(
    kit: MessageKit,
    frame_set: FrameSet,
    outputs: DepthOutputs,
    camera_infos: dict[str, Any],
    settings: NodeSettings,
    wanted: Container[str] | None = None,
) -> list[tuple[str, str, int, Any]]:
    """(topic, message type, stamp, message) of what is published for one set; only `wanted` topics (None: all).

    Per camera of `outputs.cameras` (the set's cameras, at the size the depth is at), at its image stamp and
    optical frame: `<camera>/depth/image` (`depth_encoding`), `<camera>/depth/camera_info` (its CameraInfo from
    `camera_infos` restamped and, for depth at another size, scaled; else the output camera's pinhole model)
    and, with `publish_confidence`, `<camera>/depth/confidence` (32FC1 in [0, 1]); then the fused cloud
    `depth/points` in `base_frame` at the set's stamp, when the pipeline made one.
    """
    messages = []
    for camera, stamp, depth, confidence in zip(
        outputs.cameras, frame_set.camera_stamps_ns, outputs.depth, outputs.confidence, strict=True
    ):
        stamp, frame = int(stamp), camera.frame_id
        for topic, msgtype in camera_topics(camera.name, settings):
            if wanted is not None and topic not in wanted:
                continue
            if topic.endswith("/image"):
                msg = kit.depth_image(depth, stamp, frame, settings.depth_encoding)
            elif topic.endswith("/camera_info"):
                info = camera_infos.get(camera.name)
                msg = (
                    kit.camera_info(camera, stamp) if info is None else kit.camera_info_copy(info, stamp, frame, camera)
                )
            else:
                msg = kit.image_array(confidence.astype(np.float32, copy=False), stamp, frame, "32FC1")
            messages.append((topic, msgtype, stamp, msg))
    if outputs.cloud is not None and (wanted is None or CLOUD_TOPIC in wanted):
        cloud = kit.point_cloud(outputs.cloud, frame_set.stamp_ns, settings.base_frame)
        messages.append((CLOUD_TOPIC, "sensor_msgs/msg/PointCloud2", frame_set.stamp_ns, cloud))
    return messages
