"""rosbag2 speed: write and read throughput against a plain-file floor, replay rate achieved vs requested, and
`surround-depth run-bag` against its floor.

Frame sets are the packaged six-camera rig at --size (default 640x352) with random pixels (they do
not compress, like real images), five 125-point nuScenes-layout radar sweeps, a 35k-point lidar sweep
and poses. The floor writes (and reads back) the same number of payload bytes to a plain file, so
the ratio says how much the bag machinery (CDR, storage, indexes) costs over the disk itself.
Replay publishes the bag over real DDS to a subscriber in this process, at 1x and at max.

run-bag (--presets, default tiny and default: a seeded untrained student of the rig, the same cost as a trained
one) runs in this process on the bag with the node's default parameters (depth at the network's size, confidence
and the fused cloud published, scored against the lidar). Its floor is what no run-bag can skip: one pass of
the bag's reader (read, deserialize, decode, synchronize) plus the pipeline's radar, upload, preprocess and
forward stages of each set. The ratio is run-bag's time from its first set read to its output closed (its
summary's wall time), over that floor; both after a warm-up forward, so that neither pays for the first one.

    PYTHONPATH=. python benchmarks/bench_bag.py [--frames 40] [--size 640x352] [--storage mcap] [--presets tiny]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from surround_depth_ros.bag import RosbagReader, write_bag
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.pointcloud import NUSCENES_RADAR_DTYPE
from surround_depth_ros.sensors.rig import default_rig


def make_framesets(count: int, width: int, height: int) -> list[FrameSet]:
    rig = default_rig().scaled(width, height)
    rng = np.random.default_rng(0)
    start = 1_700_000_000 * 10**9
    framesets = []
    for k in range(count):
        stamp = start + k * 83_333_333
        stamps = stamp + np.arange(6) * 8_000_000
        images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in rig.cameras]
        radar = []
        for j, r in enumerate(rig.radars):
            fields = {n: rng.normal(size=125).astype(NUSCENES_RADAR_DTYPE.fields[n][0]) for n in ("rcs", "vx", "vy")}
            radar.append(PointSweep(r.name, stamp - 10_000_000 + j, rng.normal(size=(125, 3)) * 30, fields))
        lidar = PointSweep(
            "lidar",
            stamp + 20_000_000,
            rng.normal(size=(35_000, 3)) * 30,
            {
                "intensity": rng.random(35_000).astype(np.float32),
                "ring": rng.integers(0, 32, 35_000).astype(np.float32),
            },
            T_base_sensor=np.eye(4),
        )
        poses = np.repeat(np.eye(4)[None], 6, axis=0)
        poses[:, 0, 3] = (stamps - start) / 1e8
        framesets.append(FrameSet(rig, images, stamps, radar, lidar, poses))
    return framesets


def floor_write_read(total_bytes: int, chunk: bytes, folder: Path) -> tuple[float, float]:
    """Seconds to write then read back `total_bytes` in `chunk`-sized pieces to a plain file (fsync'd)."""
    path = folder / "floor.bin"
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(total_bytes // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(len(chunk)):
            pass
    read_s = time.perf_counter() - start
    path.unlink()
    return write_s, read_s


def bag_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def replay_rate(path: Path, rate: float) -> tuple[float, float, int]:
    """(achieved rate x real time, wall seconds, messages received) of replaying the bag to a local subscriber."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from surround_depth_ros.ros.replayer import BagReplayer
    from surround_depth_ros.ros.spinner import BackgroundNode

    subscriber = BackgroundNode("bench_subscriber")
    node, context = subscriber.node, subscriber.context
    received = []
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    rig = default_rig()
    for cam in rig.camera_names:
        node.create_subscription(Image, f"/{cam}/image_raw", received.append, qos)
    replayer = BagReplayer(path, rate=rate, node=rclpy.create_node("bag_replayer", context=context))
    deadline = time.monotonic() + 10
    while any(p.get_subscription_count() == 0 for t, p in replayer._publishers.items() if "image" in t):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stats = replayer.run()
    time.sleep(0.5)
    count = len(received)
    subscriber.close()
    return stats.achieved_rate, stats.wall_seconds, count


def student_checkpoint(path: Path, preset_name: str, rig) -> Path:
    """A seeded, untrained student of `preset_name` recording `rig` (the cost of a trained one)."""
    import torch

    from surround_depth_ros.network.checkpoint import save_checkpoint
    from surround_depth_ros.network.student import SurroundDepthStudent, preset

    torch.manual_seed(0)
    config = preset(preset_name)
    save_checkpoint(path, SurroundDepthStudent(config).eval(), config, rig=rig)
    return path


def run_bag_vs_floor(bag: Path, checkpoint: Path, rig, folder: Path) -> tuple[float, float, int, dict]:
    """(run-bag seconds, floor seconds, frame sets, run-bag's summary) on `bag` with the node's default parameters."""
    import json

    import yaml

    from surround_depth_ros.core.params import settings_from_values
    from surround_depth_ros.core.pipeline import pipeline_from_settings
    from surround_depth_ros.tools.cli import main as cli

    values = {"checkpoint": str(checkpoint), "cameras": list(rig.camera_names), "backend": "torch", "device": "cpu"}
    pipeline = pipeline_from_settings(settings_from_values(values))
    if pipeline.uses_radar:
        values["radars"] = list(rig.radar_names)
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    # the reader run-bag makes: every set the node's assembler emits, with the node's settings
    reader = RosbagReader(bag, settings_from_values(values), complete=False)
    pipeline.process(next(iter(reader)))  # warm-up: the first forward sets up the kernels
    start = time.perf_counter()
    framesets = list(reader)
    read_s = time.perf_counter() - start
    stages = ("radar", "upload", "preprocess", "forward")
    compute_s = sum(sum(pipeline.process(f).timings_ms[s] for s in stages) for f in framesets) / 1000
    out = folder / f"run_bag_{checkpoint.stem}"
    assert cli(["run-bag", str(bag), "--params", str(params), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return summary["wall_time_s"], read_s + compute_s, len(framesets), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="640x352", help="WIDTHxHEIGHT of each camera")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--no-replay", action="store_true", help="skip the DDS replay measurements")
    parser.add_argument(
        "--presets", nargs="*", default=["tiny", "default"], help="students to time run-bag with (none: skip it)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for run-bag and its floor (default: torch's count)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    framesets = make_framesets(args.frames, width, height)
    folder = Path(tempfile.mkdtemp(prefix="bench_bag_"))
    try:
        path = folder / "bench"
        start = time.perf_counter()
        stats = write_bag(framesets, path, storage=args.storage, progress=False)
        write_s = time.perf_counter() - start
        size = bag_bytes(path)
        start = time.perf_counter()
        read = sum(1 for _ in RosbagReader(path))
        read_s = time.perf_counter() - start
        assert read == args.frames, f"read {read} of {args.frames} frame sets"
        floor_w, floor_r = floor_write_read(size, os.urandom(width * height * 3), folder)
        mb = size / 1e6
        print(
            f"{args.frames} frame sets of 6 x {width}x{height}, {stats.messages} messages, {mb:.1f} MB ({args.storage})"
        )
        print(
            f"{'write':<8} {args.frames / write_s:8.1f} frame sets/s {mb / write_s:8.1f} MB/s   "
            f"floor {mb / floor_w:8.1f} MB/s   ratio {write_s / floor_w:6.2f}"
        )
        print(
            f"{'read':<8} {args.frames / read_s:8.1f} frame sets/s {mb / read_s:8.1f} MB/s   "
            f"floor {mb / floor_r:8.1f} MB/s   ratio {read_s / floor_r:6.2f}"
        )
        if not args.no_replay:
            for rate in (1.0, float("inf")):
                achieved, wall, count = replay_rate(path, rate)
                label = "max" if rate == float("inf") else f"{rate:g}x"
                print(
                    f"replay {label:<4} achieved {achieved:6.2f} x real time ({args.frames / wall:6.1f} frame sets/s, "
                    f"{mb / wall:7.1f} MB/s), images received {count}/{6 * args.frames}"
                )
        for preset_name in args.presets:
            checkpoint = student_checkpoint(folder / f"{preset_name}.pt", preset_name, framesets[0].rig)
            run_s, floor_s, sets, summary = run_bag_vs_floor(path, checkpoint, framesets[0].rig, folder)
            stages = summary["pipeline_ms_mean"]
            print(
                f"run-bag {preset_name:<8} {sets / run_s:6.2f} frame sets/s ({sets} sets, {torch.get_num_threads()} "
                f"threads, forward {stages['forward']:.0f} ms a set)   floor {sets / floor_s:6.2f} frame sets/s   "
                f"ratio {run_s / floor_s:5.2f}"
            )
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
