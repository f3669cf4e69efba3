"""Cost of offline evaluation per frame set at camera resolution: metrics before/after, inference, whole sets.

A 6-camera 1936x1216 frame set with a 32-beam lidar sweep (ground plane and walls at 4-110 m,
about 57,600 points, a few thousand of them in each camera) is scored with the shipped student:
  inference        SurroundDepthPipeline.process without a cloud on the set (the floor: evaluation should cost less)
  metrics after    DepthMetrics.update on the gathered valid pixels (this tree)
  metrics before   DepthMetrics.update of commit BEFORE, the dense full-resolution computation, loaded
                   from git history (skipped without it); the issue asks for at least 20x
  evaluate_frames  --sets whole sets: lidar projection, inference and metrics, as `surround-depth evaluate`

    .venv/bin/python benchmarks/bench_evaluate.py [--size 1936x1216] [--sets 3] [--no-before]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from timing import best_seconds
from tqdm import tqdm

from surround_depth_ros.core.pipeline import SurroundDepthPipeline
from surround_depth_ros.evaluation.ground_truth import lidar_depth_maps
from surround_depth_ros.evaluation.metrics import DepthMetrics
from surround_depth_ros.inference.engine import DepthEngine
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.tools.arguments import image_size
from surround_depth_ros.training.evaluate import evaluate_frames

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "student_default.pt"
BEFORE = "7b519b2b66422a0c78f29a2fbc896451688552d0"  # the last commit with the dense DepthMetrics.update
SPEED_UP_TARGET = 20.0
T_BASE_LIDAR = np.array([[1, 0, 0, 0.9], [0, 1, 0, 0], [0, 0, 1, 1.8], [0, 0, 0, 1]], dtype=np.float64)


def lidar_sweep(rng: np.random.Generator, stamp_ns: int) -> PointSweep:
    """32 beams x 1800 azimuths: beams below the horizon hit the ground, the others a wall per azimuth."""
    elevation = np.radians(np.linspace(-30.0, 10.0, 32))[:, None]
    azimuth = np.radians(np.arange(1800) * 0.2)[None, :]
    wall = np.repeat(rng.uniform(4.0, 110.0, 60), 30)[None, :]
    ground = np.where(elevation < 0, T_BASE_LIDAR[2, 3] / np.tan(-np.minimum(elevation, -1e-6)), np.inf)
    distance = np.minimum(ground, wall / np.cos(elevation))  # along the beam
    ray = np.stack(
        np.broadcast_arrays(
            np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)
        ),
        axis=-1,
    )
    return PointSweep("lidar", stamp_ns, (ray * distance[..., None]).reshape(-1, 3), T_base_sensor=T_BASE_LIDAR)


def frame_sets(count: int, size: tuple[int, int]) -> list[FrameSet]:
    rig = default_rig().scaled(*size)
    rng = np.random.default_rng(0)
    frames = []
    for k in range(count):
        images = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in rig.cameras]
        stamps = np.full(len(rig.cameras), k * 83_333_333, dtype=np.int64)
        frames.append(FrameSet(rig, images, stamps, lidar=lidar_sweep(rng, int(stamps[0])), name=f"bench/{k}"))
    return frames


def previous_metrics() -> ModuleType | None:
    """surround_depth_ros/evaluation/metrics.py as of commit BEFORE, or None without the git history."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:surround_depth_ros/evaluation/metrics.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("metrics_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    exec(compile(source, f"{BEFORE[:7]}:surround_depth_ros/evaluation/metrics.py", "exec"), module.__dict__)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=image_size, default="1936x1216", help="camera size WIDTHxHEIGHT")
    parser.add_argument("--sets", type=int, default=3, help="frame sets of the whole-evaluation run (default 3)")
    parser.add_argument("--no-before", action="store_true", help="skip the slow dense implementation")
    args = parser.parse_args()
    frames = frame_sets(args.sets, args.size)
    engine = DepthEngine(CHECKPOINT, backend="torch", device="cpu")
    frame = frames[0]
    gt = lidar_depth_maps(frame)
    pipeline = SurroundDepthPipeline(engine, cloud=None)
    pred = pipeline.process(frame).depth
    valid = sum(int(((g > 0.1) & (g < 80.0)).sum()) for g in gt)
    print(f"{len(frame.images)} cameras at {args.size[0]}x{args.size[1]}, {valid} valid lidar pixels in all")

    inference_s = best_seconds(lambda: pipeline.process(frame), 2)
    after_s = best_seconds(lambda: DepthMetrics(frame.rig.camera_names).update(pred, gt), 3)
    print(f"inference        {inference_s * 1000:9.1f} ms per set")
    print(f"metrics after    {after_s * 1000:9.1f} ms per set  ({after_s / inference_s:.3f} x inference)")
    before = None if args.no_before else previous_metrics()
    if before is not None:
        start = time.perf_counter()  # once: it takes tens of seconds, warm-up changes nothing
        before.DepthMetrics(frame.rig.camera_names).update(np.stack(pred)[None], np.stack(gt)[None])
        before_s = time.perf_counter() - start
        print(f"metrics before   {before_s * 1000:9.1f} ms per set  ({before_s / inference_s:.3f} x inference)")
        print(f"speed-up         {before_s / after_s:9.1f} x  (target >= {SPEED_UP_TARGET:g} x)")
    elif not args.no_before:
        print(f"metrics before   n/a: commit {BEFORE[:7]} is not in this checkout's git history")

    start = time.perf_counter()
    progress = tqdm(frames, desc="evaluate_frames", unit="set")
    evaluation = evaluate_frames(engine, frames, 0.1, 80.0, examples=0, progress=progress)
    total_s = time.perf_counter() - start
    per_set = total_s / args.sets
    images = evaluation.summary["metric"]["images"]
    print(
        f"evaluate_frames  {total_s:9.1f} s for {args.sets} sets ({images} images), {per_set:.2f} s per set "
        f"({per_set / inference_s:.2f} x inference)"
    )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
