"""PyTorch backend: eager execution on CPU or CUDA, with fp16/bf16 autocast and channels-last."""

from __future__ import annotations

import torch

from surround_depth_ros.base.threads import torch_threads
from surround_depth_ros.inference.backend import BackendUnavailable, check_precision, require_cuda
from surround_depth_ros.network.student import ExportableStudent


class TorchBackend:
    """Runs the model as it is; autocast keeps numerically sensitive ops (softmax, norms) in fp32.

    On the CPU the forward runs with `threads` torch threads (None: the process's count, by default
    its cores), whatever the calling thread uses, so that post-processing can run with fewer.
    """

    name = "torch"

    def __init__(
        self,
        module: ExportableStudent,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        channels_last: bool | None = None,
        threads: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = check_precision(precision)
        if self.device.type == "cuda":
            require_cuda("the torch backend on device 'cuda'")
        elif precision == "fp16":
            raise BackendUnavailable("fp16 autocast needs a CUDA device; on the CPU use precision 'bf16' or 'fp32'")
        # Channels-last lets cuDNN use tensor-core NHWC kernels; on the CPU it does not pay (see docs).
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        self.threads = (threads or torch.get_num_threads()) if self.device.type == "cpu" else None
        self.module = module.eval().to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        with torch.inference_mode(), autocast, torch_threads(self.threads):
            outputs = self.module(*(x.to(self.device, non_blocking=True) for x in inputs))
        return tuple(o.float() for o in outputs)
