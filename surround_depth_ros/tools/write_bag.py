"""Write a rosbag2 (mcap or sqlite3) from the synthetic world, a nuScenes dataroot or a DDAD/DGP scene.

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
from surround_depth_ros.frameset import FrameSet
from surround_depth_ros.tools.arguments import image_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("synthetic", "nuscenes", "ddad"), default="synthetic")
    parser.add_argument("--dataroot", type=Path, help="nuScenes dataroot, or DGP scene folder / scene_*.json for ddad")
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


def open_source(args: argparse.Namespace) -> tuple[Iterable[FrameSet], int]:
    """The frame sets the command line names and how many there are."""
    if args.source == "synthetic":
        from surround_depth_ros.datasets.synthetic.reader import SyntheticReader
        from surround_depth_ros.rig import default_rig, load_rig

        rig = load_rig(args.rig) if args.rig else default_rig()
        reader = SyntheticReader(rig, args.seed, args.frames or 20, image_size=args.image_size, sweeps=args.sweeps)
    elif args.dataroot is None:
        raise SystemExit(f"write-bag: --source {args.source} needs --dataroot")
    elif args.source == "nuscenes":
        from surround_depth_ros.datasets.nuscenes import NuScenesReader

        reader = NuScenesReader(args.dataroot, version=args.version)
    else:
        from surround_depth_ros.datasets.ddad import DGPSceneReader

        reader = DGPSceneReader(args.dataroot)
    count = len(reader) if args.frames is None else min(len(reader), args.frames)
    return itertools.islice(reader, count), count


def run(args: argparse.Namespace) -> int:
    framesets, count = open_source(args)
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
