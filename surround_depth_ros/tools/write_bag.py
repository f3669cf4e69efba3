"""Write a rosbag2 (mcap or sqlite3) from any source: the synthetic world, nuScenes, a DDAD/DGP scene or a bag.

The bag holds /tf_static (latched), per-camera image_raw and camera_info, radar and lidar
PointCloud2, /tf ego poses and /clock, in the layout of docs/rosbag.md, so that the node, rviz or
Foxglove can be fed from any data source with `surround-depth replay` or `ros2 bag play`. Beside its
metadata.yaml the bag folder gets `summary.json`: what was written, whether a signal interrupted it, and
for a bag source what of it could not be read. Ctrl-C or SIGTERM stops after the frame set in hand and
closes the bag (readable), with the exit status 128 + the signal's number; a source bag whose storage
fails before its end gives 1 (the frame sets before the fault are written).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable
from pathlib import Path

from surround_depth_ros.bag.reader import RosbagReader
from surround_depth_ros.bag.topics import TopicNames
from surround_depth_ros.bag.writer import ENCODINGS, STORAGES, write_bag
from surround_depth_ros.datasets.registry import SOURCE_TYPES
from surround_depth_ros.sensors.frameset import FrameSet, FrameSource
from surround_depth_ros.tools.arguments import add_nuscenes_version, add_world_arguments, image_size
from surround_depth_ros.tools.errors import UsageError, usage_errors
from surround_depth_ros.tools.interrupt import StopSignals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCE_TYPES, default="synthetic")
    parser.add_argument(
        "--dataroot", type=Path, help="nuScenes dataroot, DGP scene folder / scene_*.json (ddad), or rosbag2 folder"
    )
    add_nuscenes_version(parser)
    parser.add_argument("--out", type=Path, required=True, help="the bag directory to create (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    parser.add_argument("--encoding", choices=ENCODINGS, default="rgb8", help="image encoding (default rgb8)")
    parser.add_argument("--frames", type=int, help="at most this many frame sets (synthetic default 20)")
    parser.add_argument("--prefix", default="/", help="namespace of the sensor topics (default /)")
    synthetic = parser.add_argument_group("synthetic source")
    add_world_arguments(synthetic)
    synthetic.add_argument("--image-size", type=image_size, help="WIDTHxHEIGHT of every camera, e.g. 640x352")


def open_frames(args: argparse.Namespace) -> tuple[Iterable[FrameSet], int, FrameSource]:
    """The frame sets the command line names (through the source registry), how many there are, and their source."""
    from surround_depth_ros.datasets.registry import open_frame_source
    from surround_depth_ros.sensors.rig import load_rig
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
    return itertools.islice(source, count), count, source


def run(args: argparse.Namespace) -> int:
    framesets, count, source = open_frames(args)
    reader = source if isinstance(source, RosbagReader) else None
    with StopSignals("write-bag") as stop:
        with usage_errors(FileExistsError):  # --out exists: the writer refuses before reading a frame set
            stats = write_bag(
                stop.frames(framesets),
                args.out,
                total=count,
                storage=args.storage,
                encoding=args.encoding,
                topic_names=TopicNames(args.prefix),
            )
        summary = {
            "source": args.source,
            "dataroot": None if args.dataroot is None else str(args.dataroot),
            "frame_sets": stats.frames,
            "messages": stats.messages,
            "bytes": stats.bytes,
            "interrupted": stop.signal_name,
            **(reader.reading_summary() if reader else {}),
        }
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out}: {stats.frames} frame sets, {stats.messages} messages, {stats.bytes / 1e6:.1f} MB")
    return stop.end(f"{stats.frames} frame sets written", args.dataroot, reader.faults if reader else None)
