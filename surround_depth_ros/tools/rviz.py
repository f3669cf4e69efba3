"""Write the RViz 2 view of the node's outputs for a params file and namespace, for people who start RViz
themselves (`ros2 launch ... rviz:=true` writes the same at launch):

    surround-depth rviz --params params.yaml --namespace /perception --output depth.rviz
    rviz2 -d depth.rviz

The view shows TF, the fused cloud coloured by rgb and each camera's depth image under the namespace;
the cameras' own images are listed off (--camera-images turns them on).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surround_depth_ros.core.params import settings_from_file
from surround_depth_ros.tools.errors import UsageError, usage_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, help="the node's params file (default: the node's defaults)")
    parser.add_argument("--namespace", default="/", help="namespace the node runs in (default /)")
    parser.add_argument("--camera-images", action="store_true", help="also show each camera's image")
    parser.add_argument("--output", type=Path, help="write the .rviz file here instead of printing it")


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.ros.rviz_config import rviz_config

    if args.params is not None and not args.params.is_file():
        raise UsageError(f"params file {args.params} {'is not a file' if args.params.exists() else 'does not exist'}")
    with usage_errors(ValueError, OSError):
        text = rviz_config(settings_from_file(args.params), args.namespace, args.camera_images)
        if args.output is not None:
            args.output.write_text(text)
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.output}")
    return 0
