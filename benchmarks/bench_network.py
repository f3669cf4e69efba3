"""Student network on the CPU: per preset parameters, FLOPs and latency for a 6-view set; engine overhead.

Figures: for each preset, parameters, GFLOPs (FlopCounterMode) and the best-of-N latency of one
forward over 6 views at the preset's input size; then, for one preset, the torch and ONNX
Runtime CPU backends (which `auto` should pick on the CPU) and the ratio of the end-to-end time
(`SurroundDepthPipeline.process` without a cloud: 6 nuScenes-sized 1600x900 uint8 images in, 6 depth
maps of that size out) to the bare network forward. Floor of that ratio: 1.0 (no pre/post-processing cost); aim < 1.10.

    PYTHONPATH=. python benchmarks/bench_network.py [--presets tiny default radar] [--engine-preset default]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from timing import best_ms

from surround_depth_ros.core.pipeline import SurroundDepthPipeline
from surround_depth_ros.inference import DepthEngine
from surround_depth_ros.network.student import PRESETS, SurroundDepthStudent
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.tools.model_info import forward_flops, parameter_count, preset_inputs


def interleaved_best_ms(first, second, repeats: int) -> tuple[float, float]:
    """Best times of two functions run alternately, so that load from other processes hits both alike."""
    first(), second()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for function, record in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return 1000 * min(times[0]), 1000 * min(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default", "radar", "temporal", "large"])
    parser.add_argument("--engine-preset", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'preset':<9} {'input':>8} {'params':>8} {'GFLOPs':>7} {'CPU ms (6 views)':>17} {'GFLOP/s':>8}")
    for name in args.presets:
        config = PRESETS[name]
        model = SurroundDepthStudent(config).eval()
        inputs = preset_inputs(config)
        flops = forward_flops(model, inputs)
        with torch.inference_mode():
            ms = best_ms(lambda model=model, inputs=inputs: model(**inputs), args.repeats)
        size = f"{config.input_height}x{config.input_width}"
        print(
            f"{name:<9} {size:>8} {parameter_count(model) / 1e6:>7.2f}M {flops / 1e9:>7.1f} {ms:>17.0f} "
            f"{flops / 1e6 / ms:>8.1f}"
        )

    config = PRESETS[args.engine_preset]
    model = SurroundDepthStudent(config).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8) for _ in range(6)]
    rig = default_rig().scaled(1600, 900)
    frame_set = FrameSet(rig, frames, np.zeros(len(frames), np.int64))
    print(f"\nengine, preset {config.name}, 6 x 1600x900 camera images -> {config.input_height}x{config.input_width}")
    with tempfile.TemporaryDirectory() as cache:
        bare = {}
        for backend in ("torch", "onnxruntime"):
            # the rig's own pairs: binding it (a bare model: cameras in list order) rebuilds nothing
            engine = DepthEngine(model, backend=backend, device="cpu", adjacency=rig.adjacency(), cache_dir=cache)
            pipeline = SurroundDepthPipeline(engine, cloud=None)
            inputs = engine.preprocess(frames)
            bare[backend], total = interleaved_best_ms(
                lambda engine=engine, inputs=inputs: engine.backend.run(inputs),
                lambda pipeline=pipeline: pipeline.process(frame_set),
                args.repeats,
            )
            pre = best_ms(lambda engine=engine: engine.preprocess(frames), args.repeats)
            print(
                f"  {backend:<12} bare forward {bare[backend]:8.1f} ms   end-to-end {total:8.1f} ms   preprocess "
                f"{pre:6.1f} ms   ratio end-to-end / bare {total / bare[backend]:5.3f} (floor 1.0, aim < 1.10)"
            )
    faster = min(bare, key=bare.get)
    print(f"  faster CPU backend: {faster} ({bare['onnxruntime'] / bare['torch']:.2f} = onnxruntime / torch)")


if __name__ == "__main__":
    main()
