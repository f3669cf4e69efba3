"""The fused cloud's device path, depth maps to packed rows, never waits for the device: a check for a CUDA machine.

`cloud_without_host_sync` runs `CloudFusion.packed` once (the rig geometry and the camera-id table are
copied from the host once per rig: syncs, but not per set), then again inside `guard`,
by default `torch.cuda.set_sync_debug_mode("error")`, under which every host sync raises: a size
only the data gives (nonzero, masked_select, boolean indexing, unique), a value read into Python
(.item(), int()), a copy to or from pageable host memory. Reading the point count afterwards is
the set's one sync, which `cloud` does. test/test_fusion.py runs the same function on meta tensors.

    .venv/bin/python benchmarks/gpu_sync_check.py   # every cloud option, camera-sized and network-sized maps
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch

from surround_depth_ros.core.fusion import CloudFusion, CloudOptions, PackedCloud
from surround_depth_ros.sensors.pointcloud import FUSED_CLOUD_DTYPE
from surround_depth_ros.sensors.rig import default_rig


@contextmanager
def cuda_syncs_raise() -> Iterator[None]:
    """Inside, a CUDA host sync raises (`torch.cuda.set_sync_debug_mode("error")`); the previous mode after."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def cloud_without_host_sync(
    fusion: CloudFusion,
    *args: object,
    guard: Callable[[], AbstractContextManager[object]] = cuda_syncs_raise,
    **kwargs: object,
) -> PackedCloud:
    """`fusion.packed(*args, **kwargs)` under `guard`, after a first call with the same inputs caches the rig."""
    fusion.packed(*args, **kwargs)
    with guard():
        return fusion.packed(*args, **kwargs)


def main() -> int:
    if not torch.cuda.is_available():
        print(
            f"gpu_sync_check needs CUDA; torch {torch.__version__} here has none. Nothing was checked.", file=sys.stderr
        )
        return 2
    rng = np.random.default_rng(0)
    rig = default_rig().scaled(1600, 900)
    images = torch.as_tensor(rng.integers(0, 256, (6, 900, 1600, 3), dtype=np.uint8), device="cuda")
    options = (
        CloudOptions(),
        CloudOptions(overlap="keep_all", stride=2),
        CloudOptions(min_confidence=0.3, max_range_m=25.0, voxel_size_m=0.2),
    )
    for maps in (rig, rig.scaled(224, 128)):
        depth = torch.rand((6, maps.cameras[0].height, maps.cameras[0].width), device="cuda") * 40
        inputs = (depth, maps.intrinsics(), maps.extrinsics(), torch.rand_like(depth), images, [5, 4, 3, 2, 1, 0])
        for option in options:
            rows, count = cloud_without_host_sync(CloudFusion(option, device="cuda"), *inputs, rig.intrinsics())
            cloud = rows[: int(count) * FUSED_CLOUD_DTYPE.itemsize].cpu()
            on_cpu = CloudFusion(option).cloud(
                *(t.cpu() if torch.is_tensor(t) else t for t in inputs), rig.intrinsics()
            )
            print(
                f"{maps.cameras[0].width}x{maps.cameras[0].height} {option}: no host sync before the count, "
                f"{int(count)} points, the CPU's bytes: {torch.equal(cloud, on_cpu)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
