"""Train one student without KD and with each KD family over several seeds; table + JSON + PNG (docs/training.md).

Finished runs are kept in OUT/runs/<variant>/seed<k>/ and skipped when the command is repeated,
so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from surround_depth_ros.tools.arguments import add_config_arguments, parse_overrides
from surround_depth_ros.tools.errors import UsageError, usage_errors
from surround_depth_ros.training.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=Path("config/training/ablation.yaml"),
        help="ablation YAML (default config/training/ablation.yaml)",
    )
    add_config_arguments(parser)
    parser.add_argument("--only", nargs="+", default=None, metavar="VARIANT", help="run only these variants")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from surround_depth_ros.training.ablation import load_ablation_config, markdown_table, run_ablation

    with usage_errors(ConfigError):
        config = load_ablation_config(args.config, parse_overrides(args.set))
    if args.out is not None:
        config = replace(config, out_dir=str(args.out))
    unknown = sorted(set(args.only or []) - set(config.variants))
    if unknown:
        raise UsageError(f"--only: unknown variant(s) {unknown}; the config has {list(config.variants)}")
    summary = run_ablation(config, device=args.device, only=args.only)
    print(markdown_table(summary, config.seeds))
    print(f"wrote {config.out_dir}/ablation.md, ablation.json and ablation.png")
    return 0
