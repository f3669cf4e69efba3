"""Cost of the node's ROS-free cores: frame-set synchronization and transform lookups.

Synchronizer: an hour of stamps (6 cameras at 12 Hz firing 0-45 ms apart with 2 ms jitter and up
to 20 ms of transport delay, 5 radars at 13 Hz), each message added and followed by a poll, as
the node does. Floor: the same loop storing each message in a dict (the least any buffer does).
Lookups: a 3-link static chain and a chain through an interpolated dynamic edge. Floor: one 4x4
matrix product (a lookup multiplies at least two).
TF messages of 100, 1,000 and 10,000 transforms (a wide tree on /tf, a deep chain on /tf_static) through
the node's path: rclpy message -> `core.transforms.transform_batch` -> `FrameAssembler.add_transforms`, with the node's
frame limit and without one. Floor: the same arrays turned into 4x4 matrices by plain vectorised numpy
(the least any buffer does with the numbers). rclpy's own deserialization, before all this, is shown apart.

    PYTHONPATH=. python benchmarks/bench_sync.py [--seconds 3600]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from timing import best_ms
from tqdm import tqdm

from surround_depth_ros.base.geometry import make_transform, rpy_to_matrix
from surround_depth_ros.core.assembler import FrameAssembler
from surround_depth_ros.core.sync import FrameSetSynchronizer
from surround_depth_ros.core.transforms import MAX_FRAMES, TransformBuffer

CAMERAS = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"]
STAGGER_S = [0.0, 0.009, 0.018, 0.027, 0.036, 0.045]
RADARS = ["RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT", "RADAR_BACK_RIGHT"]
CHUNK = 10_000


def message_stream(seconds: float, rng: np.random.Generator) -> list[tuple[bool, str, int]]:
    """(is_camera, name, stamp_ns) in arrival order."""
    stamps, names, cameras = [], [], []
    frames = np.arange(int(seconds * 12)) / 12.0
    for name, offset in zip(CAMERAS, STAGGER_S, strict=True):
        stamps.append(frames + offset + rng.uniform(-0.002, 0.002, len(frames)))
        names += [name] * len(frames)
        cameras += [True] * len(frames)
    for r, name in enumerate(RADARS):
        sweeps = np.arange(int(seconds * 13)) / 13.0 + 0.011 * r
        stamps.append(sweeps)
        names += [name] * len(sweeps)
        cameras += [False] * len(sweeps)
    stamp_ns = (np.concatenate(stamps) * 1e9).astype(np.int64) + 1_000_000_000
    arrival = stamp_ns + rng.integers(0, 20_000_000, len(stamp_ns))
    order = np.argsort(arrival, kind="stable")
    return [(cameras[i], names[i], int(stamp_ns[i])) for i in order]


def run_synchronizer(messages: list[tuple[bool, str, int]]) -> tuple[float, FrameSetSynchronizer, int]:
    sync = FrameSetSynchronizer(CAMERAS, RADARS, radar_sweeps=3, radar_window_s=0.25, buffer_size=8)
    emitted = 0
    start = time.perf_counter()
    with tqdm(total=len(messages), desc="synchronizer", unit="msg", mininterval=1.0) as bar:
        for begin in range(0, len(messages), CHUNK):
            for is_camera, name, stamp in messages[begin : begin + CHUNK]:
                (sync.add_camera if is_camera else sync.add_radar)(name, stamp, None)
                emitted += len(sync.poll())
            bar.update(min(CHUNK, len(messages) - begin))
    return time.perf_counter() - start, sync, emitted


def run_floor(messages: list[tuple[bool, str, int]]) -> float:
    latest: dict[str, tuple[int, None]] = {}
    start = time.perf_counter()
    for _, name, stamp in messages:
        latest[name] = (stamp, None)
    return time.perf_counter() - start


def best_us(function, repeats: int = 5, number: int = 2000) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - start) / number)
    return 1e6 * min(times)


def bench_tf_message(n: int, shape: str, edges: list[tuple[str, str]], static: bool) -> None:
    """One TF message of `edges` into an empty buffer and the next one after it (ms, best of 3), against the floor."""
    from rclpy.serialization import deserialize_message, serialize_message
    from tf2_msgs.msg import TFMessage

    from surround_depth_ros.core.transforms import transform_batch
    from surround_depth_ros.ros.messages import MESSAGES

    T = np.eye(4)
    T[:3, 3] = [0.1, 0.2, 0.3]
    first, later = (MESSAGES.tf_message([MESSAGES.transform(T, p, c, t) for p, c in edges]) for t in (1, 2))
    then = first if static else later  # /tf_static publishers re-send the same message; /tf has new stamps
    batch = transform_batch(first.transforms)
    q, t = batch.rotations, batch.translations
    floor = best_ms(lambda: np.concatenate([q / np.linalg.norm(q, axis=1, keepdims=True), t], axis=1), 3)
    raw = serialize_message(first)
    rclpy_ms = best_ms(lambda: deserialize_message(raw, TFMessage), 3)
    for max_frames, label in ((MAX_FRAMES, f"limit {MAX_FRAMES:,}"), (1_000_000, "no limit")):

        def into_empty(max_frames: int = max_frames) -> FrameAssembler:
            assembler = FrameAssembler(["CAM_FRONT"], transforms=TransformBuffer(max_frames=max_frames))
            assembler.add_transforms(transform_batch(first.transforms), static)
            return assembler

        empty_ms = best_ms(into_empty, 3)
        filled = into_empty()
        next_ms = best_ms(lambda a=filled: a.add_transforms(transform_batch(then.transforms), static), 3)
        print(
            f"  {n:6,} {shape:<25} {label:<12} {empty_ms:7.2f} then {next_ms:7.2f}   "
            f"floor (normalise + stack the arrays) {floor:6.3f}   ratio {next_ms / floor:5.1f}   "
            f"(rclpy's deserialization before it: {rclpy_ms:6.1f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0, help="message time to simulate")
    args = parser.parse_args()
    messages = message_stream(args.seconds, np.random.default_rng(0))
    frames = int(args.seconds * 12)

    elapsed, sync, emitted = run_synchronizer(messages)
    floor = run_floor(messages)
    per_message, floor_per_message = 1e6 * elapsed / len(messages), 1e6 * floor / len(messages)
    drops = {k: v for k, v in sync.stats().items() if v and ":" not in k and k != "accepted"}
    print(f"synchronizer: {len(messages):,} messages ({args.seconds:.0f} s of 6 cameras + 5 radars) in {elapsed:.2f} s")
    print(
        f"  {len(messages) / elapsed:12,.0f} messages/s  {per_message:6.2f} us/message   floor (dict insert) "
        f"{floor_per_message:5.3f} us   ratio {per_message / floor_per_message:6.1f}"
    )
    real_time = len(messages) / args.seconds  # 6 x 12 Hz + 5 x 13 Hz
    print(
        f"  {len(messages) / elapsed / real_time:12,.0f} x real time   sets {emitted:,} of {frames:,}   drops {drops}"
    )

    tf = TransformBuffer()
    pose = lambda t, rpy: make_transform(rpy_to_matrix(*np.radians(rpy)), t)  # noqa: E731
    tf.set_transform("base_link", "roof_mount", pose([1.2, 0.0, 1.6], (0, 0, 0)), static=True)
    tf.set_transform("roof_mount", "cam_front", pose([0.5, 0.0, -0.1], (0, 2, 0)), static=True)
    tf.set_transform("cam_front", "cam_front_optical", pose([0, 0, 0], (-90, 0, -90)), static=True)
    for k in range(1000):  # 10 s of odometry at 100 Hz
        tf.set_transform("odom", "base_link", pose([0.1 * k, 0, 0], (0, 0, 0.05 * k)), stamp_ns=k * 10_000_000)
    A, B = np.eye(4), np.eye(4)
    matmul = best_us(lambda: A @ B)
    static = best_us(lambda: tf.lookup("base_link", "cam_front_optical"))
    dynamic = best_us(lambda: tf.lookup("odom", "cam_front_optical", 5_005_000_000))
    print(
        f"transform lookup, 3 static links:             {static:7.2f} us   floor (4x4 matmul) {matmul:5.2f} us   "
        f"ratio {static / matmul:6.1f}"
    )
    print(
        f"transform lookup, 4 links, 1 interpolated:    {dynamic:7.2f} us   floor (4x4 matmul) {matmul:5.2f} us   "
        f"ratio {dynamic / matmul:6.1f}"
    )
    print("TF messages through the node's path, ms per message (best of 3): into an empty buffer, then the next one")
    for n in (100, 1_000, 10_000):
        bench_tf_message(n, "wide tree on /tf", [("base_link", f"w{i}") for i in range(n)], static=False)
        bench_tf_message(n, "deep chain on /tf_static", [(f"f{i}", f"f{i + 1}") for i in range(n)], static=True)


if __name__ == "__main__":
    main()
