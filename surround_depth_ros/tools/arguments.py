"""Argument types and options shared by several commands: each option is declared once, the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from surround_depth_ros.base.yaml_file import YamlFileError, parse_yaml
from surround_depth_ros.tools.errors import UsageError


def image_size(text: str) -> tuple[int, int]:
    """`--size 640x352` -> (640, 352); argparse reports a malformed or non-positive size as a usage error."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x352, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return width, height


def positive_int(text: str) -> int:
    """`--limit 5` -> 5; argparse reports a non-integer or an integer below 1 as a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def depth_caps(text: str) -> tuple[float, float]:
    """`--caps 0.1,80` -> (0.1, 80.0) metres; argparse reports a malformed or empty range as a usage error."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX metres such as 0.1,80, got {text!r}") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"needs 0 <= MIN < MAX, got {text!r}")
    return low, high


def parse_overrides(items: list[str]) -> dict:
    """--set KEY=VALUE pairs (dotted keys, YAML values): `optimizer.steps=50 model.preset=tiny`."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE (e.g. optimizer.steps=50), got {item!r}")
        try:
            overrides[key] = parse_yaml(value, f"--set {key}")
        except YamlFileError as error:
            raise UsageError(str(error)) from error
    return overrides


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    """The options saying where a bag's topics are: the node's params file and namespace, the lidar topic (run-bag
    and evaluate)."""
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="the node's ROS params file (as config/surround_depth.param.yaml): its cameras (in order), topic "
        "patterns and synchronizer settings",
    )
    parser.add_argument(
        "--namespace", default="/", help="namespace the node would run in: relative topic patterns resolve in it"
    )
    parser.add_argument(
        "--lidar-topic",
        default=None,
        help="lidar PointCloud2 topic for ground truth (default lidar/points in the namespace)",
    )


def add_score_arguments(parser: argparse.ArgumentParser, default_caps: str) -> None:
    """--caps (None when not given: the dataset's benchmark range) and --examples (run-bag and evaluate)."""
    parser.add_argument(
        "--caps", type=depth_caps, default=None, help=f"MIN,MAX depth in m scored (default {default_caps})"
    )
    parser.add_argument("--examples", type=int, default=2, help="frame sets drawn in report.png (default 2)")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--out, --device and --set over a training YAML (train and ablation); --set is read by `parse_overrides`."""
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the config's out_dir)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: the config's device)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override training config keys (e.g. optimizer.steps=50)",
    )


def add_nuscenes_version(parser: argparse.ArgumentParser) -> None:
    """--version: the nuScenes table folder (evaluate and write-bag)."""
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes table version folder (default v1.0-mini)")


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """--rig, --seed and --sweeps of the synthetic world (synth and write-bag)."""
    parser.add_argument("--rig", type=Path, default=None, help="rig YAML (default: the packaged nuScenes-like rig)")
    parser.add_argument("--seed", type=int, default=0, help="world seed: other seeds give other streets (default 0)")
    parser.add_argument("--sweeps", type=int, default=1, help="radar sweeps per radar and frame set (default 1)")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """--path, --version, --seeds, --frames, --stride, --limit: what a `DatasetConfig` names (prepare)."""
    parser.add_argument("--path", default=None, help="nuScenes dataroot, DGP scene (folder or json), or bag folder")
    add_nuscenes_version(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="synthetic: world seeds (default 0)")
    parser.add_argument("--frames", type=positive_int, default=8, help="synthetic: frame sets per world (default 8)")
    parser.add_argument("--stride", type=positive_int, default=1, help="synthetic: every STRIDE-th frame (default 1)")
    parser.add_argument("--limit", type=positive_int, default=None, help="at most this many frame sets")
