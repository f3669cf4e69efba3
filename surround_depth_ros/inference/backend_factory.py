"""Which back-end runs the network on a device, and building it: the engine's one place that names them all."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from surround_depth_ros.inference.backend import Backend
from surround_depth_ros.network.student import ExportableStudent

BACKENDS = ("auto", "torch", "tensorrt", "onnxruntime")
# On the CPU, auto picks ONNX Runtime when installed: it ran the default preset about 2x faster than
# eager torch (benchmarks/bench_network.py; numbers in docs/student_network.md).
CPU_BACKENDS = ("onnxruntime", "torch")


def auto_backend(device: torch.device) -> str:
    """tensorrt > onnxruntime (CUDA) > torch on a GPU; the faster measured one on the CPU."""
    if device.type != "cuda":
        return next(b for b in CPU_BACKENDS if b == "torch" or importlib.util.find_spec(b) is not None)
    if importlib.util.find_spec("torch_tensorrt") is not None:
        return "tensorrt"
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return "onnxruntime"
    return "torch"


def build_backend(
    name: str,
    module: ExportableStudent,
    device: torch.device,
    checksum: str,
    cache_dir: Path,
    precision: str,
    onnx_provider: str | None,
    channels_last: bool | None,
    threads: int | None,
) -> Backend:
    """The back-end `name` running `module`; the optional ones are imported only when asked for.

    ONNX Runtime and TensorRT keep their exported files in `cache_dir`, keyed by `checksum` (the weights).
    """
    if name == "torch":
        from surround_depth_ros.inference.torch_backend import TorchBackend

        return TorchBackend(module, device, precision, channels_last, threads)
    if name == "onnxruntime":
        from surround_depth_ros.inference.onnx_backend import OnnxRuntimeBackend, cached_onnx, pick_provider

        pick_provider(device, onnx_provider)  # fail before a long export when the provider is absent
        # The neighbour table is a constant of the graph: one file per weights, shape and adjacency.
        path = cached_onnx(module, cache_dir, checksum)
        return OnnxRuntimeBackend(path, device, precision, onnx_provider, cache_dir, threads)
    from surround_depth_ros.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(module, module.example_inputs(), checksum, cache_dir, device, precision)
