"""Prepare throughput: frame sets per second that `prepare_shards` writes with 1 and with N processes, and the
ratio (issue 21's floor: at least 1.7x with 2 processes on a 2-core machine).

    PYTHONPATH=. python benchmarks/bench_prepare.py [--processes 2] [--seeds 1 2] [--frames 8] [--size 128x224]

Synthetic worlds rendered and prepared at the size (HEIGHTxWIDTH), shards of 4, a fresh directory per run;
the time includes starting the worker processes, as a user pays it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from timing import best_seconds

from surround_depth_ros.training.config import DatasetConfig
from surround_depth_ros.training.shards import prepare_shards

FLOOR = 1.7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="128x224", help="HEIGHTxWIDTH (default 128x224)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    spec = DatasetConfig(type="synthetic", seeds=args.seeds, frames=args.frames, stride=3)
    count = len(args.seeds) * args.frames
    root = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    rates = {}
    try:
        for processes in (1, args.processes):

            def run(processes: int = processes) -> None:
                out = root / f"p{processes}"
                shutil.rmtree(out, ignore_errors=True)
                prepare_shards(spec, size, out, processes, shard_size=4)

            seconds = best_seconds(run, args.repeats)
            rates[processes] = count / seconds
            print(f"{processes} process(es): {count} frame sets in {seconds:6.2f} s   {rates[processes]:6.2f} sets/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = rates[args.processes] / rates[1]
    print(f"{args.processes} processes / 1 process: {ratio:.2f}x (floor {FLOOR}x)")


if __name__ == "__main__":
    main()
