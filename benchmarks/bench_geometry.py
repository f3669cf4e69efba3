"""Geometry speed: lidar depth maps, cloud fusion (camera-sized maps, and the network's maps coloured from the
camera images as the node's default does), radar maps, each against a copy floor.

The floor is a plain `np.copy` of an array the size of the output: no implementation can beat
writing its result once, so the ratio says how far each step is from memory-bound.

    PYTHONPATH=. python benchmarks/bench_geometry.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from timing import best_ms

from surround_depth_ros.base import geometry as g
from surround_depth_ros.core.fusion import CloudFusion, CloudOptions
from surround_depth_ros.sensors.frameset import PointSweep
from surround_depth_ros.sensors.radar import radar_to_maps
from surround_depth_ros.sensors.rig import CameraRig, default_rig


def report(name: str, ms: float, floor_ms: float) -> None:
    print(f"{name:<60} {ms:9.2f} ms   floor {floor_ms:7.3f} ms   ratio {ms / floor_ms:8.1f}")


def lidar_like_points(count: int, rng: np.random.Generator) -> np.ndarray:
    """A lidar-like sweep in base_link: rings of points on the ground and on walls 5-60 m away."""
    azimuth = rng.uniform(-np.pi, np.pi, count)
    distance = rng.uniform(5, 60, count)
    height = rng.uniform(-1.8, 3.0, count)
    return np.stack([distance * np.cos(azimuth), distance * np.sin(azimuth), height], axis=1)


def cylinder_depths(rig: CameraRig, radius: float) -> list[np.ndarray]:
    """Each camera's depth of a vertical cylinder around the base origin (every pixel valid)."""
    depths = []
    for cam in rig.cameras:
        rays = g.pixel_rays(cam.K, cam.width, cam.height) @ cam.T_base_cam[:3, :3].T
        o = cam.T_base_cam[:3, 3]
        a, b = rays[:, 0] ** 2 + rays[:, 1] ** 2, 2 * (o[0] * rays[:, 0] + o[1] * rays[:, 1])
        c = o[0] ** 2 + o[1] ** 2 - radius**2
        depths.append(((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)).reshape(cam.height, cam.width).astype(np.float32))
    return depths


def bench_fusion(rig: CameraRig, stride: int, rng: np.random.Generator, repeats: int) -> None:
    """The node's tensor fusion (CloudFusion, CPU) against a copy of its output points."""
    cam = rig.cameras[0]
    size = f"6 x {cam.width}x{cam.height}"
    depths = cylinder_depths(rig, 20.0)
    colors = [rng.integers(0, 255, (cam.height, cam.width, 3), dtype=np.uint8) for _ in rig.cameras]
    confidences = [rng.uniform(0, 1, d.shape).astype(np.float32) for d in depths]
    tensors = [torch.from_numpy(np.stack(maps)) for maps in (depths, confidences, colors)]
    K, T, sizes = rig.intrinsics(), rig.extrinsics(), [(cam.height, cam.width)] * len(rig.cameras)
    for overlap in ("keep_all", "most_confident"):
        fusion = CloudFusion(CloudOptions(overlap=overlap, stride=stride))
        start = time.perf_counter()
        fusion.geometry(K, T, sizes)
        setup = 1000 * (time.perf_counter() - start)
        points = np.zeros((len(fusion.fuse(tensors[0], K, T, tensors[1], tensors[2]).points), 3), np.float32)
        floor = best_ms(lambda p=points: np.copy(p), repeats)
        ms = best_ms(lambda f=fusion: f.fuse(tensors[0], K, T, tensors[1], tensors[2]), repeats)
        report(f"tensor fuse {size} stride {stride} ({overlap})", ms, floor)
        if overlap == "most_confident":
            print(
                f"  (rig geometry, once per rig: {setup:.0f} ms; pixels projected into a neighbour: "
                f"{100 * fusion.geometry(K, T, sizes).window_fraction():.0f} % of a view)"
            )
    bench_budget_cloud(tensors[0], tensors[1], list(tensors[2]), rig, rig.intrinsics(), size, repeats)
    # the node's default: the network's maps, coloured from the camera images through their own K
    small = rig.scaled(224, 128)
    net_depth = torch.from_numpy(np.stack(cylinder_depths(small, 20.0)))
    net_conf = torch.from_numpy(rng.uniform(0, 1, net_depth.shape).astype(np.float32))
    bench_budget_cloud(
        net_depth, net_conf, list(tensors[2]), small, K, f"6 x 224x128 from {cam.width}x{cam.height}", repeats
    )


def bench_budget_cloud(
    depth: torch.Tensor,
    confidence: torch.Tensor,
    images: list[torch.Tensor],
    rig: CameraRig,
    image_K: np.ndarray,
    what: str,
    repeats: int,
) -> None:
    """The pipeline's cloud stage at the default point budget (`CloudOptions().max_points`): fuse + filter + pack,
    without voxels (the node's default) and with 0.2 m ones."""
    K, T = rig.intrinsics(), rig.extrinsics()
    for voxel in (0.0, 0.2):
        fusion = CloudFusion(CloudOptions(voxel_size_m=voxel))

        def cloud(fusion: CloudFusion = fusion) -> torch.Tensor:
            return fusion.cloud(depth, K, T, confidence, images, image_K=image_K)

        size = cloud().numel()
        ms = best_ms(cloud, repeats)
        sampled = len(
            fusion.geometry(K, T, [tuple(depth.shape[1:])] * len(K), [im.shape[:2] for im in images], image_K)
        )
        report(
            f"cloud {what}, {sampled} px" + (f", {voxel} m voxels" if voxel else ""),
            ms,
            best_ms(lambda n=size: np.copy(np.zeros(n, np.uint8)), repeats),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rig = default_rig()

    points_base = lidar_like_points(35_000, rng)
    cam_from_base = [g.invert_transform(cam.T_base_cam) for cam in rig.cameras]

    def depth_maps() -> list[np.ndarray]:
        return [
            g.points_to_depth_map(g.transform_points(T, points_base), cam.K, cam.width, cam.height)
            for T, cam in zip(cam_from_base, rig.cameras, strict=True)
        ]

    out = np.zeros((6, 900, 1600), np.float32)
    report(
        "points_to_depth_map 35k pts x 6 cams 1600x900",
        best_ms(depth_maps, args.repeats),
        best_ms(lambda: np.copy(out), args.repeats),
    )

    for width, height, stride in ((640, 352, 1), (1600, 900, 2), (1936, 1216, 2)):
        bench_fusion(rig.scaled(width, height), stride, rng, args.repeats)

    sweeps = []
    for radar in rig.radars:
        for k in range(3):
            local = rng.uniform([1, -20, -0.5], [80, 20, 1.5], (125, 3))
            fields = {name: rng.normal(size=125).astype(np.float32) for name in ("rcs", "vx_comp", "vy_comp")}
            pose = g.make_transform(np.eye(3), [-0.5 * k, 0.0, 0.0])
            sweeps.append(PointSweep(radar.name, k, local, fields, pose))
    maps_floor = best_ms(lambda: np.copy(np.zeros((6, 4, 352, 640), np.float32)), args.repeats)
    ms = best_ms(lambda: radar_to_maps(sweeps, rig, image_size=(640, 352), target_pose=np.eye(4)), args.repeats)
    report("radar_to_maps 5 radars x 3 sweeps -> 6 x 4 x 352x640", ms, maps_floor)


if __name__ == "__main__":
    main()
