"""Synthetic world speed: frame sets per second at training and full resolution, rays per second, sensors.

Two floors put the figures in proportion:
- brute-force floor: one float32 matmul of every camera ray against every primitive of the
  scene ((R,3) @ (3,P)): a caster that touched each (ray, primitive) pair once with a single
  multiply-add could not be faster without culling. A ratio below 1 means the tile culling
  beats touching all pairs.
- write floor: filling the output arrays (RGB uint8 + depth float32) once.

    PYTHONPATH=. python benchmarks/bench_synthetic.py [--repeats 3] [--threads 2] [--full-res]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from timing import best_seconds as best_s

from surround_depth_ros.datasets.synthetic import SyntheticReader
from surround_depth_ros.sensors.rig import default_rig


def camera_sets(size: tuple[int, int], repeats: int) -> None:
    reader = SyntheticReader(default_rig(), seed=1, n_frames=64, image_size=size, radar=False, lidar=False)
    frame_index = iter(range(64))
    seconds = best_s(lambda: reader[next(frame_index)], repeats)
    rays = sum(c.width * c.height for c in reader.rig.cameras)
    primitives = len(reader.world.boxes) + len(reader.world.cylinders)
    directions, prims = torch.rand(rays, 3), torch.rand(3, primitives)
    floor_matmul = best_s(lambda: directions @ prims, repeats)
    rgb = np.empty((rays, 3), np.uint8)
    depth = np.empty(rays, np.float32)
    floor_write = best_s(lambda: (rgb.fill(1), depth.fill(1.0)), repeats)
    label = f"6 x {size[1]}x{size[0]} cameras (image + depth)"
    print(
        f"{label:<44} {1 / seconds:7.2f} sets/s  {rays / seconds / 1e6:6.2f} Mrays/s   "
        f"brute-force floor {floor_matmul * 1e3:8.1f} ms ratio {seconds / floor_matmul:6.2f}   "
        f"write floor {floor_write * 1e3:6.2f} ms ratio {seconds / floor_write:7.0f}"
    )


def sensors(repeats: int) -> None:
    reader = SyntheticReader(default_rig(), seed=1, n_frames=64, image_size=(320, 176))
    stamps = iter(reader.timing.start_ns + np.arange(1, 200) * 50_000_000)
    lidar = best_s(lambda: reader.lidar_sweep(int(next(stamps))), repeats)
    n_points = len(reader.lidar_sweep(reader.timing.start_ns + 10**9))
    beams = reader.lidar_model.beams * round(360 / reader.lidar_model.azimuth_step_deg)
    print(
        f"{'lidar sweep (' + str(beams) + ' beams, ' + str(n_points) + ' points)':<44} {1 / lidar:7.2f} sweeps/s "
        f"{beams / lidar / 1e6:6.2f} Mrays/s"
    )
    radar = best_s(lambda: reader.radar_sweeps(int(next(stamps))), repeats)
    print(f"{'radar sweeps (5 radars, 1 sweep each)':<44} {1 / radar:7.2f} sets/s")
    frame_index = iter(range(64))
    full = best_s(lambda: reader[next(frame_index)], repeats)
    print(f"{'full frame set 6 x 176x320 + lidar + radar':<44} {1 / full:7.2f} sets/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--full-res", action="store_true", help="also 6 x 1600x900 (slow)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    for size in [(320, 176), (640, 352)] + ([(1600, 900)] if args.full_res else []):
        camera_sets(size, args.repeats if size[0] < 1600 else 1)
    sensors(args.repeats)


if __name__ == "__main__":
    main()
