"""Evaluate a student checkpoint on the synthetic world, nuScenes, DDAD/DGP or a rosbag2 with lidar.

Runs the checkpoint as the node does (`DepthEngine`: full images in, depth per camera out) and
scores it against full-resolution ground truth (dense for the synthetic world, projected lidar
otherwise): AbsRel, SqRel, RMSE, RMSElog, delta<1.25^k, MAE, SILog per camera, averaged and per
range bin, metric and median-scaled. Writes metrics.json and report.png into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from surround_depth_ros.tools.arguments import image_size
from surround_depth_ros.training.config import DATASET_TYPES, ConfigError, DatasetConfig, check_dataset
from surround_depth_ros.training.evaluate import EVALUATION_CAPS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="student checkpoint (.pt)")
    parser.add_argument("--dataset", choices=DATASET_TYPES, required=True, help="where the frame sets come from")
    parser.add_argument("--path", default=None, help="nuScenes dataroot, DGP scene (folder or json), or bag folder")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder (default v1.0-mini)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[950, 951, 952], help="synthetic: world seeds")
    parser.add_argument("--frames", type=int, default=4, help="synthetic: frame sets per world (default 4)")
    parser.add_argument("--stride", type=int, default=9, help="synthetic: every STRIDE-th frame (default 9)")
    parser.add_argument(
        "--size", type=image_size, default="224x128", help="synthetic: render size WIDTHxHEIGHT (default 224x128)"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many frame sets")
    parser.add_argument("--caps", default=None, help="MIN,MAX depth in m (default: nuScenes 0.1,80; DDAD 0.1,200)")
    parser.add_argument("--examples", type=int, default=2, help="frame sets drawn in report.png (default 2)")
    parser.add_argument("--no-focal-scaling", action="store_true", help="do not rescale depth for other focal lengths")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and report.png")


def _caps(text: str | None, dataset: str) -> tuple[float, float]:
    if text is None:
        return EVALUATION_CAPS[dataset]
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--caps must look like 0.1,80 (MIN,MAX metres), got {text!r}") from None
    if not 0 <= low < high:
        raise ConfigError(f"--caps needs 0 <= MIN < MAX, got {text!r}")
    return low, high


def _spec(args: argparse.Namespace) -> DatasetConfig:
    width, height = args.size
    spec = DatasetConfig(
        type=args.dataset, seeds=list(args.seeds), frames=args.frames, stride=args.stride,
        render_size=[width, height], path=args.path, version=args.version, limit=args.limit,
    )  # fmt: skip
    check_dataset(spec, "evaluate")
    return spec


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.checkpoint import read_checkpoint
    from surround_depth_ros.inference.engine import DepthEngine
    from surround_depth_ros.training.data import open_source
    from surround_depth_ros.training.evaluate import evaluate_frames, write_report

    try:
        spec = _spec(args)
        caps = _caps(args.caps, args.dataset)
    except ConfigError as error:
        print(f"error: {error}")
        return 2
    _, info = read_checkpoint(args.checkpoint)
    source = open_source(spec, info.input_size)
    trained_views = len(info.rig["cameras"]) if info.rig else None
    # another rig (e.g. DDAD's 3 cameras): give the engine that rig's view count and overlaps
    other_rig = trained_views != len(source.rig.cameras)
    engine = DepthEngine(
        args.checkpoint, backend=args.backend, device=args.device,
        n_views=len(source.rig.cameras) if other_rig else None,
        adjacency=source.rig.adjacency() if other_rig else None,
    )  # fmt: skip
    progress = tqdm(source.frames, total=source.count, desc=f"evaluating on {args.dataset}", unit="frameset")
    evaluation = evaluate_frames(
        engine, source.frames, *caps, examples=args.examples, focal_scaling=not args.no_focal_scaling, progress=progress
    )
    evaluation.summary["checkpoint"] = str(args.checkpoint)
    evaluation.summary["dataset"] = args.dataset
    files = write_report(evaluation, args.out, title=f"{args.checkpoint.name} on {args.dataset}")
    mean = evaluation.summary["metric"]["mean"] or {}
    print(json.dumps({"metric": mean, "median_scaled": evaluation.summary["median_scaled"]["mean"]}, indent=1))
    print(f"wrote {files['json']} and {files['png']}")
    return 0
