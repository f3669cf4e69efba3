"""List the student presets with their parameter counts, FLOPs for a 6-view set and (optionally) CPU latency."""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.student import PRESETS, StudentConfig, SurroundDepthStudent


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def preset_inputs(config: StudentConfig, n_views: int = 6) -> dict[str, torch.Tensor]:
    """A 6-view batch at the preset's input size (radar maps for radar presets)."""
    h, w = config.input_size
    inputs = {"images": torch.rand(1, n_views, 3, h, w), "adjacency": ring_adjacency(n_views)}
    if config.radar:
        inputs["radar"] = torch.zeros(1, n_views, 4, h, w)
    return inputs


def forward_flops(model: SurroundDepthStudent, inputs: dict[str, torch.Tensor]) -> int:
    """FLOPs (2 per multiply-add) of one inference forward, counted by torch's FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops()


def cpu_latency_ms(model: SurroundDepthStudent, inputs: dict[str, torch.Tensor], repeats: int = 3) -> float:
    """Best-of-`repeats` wall time of one forward on the CPU, after a warm-up run."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - start)
    return 1000 * min(times[1:])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESETS), help="presets to list")
    parser.add_argument("--latency", action="store_true", help="also time one CPU forward of a 6-view set")
    parser.add_argument("--views", type=int, default=6, help="cameras per frame set (default 6)")


def run(args: argparse.Namespace) -> int:
    header = f"{'preset':<9} {'encoder':<16} {'decoder':<6} {'radar':<5} {'xview':<5} {'temp':<5} {'input':>8} "
    header += f"{'params':>8} {'GFLOPs':>7}" + (f" {'CPU ms':>8}" if args.latency else "")
    print(header)
    for name in args.presets:
        config = PRESETS[name]
        model = SurroundDepthStudent(config).eval()
        inputs = preset_inputs(config, args.views)
        row = (
            f"{name:<9} {config.encoder + f'x{config.width:g}':<16} {config.decoder:<6} {config.radar!s:<5} "
            f"{config.cross_view!s:<5} {config.temporal!s:<5} {f'{config.input_height}x{config.input_width}':>8} "
            f"{parameter_count(model) / 1e6:>7.2f}M {forward_flops(model, inputs) / 1e9:>7.1f}"
        )
        if args.latency:
            row += f" {cpu_latency_ms(model, inputs):>8.0f}"
        print(row)
    print(f"FLOPs and latency for {args.views} views at each preset's input size; 1 multiply-add = 2 FLOPs.")
    return 0
