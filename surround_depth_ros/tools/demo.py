"""The main job on built-in data: a synthetic surround bag replayed through the running node.

Renders a synthetic six-camera + radar drive with exact depth, writes it as a rosbag2, starts
the surround depth node in its own process (sim time), replays the bag into it over real DDS,
and records what the node publishes. Writes, under --out: the bag, colour depth PNGs and a
contact sheet (camera, predicted depth, ground truth), the fused cloud as PLY, the node's log,
and summary.json (rates, latency, drops, accuracy against the synthetic ground truth).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from surround_depth_ros.base.geometry import resample_to_intrinsics
from surround_depth_ros.datasets.synthetic import SyntheticReader
from surround_depth_ros.evaluation.metrics import DepthMetrics
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.sensors.visualize import (
    colorize_depth,
    depth_colour_bar,
    label,
    surround_order,
    tile,
    write_ply,
    write_png,
)
from surround_depth_ros.tools.arguments import image_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--frames", type=int, default=24, help="synthetic frame sets to render (12 Hz)")
    parser.add_argument(
        "--size", type=image_size, default="640x360", help="camera image size WIDTHxHEIGHT (default 640x360)"
    )
    parser.add_argument("--seed", type=int, default=2026, help="synthetic world seed (held out from training)")
    parser.add_argument("--rate", type=float, default=0.5, help="replay rate (1.0 = real time; default 0.5)")
    parser.add_argument("--checkpoint", default="", help="student checkpoint (default: the shipped student)")
    parser.add_argument("--backend", default="auto", help="auto | torch | onnxruntime | tensorrt")


class _Recorder:
    """Collects the node's depth images, clouds and diagnostics (rclpy, in a background thread)."""

    def __init__(self, cameras: list[str]) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from surround_depth_ros.ros.spinner import BackgroundNode

        self.spinner = BackgroundNode("surround_depth_demo")
        self.node = self.spinner.node
        self.depth: dict[str, dict[int, np.ndarray]] = {c: {} for c in cameras}
        self.K: dict[str, np.ndarray] = {}  # of the published depth (the network's size by default, REP 118)
        self.clouds: dict[int, np.ndarray] = {}
        self.diagnostics = None
        for camera in cameras:
            self.node.create_subscription(Image, f"/{camera}/depth/image", self._depth(camera), 50)
            self.node.create_subscription(CameraInfo, f"/{camera}/depth/camera_info", self._info(camera), 50)
        self.node.create_subscription(PointCloud2, "/depth/points", self._cloud, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 10)

    def _depth(self, camera: str):  # noqa: ANN202 - a callback
        from surround_depth_ros.conversion.messages import stamp_ns

        def store(msg) -> None:  # noqa: ANN001
            depth = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width).copy()
            self.depth[camera][stamp_ns(msg.header.stamp)] = depth

        return store

    def _info(self, camera: str):  # noqa: ANN202 - a callback
        def store(msg) -> None:  # noqa: ANN001
            self.K[camera] = np.reshape(msg.k, (3, 3))

        return store

    def _cloud(self, msg) -> None:  # noqa: ANN001
        from surround_depth_ros.conversion.messages import cloud_points, stamp_ns

        self.clouds[stamp_ns(msg.header.stamp)] = cloud_points(msg).copy()

    def _diagnostics(self, msg) -> None:  # noqa: ANN001
        for status in msg.status:
            if status.name.endswith("pipeline"):
                self.diagnostics = {kv.key: kv.value for kv in status.values} | {"message": status.message}

    def close(self) -> None:
        self.spinner.close()


def _wait(condition, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.bag.writer import write_bag
    from surround_depth_ros.ros.dds import use_large_image_transport
    from surround_depth_ros.ros.launcher import NodeProcess, write_params
    from surround_depth_ros.ros.replayer import BagReplayer

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # keep the demo's DDS on this machine
    use_large_image_transport()  # for the replayer here and the node started below
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rig = default_rig().scaled(*args.size)
    # The renderer runs many small tensor operations: one thread avoids torch's threads waiting on
    # each other (measured 40x slower with two threads on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reader = SyntheticReader(rig, seed=args.seed, n_frames=args.frames)
    frames = list(tqdm(reader, desc="rendering the synthetic drive", unit="frame set"))  # kept as ground truth
    torch.set_num_threads(threads)
    bag = out / "bag"
    shutil.rmtree(bag, ignore_errors=True)
    write_bag(frames, bag, total=len(frames))

    values = {"cameras": rig.camera_names, "backend": args.backend, "use_sim_time": True}
    values |= {"checkpoint": str(Path(args.checkpoint).resolve())} if args.checkpoint else {}
    node = NodeProcess(write_params(out / "params.yaml", values), log=out / "node.log")
    recorder = _Recorder(rig.camera_names)
    replayer = BagReplayer(bag, rate=args.rate, node=recorder.node)
    try:
        print("waiting for the node (loading the model)...")
        topics = [f"/{name}/image_raw" for name in rig.camera_names]
        up = _wait(lambda: not node.running or all(replayer.node.count_subscribers(t) for t in topics), 120)
        if not up or not node.running:
            print(f"the node did not come up; its log ({out / 'node.log'}):\n{node.output}", file=sys.stderr)
            return 1
        time.sleep(2.0)  # discovery has seen the node; let every publisher match it before the first frame
        stats = replayer.run(progress=True)
        # The newest set always wins, so the last one is served (its anchor is the first camera's stamp).
        _wait(lambda: int(frames[-1].camera_stamps_ns[0]) in recorder.clouds, 30)
        # Diagnostics come once a second: wait for the one that counts every set received here.
        _wait(lambda: (recorder.diagnostics or {}).get("frame sets published") == str(len(recorder.clouds)), 5)
    finally:
        node.stop(timeout=30)
        recorder.close()
    summary = _summarize(frames, recorder, stats, out)
    print(json.dumps(summary, indent=2))
    return 0 if summary["frame_sets_published"] > 0 else 1


def _summarize(frames: list, recorder: _Recorder, stats, out: Path) -> dict:  # noqa: ANN001 - ReplayStats
    """Accuracy against the synthetic truth, rates and latency, and the pictures."""
    names = frames[0].rig.camera_names
    metrics = DepthMetrics(names, min_depth=0.5, max_depth=80.0)
    served = []
    for frame in frames:
        predicted = [recorder.depth[c].get(int(s)) for c, s in zip(names, frame.camera_stamps_ns, strict=True)]
        if all(p is not None for p in predicted) and all(c in recorder.K for c in names):
            # the truth as the published depth's camera (its CameraInfo: the network's size by default) sees it
            truth = [
                resample_to_intrinsics(depth, camera.K, recorder.K[camera.name], published.shape)
                for camera, depth, published in zip(frame.rig.cameras, frame.depth, predicted, strict=True)
            ]
            metrics.update(np.stack(predicted), np.stack(truth))
            served.append((frame, predicted))
    diagnostics = recorder.diagnostics or {}
    summary = {
        "frame_sets_in_bag": len(frames),
        "frame_sets_published": len(recorder.clouds),
        "replay_rate_achieved": round(stats.achieved_rate, 3),
        "node": diagnostics,
        "accuracy_vs_synthetic_truth": metrics.summary()["metric"]["mean"] if served else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if served:
        frame, predicted = served[-1]
        cameras = frame.rig.cameras
        # shown at the camera's size (sheet and PNGs), each published depth pixel as the camera pixels it covers
        shown = [
            resample_to_intrinsics(colorize_depth(depth), recorder.K[c.name], c.K, (c.height, c.width))
            for c, depth in zip(cameras, predicted, strict=True)
        ]
        for name, picture in zip(names, shown, strict=True):
            write_png(out / f"depth_{name}.png", picture)
        rows = surround_order([c.T_base_cam for c in cameras])
        sheet = []
        for row in rows:
            sheet.append([label(frame.images[i].copy(), names[i]) for i in row])
            sheet.append([label(shown[i], f"{names[i]} predicted") for i in row])
            sheet.append([label(colorize_depth(frame.depth[i]), f"{names[i]} ground truth") for i in row])
        sheet = tile(sheet)
        write_png(out / "contact_sheet.png", np.vstack([sheet, depth_colour_bar(sheet.shape[1])]))
    if recorder.clouds:
        write_ply(out / "cloud.ply", recorder.clouds[max(recorder.clouds)])
    return summary
