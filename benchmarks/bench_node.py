"""What the node costs on top of the network: bare forward vs pipeline vs the node over DDS.

Floors and figures, for the shipped student on 6 synthetic cameras:
  forward   the network alone on prepared tensors (DepthEngine.run_network)
  pipeline  engine pre/post-processing + cloud fusion (SurroundDepthPipeline.process)
  node      the node in its own process over real DDS: processing_ms (worker, from its debug topic)
            and end-to-end latency (image stamp = wall time at publish -> depth image received)
Each set is published only after the previous one came back, so nothing queues.

    .venv/bin/python benchmarks/bench_node.py [--size 640x360] [--sets 10] [--checkpoint PT]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from surround_depth_ros.datasets.synthetic import SyntheticReader
from surround_depth_ros.inference.engine import DepthEngine
from surround_depth_ros.pipeline import SurroundDepthPipeline
from surround_depth_ros.rig import default_rig

ROOT = Path(__file__).resolve().parents[1]


def median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1000.0


def bench_in_process(frames: list, checkpoint: Path, repeats: int) -> tuple[float, float]:
    engine = DepthEngine(checkpoint, backend="torch", device="cpu", n_views=len(frames[0].images))
    pipeline = SurroundDepthPipeline(engine)
    rig = frames[0].rig
    K, T = list(rig.intrinsics()), list(rig.extrinsics())
    forward, full = [], []
    for i in range(repeats + 1):  # the first round warms up
        frame = frames[i % len(frames)]
        inputs = engine.preprocess(frame.images)
        start = time.perf_counter()
        engine.run_network(inputs)
        if i:
            forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        pipeline.process(frame.images, K, T, rig.base_frame)
        if i:
            full.append(time.perf_counter() - start)
    return median_ms(forward), median_ms(full)


def bench_node(frames: list, checkpoint: Path, sets: int) -> tuple[float, float]:
    import rclpy
    from std_msgs.msg import Float64

    sys.path.insert(0, str(ROOT / "test"))
    from ros_harness import NodeProcess, RigPublisher, RosClient

    rig = frames[0].rig
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        values = {"cameras": rig.camera_names, "checkpoint": str(checkpoint), "backend": "torch", "device": "cpu"}
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
        node = NodeProcess(params)
        client = RosClient("bench_node")
        try:
            processing: list[float] = []
            client.node.create_subscription(
                Float64, "/surround_depth/debug/processing_time_ms", lambda m: processing.append(m.data), 10
            )
            received: dict[int, float] = {}
            from sensor_msgs.msg import Image

            from surround_depth_ros.ros.messages import stamp_ns

            last = rig.camera_names[-1]
            client.node.create_subscription(
                Image, f"/{last}/depth/image", lambda m: received.setdefault(stamp_ns(m.header.stamp), time.time()), 10
            )
            pub = RigPublisher(client, rig)
            client.wait_for(lambda: all(p.get_subscription_count() for p in pub.images.values()), 120, "the node")
            pub.publish_tf()
            latency = []
            for k in range(sets + 1):
                frame = frames[k % len(frames)]
                now = time.time_ns()
                stamps = [now + 1_000_000 * i for i in range(len(frame.images))]
                for i, image in enumerate(frame.images):
                    pub.publish_camera(i, image, stamps[i])
                client.wait_for(lambda s=stamps[-1]: s in received, 60, f"set {k}")
                if k:  # the first set warms up
                    latency.append(received[stamps[-1]] - now / 1e9)
            return float(np.median(processing[1:])), median_ms(latency)
        finally:
            client.close()
            node.stop()
            rclpy.try_shutdown()
            if "Traceback" in node.output or "ERROR" in node.output:
                print(node.output, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "student_default.pt")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from surround_depth_ros.ros.dds import use_large_image_transport

    use_large_image_transport()
    width, height = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    frames = list(SyntheticReader(default_rig().scaled(width, height), seed=7, n_frames=3, radar=False, lidar=False))
    torch.set_num_threads(2)
    forward, pipeline = bench_in_process(frames, args.checkpoint, repeats=args.sets)
    processing, latency = bench_node(frames, args.checkpoint, args.sets)
    print(f"6 x {width}x{height}, {args.checkpoint.name}, torch CPU, {torch.get_num_threads()} threads, median of "
          f"{args.sets} sets")  # fmt: skip
    print(f"{'what':38} {'ms':>8} {'/ forward':>10}")
    for name, value in [
        ("network forward (floor)", forward),
        ("pipeline: pre/post + cloud, in process", pipeline),
        ("node worker processing_ms", processing),
        ("node end-to-end latency over DDS", latency),
    ]:
        print(f"{name:38} {value:8.1f} {value / forward:10.2f}")


if __name__ == "__main__":
    main()
