"""ONNX export and the ONNX Runtime backend (CPU, CUDA and TensorRT execution providers).

Export uses the TorchScript-based `torch.onnx.export(dynamo=False)` at opset 17: it needs no
extra package (the dynamo exporter needs onnxscript) and handles every op of the student.
Shapes are static: the file is built for one number of views and one input size.

The exported file is a cache entry keyed and verified by content (`inference.cache`). On CUDA,
ONNX Runtime runs on a CUDA stream of torch's (`user_compute_stream`), ordered after the work that
made its inputs by a stream wait, so no run waits for the whole device.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from surround_depth_ros.base.atomic_file import atomic_path
from surround_depth_ros.base.threads import available_cores
from surround_depth_ros.inference.backend import (
    GRAPH_INPUT,
    BackendUnavailable,
    check_precision,
    neighbour_digest,
    require_cuda,
)
from surround_depth_ros.inference.cache import cache_entry, ensure_cache_dir, entry_problem, name_part
from surround_depth_ros.network.student import ExportableStudent

LOG = logging.getLogger(__name__)
ONNX_OPSET = 17
# Our provider names -> ONNX Runtime's, in order of preference.
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def import_onnxruntime():  # noqa: ANN201 (returns the module)
    """The onnxruntime module, or BackendUnavailable naming the package to install."""
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailable(
            "the onnxruntime backend needs ONNX Runtime: pip install onnxruntime (CPU) or onnxruntime-gpu "
            "(CUDA and TensorRT execution providers)"
        ) from error
    return onnxruntime


def export_onnx(module: ExportableStudent, path: str | Path, inputs: tuple[torch.Tensor, ...]) -> Path:
    """Write `module` as ONNX (opset 17, static shapes of `inputs`), checked with onnx, atomically."""
    import onnx

    path = Path(path)
    module = module.eval().to("cpu")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            module,
            tuple(x.cpu() for x in inputs),
            str(tmp),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=module.input_names,
            output_names=module.output_names,
            do_constant_folding=True,
        )
        onnx.checker.check_model(str(tmp))
    return path


def onnx_cache_key(module: ExportableStudent, checksum: str) -> dict:
    """What an exported graph of `module` depends on: its input convention, opset, weights, neighbour table, shapes."""
    return {
        "graph_input": GRAPH_INPUT,
        "opset": ONNX_OPSET,
        "checksum": checksum,
        "neighbours": neighbour_digest(module),
        "input_shapes": [list(x.shape) for x in module.example_inputs()],
    }


def cached_onnx(module: ExportableStudent, cache_dir: Path, checksum: str) -> Path:
    """The verified ONNX file of `module` (weights `checksum`) in `cache_dir`: exported when absent or unusable.

    One file per weights, shape and adjacency. A file that does not verify against its sidecar
    (another model's graph copied over it, a copy cut short, no sidecar) is exported again with a
    warning, never trusted and never fatal.
    """
    key = onnx_cache_key(module, checksum)
    _, n_views, _, height, width = key["input_shapes"][0]
    path = cache_dir / f"student_{GRAPH_INPUT}_{checksum[:16]}_{n_views}x{height}x{width}_{key['neighbours'][:12]}.onnx"
    problem = entry_problem(path, key)
    if problem is None:
        return path
    if path.exists():
        LOG.warning("cached ONNX file %s is unusable (%s): exporting it again", path, problem)
    else:
        LOG.info("exporting the model to %s", path)
    with cache_entry(path, key) as tmp:
        export_onnx(module, tmp, module.example_inputs())
    return path


def pick_provider(device: torch.device, provider: str | None) -> str:
    """Our provider name: the asked one (checked) or the best that ONNX Runtime offers for `device`."""
    available = import_onnxruntime().get_available_providers()
    if provider is not None:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime provider {provider!r}; choose one of {sorted(PROVIDERS)}")
        if PROVIDERS[provider] not in available:
            raise BackendUnavailable(
                f"ONNX Runtime here offers {available}, not {PROVIDERS[provider]}; pip install onnxruntime-gpu "
                "(with CUDA, cuDNN and, for the TensorRT provider, TensorRT libraries) to get it"
            )
        return provider
    if device.type == "cpu":
        return "cpu"
    for name in ("tensorrt", "cuda"):
        if PROVIDERS[name] in available:
            return name
    raise BackendUnavailable(
        f"ONNX Runtime here offers {available}, none for CUDA; pip install onnxruntime-gpu or use device='cpu'"
    )


def provider_options(
    provider: str, device_index: int, precision: str, stream: int | None, trt_cache: Path | None
) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime's `providers` list for our provider name, in order of preference, CPU last.

    On CUDA (`stream`: a cudaStream_t handle, not 0) the CUDA and TensorRT providers run on that
    stream (`user_compute_stream`), so the caller orders them against torch with stream waits instead
    of `torch.cuda.synchronize`. `trt_cache`: where the TensorRT provider keeps its engines (None: no cache).
    """
    cuda = {"device_id": str(device_index)}
    if stream:
        cuda |= {"has_user_compute_stream": "1", "user_compute_stream": str(stream)}
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    trt = cuda | {"trt_fp16_enable": "1" if precision == "fp16" else "0"}
    if trt_cache is not None:
        trt |= {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(trt_cache)}
    # Nodes TensorRT cannot take run on the CUDA provider, on the same device and stream.
    return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """Runs an exported ONNX file; on CUDA inputs and outputs stay on the GPU (I/O binding)."""

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        provider: str | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        ort = import_onnxruntime()
        check_precision(precision)
        self.device = torch.device(device)
        if self.device.type == "cuda":
            require_cuda("the onnxruntime backend on device 'cuda'")
        self.provider = pick_provider(self.device, provider)
        if precision != "fp32" and not (self.provider == "tensorrt" and precision == "fp16"):
            raise BackendUnavailable(
                f"the onnxruntime backend runs fp32, or fp16 through the TensorRT provider; got {precision} with "
                f"provider {self.provider!r}: use precision 'fp32' or the torch / tensorrt backend"
            )
        self.stream: torch.cuda.Stream | None = None
        index, trt_cache = 0, None
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            # A stream of torch's own, not the legacy default stream: ONNX Runtime takes handle 0 for "none given"
            # and would run on a stream of its own again.
            self.stream = torch.cuda.Stream(index)
            if self.provider == "tensorrt" and cache_dir is not None:
                # ONNX Runtime names its engines by the ONNX file's name, graph and compute capability only: a folder
                # per GPU model and ONNX Runtime release keeps GPUs of one architecture from sharing engines.
                gpu = name_part(torch.cuda.get_device_name(index))
                trt_cache = Path(cache_dir) / "tensorrt_ep" / f"{gpu}_ort{ort.__version__}"
                ensure_cache_dir(trt_cache)
        stream = self.stream.cuda_stream if self.stream is not None else None
        providers = provider_options(self.provider, index, precision, stream, trt_cache)
        options = ort.SessionOptions()
        # An explicit thread count (default: the cores this process may use) and no spinning: spinning
        # threads keep a core busy after each run and slowed the torch post-processing that follows
        # (a 2 ms mask took 90 ms; benchmarks/bench_node.py prints the comparison).
        options.intra_op_num_threads = threads or available_cores()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        self.path = Path(onnx_path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.outputs = [(o.name, tuple(o.shape)) for o in self.session.get_outputs()]

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.device.type == "cpu":
            feeds = {
                name: x.detach().float().contiguous().numpy() for name, x in zip(self.input_names, inputs, strict=True)
            }
            return tuple(torch.from_numpy(o) for o in self.session.run(None, feeds))
        binding = self.session.io_binding()
        index = self.device.index
        inputs = [x.to(self.device).float().contiguous() for x in inputs]
        for name, x in zip(self.input_names, inputs, strict=True):
            binding.bind_input(name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
            x.record_stream(self.stream)  # its memory is not handed out again before ONNX Runtime has read it
        outputs = [torch.empty(shape, dtype=torch.float32, device=self.device) for _, shape in self.outputs]
        for (name, shape), y in zip(self.outputs, outputs, strict=True):
            binding.bind_output(name, "cuda", index, np.float32, shape, y.data_ptr())
        # ONNX Runtime runs on self.stream: after the work queued so far on the caller's stream (which made the
        # inputs), and before what the caller queues next; waits on the device, none on the host.
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        self.session.run_with_iobinding(binding)
        current.wait_stream(self.stream)
        return tuple(outputs)
