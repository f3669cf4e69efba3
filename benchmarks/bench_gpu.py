"""The node path on a GPU: sets/s from 6 x 1600x900 uint8 cameras to packed outputs on the host, per backend.

For each backend and precision (torch fp32, torch fp16 autocast channels-last, the same with
`torch.compile(mode="reduce-overhead")` (CUDA graphs), ONNX Runtime CUDA / TensorRT execution
providers, Torch-TensorRT fp16; a case that cannot run here prints why), at 6 x 352x640 network
input (default preset, random weights: the cost is the same):
  forward  the bare network on prepared tensors (the floor)
  path     SurroundDepthPipeline.process at depth_resolution network: upload (pinned) + resize + forward
           (normalising inside) + canonical placement + mask + cloud fusion at the default point budget + one
           device-to-host copy of depth, confidence and the packed cloud
then path sets/s and path / forward, and the largest depth / confidence error against torch fp32.
Median of --iters CUDA-synchronised runs after `DepthEngine.warm_up` (its seconds are printed: the
first run's work, e.g. the TensorRT execution provider's engine build). Each case also checks the
GPU path's guards and stops with an AssertionError when one fails (`check_gpu_path`).

    .venv/bin/python benchmarks/bench_gpu.py [--preset default] [--iters 30] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gpu_sync_check import cloud_without_host_sync, cuda_syncs_raise

from surround_depth_ros.core.fusion import CloudFusion
from surround_depth_ros.core.pipeline import SurroundDepthPipeline
from surround_depth_ros.inference import BackendUnavailable, DepthEngine
from surround_depth_ros.inference.verify import TOLERANCES, output_errors, within_tolerance
from surround_depth_ros.network.checkpoint import save_checkpoint
from surround_depth_ros.network.student import PRESETS, SurroundDepthStudent
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.rig import default_rig

# (label, backend, precision, engine options, compile the torch module)
CASES = [
    ("torch fp32", "torch", "fp32", {"channels_last": False}, False),
    ("torch fp16 autocast channels-last", "torch", "fp16", {"channels_last": True}, False),
    ("torch fp16 channels-last + compile", "torch", "fp16", {"channels_last": True}, True),
    ("onnxruntime CUDA EP fp32", "onnxruntime", "fp32", {"onnx_provider": "cuda"}, False),
    ("onnxruntime TensorRT EP fp16", "onnxruntime", "fp16", {"onnx_provider": "tensorrt"}, False),
    ("torch-tensorrt fp16", "tensorrt", "fp16", {}, False),
]


def median_ms(function: Callable[[], object], iters: int) -> float:
    for _ in range(3):
        function()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def check_gpu_path(
    engine: DepthEngine, images: list[np.ndarray], inputs: tuple, outputs: tuple, precision: str
) -> None:
    """The guards of the GPU path, each against a stream kept busy so that a missing one shows.

    - Pinned staging buffers are reused: a second upload must not overwrite the first one's copy while it is
      still queued (StagingBuffer waits for the copy's event).
    - Upload, preprocessing and ONNX Runtime's run call no synchronizing CUDA operation
      (`torch.cuda.set_sync_debug_mode("error")` raises on one).
    - ONNX Runtime runs on its own stream ordered after torch's by a stream wait (no torch.cuda.synchronize):
      inputs written behind a busy stream must be what it reads.
    - The fused cloud, depth maps to packed rows, raises under sync debug mode (`gpu_sync_check`): the
      point count read afterwards is its one sync.
    """
    busy = 2**28  # GPU clock cycles, about 0.15 s
    others = [np.ascontiguousarray(image[::-1]) for image in images]
    torch.cuda._sleep(busy)
    first = engine.upload(images)
    engine.upload(others)
    for got, want in zip(first, images, strict=True):
        if not torch.equal(got.cpu(), torch.from_numpy(want)):
            raise AssertionError("a reused staging buffer was overwritten while its copy to the GPU was queued")
    with cuda_syncs_raise():
        engine.network_images(engine.upload(images))
        engine.network_images(engine.upload(others))
        if engine.backend_name == "onnxruntime":
            engine.backend.run(inputs)
    if engine.backend_name == "onnxruntime":
        delayed = [torch.empty_like(x) for x in inputs]
        torch.cuda._sleep(busy)
        for target, x in zip(delayed, inputs, strict=True):
            target.copy_(x)  # queued behind the busy stream
        if not within_tolerance(output_errors(outputs, engine.backend.run(tuple(delayed))), precision):
            raise AssertionError("ONNX Runtime read its inputs before torch's stream had written them")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the torch.compile case (its first run compiles for a minute or two)",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            f"bench_gpu needs an NVIDIA GPU and a CUDA build of torch; torch {torch.__version__} here has "
            "torch.cuda.is_available() == False. Nothing was measured.",
            file=sys.stderr,
        )
        return 2
    torch.manual_seed(0)
    config = PRESETS[args.preset]
    rig = default_rig().scaled(1600, 900)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8) for _ in range(6)]
    frame_set = FrameSet(rig, images, np.zeros(len(images), np.int64))
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, preset {config.name}, 6 x 1600x900 cameras "
        f"-> 6 x {config.input_width}x{config.input_height} network input; median of {args.iters}"
    )
    print(
        f"{'case':36} {'warm-up s':>9} {'forward ms':>10} {'path ms':>8} {'sets/s':>7} {'path/fwd':>8}  "
        "accuracy vs torch fp32"
    )
    reference = None
    with tempfile.TemporaryDirectory() as cache:
        checkpoint = Path(cache) / "student.pt"
        save_checkpoint(checkpoint, SurroundDepthStudent(config).eval(), rig=rig)
        for label, backend, precision, options, compile_module in CASES:
            if compile_module and not args.compile:
                continue
            try:
                engine = DepthEngine(
                    checkpoint, backend=backend, device="cuda", precision=precision, cache_dir=cache, **options
                )
            except BackendUnavailable as error:
                print(f"{label:36} unavailable: {error}")
                continue
            if compile_module:
                engine.backend.module = torch.compile(engine.backend.module, mode="reduce-overhead")
            warm_up = engine.warm_up()
            pipeline = SurroundDepthPipeline(engine, resolution="network")
            inputs = engine.preprocess(images)
            outputs = engine.backend.run(inputs)
            check_gpu_path(engine, images, inputs, outputs, precision)
            # the training rig's own cameras: every image fills the input, the maps' camera is the rig's scaled
            depth, confidence = engine.mask(*engine.run_network(inputs))
            h, w = engine.input_size
            maps = (depth[:, 0], rig.scaled(w, h).intrinsics(), rig.extrinsics(), confidence[:, 0])
            cloud_without_host_sync(CloudFusion(device=engine.device), *maps, engine.upload(images))
            reference = reference or outputs
            errors = output_errors(reference, outputs)
            verdict = "OK" if within_tolerance(errors, precision) else "OFF"

            forward = median_ms(lambda engine=engine, inputs=inputs: engine.backend.run(inputs), args.iters)
            whole = median_ms(lambda pipeline=pipeline: pipeline.process(frame_set), args.iters)
            print(
                f"{label:36} {warm_up:9.1f} {forward:10.2f} {whole:8.2f} {1000 / whole:7.1f} {whole / forward:8.2f}  "
                f"depth rel. {errors['depth']:.1e} (tol {TOLERANCES[precision]['depth']:.0e}) "
                f"conf {errors['confidence']:.1e} {verdict}"
            )
            del engine, pipeline
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
