"""Prepare a dataset once into shards on disk that `train` reads lazily (see docs/training.md).

Writes DIR/shard-NNNNN/*.npy (uint8 images, float16 depth and radar maps, sparse when sparse) and
DIR/manifest.json (spec, size, rig, counts and the sha256 of every file) with --processes worker
processes. Rerunning the same command resumes: shards already in the manifest with matching hashes are
kept, the rest are written. Train from it with `surround-depth train CONFIG --set train.shards=DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from surround_depth_ros.datasets.registry import SOURCE_TYPES
from surround_depth_ros.tools.arguments import add_source_arguments, image_size, positive_int
from surround_depth_ros.tools.errors import usage_errors
from surround_depth_ros.training.config import ConfigError, DatasetConfig, check_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=SOURCE_TYPES, required=True, help="where the frame sets come from")
    add_source_arguments(parser)
    parser.add_argument("--neighbours", type=int, nargs="*", default=[], help="temporal offsets, e.g. -1 1")
    parser.add_argument("--radar", action="store_true", help="store radar maps (radar presets)")
    parser.add_argument("--unlabeled", action="store_true", help="withhold the ground truth (a bag without lidar)")
    parser.add_argument("--size", type=image_size, required=True, help="training size WIDTHxHEIGHT, e.g. 640x352")
    parser.add_argument("--out", type=Path, required=True, help="shard directory (created; resumed when it exists)")
    parser.add_argument("--processes", type=positive_int, default=1, help="worker processes (default 1)")
    parser.add_argument("--shard-size", type=positive_int, default=64, help="frame sets per shard (default 64)")


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.training.shards import ShardError, prepare_shards

    width, height = args.size
    spec = DatasetConfig(
        type=args.dataset,
        seeds=list(args.seeds),
        frames=args.frames,
        stride=args.stride,
        path=args.path,
        version=args.version,
        limit=args.limit,
        radar=args.radar,
        labeled=not args.unlabeled,
        neighbours=list(args.neighbours),
    )
    bar: tqdm | None = None  # opened with the first shard: a refused directory prints nothing else
    written = reused = 0

    def progress(count: int, kept: bool, total: int) -> None:
        nonlocal bar, written, reused
        if bar is None:
            bar = tqdm(total=total, desc=f"preparing {args.dataset}", unit="frameset")
        written, reused = written + count * (not kept), reused + count * kept
        bar.update(count)

    # a spec, source or directory that cannot be used: say why in one line
    with usage_errors(ConfigError, ShardError, ValueError, FileNotFoundError):
        check_dataset(spec, "prepare")
        manifest = prepare_shards(spec, (height, width), args.out, args.processes, args.shard_size, progress)
    if bar is not None:
        bar.close()
    print(
        f"{manifest['count']} frame sets in {len(manifest['shards'])} shards at {width}x{height} in {args.out} "
        f"({written} prepared, {reused} kept from an earlier run)"
    )
    return 0
