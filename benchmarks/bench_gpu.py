"""Student network on a GPU: latency per backend for 6 x 352x640 (default preset) and accuracy vs torch fp32.

Backends: torch fp32, torch fp16 / bf16 autocast (NCHW and channels-last), ONNX Runtime with the
CUDA and TensorRT execution providers, Torch-TensorRT fp16 (engine built into a temporary cache,
build time printed). Each row: median latency of the bare forward over `--iters` runs (CUDA
synchronised), the largest relative depth error and confidence error against torch fp32 with
the tolerance of its precision, and the ratio to the torch fp32 latency (the floor to beat).
A backend that cannot run here prints why (e.g. the package to install). Last line: the
engine's end-to-end time (6 x 1600x900 uint8 in, depth maps out) over its bare forward.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--preset default] [--iters 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from surround_depth_ros.inference import BackendUnavailable, DepthEngine
from surround_depth_ros.inference.verify import TOLERANCES, output_errors, within_tolerance
from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.student import PRESETS, SurroundDepthStudent

# (label, backend, precision, extra engine options)
CASES = [
    ("torch fp32", "torch", "fp32", {"channels_last": False}),
    ("torch fp32 channels-last", "torch", "fp32", {"channels_last": True}),
    ("torch fp16 autocast", "torch", "fp16", {"channels_last": False}),
    ("torch fp16 autocast channels-last", "torch", "fp16", {"channels_last": True}),
    ("torch bf16 autocast channels-last", "torch", "bf16", {"channels_last": True}),
    ("onnxruntime CUDA EP fp32", "onnxruntime", "fp32", {"onnx_provider": "cuda"}),
    ("onnxruntime TensorRT EP fp16", "onnxruntime", "fp16", {"onnx_provider": "tensorrt"}),
    ("torch-tensorrt fp16", "tensorrt", "fp16", {}),
]


def median_ms(function, iters: int) -> float:
    for _ in range(5):
        function()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA device (torch.cuda.is_available() is False)")
    torch.manual_seed(0)
    config = PRESETS[args.preset]
    model = SurroundDepthStudent(config).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8) for _ in range(6)]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, preset {config.name}, "
          f"6 x {config.input_height}x{config.input_width}")  # fmt: skip
    reference, floor_ms = None, None
    with tempfile.TemporaryDirectory() as cache:
        for label, backend, precision, options in CASES:
            try:
                start = time.perf_counter()
                engine = DepthEngine(
                    model, backend=backend, device="cuda", precision=precision, adjacency=ring_adjacency(6),
                    cache_dir=cache, **options,
                )  # fmt: skip
                setup_s = time.perf_counter() - start
            except BackendUnavailable as error:
                print(f"{label:<36} unavailable: {error}")
                continue
            inputs = engine.preprocess(frames)
            outputs = engine.backend.run(inputs)
            reference = outputs if reference is None else reference
            ms = median_ms(lambda engine=engine, inputs=inputs: engine.backend.run(inputs), args.iters)
            floor_ms = floor_ms or ms
            errors = output_errors(reference, outputs)
            tol = TOLERANCES[precision]
            verdict = "OK" if within_tolerance(errors, precision) else "OFF"
            print(
                f"{label:<36} {ms:8.2f} ms  ratio {ms / floor_ms:5.2f}  depth rel. err {errors['depth']:.1e} "
                f"(tol {tol['depth']:.0e})  conf err {errors['confidence']:.1e} {verdict}  setup {setup_s:.0f} s"
            )
            if label == "torch fp16 autocast channels-last":
                total = median_ms(lambda engine=engine: engine.infer(frames), args.iters)
                print(f"{'  engine end-to-end (6 x 1600x900)':<36} {total:8.2f} ms  ratio to bare forward "
                      f"{total / ms:5.3f} (floor 1.0, aim < 1.10)")  # fmt: skip


if __name__ == "__main__":
    main()
