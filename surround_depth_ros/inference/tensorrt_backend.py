"""Torch-TensorRT backend: torch.export -> torch_tensorrt.dynamo.compile, cached on disk.

TensorRT engines are tied to the GPU, the TensorRT version and the weights, and building one
takes minutes. So each engine file has a JSON sidecar recording torch, torch_tensorrt and
TensorRT versions, GPU name and compute capability, the weights checksum, the cross-view
neighbour table (a constant of the graph), precision and input shapes; a cached engine is used
only when all of them match, otherwise it is rebuilt with a log line saying what changed and a
progress display while TensorRT works. `build_engine` installs an engine ahead of time
(`surround-depth export --build-engine`).

fp16 is built from a model and inputs cast to half: with TensorRT's strong (explicit) typing
(Torch-TensorRT >= 2.9, `use_explicit_typing` on by default) the dtypes of the graph decide;
older releases (Jetson's 2.8) also get `enabled_precisions={torch.float16}`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from surround_depth_ros.atomic_file import atomic_path
from surround_depth_ros.inference.backend import (
    GRAPH_INPUT,
    BackendUnavailable,
    check_precision,
    neighbour_digest,
    require_cuda,
)
from surround_depth_ros.network.student import ExportableStudent

LOG = logging.getLogger(__name__)
ENGINE_FORMAT = 1


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


def engine_signature(
    checksum: str, neighbours: str, shapes: list[tuple[int, ...]], precision: str, device: torch.device
) -> dict:
    """Everything an engine depends on; a cached engine is valid only for an equal signature."""
    torch_tensorrt = import_torch_tensorrt()
    import tensorrt

    properties = torch.cuda.get_device_properties(device)
    return {
        "format": ENGINE_FORMAT,
        "graph_input": GRAPH_INPUT,
        "torch": torch.__version__,
        "torch_tensorrt": torch_tensorrt.__version__,
        "tensorrt": tensorrt.__version__,
        "gpu": properties.name,
        "compute_capability": f"{properties.major}.{properties.minor}",
        "checksum": checksum,
        "neighbours": neighbours,
        "precision": precision,
        "input_shapes": [list(s) for s in shapes],
    }


def engine_path(cache_dir: str | Path, signature: dict) -> Path:
    """Cache file name: readable prefix + hash of the shape/precision/weights/adjacency part of the signature."""
    parts = ("graph_input", "checksum", "neighbours", "precision", "input_shapes")
    key = json.dumps({k: signature[k] for k in parts}, sort_keys=True)
    return Path(cache_dir) / f"student_{signature['precision']}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.ep"


@contextlib.contextmanager
def elapsed_progress(description: str) -> Iterator[None]:
    """A tqdm line showing the elapsed time while a long step with no progress of its own runs."""
    done = threading.Event()
    with tqdm(total=None, desc=description, bar_format="{desc}: {elapsed} elapsed") as bar:

        def tick() -> None:
            while not done.wait(1.0):
                bar.update(0)
                bar.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def _cast_inputs(inputs: tuple[torch.Tensor, ...], precision: str, device: torch.device) -> list[torch.Tensor]:
    dtype = torch.float16 if precision == "fp16" else torch.float32
    return [x.to(device=device, dtype=dtype).contiguous() for x in inputs]


def build_engine(
    module: ExportableStudent,
    inputs: tuple[torch.Tensor, ...],
    checksum: str,
    cache_dir: str | Path,
    precision: str = "fp16",
    device: str | torch.device = "cuda",
) -> Path:
    """Compile `module` for the static shapes of `inputs` and save engine + sidecar into `cache_dir`."""
    torch_tensorrt = import_torch_tensorrt()
    if precision not in ("fp32", "fp16"):
        raise BackendUnavailable(f"the tensorrt backend builds fp32 or fp16 engines, not {precision}")
    device = torch.device(device)
    example = _cast_inputs(inputs, precision, device)
    signature = engine_signature(
        checksum, neighbour_digest(module), [tuple(x.shape) for x in example], precision, device
    )
    path = engine_path(cache_dir, signature)
    model = copy.deepcopy(module).eval().to(device)
    if precision == "fp16":
        model = model.half()
    settings: dict = {"min_block_size": 1}
    if "use_explicit_typing" not in inspect.signature(torch_tensorrt.dynamo.compile).parameters:
        settings["enabled_precisions"] = {torch.float16} if precision == "fp16" else {torch.float32}
    # Releases before 2.5 name the example inputs `inputs`; later ones `arg_inputs`.
    save_inputs = "arg_inputs" if "arg_inputs" in inspect.signature(torch_tensorrt.save).parameters else "inputs"
    started = time.perf_counter()
    LOG.info("building a %s TensorRT engine for %s on %s (this takes minutes)", precision, path.name, signature["gpu"])
    # Engine, then sidecar, each renamed into place whole: an interrupted build leaves no entry.
    with torch.no_grad(), elapsed_progress(f"building TensorRT engine {path.name}"), atomic_path(path) as tmp:
        program = torch.export.export(model, tuple(example))
        compiled = torch_tensorrt.dynamo.compile(program, example, **settings)
        torch_tensorrt.save(compiled, str(tmp), **{save_inputs: example})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(signature, indent=2))
    LOG.info("TensorRT engine %s built in %.0f s", path, time.perf_counter() - started)
    return path


def cached_engine_mismatch(path: Path, signature: dict) -> str | None:
    """Why the cached engine at `path` cannot be used (None when it can)."""
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        return "no cached engine"
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return f"unreadable sidecar {sidecar}"
    changed = [f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in signature.items() if recorded.get(k) != v]
    return "; ".join(changed) or None


class TensorRTBackend:
    """Loads the cached engine for this model, GPU and software, building it first when needed."""

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
        import_torch_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise BackendUnavailable(f"the tensorrt backend runs on CUDA devices, not {self.device}")
        self.precision = precision
        example = _cast_inputs(inputs, precision, self.device)
        shapes = [tuple(x.shape) for x in example]
        signature = engine_signature(checksum, neighbour_digest(module), shapes, precision, self.device)
        self.path = path = engine_path(cache_dir, signature)
        reason = cached_engine_mismatch(path, signature)
        if reason is None:
            try:
                self.module = torch.export.load(str(path)).module()
                return
            except Exception as error:  # noqa: BLE001 - a damaged file fails in zipfile, pickle or torch
                reason = f"unreadable cached engine ({type(error).__name__}: {str(error)[:200]})"
        LOG.warning("rebuilding TensorRT engine %s: %s", path, reason)
        build_engine(module, inputs, checksum, cache_dir, precision, self.device)
        self.module = torch.export.load(str(path)).module()

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            outputs = self.module(*_cast_inputs(inputs, self.precision, self.device))
        return tuple(o.float() for o in outputs)
