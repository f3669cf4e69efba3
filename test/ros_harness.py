"""Helpers for integration tests over real DDS: a node in its own process, a client in this one.

`NodeProcess` and `write_params` are the package's own launcher (`surround_depth_ros.ros.launcher`), the one
`surround-depth demo` uses, so the tests start the node as the demo does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from surround_depth_ros.ros.launcher import NodeProcess, write_params
from surround_depth_ros.ros.spinner import BackgroundNode

__all__ = ["NodeProcess", "RigPublisher", "RosClient", "remove_zombie_shm_files", "tiny_checkpoint", "write_params"]


def remove_zombie_shm_files(shm: Path = Path("/dev/shm")) -> list[str]:
    """Fast DDS files whose owner is dead, removed (what `fastdds shm clean` does); their names.

    A live segment or listened port has its `<name>_el` lock held by its process; a port file without
    a lock file has no listener left. A SIGKILLed node leaves its files behind, and a participant made
    later on the same domain can take the dead one's port (issue 14's restart fault): the test session
    starts with this, and tests that kill nodes on purpose clean up after themselves.
    """

    def unlink(name: str, *paths: Path) -> None:
        for path in (shm / name, shm / f"sem.{name}_mutex", *paths):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(name)

    removed: list[str] = []
    for port in sorted(shm.glob("fastdds_port*[0-9]")):  # a port without its listener's lock: nobody listens
        if not (shm / f"{port.name}_el").exists():
            unlink(port.name)
    for lock in sorted(shm.glob("fastdds_*_el")):
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:  # its owner left meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a live participant
            continue
        else:
            unlink(lock.name.removesuffix("_el"), lock)  # unlinked while the lock is ours
        finally:
            os.close(fd)
    return removed


def tiny_checkpoint(path: Path, rig) -> Path:  # noqa: ANN001 - CameraRig
    """A seeded, untrained tiny student recording `rig`: what the node tests run (its depth need not be good)."""
    import torch

    from surround_depth_ros.network.checkpoint import save_checkpoint
    from surround_depth_ros.network.student import SurroundDepthStudent, preset

    torch.manual_seed(0)
    config = preset("tiny")
    save_checkpoint(path, SurroundDepthStudent(config).eval(), config, rig=rig)
    return path


def tiny_cpu_params(folder: Path, rig) -> tuple[Path, Path]:  # noqa: ANN001 - CameraRig
    """(checkpoint, params file): the tiny student for `rig`, run by torch on the CPU, as the offline tools' tests
    give it to `run-bag` and `evaluate`."""
    checkpoint = tiny_checkpoint(folder / "tiny.pt", rig)
    values = {
        "checkpoint": str(checkpoint),
        "cameras": list(rig.camera_names),
        "radars": list(rig.radar_names),
        "backend": "torch",
        "device": "cpu",
    }
    return checkpoint, write_params(folder / "params.yaml", values)


class RosClient(BackgroundNode):
    """An rclpy node spun in a background thread, with a private context; `wait_for` polls a condition."""

    def __init__(self, name: str = "test_client") -> None:
        super().__init__(name)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `condition()` holds; a liveness bound, not a speed check."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)


class RigPublisher:
    """Publishes what a vehicle publishes for a rig: /tf_static, camera_info and images, radar clouds."""

    def __init__(self, client: RosClient, rig, prefix: str = "/") -> None:  # noqa: ANN001 - CameraRig
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage

        self.rig, self.client = rig, client
        node = client.node
        latched = QoSProfile(
            depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self.tf_static = node.create_publisher(TFMessage, "/tf_static", latched)
        self.images = {c.name: node.create_publisher(Image, f"{prefix}{c.name}/image_raw", 10) for c in rig.cameras}
        self.infos = {
            c.name: node.create_publisher(CameraInfo, f"{prefix}{c.name}/camera_info", 10) for c in rig.cameras
        }
        self.radars = {r.name: node.create_publisher(PointCloud2, f"{prefix}{r.name}/points", 10) for r in rig.radars}

    def publish_tf(self, stamp_ns: int = 0) -> None:
        from surround_depth_ros.bag.writer import static_transforms
        from surround_depth_ros.ros.messages import MESSAGES

        edges = static_transforms(self.rig)
        self.tf_static.publish(MESSAGES.tf_message([MESSAGES.transform(T, p, c, stamp_ns) for p, c, T in edges]))

    def camera_messages(self, index: int, image, stamp_ns: int, encoding: str = "rgb8", info_size=None) -> tuple:  # noqa: ANN001
        """(CameraInfo, Image) of camera `index`, what a camera driver sends per frame."""
        from surround_depth_ros.ros.messages import MESSAGES

        camera = self.rig.cameras[index]
        info = MESSAGES.camera_info(camera, stamp_ns)
        if info_size is not None:
            info.width, info.height = info_size
        known = encoding in ("rgb8", "bgr8", "mono8")
        msg = MESSAGES.image(image, stamp_ns, camera.frame_id, encoding if known else "rgb8")
        msg.encoding = encoding  # an unsupported one is sent as it is, to test the node's answer
        return info, msg

    def publish_messages(self, index: int, info, image) -> None:  # noqa: ANN001
        name = self.rig.cameras[index].name
        self.infos[name].publish(info)
        self.images[name].publish(image)

    def publish_camera(self, index: int, image, stamp_ns: int, encoding: str = "rgb8", info_size=None) -> None:  # noqa: ANN001
        self.publish_messages(index, *self.camera_messages(index, image, stamp_ns, encoding, info_size))

    def publish_radar(self, name: str, points, stamp_ns: int) -> None:  # noqa: ANN001 - structured array
        from surround_depth_ros.ros.messages import MESSAGES

        self.radars[name].publish(MESSAGES.point_cloud(points, stamp_ns, self.rig.radar(name).frame_id))
