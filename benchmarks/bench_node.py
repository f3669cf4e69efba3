"""What the node costs on top of the network, stage by stage, each next to its floor, and over real DDS.

For the shipped tiny student and the default preset (random weights, same cost), at 6 x 1600x900
and 6 x 1936x1216 synthetic cameras, best of --repeats:
  forward                 the network alone on prepared tensors (DepthEngine.run_network)
  upload+resize+normalise floor: a memcpy of the camera images (the resize has to read them once)
  focal scale + mask      floor: a memcpy of depth + confidence at network resolution
  upsample to cameras     only for `resolution=camera`; floor: a memcpy of the upsampled maps
  cloud fuse+filter+pack  CloudFusion at its default point budget; floor: a memcpy of the packed cloud
  12 Images + PointCloud2 message building; floor: a memcpy of their bytes
and the sums: everything but the forward over the forward (issue 10 targets: tiny at 1600x900 <= 1.5;
default node / forward <= 1.15), and the cloud's size (target < 10 MB).
Thread settings: a mask right after an ONNX Runtime run with its threads spinning vs not, and the
cloud step with 1 vs 2 torch threads. Callback delay: p50/p90/p99 lateness of a 100 Hz rclpy timer in
this process, idle and while the stages run in another thread (the GIL).
Node over DDS (--node): the node in its own process: processing_ms from its debug topic, and end-to-end
latency (wall time at publish -> depth image received). Each set is published after the previous came back.

    .venv/bin/python benchmarks/bench_node.py [--sizes 1600x900,1936x1216] [--presets tiny,default] [--node]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from timing import best_ms

from surround_depth_ros.checkpoint import save_checkpoint
from surround_depth_ros.datasets.synthetic import SyntheticReader
from surround_depth_ros.fusion import CloudFusion, cloud_points
from surround_depth_ros.inference.engine import DepthEngine, DepthMaps
from surround_depth_ros.network.student import PRESETS, SurroundDepthStudent
from surround_depth_ros.rig import CameraRig, default_rig

ROOT = Path(__file__).resolve().parents[1]


def synthetic_frames(width: int, height: int) -> tuple[CameraRig, list[list[np.ndarray]]]:
    """Two synthetic sets rendered at 1600x900 and resized (rendering 1936x1216 takes a minute here)."""
    torch.set_num_threads(1)
    frames = list(SyntheticReader(default_rig().scaled(1600, 900), seed=7, n_frames=2, radar=False, lidar=False))
    torch.set_num_threads(2)
    images = [[cv2.resize(im, (width, height), interpolation=cv2.INTER_LINEAR) for im in f.images] for f in frames]
    return default_rig().scaled(width, height), images


def checkpoint_for(preset: str, tmp: Path) -> Path:
    """The shipped student for `tiny`, else a random-weight model of the preset (same cost) with the default rig."""
    if preset == "tiny":
        return ROOT / "models" / "student_default.pt"
    torch.manual_seed(0)
    path = tmp / f"{preset}.pt"
    save_checkpoint(path, SurroundDepthStudent(PRESETS[preset]).eval(), rig=default_rig())
    return path


def copy_floor(nbytes: int, repeats: int) -> float:
    source = np.ones(nbytes, np.uint8)
    return best_ms(lambda: np.copy(source), repeats)


class Row:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float | None]] = []

    def add(self, name: str, ms: float, floor_ms: float | None = None) -> float:
        self.rows.append((name, ms, floor_ms))
        return ms

    def print(self, forward_ms: float) -> None:
        print(f"  {'stage':34} {'ms':>8} {'floor ms':>9} {'ratio':>6} {'/ fwd':>6}")
        for name, ms, floor in self.rows:
            ratio = f"{ms / floor:6.1f}" if floor else " " * 6
            floor_text = f"{floor:9.2f}" if floor else " " * 9
            print(f"  {name:34} {ms:8.2f} {floor_text} {ratio} {ms / forward_ms:6.2f}")


def bench_stages(engine: DepthEngine, rig: CameraRig, images: list[np.ndarray], repeats: int) -> None:
    """The device path with depth at network resolution, then upsampled to the cameras."""
    inputs = engine.preprocess(images)
    forward = best_ms(lambda: engine.run_network(inputs), repeats)
    raw = engine.run_network(inputs)
    for resolution in ("network", "camera"):
        bench_resolution(engine, rig, images, resolution, forward, raw, repeats)


def bench_resolution(
    engine: DepthEngine, rig: CameraRig, images: list[np.ndarray], resolution: str, forward: float,
    raw: tuple[torch.Tensor, torch.Tensor], repeats: int,
) -> None:  # fmt: skip
    """Each stage timed on its own with its floor; then the whole path in one call."""
    from surround_depth_ros.ros.messages import MESSAGES

    K, T = rig.intrinsics(), rig.extrinsics()
    sizes = [im.shape[:2] for im in images]
    fusion = CloudFusion(device=engine.device)
    rows = Row()
    rows.add("forward (floor of the whole)", forward)
    rows.add("upload+resize+normalise", best_ms(lambda: engine.normalize(engine.upload(images)), repeats),
             copy_floor(sum(im.nbytes for im in images), repeats))  # fmt: skip

    def focal_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
        return engine.mask(*raw, engine.focal_scale(K, sizes))

    depth, conf = focal_and_mask()
    rows.add("focal scale + mask", best_ms(focal_and_mask, repeats), copy_floor(2 * depth.numel() * 4, repeats))
    maps = engine.infer_maps(images, K, resolution=resolution)
    if resolution == "camera":
        ms = best_ms(lambda: (engine.resize(depth, sizes), engine.resize(conf, sizes)), repeats)
        rows.add("upsample to cameras", ms, copy_floor(2 * maps.depth.numel() * 4, repeats))
    packed = fusion.cloud(maps.depth, maps.K, T, maps.confidence, maps.images)
    cloud_ms = best_ms(lambda: fusion.cloud(maps.depth, maps.K, T, maps.confidence, maps.images), repeats)
    rows.add("cloud fuse+filter+pack", cloud_ms, copy_floor(packed.numel(), repeats))

    def messages(m: DepthMaps, cloud: torch.Tensor) -> None:
        for d, c in zip(m.depth, m.confidence, strict=True):
            MESSAGES.image_array(d.numpy(), 0, "camera", "32FC1")
            MESSAGES.image_array(c.numpy(), 0, "camera", "32FC1")
        MESSAGES.point_cloud(cloud_points(cloud), 0, "base_link")

    message_bytes = 2 * maps.depth.numel() * 4 + packed.numel()
    rows.add("12 Images + PointCloud2 built", best_ms(lambda: messages(maps, packed), repeats),
             copy_floor(message_bytes, repeats))  # fmt: skip

    def whole() -> None:
        m = engine.infer_maps(images, K, resolution=resolution)
        messages(m, fusion.cloud(m.depth, m.K, T, m.confidence, m.images))

    total = best_ms(whole, repeats)
    h, w = maps.depth.shape[-2:]
    print(f" depth at {resolution} resolution ({w}x{h}): cloud {packed.numel() // 24} points, "
          f"{packed.numel() / 1e6:.2f} MB; messages {message_bytes / 1e6:.1f} MB")  # fmt: skip
    rows.print(forward)
    but_forward = sum(ms for _, ms, _ in rows.rows[1:])
    print(f"  {'sum of stages but the forward':34} {but_forward:8.2f} {'':9} {'':6} {but_forward / forward:6.2f}")
    print(f"  {'whole path, one call':34} {total:8.2f} {'':9} {'':6} {total / forward:6.2f}")


def bench_threads(engine: DepthEngine, rig: CameraRig, images: list[np.ndarray], repeats: int) -> None:
    """A mask right after an ONNX Runtime run with its threads spinning and not; the cloud with 1 and 2 threads."""
    inputs = engine.preprocess(images)
    if engine.backend_name == "onnxruntime":
        from surround_depth_ros.inference.onnx_backend import OnnxRuntimeBackend

        depth, conf = engine.run_network(inputs)
        for spinning in (True, False):
            backend = OnnxRuntimeBackend(engine.backend.path, spinning=spinning)
            samples = []
            for _ in range(repeats):
                backend.run(inputs)
                start = time.perf_counter()
                engine.mask(depth, conf)
                samples.append(time.perf_counter() - start)
            after = 1000 * min(samples)
            alone = best_ms(lambda d=depth, c=conf: engine.mask(d, c), repeats)
            print(f"  mask after an ONNX Runtime run, spinning {'on ' if spinning else 'off'}: best {after:7.2f} ms, "
                  f"median {1000 * np.median(samples):7.2f} ms (alone {alone:.2f} ms)")  # fmt: skip
    maps = engine.infer_maps(images, rig.intrinsics())
    for threads in (1, 2):
        fusion = CloudFusion(threads=threads)
        ms = best_ms(lambda f=fusion: f.cloud(maps.depth, maps.K, rig.extrinsics(), maps.confidence, maps.images),
                     repeats)  # fmt: skip
        print(f"  cloud fuse+filter+pack with {threads} torch thread(s): {ms:7.2f} ms")


def bench_callback_delay(engine: DepthEngine, rig: CameraRig, images: list[np.ndarray], seconds: float) -> None:
    """Lateness of a 100 Hz rclpy timer in this process: idle, then while a worker thread runs the whole path."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from surround_depth_ros.ros.messages import MESSAGES

    fusion = CloudFusion()
    T = rig.extrinsics()

    def work() -> None:
        m = engine.infer_maps(images, rig.intrinsics())
        p = fusion.cloud(m.depth, m.K, T, m.confidence, m.images)
        for d in m.depth:
            MESSAGES.image_array(d.numpy(), 0, "camera", "32FC1")
        MESSAGES.point_cloud(cloud_points(p), 0, "base_link")

    rclpy.init()
    node = rclpy.create_node("bench_callback_delay")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    period = 0.01
    try:
        for label, busy in (("idle", False), ("worker busy", True)):
            delays: list[float] = []
            expected = [time.perf_counter() + period]

            def tick(delays: list[float] = delays, expected: list[float] = expected) -> None:
                now = time.perf_counter()
                delays.append(max(0.0, now - expected[0]))
                expected[0] = now + period

            timer = node.create_timer(period, tick)
            stop = threading.Event()

            def loop(stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    work()

            worker = threading.Thread(target=loop, daemon=True)
            if busy:
                worker.start()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                executor.spin_once(timeout_sec=0.05)
            stop.set()
            if busy:
                worker.join()
            node.destroy_timer(timer)
            p50, p90, p99 = np.percentile(1000 * np.asarray(delays), [50, 90, 99])
            print(f"  timer callback delay, {label:11}: p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"max {1000 * max(delays):6.1f} ms ({len(delays)} callbacks)")  # fmt: skip
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def bench_node(rig: CameraRig, frames: list[list[np.ndarray]], checkpoint: Path, sets: int) -> tuple[float, float]:
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64

    sys.path.insert(0, str(ROOT / "test"))
    from ros_harness import NodeProcess, RigPublisher, RosClient

    from surround_depth_ros.ros.messages import stamp_ns

    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        values = {"cameras": rig.camera_names, "checkpoint": str(checkpoint), "device": "cpu"}
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
        node = NodeProcess(params)
        client = RosClient("bench_node")
        try:
            processing: list[float] = []
            client.node.create_subscription(
                Float64, "/surround_depth/debug/processing_time_ms", lambda m: processing.append(m.data), 10
            )
            received: dict[int, float] = {}
            last = rig.camera_names[-1]
            client.node.create_subscription(
                Image, f"/{last}/depth/image", lambda m: received.setdefault(stamp_ns(m.header.stamp), time.time()), 10
            )
            pub = RigPublisher(client, rig)
            client.wait_for(lambda: all(p.get_subscription_count() for p in pub.images.values()), 120, "the node")
            pub.publish_tf()
            latency = []
            for k in range(sets + 1):
                images = frames[k % len(frames)]
                now = time.time_ns()
                stamps = [now + 1_000_000 * i for i in range(len(images))]
                for i, image in enumerate(images):
                    pub.publish_camera(i, image, stamps[i])
                client.wait_for(lambda s=stamps[-1]: s in received, 120, f"set {k}")
                if k:  # the first set warms up
                    latency.append(received[stamps[-1]] - now / 1e9)
            return float(np.min(processing[1:])), 1000 * float(np.min(latency))
        finally:
            client.close()
            node.stop()
            rclpy.try_shutdown()
            if "Traceback" in node.output or "ERROR" in node.output:
                print(node.output, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1600x900,1936x1216")
    parser.add_argument("--presets", default="tiny,default")
    parser.add_argument("--backend", default="auto", help="the engine's backend (the node's default: auto)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--node", action=argparse.BooleanOptionalAction, default=True, help="also the node over DDS")
    parser.add_argument("--sets", type=int, default=5, help="frame sets through the node")
    parser.add_argument("--callback-seconds", type=float, default=3.0)
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from surround_depth_ros.ros.dds import use_large_image_transport

    use_large_image_transport()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads for the network, best of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            rig, frames = synthetic_frames(width, height)
            for preset in args.presets.split(","):
                checkpoint = checkpoint_for(preset, Path(tmp))
                engine = DepthEngine(checkpoint, backend=args.backend, device="cpu", n_views=6)
                h, w = engine.input_size
                print(f"\n== 6 x {width}x{height}, preset {preset} ({checkpoint.name}, network 6 x {w}x{h}), "
                      f"backend {engine.backend_name}")  # fmt: skip
                bench_stages(engine, rig, frames[0], args.repeats)
                if size == args.sizes.split(",")[0] and preset == args.presets.split(",")[0]:
                    print(" thread settings")
                    bench_threads(engine, rig, frames[0], args.repeats)
                    if args.callback_seconds > 0:
                        print(" callbacks of this process while the path runs in a worker thread")
                        bench_callback_delay(engine, rig, frames[0], args.callback_seconds)
                if args.node:
                    inputs = engine.preprocess(frames[0])
                    forward = best_ms(lambda e=engine, x=inputs: e.run_network(x), args.repeats)
                    processing, latency = bench_node(rig, frames, checkpoint, args.sets)
                    for name, ms in (("node worker processing_ms", processing), ("node end-to-end over DDS", latency)):
                        print(f"  {name + ' (best)':34} {ms:8.2f} {'':9} {'':6} {ms / forward:6.2f}")


if __name__ == "__main__":
    main()
