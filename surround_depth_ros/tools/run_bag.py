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
  synchronizer's counters, TF the node would ignore, messages of the bag skipped as unusable and why
  reading stopped early (a damaged bag), whether a signal interrupted the run, sets/s and wall time;
* with a lidar topic in the bag (--lidar-topic): `metrics.json` and `report.png` as `surround-depth
  evaluate` writes them, scoring the depth the node publishes against the projected lidar.

The messages are built, written and scored on a thread of their own while the next set is read and
processed. Ctrl-C or SIGTERM stops after the set in hand and still writes all of the above (see
`tools/interrupt.py`). Exit status: 0; 1 when no set was processed or the bag's storage failed before
its end (what came before it is processed); 2 for a bag that cannot be opened; 128 + the signal's
number when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from surround_depth_ros.core import params
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.rig import Camera, CameraRig
from surround_depth_ros.tools.arguments import add_score_arguments, add_topic_arguments, positive_int
from surround_depth_ros.tools.errors import usage_errors
from surround_depth_ros.tools.interrupt import StopSignals

if TYPE_CHECKING:
    from surround_depth_ros.bag.reader import RosbagReader
    from surround_depth_ros.core.pipeline import DepthOutputs
    from surround_depth_ros.evaluation.scoring import FrameScorer

OUTPUT_BAG = "depth"  # the output bag's folder inside --out
OUTPUT_NICENESS = 10  # the output thread's nice value, added to the process's (Linux: per thread)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (its depth/ bag must not exist)")
    add_topic_arguments(parser)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    parser.add_argument("--limit", type=positive_int, default=None, help="process at most this many frame sets")
    add_score_arguments(parser, "0.1,80")


def _summary(reader: RosbagReader, wall_s: float) -> dict:
    """The pass's account (`PipelineStats`, as the node's /diagnostics reports it) and what reading the bag met."""
    processed = reader.stats.processed_count
    return {
        "bag": str(reader.path),
        **reader.stats.summary(),
        **reader.reading_summary(),
        "wall_time_s": round(wall_s, 3),
        "frame_sets_per_s": round(processed / wall_s, 3) if wall_s > 0 else None,
    }


class _OutputThread:
    """Runs the calls `put` to it, in order, on a thread of its own: the input's TF is copied and each processed set's
    messages are built, written and scored there while the main thread reads and processes the next set (run-bag's
    floor is reading and the forward). At most `depth` calls wait, so memory stays bounded when writing is the
    slower side. An error there is raised in the main thread at the next `put` or at the end. The arguments must
    not change after `put`: `pipeline.process` returns arrays of its own each call."""

    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="run-bag outputs", daemon=True)

    def __enter__(self) -> _OutputThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)  # the calls already put are made first: the output bag gets every processed set
        self._thread.join()
        self._raise()

    def _run(self) -> None:
        # Below the forward's threads: on busy cores this thread takes what they leave (the forward ran 25 % slower
        # beside it on 2 cores at equal priority); when it falls behind, the full queue stops the main thread.
        if sys.platform == "linux":  # where a thread's id names the thread alone; elsewhere it keeps the process's
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), OUTPUT_NICENESS)
        while (call := self._queue.get()) is not None:
            if self._error is None:
                try:
                    call[0](*call[1:])
                except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, function: Callable[..., object], *args: Any) -> None:  # noqa: ANN401 - the arguments of `function`
        self._raise()
        self._queue.put((function, *args))


def _as_published(frame_set: FrameSet, cameras: list[Camera], drawn: bool) -> FrameSet:
    """The frame set seen by the cameras the depth is published at: itself at camera resolution; at the network's
    (REP 118 `depth_resolution: network`) with those cameras, so that the lidar projects into the published
    depth's pixels. Its images are resized only for a set the report draws (`drawn`), black otherwise: scores use
    the rig and the lidar alone, and resizing six camera images was a fifth of the scoring's time."""
    import cv2

    if all((c.width, c.height) == (o.width, o.height) for c, o in zip(cameras, frame_set.rig.cameras, strict=True)):
        return frame_set
    rig = CameraRig(tuple(cameras), frame_set.rig.radars, frame_set.rig.base_frame)
    images = [
        cv2.resize(image, (c.width, c.height), interpolation=cv2.INTER_AREA)
        if drawn
        else np.broadcast_to(np.zeros(3, np.uint8), (c.height, c.width, 3))
        for image, c in zip(frame_set.images, cameras, strict=True)
    ]
    return dataclasses.replace(frame_set, rig=rig, images=images)


def _score(scorer: FrameScorer, frame_set: FrameSet, outputs: DepthOutputs) -> None:
    """Score the published depth against the set's lidar projected into the published cameras."""
    from surround_depth_ros.evaluation.ground_truth import ground_truth

    scored = _as_published(frame_set, outputs.cameras, drawn=len(scorer.examples) < scorer.max_examples)
    gt = ground_truth(scored)
    if gt is None:
        scorer.skip()
    else:
        scorer.add(scored, outputs.depth, gt)


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.bag.reader import RosbagReader
    from surround_depth_ros.bag.storage import fault_text, open_bag
    from surround_depth_ros.bag.topics import TF_STATIC_TOPIC, TF_TOPIC, TF_TYPE, TopicNames
    from surround_depth_ros.bag.writer import BagWriter
    from surround_depth_ros.core.binding import BindingError
    from surround_depth_ros.core.outputs import output_messages
    from surround_depth_ros.core.params import resolve_topic
    from surround_depth_ros.core.pipeline import StartupError, pipeline_from_settings
    from surround_depth_ros.evaluation.report import write_report
    from surround_depth_ros.evaluation.scoring import EVALUATION_CAPS, FrameScorer

    out_bag = args.out / OUTPUT_BAG
    with usage_errors(ValueError, FileNotFoundError, FileExistsError, StartupError):
        settings = params.settings_from_file(args.params)
        caps = args.caps or EVALUATION_CAPS["rosbag"]
        if out_bag.exists():
            raise FileExistsError(f"{out_bag} exists already; choose another --out or delete it")
        names = TopicNames.from_settings(settings, args.namespace, args.lidar_topic)
        with open_bag(args.bag):  # a bag that cannot be opened is named before the model loads and warms up
            pass
        pipeline = pipeline_from_settings(settings)
        radars = settings.radars if pipeline.uses_radar else ()  # as the node subscribes them
        reader = RosbagReader(args.bag, dataclasses.replace(settings, radars=radars), topic_names=names, complete=False)
    scorer = FrameScorer(*caps, examples=args.examples) if reader.has_lidar else None
    total = len(reader) if args.limit is None else min(args.limit, len(reader))

    def write_and_score(frame_set: FrameSet, outputs: DepthOutputs, camera_info: dict) -> None:
        for topic, msgtype, stamp, msg in output_messages(writer.kit, frame_set, outputs, camera_info, settings):
            writer.put(resolve_topic(topic, args.namespace), msgtype, stamp, msg)
        if scorer is not None:
            _score(scorer, frame_set, outputs)

    start = time.perf_counter()
    with StopSignals("run-bag") as stop:
        with BagWriter(out_bag, storage=args.storage) as writer, _OutputThread() as output:
            output.put(writer.copy_topics, args.bag, {TF_STATIC_TOPIC: TF_TYPE, TF_TOPIC: TF_TYPE})
            frames = stop.frames(itertools.islice(reader, args.limit))
            resets = 0
            for frame_set in tqdm(frames, total=total, unit="frame set", desc=f"run-bag {args.bag.name}"):
                if reader.clock_resets != resets:  # as the node's worker does: no memory across a jump in time
                    resets = reader.clock_resets
                    pipeline.engine.reset()
                try:
                    outputs = pipeline.process(frame_set)
                except BindingError as error:  # the node logs it and goes on with the next set
                    reader.stats.drop(f"cannot bind the cameras to the model: {error}")
                    continue
                except Exception as error:  # noqa: BLE001 - as the node: one bad set must not stop the others
                    reader.stats.drop(f"inference error: {fault_text(error)}")
                    continue
                output.put(write_and_score, frame_set, outputs, dict(reader.camera_info))  # CameraInfo as taken
                reader.stats.processed(outputs.timings_ms, time.monotonic())
        summary = _summary(reader, time.perf_counter() - start)
        engine = pipeline.engine
        summary |= {
            "interrupted": stop.signal_name,
            "limit": args.limit,
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
                evaluation.summary["interrupted"] = stop.signal_name
                title = f"{engine.config.name} on {args.bag.name} (run-bag)"
                files = write_report(evaluation, args.out, title=title)
                summary["metrics"] = {mode: evaluation.summary[mode]["mean"] for mode in ("metric", "median_scaled")}
                summary["metrics_files"] = files
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {out_bag} and {args.out / 'summary.json'}")
    processed = reader.stats.processed_count
    status = stop.end(f"{processed} frame sets processed", reader.path, reader.faults)
    return status if status or processed else 1
