"""`surround-depth`: one entry point whose subcommands are the modules of this package.

A tool module exposes `add_arguments(parser)` and `run(args) -> int` and is listed in
`TOOLS` with a one-line help. Modules are imported only when their subcommand runs, so that `--help` and
light tools stay fast and a tool that needs rclpy does not burden the others. A tool that cannot run as
asked raises `UsageError` (`tools/errors.py`): one line on stderr and exit code 2, as argparse does. Ctrl-C
or SIGTERM that the tool does not handle itself (`tools/interrupt.py`) is one line too, and the exit status
of a process that signal stopped.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from surround_depth_ros.tools.errors import UsageError
from surround_depth_ros.tools.interrupt import exit_status, ignore_signals, terminate_as_interrupt

# subcommand -> (module under surround_depth_ros.tools, one-line help)
TOOLS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the node on built-in data over real DDS and write what it published"),
    "write-bag": ("write_bag", "write a rosbag2 (mcap/sqlite3) from synthetic data, nuScenes, DDAD or a bag"),
    "replay": ("replay_bag", "replay a rosbag2 into live ROS 2 topics (1x, Nx, max; latched /tf_static)"),
    "synth": ("synth", "render synthetic surround frame sets (images, exact depth, lidar, radar) with contact sheets"),
    "models": ("model_info", "list the student presets with parameters, GFLOPs and CPU latency"),
    "export": ("export", "export a student to ONNX / ExportedProgram / Torch-TensorRT and verify each against PyTorch"),
    "prepare": ("prepare", "prepare a dataset once into hashed shards on disk (N processes, resumable) for train"),
    "train": ("train", "train a student (or the own-family teacher) from a YAML training config"),
    "run-bag": ("run_bag", "the node's pipeline over every frame set of a bag, offline: depth bag, summary, metrics"),
    "evaluate": ("evaluate", "score a checkpoint on synthetic, nuScenes, DDAD or a rosbag: metrics.json + report.png"),
    "ablation": ("ablation", "train one student without KD and with each KD family over seeds: table + JSON + PNG"),
    "params": ("params", "the node's parameters from their declaration: a commented params file or the README table"),
    "rviz": ("rviz", "the RViz 2 view of the node's outputs for a params file and namespace (.rviz)"),
    "rig": ("rig", "show, convert (--save YAML) and draw (--png top view) a sensor rig from YAML, nuScenes or DGP"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="surround-depth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in TOOLS.items():
        tool_parser = sub.add_parser(name, help=help_text)
        if name == chosen:
            module = importlib.import_module(f"surround_depth_ros.tools.{module_name}")
            tool_parser.description = module.__doc__
            module.add_arguments(tool_parser)
            tool_parser.set_defaults(func=module.run)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with terminate_as_interrupt():
            return int(args.func(args) or 0)
    except UsageError as error:
        print(f"surround-depth {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        ignore_signals()  # the process ends for it: a second Ctrl-C must not kill it on its way out
        signum = getattr(error, "signum", signal.SIGINT)
        print(f"surround-depth {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return exit_status(signum)


if __name__ == "__main__":
    sys.exit(main())
