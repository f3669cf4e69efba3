"""Host memory reused for asynchronous uploads, guarded so that a copy still reading it is never overwritten."""

from __future__ import annotations

import torch


class StagingBuffer:
    """A uint8 host buffer of one shape that is filled, then uploaded to `device`, once per frame set.

    On CUDA it is pinned, so that `upload` only queues the copy: the copy reads the buffer after
    `upload` has returned. Filling it with the next frame set before that copy has run would put the
    next images into this set's tensors on the GPU. So each upload records a CUDA event after its
    copy, and `host()` waits for that event before handing the buffer out again; it waits only when
    the device is a whole frame set behind, and never for the device as a whole.

    On the CPU there is nothing to copy: `upload` returns the buffer itself and `host()` never waits.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.device = device
        self.buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=device.type == "cuda")
        self._copied: torch.cuda.Event | None = None  # recorded after the last upload's copy

    def host(self) -> torch.Tensor:
        """The buffer, to fill: once the device has finished reading it for the previous upload."""
        if self._copied is not None:
            self._copied.synchronize()
            self._copied = None
        return self.buffer

    def upload(self) -> torch.Tensor:
        """The buffer's contents on the device: a copy queued on the current stream on CUDA, the buffer on the CPU."""
        if self.device.type != "cuda":
            return self.buffer
        on_device = self.buffer.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record(torch.cuda.current_stream(self.device))
        return on_device
