"""Training throughput: frame sets per second of a full training step, per preset, and its ratio to the bare
forward + backward + AdamW step of the same network (the floor: what the losses, jitter and bookkeeping add).

    PYTHONPATH=. python benchmarks/bench_training.py [--presets tiny default] [--size 128x224] [--device cuda]

Random images and dense depth on the nuScenes-like rig (no rendering), batch 2 x 6 views.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from surround_depth_ros.network.student import SurroundDepthStudent
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.training.config import config_from_dict
from surround_depth_ros.training.data import PreparedDataset, Sample
from surround_depth_ros.training.trainer import Trainer

RECIPES = {
    "supervised": {"silog": 1.0, "bin_centre": 0.1},
    "supervised+photometric": {"silog": 1.0, "bin_centre": 0.1, "photometric": 0.1},
}


def random_dataset(size, n=4, seed=0):
    rig = default_rig()
    h, w = size
    rng = np.random.default_rng(seed)
    scaled = rig.scaled(w, h)
    samples = [
        Sample(
            f"bench/{i}",
            torch.from_numpy(rng.integers(0, 256, (6, 3, h, w), dtype=np.uint8)),
            torch.from_numpy(rng.uniform(2, 70, (6, 1, h, w)).astype(np.float32)),
            torch.from_numpy(scaled.intrinsics()).float(),
            torch.from_numpy(scaled.extrinsics()).float(),
        )
        for i in range(n)
    ]
    return PreparedDataset(samples, rig.camera_names, rig.adjacency()), scaled


def timed(fn, repeats, device):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"])
    parser.add_argument("--size", default="128x224", help="HEIGHTxWIDTH (default 128x224)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    dataset, rig = random_dataset(size)
    device = torch.device(args.device)
    print(f"batch 2 x 6 views at {size[0]}x{size[1]}, device {device}, {args.threads} thread(s)")
    for name in args.presets:
        model_cfg = {"preset": name, "input_size": list(size), "overrides": {"radar": False}}
        for recipe, losses in RECIPES.items():
            config = config_from_dict(
                {
                    "train": {"type": "synthetic"},
                    "model": model_cfg,
                    "losses": losses,
                    "augmentation": {"colour_jitter": 0.2},
                    "device": args.device,
                    "out_dir": "/tmp/bench_training",
                },
                "bench",
            )
            trainer = Trainer(config, train_set=dataset, rig=rig)
            step = iter(range(10**9))
            full = timed(lambda trainer=trainer, step=step: trainer.train_step(next(step)), args.repeats, device)
            model: SurroundDepthStudent = trainer.model
            optimizer = torch.optim.AdamW(model.parameters())
            images = dataset.images[:2].float().to(device) / 255  # RGB in [0, 1]: the student normalises
            adjacency = dataset.adjacency.to(device)

            def bare(model=model, optimizer=optimizer, images=images, adjacency=adjacency):
                optimizer.zero_grad()
                model(images, adjacency).depth.mean().backward()
                optimizer.step()

            floor = timed(bare, args.repeats, device)
            print(
                f"{name:8s} {recipe:24s} step {full * 1e3:8.1f} ms  {2 / full:6.2f} frame sets/s   "
                f"bare fwd+bwd {floor * 1e3:8.1f} ms   ratio {full / floor:5.2f}"
            )


if __name__ == "__main__":
    main()
