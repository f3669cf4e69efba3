"""Shared fixtures: the real sensor samples kept beside the repository in ../shared/data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared_data_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sensor sample {path} is absent (tests that need ../shared/data beside the repo skip)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; a test using it skips when it is not there."""
    return _shared_data_path()


@pytest.fixture(scope="session")
def shared_data_path() -> Callable[..., Path]:
    """`shared_data_path("nuscenes_sample", "v1.0-mini")`: a path inside ../shared/data, skipping when absent."""
    return _shared_data_path


def pytest_configure(config: pytest.Config) -> None:
    """Keep DDS discovery on this machine and away from other test runs sharing it.

    Every test process gets its own ROS domain (subprocesses inherit it), and discovery stays on
    the loopback interface: no multicast leaves the machine.
    """
    import os

    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    from surround_depth_ros.ros.dds import use_large_image_transport

    use_large_image_transport()  # camera-sized images over shared memory, in this process and the nodes
    from ros_harness import remove_zombie_shm_files

    # Files of killed processes from earlier runs on this machine: a fresh participant on their domain can take
    # a dead one's port and stay deaf to one topic (seen on a development machine with 2,400 of them).
    remove_zombie_shm_files()


def save_tiny_depth_anything(path: Path):  # noqa: ANN201 - a transformers model
    """A randomly initialised Depth Anything of the real architecture (small Dinov2 backbone), saved to `path`.

    The teacher's code path is real; no pretrained weights can be downloaded here.
    """
    import torch
    import transformers

    torch.manual_seed(0)
    backbone = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        fusion_hidden_size=16,
        neck_hidden_sizes=[8, 16, 32, 32],
        reassemble_hidden_size=32,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    model.save_pretrained(path)
    return model
