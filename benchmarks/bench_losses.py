"""Loss speed: forward + backward of every loss at a training-sized batch, against a copy floor.

The floor is forward + backward of `x.clone().sum()` on the student depth: reading and writing
the depth once, which no loss can beat. The ratio says what each loss adds per step relative to
that, so a loss that dominates a training step shows up at once.

    PYTHONPATH=. python benchmarks/bench_losses.py [--views 6 --height 176 --width 320 --device cpu]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from surround_depth_ros.base.geometry import rpy_to_matrix
from surround_depth_ros.losses import (
    LossInputs,
    PixelwiseFeatureKD,
    bin_centre_loss,
    build_losses,
    cross_interaction_kd_loss,
    curvature_consistency_loss,
    depth_distribution_kd_loss,
    find_view_overlap,
    grad_cam,
    inter_depth_kd_loss,
    log_spaced_centres,
    masked_l1_loss,
    mean_depth_target,
    pairwise_kd_loss,
    saliency_kd_loss,
    silog_loss,
    surround_photometric_loss,
    view_relational_kd_loss,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_ms(function, repeats: int, device: torch.device) -> float:
    function()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def ring_rig(views: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras on a ring looking outwards every 360/N degrees, 70 degree horizontal field of view."""
    fx = width / 2 / math.tan(math.radians(35))
    K = torch.tensor([[fx, 0, width / 2 - 0.5], [0, fx, height / 2 - 0.5], [0, 0, 1]], dtype=torch.float32)
    optical = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=np.float64)
    T = []
    for i in range(views):
        yaw = 2 * math.pi * i / views
        M = np.eye(4)
        M[:3, :3] = rpy_to_matrix(0, 0, yaw) @ optical
        M[:3, 3] = [math.cos(yaw), math.sin(yaw), 1.5]
        T.append(M)
    return K.expand(1, views, 3, 3).clone(), torch.tensor(np.stack(T), dtype=torch.float32)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--height", type=int, default=176)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    n, H, W, K = args.views, args.height, args.width, args.bins
    h, w = H // 2, W // 2

    def leaf(*shape, scale=1.0, offset=0.0):
        return (torch.rand(*shape, device=device) * scale + offset).requires_grad_(True)

    depth = leaf(1, n, 1, H, W, scale=60, offset=1)
    gt = torch.rand(1, n, 1, H, W, device=device) * 70 + 1
    gt[torch.rand_like(gt) < 0.95] = 0  # about 5 % of pixels hold a lidar return
    teacher = torch.rand(1, n, 1, H, W, device=device) * 60 + 1
    logits, centres = leaf(1, n, K, h, w), leaf(1, n, K, scale=60, offset=1)
    features, teacher_features = leaf(n, 64, H // 8, W // 8), torch.randn(n, 128, H // 8, W // 8, device=device)
    intermediates = [leaf(1, n, 1, H // s, W // s, scale=60, offset=1) for s in (8, 4, 2)]
    teacher_intermediates = [torch.rand(1, n, 1, H // s, W // s, device=device) * 60 + 1 for s in (8, 4, 2)]
    intrinsics, extrinsics = (t.to(device) for t in ring_rig(n, H, W))
    pairs = torch.tensor([[i, (i + 1) % n] for i in range(n)], device=device)
    images = torch.rand(1, n, 3, H, W, device=device)
    adapters = PixelwiseFeatureKD([64], [128]).to(device)

    def step(fn):
        return lambda: fn().backward()

    def view_relational():
        overlap = find_view_overlap(gt, intrinsics, extrinsics, pairs)
        return view_relational_kd_loss(features, teacher_features, overlap)

    def saliency():
        conv = torch.nn.functional.conv2d(features, torch.ones(1, 64, 1, 1, device=device) / 64)
        cam = grad_cam(mean_depth_target(conv.unflatten(0, (1, n))), features, create_graph=True)
        return saliency_kd_loss(cam, torch.rand(n, 1, H // 8, W // 8, device=device))

    cases = {
        "silog": lambda: silog_loss(depth, gt),
        "l1": lambda: masked_l1_loss(depth, gt),
        "bin_centre (chamfer, sorted 1-D)": lambda: bin_centre_loss(centres, gt),
        "cross_interaction (relative_inverse)": lambda: cross_interaction_kd_loss(
            logits, centres, depth, 1 / teacher, "relative_inverse"
        ),
        "view_relational (overlap + relations)": view_relational,
        "pixelwise_feature (1x1 adapter)": lambda: adapters([features], [teacher_features]),
        "pairwise (5x5 patches)": lambda: pairwise_kd_loss(features, teacher_features),
        "inter_depth (3 scales)": lambda: inter_depth_kd_loss(intermediates, teacher_intermediates),
        "depth_distribution": lambda: depth_distribution_kd_loss(depth, teacher, log_spaced_centres(0.5, 80, K)),
        "saliency (Grad-CAM, create_graph)": saliency,
        "photometric (6 pairs, both ways)": lambda: surround_photometric_loss(
            images, depth, intrinsics, extrinsics, pairs
        ),
        "curvature": lambda: curvature_consistency_loss(depth, 1 / teacher, "relative_inverse"),
    }
    floor_ms = best_ms(step(lambda: depth.clone().sum()), args.repeats, device)
    print(f"batch 1 x {n} views, {H}x{W}, {K} bins, device {device}; floor (copy fwd+bwd) {floor_ms:.3f} ms")
    for name, fn in cases.items():
        ms = best_ms(step(fn), args.repeats, device)
        print(f"{name:<42} {ms:9.2f} ms   ratio {ms / floor_ms:8.1f}")
    losses = build_losses({"silog": 1.0, "bin_centre": 0.1, "cross_interaction": 1.0})
    inputs = LossInputs(depth=depth, gt_depth=gt, bin_logits=logits, bin_centres=centres)
    inputs.teacher = type("T", (), {"depth": 1 / teacher, "kind": "relative_inverse"})()
    ms = best_ms(step(lambda: losses(inputs)[0]), args.repeats, device)
    print(f"{'LossSet: silog + bin_centre + cross_int.':<42} {ms:9.2f} ms   ratio {ms / floor_ms:8.1f}")


if __name__ == "__main__":
    main()
