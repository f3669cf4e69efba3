"""How many CPU threads torch uses where: one place for the choice, so pre/post-processing and the network do not fight.

Elementwise ops on a frame set's worth of pixels (a few hundred thousand to a few million
floats) are memory-bound: a second thread gains little, and when the cores are busy (ONNX
Runtime's threads, the ROS executor, other processes) an OpenMP parallel region waits for a
thread that is not scheduled. Measured on the 2-core development machine under load: a multiply
over 346k floats took 4.0 ms with 2 threads and 0.03 ms with 1. So pre/post-processing runs with
one thread and the network gets the cores (benchmarks/bench_node.py prints the comparison).
`torch.set_num_threads` acts on the calling thread's OpenMP settings, so the node's worker can
switch without affecting other threads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

POSTPROCESS_THREADS = 1


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads (None: unchanged), restoring the previous count."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
