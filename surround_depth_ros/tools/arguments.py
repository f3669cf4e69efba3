"""Argument types shared by the command-line tools."""

from __future__ import annotations

import argparse


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


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that place a params file's topic patterns in a bag (run-bag and evaluate)."""
    parser.add_argument(
        "--namespace", default="/", help="namespace the node would run in: relative topic patterns resolve in it"
    )
    parser.add_argument(
        "--lidar-topic",
        default=None,
        help="lidar PointCloud2 topic for ground truth (default lidar/points in the namespace)",
    )
