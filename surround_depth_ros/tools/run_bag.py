"""Run the node's exact path over every frame set of a rosbag2, offline: a depth bag, a summary, metrics.

`surround-depth run-bag BAG --params PARAMS.yaml --out DIR` takes the node's parameters from a ROS
params file (validated as the node validates them; the file that drives the vehicle), the topics
from its patterns (`image_topic`, `camera_info_topic`, `radar_topic`, resolved in --namespace), and
builds the frame sets with the node's `FrameAssembler` and the pipeline with
`pipeline_from_settings`, calling `pipeline.process(frame_set)` on each as the node's worker does.
Unlike a live replay it is deterministic and drops nothing for being busy. DIR gets:

* `depth/`: a rosbag2 (mcap) with what the node publishes, per camera `<camera>/depth/image`,
  `<camera>/depth/confidence` (with publish_confidence) and `<camera>/depth/camera_info`, the fused
  cloud `depth/points`, plus the input's `/tf_static` and `/tf`, so RViz and Foxglove place it;
* `summary.json` (also printed): frame sets processed and skipped and why, images in no set, the
  synchronizer's counters, sets/s and wall time;
* with a lidar topic in the bag (--lidar-topic): `metrics.json` and `report.png` as `surround-depth
  evaluate` writes them, scoring the depth the node publishes against the projected lidar.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from surround_depth_ros.core import params
from surround_depth_ros.frameset import FrameSet
from surround_depth_ros.rig import Camera, CameraRig
from surround_depth_ros.tools.arguments import add_topic_arguments
from surround_depth_ros.tools.errors import usage_errors
from surround_depth_ros.tools.evaluate import depth_caps

if TYPE_CHECKING:
    from surround_depth_ros.bag.reader import RosbagReader

OUTPUT_BAG = "depth"  # the output bag's folder inside --out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input rosbag2 folder (mcap or sqlite3)")
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="the node's ROS params file (as config/surround_depth.param.yaml); default: the node's defaults",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (its depth/ bag must not exist)")
    add_topic_arguments(parser)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    parser.add_argument("--limit", type=int, default=None, help="process at most this many frame sets")
    parser.add_argument("--caps", default=None, help="MIN,MAX depth in m for the metrics (default 0.1,80)")
    parser.add_argument("--examples", type=int, default=2, help="frame sets drawn in report.png (default 2)")


def _summary(reader: RosbagReader, processed: int, skipped: Counter, wall_s: float, timings: list[dict]) -> dict:
    stages = dict.fromkeys(stage for timing in timings for stage in timing)  # in the pipeline's order
    return {
        "bag": str(reader.path),
        "frame_sets_processed": processed,
        "frame_sets_skipped": dict(skipped),
        "images_in_no_frame_set": reader.dropped,
        "images_undecodable": dict(reader.rejected),
        "sync": {key: value for key, value in reader.sync_stats.items() if value},
        "wall_time_s": round(wall_s, 3),
        "frame_sets_per_s": round(processed / wall_s, 3) if wall_s > 0 else None,
        "pipeline_ms_mean": {
            stage: round(float(np.mean([t[stage] for t in timings if stage in t])), 2) for stage in stages
        },
    }


def _as_published(frame_set: FrameSet, cameras: list[Camera]) -> FrameSet:
    """The frame set seen by the cameras the depth is published at: itself at camera resolution; at the network's
    (REP 118 `depth_resolution: network`) with those cameras and resized images, so that the lidar projects into
    the published depth's pixels."""
    import cv2

    if all((c.width, c.height) == (o.width, o.height) for c, o in zip(cameras, frame_set.rig.cameras, strict=True)):
        return frame_set
    rig = CameraRig(tuple(cameras), frame_set.rig.radars, frame_set.rig.base_frame)
    images = [
        cv2.resize(image, (c.width, c.height), interpolation=cv2.INTER_AREA)
        for image, c in zip(frame_set.images, cameras, strict=True)
    ]
    return dataclasses.replace(frame_set, rig=rig, images=images)


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.bag.reader import RosbagReader
    from surround_depth_ros.bag.topics import TF_STATIC_TOPIC, TF_TOPIC, TopicNames, resolve_topic
    from surround_depth_ros.bag.writer import BagWriter
    from surround_depth_ros.core.binding import BindingError
    from surround_depth_ros.core.pipeline import StartupError, pipeline_from_settings
    from surround_depth_ros.messages import depth_output_messages
    from surround_depth_ros.training.evaluate import FrameScorer, ground_truth, write_report

    out_bag = args.out / OUTPUT_BAG
    with usage_errors(ValueError, FileNotFoundError, FileExistsError, StartupError):
        settings = params.settings_from_file(args.params)
        caps = depth_caps(args.caps, "rosbag")
        if out_bag.exists():
            raise FileExistsError(f"{out_bag} exists already; choose another --out or delete it")
        names = TopicNames.from_settings(settings, args.namespace, args.lidar_topic)
        pipeline = pipeline_from_settings(settings)
        radars = list(settings.radars) if pipeline.uses_radar else []  # as the node subscribes them
        values = {**dataclasses.asdict(settings), "radars": radars}
        reader = RosbagReader(args.bag, topic_names=names, settings=values, complete=False)
    has_lidar = names.lidar in reader.topics and reader.T_base_lidar is not None
    scorer = FrameScorer(*caps, examples=args.examples) if has_lidar else None
    total = len(reader) if args.limit is None else min(args.limit, len(reader))
    processed, skipped, timings = 0, Counter(), []
    start = time.perf_counter()
    with BagWriter(out_bag, storage=args.storage) as writer:
        writer.copy_topics(args.bag, [TF_STATIC_TOPIC, TF_TOPIC])
        frames = itertools.islice(reader, args.limit)
        resets = 0
        for frame_set in tqdm(frames, total=total, unit="frame set", desc=f"run-bag {args.bag.name}"):
            if reader.clock_resets != resets:  # as the node's worker does: no memory across a jump in time
                resets = reader.clock_resets
                pipeline.engine.reset()
            try:
                outputs = pipeline.process(frame_set)
            except BindingError as error:  # the node logs it and goes on with the next set
                skipped[f"cannot bind the cameras to the model: {error}"] += 1
                continue
            for topic, msgtype, stamp, msg in depth_output_messages(
                writer.kit, frame_set, outputs, reader.camera_info, settings
            ):
                writer.put(resolve_topic(topic, args.namespace), msgtype, stamp, msg)
            if scorer is not None:
                scored = _as_published(frame_set, outputs.cameras)
                gt = ground_truth(scored)
                if gt is None:
                    scorer.skip()
                else:
                    scorer.add(scored, outputs.depth, gt)
            timings.append(outputs.timings_ms)
            processed += 1
    summary = _summary(reader, processed, skipped, time.perf_counter() - start, timings)
    engine = pipeline.engine
    summary |= {
        "params": str(args.params) if args.params else None,
        "model": {
            "checkpoint": settings.checkpoint or "the shipped default student",
            "preset": engine.config.name,
            "backend": engine.backend_name,
            "device": str(engine.device),
        },
        "output_bag": {"path": str(out_bag), "storage": args.storage, "messages": writer.stats.messages},
    }
    if scorer is None:
        summary["metrics"] = f"not scored: no lidar topic {names.lidar} placed by /tf_static in the bag"
    else:
        try:
            evaluation = scorer.evaluation()
        except ValueError as error:  # no set had a lidar sweep
            summary["metrics"] = f"not scored: {error}"
        else:
            evaluation.summary |= {"bag": str(args.bag), "dataset": "rosbag", "params": summary["params"]}
            files = write_report(evaluation, args.out, title=f"{engine.config.name} on {args.bag.name} (run-bag)")
            summary["metrics"] = {mode: evaluation.summary[mode]["mean"] for mode in ("metric", "median_scaled")}
            summary["metrics_files"] = files
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {out_bag} and {args.out / 'summary.json'}")
    return 0 if processed else 1
