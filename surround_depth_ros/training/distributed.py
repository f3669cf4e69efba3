"""Multi-process training pieces: the process group under torchrun, BatchNorm over every share, batch shares.

N processes train what one process trains with the same global batch only when BatchNorm sees
the whole batch: torch's SyncBatchNorm runs on GPUs only, so `GlobalBatchNorm2d` does the same
with a differentiable all-reduce of the per-channel sums, which works on any backend (gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import torch
from torch import nn

from surround_depth_ros.training.data import Sample


def distributed_context(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device) under torchrun (RANK / WORLD_SIZE set), initialising the process group once;
    (0, 1, device) otherwise. CUDA processes use NCCL and their LOCAL_RANK's GPU, CPU processes gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all processes' shares).

    Sums of x and x^2 and the element count are all-reduced with autograd, so gradients are those
    of one BatchNorm over the whole batch; running statistics follow the global batch. Same state
    dict as nn.BatchNorm2d, so checkpoints load into the plain model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        channels = x.shape[1]
        count = x.new_tensor([x.numel() / channels])
        stats = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count]))
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean * mean).clamp(min=0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * total / (total - 1).clamp(min=1), momentum)
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every nn.BatchNorm2d replaced (in place) by a GlobalBatchNorm2d holding the same state."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(child.running_mean.device)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child)
    return module


class DictOutput(nn.Module):
    """The student returning its `StudentOutput` as a dict: DistributedDataParallel finds the output tensors
    (to know which parameters this step leaves unused) only in dicts, lists and tuples, not dataclasses."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: object, **kwargs: object) -> dict:
        return dict(vars(self.model(*args, **kwargs)))


def select(batch: Sample, rows: Sequence[int]) -> Sample:
    """The frame sets `rows` of a batch (this process's share of a global batch)."""
    index = torch.as_tensor(list(rows), dtype=torch.long)
    names = batch.name.split("|")
    values = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch) if f.name != "name"}
    return Sample(
        "|".join(names[i] for i in index.tolist()), **{k: None if v is None else v[index] for k, v in values.items()}
    )
