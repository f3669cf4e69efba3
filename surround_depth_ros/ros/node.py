"""The surround depth node: the ROS face of the package.

It subscribes to every camera of the rig, checks each image on arrival (a wrong encoding or a
truncated buffer is rejected, logged and counted, and the other cameras keep being served) and
reports the health of every input on /diagnostics. Started by `ros2 run surround_depth_ros
surround_depth_node`, `ros2 launch surround_depth_ros surround_depth.launch.py` or
`python -m surround_depth_ros.ros.node --ros-args --params-file FILE`.
"""

from __future__ import annotations

import sys
import time
from functools import partial

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from surround_depth_ros.health import InputHealth
from surround_depth_ros.images import ImageFormatError, decode_rgb
from surround_depth_ros.params import NODE_NAME
from surround_depth_ros.ros.parameters import ParameterError, declare_and_read


class SurroundDepthNode(Node):
    """Subscribes to the rig's cameras and publishes their health as diagnostics."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - rclpy Node options
        super().__init__(NODE_NAME, **kwargs)
        self.settings = declare_and_read(self)
        self.health = {camera: InputHealth(camera) for camera in self.settings["cameras"]}
        self._subscriptions = [
            self.create_subscription(
                Image,
                self.settings["image_topic"].format(camera=camera),
                partial(self._on_image, camera),
                qos_profile_sensor_data,
            )
            for camera in self.settings["cameras"]
        ]
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.settings["diagnostics_period_s"], self._publish_diagnostics)
        topics = ", ".join(s.topic_name for s in self._subscriptions)
        self.get_logger().info(f"listening to {len(self._subscriptions)} cameras: {topics}")

    def _on_image(self, camera: str, msg: Image) -> None:
        now = time.monotonic()
        try:
            decode_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except ImageFormatError as error:
            message = f"{camera}: {error}"
            self.health[camera].reject(error.cause, message, now)
            self.get_logger().error(message, throttle_duration_sec=5.0)
            return
        self.health[camera].accept(now)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for camera, health in self.health.items():
            level, message, values = health.status(now, self.settings["expected_rate_hz"])
            array.status.append(
                DiagnosticStatus(
                    level=bytes([int(level)]),
                    name=f"{self.get_fully_qualified_name()}: camera {camera}",
                    message=message,
                    hardware_id=camera,
                    values=[KeyValue(key=k, value=v) for k, v in values.items()],
                )
            )
        self._diagnostics.publish(array)


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or SIGTERM; exit 2 with the list of problems on bad parameters."""
    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = SurroundDepthNode()
    except ParameterError as error:
        print(f"[{NODE_NAME}] {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
