"""Soak: the node fed six cameras at 12 Hz for N minutes; does anything grow or stall?

The node runs in its own process, as deployed; this process plays the camera drivers (CameraInfo,
Image and /tf_static of the default rig, scaled) and reads what the node says on /diagnostics.
Every --sample-s it samples the node's resident memory, heap in use, threads and open file
descriptors (printed every --print-s), and at the end:
  RSS slope       MB/min after the warm-up, least squares over every sample and of each minute's lowest
                  sample (issue 14 target: < 1 MB/min; floor 0)
  heap slope      the same for the node's heap in use (its diagnostics, glibc's mallinfo2): resident
                  memory also moves by tens of MB as the allocator keeps or returns the camera-sized
                  buffers freed after each set; a leak grows the heap in use
  threads, fds    first and last after the warm-up (a leak grows them)
  published rate  frame sets published per second (the node's own count) next to the camera rate
  drops by cause  the node's pipeline counters and every input's rejections

    nice -n 5 .venv/bin/python benchmarks/soak.py --minutes 10 [--rate 12] [--size 1600x900]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from surround_depth_ros.bag.writer import static_transforms
from surround_depth_ros.base.resources import packaged_file
from surround_depth_ros.ros.dds import use_large_image_transport
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.tools.arguments import image_size

TARGET_MB_PER_MIN = 1.0


def process_figures(pid: int) -> tuple[float, int, int]:
    """(resident MB, threads, open file descriptors) of a process, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"]), len(os.listdir(f"/proc/{pid}/fd"))


class Drivers:
    """Six camera drivers at `rate` Hz of wall time, and the node's latest diagnostics."""

    def __init__(self, rig, rate: float) -> None:  # noqa: ANN001 - CameraRig
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage

        from surround_depth_ros.ros.messages import MESSAGES
        from surround_depth_ros.ros.spinner import BackgroundNode

        self.rig, self.rate, self.messages = rig, rate, MESSAGES
        self.spinner = BackgroundNode("soak_camera_drivers")
        self.node = self.spinner.node
        latched = QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self.tf = self.node.create_publisher(TFMessage, "/tf_static", latched)
        self.images = [self.node.create_publisher(Image, f"/{c.name}/image_raw", 10) for c in rig.cameras]
        self.infos = [self.node.create_publisher(CameraInfo, f"/{c.name}/camera_info", 10) for c in rig.cameras]
        self.statuses: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        # A consumer of every output: the node builds only what someone subscribes to.
        for topic in [f"/{c.name}/depth/{kind}" for c in rig.cameras for kind in ("image", "confidence")]:
            self.node.create_subscription(Image, topic, lambda msg: None, 1)
        self.node.create_subscription(PointCloud2, "/depth/points", lambda msg: None, 1)
        self.sent = 0
        self._stop = threading.Event()
        self._publisher = threading.Thread(target=self._publish, daemon=True)

    def _on_diagnostics(self, array) -> None:  # noqa: ANN001 - DiagnosticArray
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            self.statuses[status.name.split(": ", 1)[-1]] = {"message": status.message, **values}

    def start(self) -> None:
        edges = static_transforms(self.rig)
        self.tf.publish(self.messages.tf_message([self.messages.transform(T, p, c, 0) for p, c, T in edges]))
        self._publisher.start()

    def _publish(self) -> None:
        rng = np.random.default_rng(0)
        frames = [
            [rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8) for c in self.rig.cameras] for _ in range(4)
        ]
        period, next_time = 1.0 / self.rate, time.monotonic()
        while not self._stop.is_set():
            stamp = time.time_ns()
            for i, camera in enumerate(self.rig.cameras):
                self.infos[i].publish(self.messages.camera_info(camera, stamp))
                self.images[i].publish(self.messages.image(frames[self.sent % 4][i], stamp, camera.frame_id))
            self.sent += 1
            next_time = max(next_time + period, time.monotonic())  # late: skip, never burst to catch up
            self._stop.wait(next_time - time.monotonic())

    def published(self) -> int:
        return int(self.statuses.get("pipeline", {}).get("frame sets published", 0))

    def close(self) -> None:
        self._stop.set()
        self._publisher.join(timeout=5)
        self.spinner.close()


def drops_by_cause(statuses: dict[str, dict[str, str]]) -> dict[str, str]:
    """Every counter of a dropped set or rejected input, named by where it happened."""
    drops = {}
    for name, values in sorted(statuses.items()):
        for key, value in values.items():
            if key.startswith(("dropped", "rejected", "sync ")) and value not in ("0", ""):
                drops[f"{name}: {key}"] = value
    return drops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=12.0, help="camera rate, Hz")
    parser.add_argument("--size", type=image_size, default=(1600, 900), help="camera WIDTHxHEIGHT")
    parser.add_argument("--sample-s", type=float, default=2.0, help="seconds between memory samples")
    parser.add_argument("--print-s", type=float, default=15.0, help="seconds between printed lines")
    parser.add_argument("--warmup-min", type=float, default=2.0, help="minutes left out of the slope")
    parser.add_argument("--checkpoint", default=str(packaged_file("models", "student_default.pt")))
    args = parser.parse_args()

    use_large_image_transport()  # this process and the node (inherited environment)
    rig = default_rig().scaled(*args.size)
    tmp = Path(tempfile.mkdtemp(prefix="soak_"))
    params = tmp / "params.yaml"
    values = {"cameras": rig.camera_names, "checkpoint": args.checkpoint, "expected_rate_hz": args.rate}
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    log = (tmp / "node.log").open("w")
    command = [sys.executable, "-m", "surround_depth_ros.ros.supervisor", "--ros-args", "--params-file", str(params)]
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    drivers = Drivers(rig, args.rate)
    drivers.start()
    print(f"soak: 6 x {args.size[0]}x{args.size[1]} at {args.rate:g} Hz for {args.minutes:g} min; node log {log.name}")
    print(f"{'min':>6} {'RSS MB':>8} {'heap MB':>8} {'threads':>8} {'fds':>5} {'sets/s':>7} {'sent/s':>7}")
    samples = []  # (minutes, rss, threads, fds, heap in use)
    start = time.monotonic()
    last = (start, drivers.published(), drivers.sent)
    try:
        while (now := time.monotonic()) - start < 60 * args.minutes and node.poll() is None:
            time.sleep(min(args.sample_s, max(0.1, start + 60 * args.minutes - now)))
            now, published, sent = time.monotonic(), drivers.published(), drivers.sent
            rss, threads, fds = process_figures(node.pid)
            heap = float(drivers.statuses.get("pipeline", {}).get("memory: heap in use MB", "nan"))
            samples.append(((now - start) / 60, rss, threads, fds, heap))
            if now - last[0] < args.print_s:
                continue
            rates = [(published - last[1]) / (now - last[0]), (sent - last[2]) / (now - last[0])]
            print(
                f"{samples[-1][0]:6.2f} {rss:8.1f} {heap:8.1f} {threads:8d} {fds:5d} {rates[0]:7.2f} {rates[1]:7.2f}",
                flush=True,
            )
            last = (now, published, sent)
    finally:
        elapsed = time.monotonic() - start
        published, sent = drivers.published(), drivers.sent
        drops = drops_by_cause(drivers.statuses)
        drivers.close()
        exited = node.poll()
        if exited is None:
            node.send_signal(2)
            node.wait(timeout=30)
        log.close()
    if exited is not None:
        print(f"the node exited with {exited} during the soak: see {log.name}")
        return 1
    steady = np.array([s for s in samples if s[0] >= args.warmup_min])
    if len(steady) < 2:
        print("too short for a slope: run longer than the warm-up")
        return 1
    for name, column in (("RSS", 1), ("heap in use", 4)):
        values = steady[np.isfinite(steady[:, column])]
        if len(values) < 2:
            print(f"{name:13} not reported by the node")
            continue
        slope = np.polyfit(values[:, 0], values[:, column], 1)[0]
        whole = np.floor(values[:, 0]) < np.floor(values[-1, 0])  # whole minutes: a last partial one has few samples
        minutes = np.floor(values[whole, 0])
        floors = np.array([(m + 0.5, values[whole][minutes == m, column].min()) for m in np.unique(minutes)])
        floor_slope = np.polyfit(floors[:, 0], floors[:, 1], 1)[0] if len(floors) > 1 else float("nan")
        print(
            f"{name + ' slope':17} {slope:+.2f} MB/min least squares over {len(values)} samples "
            f"({values[0, column]:.0f} -> {values[-1, column]:.0f} MB), {floor_slope:+.2f} MB/min of each minute's "
            f"lowest, after {args.warmup_min:g} min warm-up; target < {TARGET_MB_PER_MIN} MB/min, floor 0"
        )
    print(f"threads       {int(steady[0, 2])} -> {int(steady[-1, 2])}; fds {int(steady[0, 3])} -> {int(steady[-1, 3])}")
    print(
        f"published     {published / elapsed:.2f} sets/s ({published} sets) for {sent / elapsed:.2f} camera sets/s sent"
    )
    print("drops by cause" + ("" if drops else ": none"))
    for cause, count in drops.items():
        print(f"  {cause}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
