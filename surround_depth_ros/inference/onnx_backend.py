"""ONNX export and the ONNX Runtime backend (CPU, CUDA and TensorRT execution providers).

Export uses the TorchScript-based `torch.onnx.export(dynamo=False)` at opset 17: it needs no
extra package (the dynamo exporter needs onnxscript) and handles every op of the student.
Shapes are static: the file is built for one number of views and one input size.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from surround_depth_ros.atomic_file import atomic_path
from surround_depth_ros.inference.backend import BackendUnavailable, check_precision, require_cuda
from surround_depth_ros.network.student import ExportableStudent
from surround_depth_ros.threads import available_cores

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


def onnx_file_problem(path: str | Path) -> str | None:
    """Why the ONNX file at `path` cannot be used (truncated, not ONNX, invalid), or None when it can."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as error:  # noqa: BLE001 - protobuf decode errors, ValidationError, OSError alike
        return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
    return None


def cached_onnx(module: ExportableStudent, path: str | Path) -> Path:
    """The ONNX file of `module` at `path`: exported when missing, exported again when unusable.

    A cache entry can be damaged outside this process (a copy cut short, an older version that
    wrote in place and was killed); it is rebuilt with a warning, never trusted, never fatal.
    """
    path = Path(path)
    if not path.is_file():
        LOG.info("exporting the model to %s", path)
    else:
        problem = onnx_file_problem(path)
        if problem is None:
            return path
        LOG.warning("cached ONNX file %s is unusable (%s): exporting it again", path, problem)
    return export_onnx(module, path, module.example_inputs())


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
        providers: list = ["CPUExecutionProvider"]
        if self.provider == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        if self.provider == "tensorrt":
            trt_options = {"device_id": self.device.index or 0, "trt_fp16_enable": precision == "fp16"}
            if cache_dir is not None:
                trt_options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
            providers[:0] = [("TensorrtExecutionProvider", trt_options), ("CUDAExecutionProvider", {})]
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
        index = self.device.index or 0
        inputs = [x.to(self.device).float().contiguous() for x in inputs]
        for name, x in zip(self.input_names, inputs, strict=True):
            binding.bind_input(name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        outputs = [torch.empty(shape, dtype=torch.float32, device=self.device) for _, shape in self.outputs]
        for (name, shape), y in zip(self.outputs, outputs, strict=True):
            binding.bind_output(name, "cuda", index, np.float32, shape, y.data_ptr())
        torch.cuda.synchronize(self.device)  # ONNX Runtime reads the inputs on its own stream
        self.session.run_with_iobinding(binding)
        return tuple(outputs)
