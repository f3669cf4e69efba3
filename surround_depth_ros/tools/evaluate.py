"""Evaluate a student checkpoint on the synthetic world, nuScenes, DDAD/DGP or a rosbag2 with lidar.

Runs the checkpoint as the node does (`DepthEngine`: full images in, depth per camera out) and
scores it against full-resolution ground truth (dense for the synthetic world, projected lidar
otherwise): AbsRel, SqRel, RMSE, RMSElog, delta<1.25^k, MAE, SILog per camera, averaged and per
range bin, metric and median-scaled. Writes metrics.json and report.png into --out; with
--compare OTHER.pt also scores OTHER on the same frame sets (read once) and writes
compare/metrics.json, compare/report.png, and comparison.json + comparison.png (B - A per metric).
A bag of any layout is read through the node's params file (--params: cameras, topic patterns,
synchronizer settings; --namespace, --lidar-topic), as `surround-depth run-bag` reads it; what it could
not use (messages skipped, why reading stopped early in a damaged bag) is in metrics.json and on stderr.
Ctrl-C or SIGTERM stops after the frame set in hand and scores the sets done so far (metrics.json says
"interrupted"); the exit status is then 128 + the signal's number, 1 when the bag's storage failed
before its end, 2 when the bag cannot be opened or scored.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from surround_depth_ros.core import params
from surround_depth_ros.datasets.registry import SOURCE_TYPES
from surround_depth_ros.evaluation.metrics import METRIC_NAMES
from surround_depth_ros.evaluation.scoring import EVALUATION_CAPS
from surround_depth_ros.tools.arguments import (
    add_nuscenes_version,
    add_score_arguments,
    add_topic_arguments,
    image_size,
)
from surround_depth_ros.tools.errors import UsageError, usage_errors
from surround_depth_ros.tools.interrupt import StopSignals
from surround_depth_ros.training.config import ConfigError, DatasetConfig, check_dataset

if TYPE_CHECKING:
    from surround_depth_ros.bag.reader import RosbagReader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="student checkpoint (.pt)")
    parser.add_argument("--dataset", choices=SOURCE_TYPES, required=True, help="where the frame sets come from")
    parser.add_argument("--path", default=None, help="nuScenes dataroot, DGP scene (folder or json), or bag folder")
    add_nuscenes_version(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[950, 951, 952], help="synthetic: world seeds")
    parser.add_argument("--frames", type=int, default=4, help="synthetic: frame sets per world (default 4)")
    parser.add_argument("--stride", type=int, default=9, help="synthetic: every STRIDE-th frame (default 9)")
    parser.add_argument(
        "--size", type=image_size, default="224x128", help="synthetic: render size WIDTHxHEIGHT (default 224x128)"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many frame sets")
    add_score_arguments(parser, "by dataset: nuScenes 0.1,80; DDAD 0.1,200")
    parser.add_argument("--no-focal-scaling", action="store_true", help="plain resize, no canonical camera")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OTHER.pt",
        help="also score OTHER.pt on the same frame sets: comparison.json + comparison.png (B - A per metric)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and report.png")
    bag = parser.add_argument_group("rosbag: where the topics are (default: the layout of docs/rosbag.md)")
    add_topic_arguments(bag)


def _spec(args: argparse.Namespace) -> DatasetConfig:
    width, height = args.size
    spec = DatasetConfig(
        type=args.dataset,
        seeds=list(args.seeds),
        frames=args.frames,
        stride=args.stride,
        render_size=[width, height],
        path=args.path,
        version=args.version,
        limit=args.limit,
    )
    check_dataset(spec, "evaluate")
    return spec


def _bag_reader(args: argparse.Namespace, path: str) -> RosbagReader:
    """The bag's reader with the node's topic patterns (of --params, else its defaults) in --namespace, and with
    --params its cameras, radars and synchronizer settings: the one place a topic option of this command reaches
    the reader."""
    from surround_depth_ros.bag.reader import RosbagReader
    from surround_depth_ros.bag.topics import TopicNames

    settings = params.settings_from_file(args.params)
    names = TopicNames.from_settings(settings, args.namespace, args.lidar_topic)
    return RosbagReader(path, settings if args.params else None, topic_names=names)


def _open_frames(args: argparse.Namespace, spec: DatasetConfig, size: tuple[int, int]):  # noqa: ANN202
    """The frame sets to score (a FramesWithNeighbours: with their temporal neighbours, none asked) and the bag's
    reader (None for a dataset). A bag is opened here, with the topic options, and must carry lidar."""
    from surround_depth_ros.training.data import FramesWithNeighbours, open_source

    if spec.type != "rosbag":
        return open_source(spec, size), None
    from surround_depth_ros.bag.topics import POINT_CLOUD_TYPE

    reader = _bag_reader(args, spec.path)
    lidar = reader.names.lidar
    if reader.topics.get(lidar) != POINT_CLOUD_TYPE:
        raise ConfigError(
            f"{spec.path} has no lidar to score against: no topic {lidar} (--lidar-topic) among {sorted(reader.topics)}"
        )
    if reader.T_base_lidar is None:
        raise ConfigError(
            f"{spec.path} has no lidar to score against: /tf_static does not place the lidar frame "
            f"{reader.lidar_frame!r}"
        )
    count = len(reader) if spec.limit is None else min(len(reader), spec.limit)
    return FramesWithNeighbours(((frame, []) for frame in itertools.islice(reader, count)), reader.rig, count), reader


def _engine(checkpoint: Path, args: argparse.Namespace):  # noqa: ANN202 - DepthEngine
    """The checkpoint as the node loads it; the evaluation binds another rig's cameras (e.g. DDAD's) to its slots."""
    from surround_depth_ros.inference.engine import DepthEngine

    return DepthEngine(checkpoint, backend=args.backend, device=args.device)


def _labels(a: Path, b: Path) -> tuple[str, str]:
    """Short names of two checkpoints: file names, with their folders when the names are equal."""
    return (a.name, b.name) if a.name != b.name else (f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}")


def _print_comparison(comparison: dict, labels: tuple[str, str]) -> None:
    print(f"A = {labels[0]}, B = {labels[1]}")
    print(f"{'metric':<10}{'A':>10}{'B':>10}{'B - A':>10}   (median-scaled B - A)  better")
    for name in METRIC_NAMES:
        row, med = comparison["metric"]["mean"][name], comparison["median_scaled"]["mean"][name]
        better = row["better"].upper() if row["better"] != "same" else "="
        print(
            f"{name:<10}{row['a']:>10.4f}{row['b']:>10.4f}{row['difference']:>+10.4f}   "
            f"({med['difference']:+.4f}){better:>20}"
        )


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.evaluation.report import write_comparison, write_report
    from surround_depth_ros.inference.backend import BackendUnavailable
    from surround_depth_ros.network.checkpoint import CheckpointError, checkpoint_file_problem, read_checkpoint
    from surround_depth_ros.training.evaluate import evaluate_checkpoints

    checkpoints = [args.checkpoint, *([args.compare] if args.compare else [])]
    # a checkpoint, bag or dataset that cannot be scored: say why
    with usage_errors(ValueError, FileNotFoundError, CheckpointError, BackendUnavailable):
        for checkpoint in checkpoints:
            if problem := checkpoint_file_problem(checkpoint):
                raise ConfigError(f"checkpoint {checkpoint} {problem}")
        spec = _spec(args)
        caps = args.caps or EVALUATION_CAPS[args.dataset]
        source, reader = _open_frames(args, spec, read_checkpoint(args.checkpoint)[1].input_size)
        engines = [_engine(checkpoint, args) for checkpoint in checkpoints]
    with StopSignals("evaluate") as stop:
        frames = tqdm(
            stop.frames(frame for frame, _ in source.frames),
            total=source.count,
            desc=f"evaluating on {args.dataset}",
            unit="frameset",
        )
        try:
            evaluations = evaluate_checkpoints(
                engines, frames, *caps, examples=args.examples, focal_scaling=not args.no_focal_scaling
            )
        except ValueError as error:  # e.g. no frame set with ground truth
            if stop.signum is None:
                raise UsageError(f"{args.path or args.dataset}: {_with_faults(str(error), reader)}") from error
            return stop.end("no frame set scored, nothing written", args.path, reader.faults if reader else None)
        outs = [args.out, args.out / "compare"]
        for checkpoint, evaluation, out in zip(checkpoints, evaluations, outs, strict=False):
            evaluation.summary |= {"checkpoint": str(checkpoint), "dataset": args.dataset}
            evaluation.summary |= {"interrupted": stop.signal_name} | (reader.reading_summary() if reader else {})
            where = f"{args.dataset} {Path(args.path).name}" if args.path else args.dataset
            files = write_report(evaluation, out, title=f"{checkpoint.name} on {where}")
            print(json.dumps({m: evaluation.summary[m]["mean"] for m in ("metric", "median_scaled")}, indent=1))
            print(f"wrote {files['json']} and {files['png']}")
        if args.compare:
            labels = _labels(args.checkpoint, args.compare)
            files = write_comparison(*evaluations, args.out, labels)
            _print_comparison(json.loads(Path(files["json"]).read_text()), labels)
            print(f"wrote {files['json']} and {files['png']}")
    done = f"{evaluations[0].summary['frame_sets']} frame sets scored"
    return stop.end(done, args.path, reader.faults if reader else None)


def _with_faults(problem: str, reader: RosbagReader | None) -> str:
    """`problem`, and what of the bag could not be read when something could not: often the reason for it."""
    faults = reader.faults.describe() if reader is not None else ""
    return f"{problem} ({faults})" if faults else problem
