"""The source registry and the FrameSource protocol: every source type opens from a spec and behaves alike."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from sample_framesets import make_framesets

from surround_depth_ros.bag import write_bag
from surround_depth_ros.datasets.registry import SOURCE_TYPES, open_frame_source
from surround_depth_ros.sensors.frameset import FrameSet, FrameSource
from surround_depth_ros.training.config import DatasetConfig
from surround_depth_ros.training.data import load_dataset, open_source

N_BAG_FRAMES = 4


@pytest.fixture(scope="module")
def bag_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sources") / "drive"
    write_bag(make_framesets(N_BAG_FRAMES), path, progress=False)
    return path


def _synthetic(_shared: Callable[..., Path], _bag: Path) -> tuple[DatasetConfig, dict]:
    spec = DatasetConfig(type="synthetic", seeds=[1, 2], frames=2, stride=2, render_size=[32, 18])
    return spec, {"lidar": False}


def _nuscenes(shared: Callable[..., Path], _bag: Path) -> tuple[DatasetConfig, dict]:
    return DatasetConfig(type="nuscenes", path=str(shared("nuscenes_sample"))), {}


def _ddad(shared: Callable[..., Path], _bag: Path) -> tuple[DatasetConfig, dict]:
    return DatasetConfig(type="ddad", path=str(shared("ddad_dgp_sample", "scene_01"))), {}


def _rosbag(_shared: Callable[..., Path], bag: Path) -> tuple[DatasetConfig, dict]:
    return DatasetConfig(type="rosbag", path=str(bag)), {}


SPECS = {"synthetic": _synthetic, "nuscenes": _nuscenes, "ddad": _ddad, "rosbag": _rosbag}


def test_every_registered_type_has_a_spec_here():
    assert tuple(SPECS) == SOURCE_TYPES


@pytest.mark.parametrize("source_type", SOURCE_TYPES)
def test_every_source_type_opens_as_a_frame_source(source_type, shared_data_path, bag_path):
    spec, options = SPECS[source_type](shared_data_path, bag_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the DGP test scene's stamps lie past 2262; the reader warns about it
        source = open_frame_source(spec, **options)
    assert isinstance(source, FrameSource)
    frames = list(source)
    assert len(frames) == len(source) > 0  # the bag's count is a bound; a clean bag meets it
    assert all(isinstance(frame, FrameSet) for frame in frames)
    assert frames[0].rig.camera_names == source.rig.camera_names
    for got, want in zip(frames[0].rig.cameras, source.rig.cameras, strict=True):
        assert (got.width, got.height) == (want.width, want.height)


def test_synthetic_worlds_take_every_stride_th_frame_of_each_seed():
    spec = DatasetConfig(type="synthetic", seeds=[1, 2], frames=2, stride=3, render_size=[32, 18], neighbours=[-1])
    source = open_frame_source(spec, lidar=False, radar=False)
    assert [frame.name for frame in source] == [f"synthetic-{s}-{i:06d}" for s in (1, 2) for i in (1, 4)]
    assert source.rig.cameras[0].width == 32


def test_unknown_or_incomplete_specs_are_named():
    with pytest.raises(ValueError, match=r"unknown source type 'kitti'; known: synthetic, nuscenes, ddad, rosbag"):
        open_frame_source(DatasetConfig(type="kitti"))
    with pytest.raises(ValueError, match="a rosbag source needs a path"):
        open_frame_source(DatasetConfig(type="rosbag"))


def test_per_sample_rigs_stay_reachable(shared_data_path):
    from surround_depth_ros.datasets.ddad import DGPSceneReader
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    nuscenes = NuScenesReader(shared_data_path("nuscenes_sample"))
    assert nuscenes.rig.camera_names == nuscenes.rig_of(nuscenes.sample_tokens[0]).camera_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ddad = DGPSceneReader(shared_data_path("ddad_dgp_sample", "scene_01"))
    assert [c.name for c in ddad.rig.cameras] == [c.name for c in ddad.rig_of(len(ddad) - 1).cameras]


def test_training_opens_a_bag_with_neighbours_and_a_limit(bag_path):
    """The training path over a bag: counts from the reader's len(), neighbours trim the ends, limit caps."""
    spec = DatasetConfig(type="rosbag", path=str(bag_path), neighbours=[-1, 1], labeled=False)
    frames = open_source(spec, (16, 20))
    pairs = list(frames.frames)
    assert frames.count == len(pairs) == N_BAG_FRAMES - 2
    assert [len(neighbours) for _, neighbours in pairs] == [2] * (N_BAG_FRAMES - 2)
    limited = DatasetConfig(type="rosbag", path=str(bag_path), limit=1, labeled=False)
    dataset = load_dataset(limited, (16, 20))
    assert len(dataset) == 1 and dataset.camera_names == make_framesets(1)[0].rig.camera_names
