"""Train a student (or the own-family teacher) from a YAML training config; see docs/training.md.

Writes best.pt / last.pt (student checkpoints), train_state.pt (for --resume), history.json,
losses.png and validation.png into the run folder (`out_dir` of the config, or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from surround_depth_ros.tools.arguments import add_config_arguments, parse_overrides
from surround_depth_ros.tools.errors import usage_errors
from surround_depth_ros.training.config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training YAML (e.g. config/training/synthetic_default.yaml)")
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from the output folder's last.pt")


def run(args: argparse.Namespace) -> int:
    from surround_depth_ros.training.trainer import Trainer

    with usage_errors(ConfigError):
        config = load_config(args.config, parse_overrides(args.set))
    trainer = Trainer(config, out_dir=args.out, device=args.device)
    result = trainer.train(resume=args.resume)
    best = "n/a (no validation set)" if result.best_abs_rel is None else f"{result.best_abs_rel:.4f}"
    print(f"trained {result.step} steps; best validation AbsRel {best}; files in {result.out_dir}")
    return 0
