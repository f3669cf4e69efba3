"""Torch-TensorRT backend: torch.export -> torch_tensorrt.dynamo.compile, cached on disk.

TensorRT engines are tied to the GPU, the TensorRT version and the weights, and building one
takes minutes. So each engine is a cache entry (`inference.cache`) whose name carries the
precision, the GPU model and the TensorRT version, and whose JSON sidecar records everything it
was built from (torch, torch_tensorrt and TensorRT versions, GPU name and compute capability, the
weights checksum, the cross-view neighbour table, precision, input shapes and the compile
arguments) and the SHA-256 of the engine file. A cached engine is used only when all of them
match; otherwise it is rebuilt with a log line saying why and a progress display while TensorRT
works. Two GPU models sharing a cache folder each keep their own engine. `surround-depth export
--build-engine` installs an engine ahead of time.

fp16 engines are built from a model and inputs cast to half; `compile_arguments` makes TensorRT
keep those dtypes on every Torch-TensorRT release (see there).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from surround_depth_ros.inference.backend import (
    GRAPH_INPUT,
    PRECISIONS,
    BackendUnavailable,
    check_precision,
    elapsed_progress,
    neighbour_digest,
    require_cuda,
)
from surround_depth_ros.inference.cache import cache_entry, entry_problem, name_part
from surround_depth_ros.network.student import ExportableStudent

LOG = logging.getLogger(__name__)
# 2: compile arguments chosen by the release's signature (fp16 engines of Torch-TensorRT 2.6-2.9 were
# weakly typed fp32 before), the engine's SHA-256 in the sidecar, GPU and TensorRT version in the name.
ENGINE_FORMAT = 2


def import_torch_tensorrt():  # noqa: ANN201 (returns the module)
    """The torch_tensorrt module on a CUDA machine, or BackendUnavailable naming what to install."""
    try:
        import torch_tensorrt
    except ImportError as error:
        raise BackendUnavailable(
            "the tensorrt backend needs Torch-TensorRT: pip install torch-tensorrt (the release matching your torch "
            f"{torch.__version__}; it brings the tensorrt package) on a machine with an NVIDIA GPU"
        ) from error
    require_cuda("the tensorrt backend")
    return torch_tensorrt


def compile_arguments(parameters: Mapping[str, inspect.Parameter], precision: str) -> dict[str, Any]:
    """Keyword arguments of `torch_tensorrt.dynamo.compile` (whose `parameters` these are) for a `precision` engine.

    The graph and inputs are already cast to `precision`. How TensorRT is told to keep them so
    depends on the release (read from its `compile` signature, not its version string):
    - 2.6-2.11 have `use_explicit_typing` (False by default before 2.10): set True, so the graph's
      dtypes decide (TensorRT's strong typing). Left at False on 2.6-2.9 with `enabled_precisions`
      unset, an fp16 graph was built as a weakly typed fp32 engine. `enabled_precisions` must then
      stay unset: these releases reject anything but fp32 in it.
    - 2.4 and 2.5 have no `use_explicit_typing`: weak typing, where `enabled_precisions` lets
      TensorRT choose fp16 kernels.
    - Later releases have neither parameter: strong typing is the only mode, and an argument the
      signature does not name would be swallowed silently by its `**kwargs`.
    """
    arguments: dict[str, Any] = {"min_block_size": 1}
    if "use_explicit_typing" in parameters:
        arguments["use_explicit_typing"] = True
    elif "enabled_precisions" in parameters:
        arguments["enabled_precisions"] = {PRECISIONS[precision]}
    return arguments


def runtime_description(device: torch.device) -> dict[str, str]:
    """The software and GPU an engine built here depends on (needs Torch-TensorRT and CUDA)."""
    torch_tensorrt = import_torch_tensorrt()
    import tensorrt

    properties = torch.cuda.get_device_properties(device)
    return {
        "torch": torch.__version__,
        "torch_tensorrt": torch_tensorrt.__version__,
        "tensorrt": tensorrt.__version__,
        "gpu": properties.name,
        "compute_capability": f"{properties.major}.{properties.minor}",
    }


def engine_signature(
    checksum: str,
    neighbours: str,
    shapes: list[tuple[int, ...]],
    precision: str,
    runtime: Mapping[str, str],
    arguments: Mapping[str, Any],
) -> dict:
    """Everything an engine depends on (`runtime`: `runtime_description`); a cached engine is valid only for an
    equal signature."""
    return {
        "format": ENGINE_FORMAT,
        "graph_input": GRAPH_INPUT,
        **runtime,
        "checksum": checksum,
        "neighbours": neighbours,
        "precision": precision,
        "input_shapes": [list(s) for s in shapes],
        "compile_arguments": {k: sorted(map(str, v)) if isinstance(v, set) else v for k, v in arguments.items()},
    }


def engine_path(cache_dir: str | Path, signature: Mapping[str, Any]) -> Path:
    """Cache file name: precision, GPU model and TensorRT version readable, then a hash of the whole signature."""
    digest = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]
    parts = (signature["precision"], name_part(signature["gpu"]), f"trt{name_part(signature['tensorrt'])}", digest)
    return Path(cache_dir) / f"student_{'_'.join(parts)}.ep"


def _cast_inputs(inputs: tuple[torch.Tensor, ...], precision: str, device: torch.device) -> list[torch.Tensor]:
    dtype = torch.float16 if precision == "fp16" else torch.float32
    return [x.to(device=device, dtype=dtype).contiguous() for x in inputs]


def build_engine(
    module: ExportableStudent, example: list[torch.Tensor], path: Path, signature: dict, arguments: dict[str, Any]
) -> None:
    """Compile `module` for the static shapes of `example` (already cast) and install engine + sidecar at `path`."""
    torch_tensorrt = import_torch_tensorrt()
    model = copy.deepcopy(module).eval().to(example[0].device)
    if signature["precision"] == "fp16":
        model = model.half()
    # Releases before 2.5 name the example inputs `inputs`; later ones `arg_inputs`.
    save_inputs = "arg_inputs" if "arg_inputs" in inspect.signature(torch_tensorrt.save).parameters else "inputs"
    started = time.perf_counter()
    LOG.info("building a %s TensorRT engine for %s (this takes minutes)", signature["precision"], path.name)
    # Engine, then sidecar, each renamed into place whole: an interrupted build leaves no entry.
    with (
        torch.no_grad(),
        elapsed_progress(f"building TensorRT engine {path.name}"),
        cache_entry(path, signature) as tmp,
    ):
        program = torch.export.export(model, tuple(example))
        compiled = torch_tensorrt.dynamo.compile(program, example, **arguments)
        torch_tensorrt.save(compiled, str(tmp), **{save_inputs: example})
    LOG.info("TensorRT engine %s built in %.0f s", path, time.perf_counter() - started)


class TensorRTBackend:
    """Loads the verified cached engine for this model, GPU and software, building it first when needed."""

    name = "tensorrt"

    def __init__(
        self,
        module: ExportableStudent,
        inputs: tuple[torch.Tensor, ...],
        checksum: str,
        cache_dir: str | Path,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
    ) -> None:
        check_precision(precision)
        torch_tensorrt = import_torch_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise BackendUnavailable(f"the tensorrt backend runs on CUDA devices, not {self.device}")
        if precision not in ("fp32", "fp16"):
            raise BackendUnavailable(f"the tensorrt backend builds fp32 or fp16 engines, not {precision}")
        self.precision = precision
        example = _cast_inputs(inputs, precision, self.device)
        arguments = compile_arguments(inspect.signature(torch_tensorrt.dynamo.compile).parameters, precision)
        shapes = [tuple(x.shape) for x in example]
        runtime = runtime_description(self.device)
        signature = engine_signature(checksum, neighbour_digest(module), shapes, precision, runtime, arguments)
        self.path = path = engine_path(cache_dir, signature)
        problem = entry_problem(path, signature)
        if problem is None:
            try:
                self.module = torch.export.load(str(path)).module()
                return
            except Exception as error:  # noqa: BLE001 - a damaged file fails in zipfile, pickle or torch
                problem = f"unreadable cached engine ({type(error).__name__}: {str(error)[:200]})"
        if path.exists():
            LOG.warning("rebuilding TensorRT engine %s: %s", path, problem)
        build_engine(module, example, path, signature, arguments)
        self.module = torch.export.load(str(path)).module()

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            outputs = self.module(*_cast_inputs(inputs, self.precision, self.device))
        return tuple(o.float() for o in outputs)
