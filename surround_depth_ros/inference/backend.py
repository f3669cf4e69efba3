"""What every inference backend offers, the error for one that cannot run here, and progress for long steps."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import torch
from tqdm import tqdm

if TYPE_CHECKING:
    from surround_depth_ros.network.student import ExportableStudent

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# What an exported graph's image input is: RGB in [0, 1], normalised inside the graph. Part of every
# cache key, so that a graph cached before the network normalised its own input (it takes
# normalised images) is never run with raw ones.
GRAPH_INPUT = "rgb01"


class BackendUnavailable(RuntimeError):
    """The asked-for backend (or its device / precision) is not installed or not usable here.

    The message names what to install or which option to change.
    """


class Backend(Protocol):
    """Runs `ExportableStudent`'s inputs (in `input_names` order) to its outputs, as float32."""

    name: str
    device: torch.device

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]: ...


def check_precision(precision: str) -> torch.dtype:
    """The torch dtype of a precision name, with a clear error for unknown names."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def require_cuda(what: str) -> None:
    """Raise BackendUnavailable when this torch has no usable CUDA device."""
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"{what} needs an NVIDIA GPU with a CUDA build of PyTorch, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}); install a CUDA wheel of torch or use device='cpu'"
        )


def neighbour_digest(module: ExportableStudent) -> str:
    """SHA-256 of the neighbour table and mask an exported graph bakes in: part of every cache key."""
    digest = hashlib.sha256()
    for buffer in (module.table, module.mask):
        digest.update(str(tuple(buffer.shape)).encode())
        digest.update(buffer.cpu().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def elapsed_progress(description: str, delay_s: float = 1.0) -> Iterator[None]:
    """A tqdm line showing the elapsed time while a step with no progress of its own runs (a TensorRT build).

    Shown only once the step has taken `delay_s`, so that a warm-up of milliseconds prints nothing.
    """
    done = threading.Event()
    with tqdm(total=None, desc=description, bar_format="{desc}: {elapsed} elapsed", delay=delay_s) as bar:

        def tick() -> None:
            while not done.wait(1.0):
                bar.update(0)  # redraws once `delay_s` has passed

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
