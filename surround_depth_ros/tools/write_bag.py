"""Write a rosbag2 (mcap or sqlite3) from any source: the synthetic world, nuScenes, a DDAD/DGP scene or a bag.

The bag holds /tf_static (latched), per-camera image_raw and camera_info, radar and lidar
PointCloud2, /tf ego poses and /clock, in the layout of docs/rosbag.md, so that the node, rviz or
Foxglove can be fed from any data source with `surround-depth replay` or `ros2 bag play`.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from pathlib import Path

from surround_depth_ros.bag.topics import TopicNames
from surround_depth_ros.bag.writer import ENCODINGS, STORAGES, write_bag
from surround_depth_ros.datasets.registry import SOURCE_TYPES
from surround_depth_ros.frameset import FrameSet
from surround_depth_ros.tools.arguments import image_size
from surround_depth_ros.tools.errors import UsageError, usage_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCE_TYPES, default="synthetic")
    parser.add_argument(
        "--dataroot", type=Path, help="nuScenes dataroot, DGP scene folder / scene_*.json (ddad), or rosbag2 folder"
    )
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes table version folder (default v1.0-mini)")
    parser.add_argument("--out", type=Path, required=True, help="the bag directory to create (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    parser.add_argument("--encoding", choices=ENCODINGS, default="rgb8", help="image encoding (default rgb8)")
    parser.add_argument("--frames", type=int, help="at most this many frame sets (synthetic default 20)")
    parser.add_argument("--prefix", default="/", help="namespace of the sensor topics (default /)")
    synthetic = parser.add_argument_group("synthetic source")
    synthetic.add_argument("--rig", type=Path, help="rig YAML (default: the packaged nuScenes-like rig)")
    synthetic.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    synthetic.add_argument("--image-size", type=image_size, help="WIDTHxHEIGHT of every camera, e.g. 640x352")
    synthetic.add_argument("--sweeps", type=int, default=1, help="radar sweeps per frame set (default 1)")


def open_frames(args: argparse.Namespace) -> tuple[Iterable[FrameSet], int]:
    """The frame sets the command line names (through the source registry) and how many there are."""
    from surround_depth_ros.datasets.registry import open_frame_source
    from surround_depth_ros.rig import load_rig
    from surround_depth_ros.training.config import DatasetConfig

    if args.source != "synthetic" and args.dataroot is None:
        raise UsageError(f"--source {args.source} needs --dataroot")
    spec = DatasetConfig(
        type=args.source,
        path=None if args.dataroot is None else str(args.dataroot),
        version=args.version,
        seeds=[args.seed],
        frames=args.frames or 20,
        render_size=list(args.image_size) if args.image_size else None,
        radar=True,
    )
    options = {}
    if args.source == "synthetic":  # the synthetic options group
        options = {"rig": load_rig(args.rig) if args.rig else None, "sweeps": args.sweeps}
    with usage_errors(FileNotFoundError, ValueError):  # a dataroot, scene, bag or rig that cannot be read
        source = open_frame_source(spec, **options)
    count = len(source) if args.frames is None else min(len(source), args.frames)
    return itertools.islice(source, count), count


def run(args: argparse.Namespace) -> int:
    framesets, count = open_frames(args)
    with usage_errors(FileExistsError):  # --out exists: the writer refuses before reading a frame set
        stats = write_bag(
            framesets,
            args.out,
            total=count,
            storage=args.storage,
            encoding=args.encoding,
            topic_names=TopicNames(args.prefix),
        )
    print(f"wrote {args.out}: {stats.frames} frame sets, {stats.messages} messages, {stats.bytes / 1e6:.1f} MB")
    return 0
