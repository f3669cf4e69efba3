"""Prepared data on disk: `surround-depth prepare` by 2 processes, read back lazily by `ShardDataset` equal to the
in-RAM preparation, resumed shard by shard, a damaged shard refused by name, and `train` from a shard directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surround_depth_ros.training.config import DatasetConfig
from surround_depth_ros.training.data import open_source, prepare_frameset
from surround_depth_ros.training.shards import ShardDataset, ShardError, write_shard

SIZE = (32, 64)  # (h, w): the tiny training runs' size
SYNTHETIC = ["--dataset", "synthetic", "--seeds", "1", "--frames", "3", "--stride", "4", "--shard-size", "2"]
HALF_STEP = 2.0**-11  # float16's relative rounding


def prepare(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "surround_depth_ros.tools.cli", "prepare", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """3 synthetic frame sets (one with neighbours) in shards of 2, written by 2 processes."""
    out = tmp_path_factory.mktemp("shards") / "synthetic"
    result = prepare(*SYNTHETIC, "--neighbours", "-1", "--size", "64x32", "--out", out, "--processes", 2)
    result.check_returncode()
    assert "3 frame sets in 2 shards at 64x32" in result.stdout
    return out


def test_shards_hold_what_the_in_ram_preparation_gives(shards):
    dataset = ShardDataset(shards, SIZE)
    spec = DatasetConfig(type="synthetic", seeds=[1], frames=3, stride=4, neighbours=[-1])
    expected = [prepare_frameset(f, SIZE, neighbours=n) for f, n in open_source(spec, SIZE).frames]
    assert len(dataset) == len(expected) == 3
    assert dataset.size == SIZE and dataset.camera_names == open_source(spec, SIZE).rig.camera_names
    for index, want in enumerate(expected):
        got = dataset[index]
        assert got.name == want.name
        assert torch.equal(got.images, want.images) and torch.equal(got.adjacent, want.adjacent)  # uint8: exact
        assert got.depth.dtype == torch.float32 and got.depth.shape == want.depth.shape
        torch.testing.assert_close(got.depth, want.depth, rtol=HALF_STEP, atol=0.0)  # float16 metres
        for name in ("intrinsics", "extrinsics", "times"):
            assert torch.equal(getattr(got, name), getattr(want, name))
        torch.testing.assert_close(got.poses, want.poses, rtol=0, atol=0, equal_nan=True)
    batch = dataset.batch([2, 0])
    assert batch.name == f"{expected[2].name}|{expected[0].name}"
    assert batch.images.shape == (2, *expected[0].images.shape) and batch.adjacent.shape[:2] == (2, 1)


def test_sparse_maps_are_stored_sparse_and_read_back_dense(shards, tmp_path):
    spec = DatasetConfig(type="synthetic", seeds=[2], frames=2)
    samples = [prepare_frameset(f, SIZE) for f, _ in open_source(spec, SIZE).frames]
    kept = torch.zeros(SIZE, dtype=torch.bool)
    kept[::5, ::10] = True  # 1 pixel in 50, as projected lidar
    for sample in samples:
        sample.depth = torch.where(kept, sample.depth, torch.zeros(()))
    entry = write_shard(tmp_path, 0, samples)
    assert "depth_pixels.npy" in entry["files"] and "depth.npy" not in entry["files"]
    manifest = json.loads((shards / "manifest.json").read_text()) | {"shards": {"0": entry}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    dataset = ShardDataset(tmp_path)
    for index, sample in enumerate(samples):
        assert int((sample.depth > 0).sum()) > 0
        torch.testing.assert_close(dataset[index].depth, sample.depth, rtol=HALF_STEP, atol=0.0)


def test_a_rerun_rewrites_only_the_missing_shard(shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (copy / "shard-00000").iterdir()}
    shutil.rmtree(copy / "shard-00001")
    result = prepare(*SYNTHETIC, "--neighbours", "-1", "--size", "64x32", "--out", copy, "--processes", 2)
    result.check_returncode()
    assert "(1 prepared, 2 kept from an earlier run)" in result.stdout
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (copy / "shard-00000").iterdir()} == kept
    assert json.loads((copy / "manifest.json").read_text()) == json.loads((shards / "manifest.json").read_text())
    assert len(ShardDataset(copy)) == 3


def test_a_damaged_shard_is_refused_by_name(shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    damaged = copy / "shard-00001" / "images.npy"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    dataset = ShardDataset(copy)  # lazily verified: the intact shard is still readable
    assert dataset[0].images.dtype == torch.uint8
    with pytest.raises(ShardError, match=f"{damaged} does not match the sha256 in the manifest"):
        dataset[2]


def test_prepare_refuses_another_dataset_in_one_line(shards):
    result = prepare("--dataset", "synthetic", "--seeds", "5", "--size", "64x32", "--out", shards)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"surround-depth prepare: error: {shards} holds shards of another dataset, size or shard size; "
        "choose another --out or delete it"
    ]


def test_train_reads_a_shard_directory(shards, tmp_path):
    config = {
        "train": {"type": "synthetic", "shards": str(shards)},
        "model": {"preset": "tiny", "input_size": list(SIZE), "overrides": {"radar": False}},
        "optimizer": {"steps": 2, "batch_size": 2, "warmup_steps": 1},
        "validation": {"every": 2},
        "threads": 1,
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    command = [sys.executable, "-m", "surround_depth_ros.tools.cli", "train", str(tmp_path / "config.yaml")]
    result = subprocess.run([*command, "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "trained 2 steps" in result.stdout
    assert (tmp_path / "run" / "last.pt").is_file()
    assert not (tmp_path / "run" / "data_cache").exists()  # nothing prepared in RAM


@pytest.mark.parametrize(
    ("sample", "args"),
    [
        (("nuscenes_sample",), ["--dataset", "nuscenes"]),
        (("ddad_dgp_sample", "scene_01"), ["--dataset", "ddad"]),
    ],
)
def test_prepare_the_real_samples(shared_data_path, tmp_path, sample, args):
    path = shared_data_path(*sample)
    result = prepare(*args, "--path", path, "--size", "64x32", "--out", tmp_path / "out", "--processes", 2)
    assert result.returncode == 0, result.stderr
    dataset = ShardDataset(tmp_path / "out", SIZE)
    first = dataset[0]
    assert first.images.shape[-2:] == SIZE and first.images.dtype == torch.uint8
    assert int((first.depth > 0).sum()) > 0  # projected lidar, read back from its sparse layout
    assert bool(np.isfinite(first.poses.numpy()).all())
