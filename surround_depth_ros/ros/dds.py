"""DDS settings the package needs for camera-sized messages (see config/fastdds_large_images.xml)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rclpy.qos import ReliabilityPolicy

from surround_depth_ros.base.resources import packaged_file

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def use_large_image_transport() -> str | None:
    """Point Fast DDS at the large-image profile unless the user chose one; the path set, else None.

    Must run before rclpy.init (Fast DDS reads the file when it creates the first participant).
    Other RMWs ignore the variable.
    """
    if any(os.environ.get(name) for name in PROFILE_VARIABLES):
        return None
    path = str(packaged_file("config", "fastdds_large_images.xml"))
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = path
    return path


def mapped_shm_ports(maps: Path = Path("/proc/self/maps")) -> dict[str, bool]:
    """The Fast DDS shared-memory port segments this process maps: {file name: unlinked since}.

    A segment mapped while its file is gone is where the process listens (or writes) with nobody on
    the other side: after another process decided the port was dead and made a new one. Empty where
    there is no /proc (not Linux) or no shared-memory transport.
    """
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return {}
    ports: dict[str, bool] = {}
    for line in lines:
        if "/dev/shm/fastdds_port" in line:
            name = line.split("/dev/shm/", 1)[1].removesuffix(" (deleted)")
            ports[name] = ports.get(name, False) or line.endswith("(deleted)")
    return ports


def listening_shm_ports(fds: Path = Path("/proc/self/fd")) -> set[str]:
    """The ports this process listens on: Fast DDS keeps each listener's `<port>_el` lock file open."""
    ports = set()
    for fd in fds.iterdir() if fds.is_dir() else ():
        try:
            target = fd.readlink().name
        except OSError:  # closed meanwhile
            continue
        if target.startswith("fastdds_port") and target.endswith("_el"):
            ports.add(target.removesuffix("_el"))
    return ports


def stale_shm_ports(shm: Path = Path("/dev/shm")) -> list[str]:
    """Ports where this process and its peers no longer meet: the signature of the restart fault.

    One this process listens on whose file another process removed (peers cannot open it), or any it
    maps whose file was removed and made anew (it listens on, or writes into, the old segment while
    its peers use the new one). A peer's port removed and not made anew is a peer that left: not stale.
    """
    unlinked = [port for port, gone in mapped_shm_ports().items() if gone]
    if not unlinked:  # the usual case, checked twice a second: no need to list the open files
        return []
    listening = listening_shm_ports()
    return sorted(port for port in unlinked if port in listening or (shm / port).exists())


def type_name(message_class: type) -> str:
    """How the ROS graph names a message class's type: "sensor_msgs/msg/Image" for `sensor_msgs.msg.Image`."""
    return f"{message_class.__module__.split('.')[0]}/msg/{message_class.__name__}"


def compatible_publishers(endpoints: Iterable[Any], message_type: str, reliable: bool) -> int:
    """How many of a topic's publishers in the ROS graph (rclpy `TopicEndpointInfo`) a subscription should match.

    Those of its type, and only reliable ones for a reliable subscription (a best-effort writer never
    matches a reliable reader; the node reports that mismatch on its own). The graph learns of a
    writer from its participant, the reader from the writer's own announcement: when that one is
    lost, the reader matches nothing while the graph shows the publisher, a deaf reader the matched
    count alone cannot see.
    """
    return sum(
        1
        for endpoint in endpoints
        if endpoint.topic_type == message_type
        and not (reliable and endpoint.qos_profile.reliability.name == "BEST_EFFORT")
    )


def publishers_to_hear(node: Any, subscription: Any) -> int:  # noqa: ANN401 - rclpy Node and Subscription
    """Publishers an input should hear: those its reader matched or, while it matched none, the compatible ones
    the ROS graph shows (a reader that missed a writer's announcement is deaf with nothing matched)."""
    return subscription.get_publisher_count() or compatible_publishers(
        node.get_publishers_info_by_topic(subscription.topic_name),
        type_name(subscription.msg_type),
        subscription.qos_profile.reliability == ReliabilityPolicy.RELIABLE,
    )
