"""Semi-SMD semi-supervised training: unlabeled sequences, capture-time-exact poses, pose network, mixing, bags.

The synthetic world renders exact images and depth for a staggered rig on a moving car, so the
photometric loss at ground-truth depth measures how well the geometry is modelled: the lower it
is there, the less the loss pulls a correct depth away from the truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from surround_depth_ros.bag.writer import write_bag
from surround_depth_ros.datasets.synthetic import SyntheticReader
from surround_depth_ros.losses import surround_photometric_loss
from surround_depth_ros.network.pose import PoseNet, extrinsic_anchored_poses, se3_exp
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.tools import train as train_tool
from surround_depth_ros.training.config import ConfigError, config_from_dict, load_config
from surround_depth_ros.training.data import ColourJitter, PreparedDataset, prepare_frameset, with_neighbours
from surround_depth_ros.training.trainer import Trainer

SIZE = (64, 112)


@pytest.fixture(scope="module")
def street():
    """A frame set of a synthetic street with its neighbours one frame (1/12 s) before and after."""
    reader = SyntheticReader(default_rig(), 7, 4, image_size=SIZE[::-1], radar=False, lidar=False)
    return prepare_frameset(reader[1], SIZE, neighbours=[reader[0], reader[2]]), reader.rig


def photometric_at_truth(sample, rig, poses, images=None, adjacent=None) -> float:
    images = sample.images.float()[None] / 255 if images is None else images
    adjacent = sample.adjacent.float()[None] / 255 if adjacent is None else adjacent
    return surround_photometric_loss(
        images,
        sample.depth[None],
        sample.intrinsics[None],
        sample.extrinsics[None],
        torch.tensor(rig.adjacency()),
        [adjacent[:, 0], adjacent[:, 1]],
        poses[:, 0],
        [poses[:, 1], poses[:, 2]],
    ).item()


def test_capture_time_poses_and_clean_images_lower_the_loss_at_ground_truth(street):
    sample, rig = street
    exact = sample.poses[None]
    assert torch.isfinite(exact).all() and torch.allclose(exact[0, 0, 0], torch.eye(4), atol=1e-5)
    # as trained before: every camera of a set taken at its first camera's instant
    one_instant = exact[:, :, :1].expand_as(exact)
    compensated, ignored = photometric_at_truth(sample, rig, exact), photometric_at_truth(sample, rig, one_instant)
    assert compensated < ignored
    jitter = ColourJitter(0.2)
    jittered = jitter(sample.images[None], torch.Generator().manual_seed(0))
    jittered_adjacent = jitter(sample.adjacent[None].flatten(1, 2), torch.Generator().manual_seed(1)).unflatten(
        1, (2, 6)
    )
    assert compensated < photometric_at_truth(sample, rig, exact, jittered, jittered_adjacent)


def test_se3_exp_is_the_matrix_exponential_and_the_anchored_pose_is_consistent():
    generator = torch.Generator().manual_seed(0)
    twists = torch.randn(5, 6, generator=generator, dtype=torch.float64) * torch.tensor([0.5] * 3 + [2.0] * 3)
    twists[0, :3] = 1e-5  # the small-angle branch
    algebra = torch.zeros(5, 4, 4, dtype=torch.float64)
    algebra[:, 0, 1], algebra[:, 0, 2], algebra[:, 1, 2] = -twists[:, 2], twists[:, 1], -twists[:, 0]
    algebra[:, 1, 0], algebra[:, 2, 0], algebra[:, 2, 1] = twists[:, 2], -twists[:, 1], twists[:, 0]
    algebra[:, :3, 3] = twists[:, 3:]
    torch.testing.assert_close(se3_exp(twists), torch.linalg.matrix_exp(algebra), rtol=1e-9, atol=1e-9)

    torch.manual_seed(0)
    net = PoseNet()
    T_base_ref = torch.from_numpy(default_rig().extrinsics()[0]).float()[None]
    times = torch.tensor([[[0.0, 0.01, 0.02], [-0.08, -0.07, -0.06], [0.08, 0.09, 0.10]]])
    images = torch.rand(1, 3, 3, 32, 48, generator=generator)
    poses = extrinsic_anchored_poses(net, images[:, 0], images[:, 1:], times, T_base_ref)
    assert poses.shape == (1, 3, 3, 4, 4)
    torch.testing.assert_close(poses[0, 0, 0], torch.eye(4), atol=1e-6, rtol=0)  # the world is "base now"
    # one constant velocity: the motion over 0.01 s composes to the motion over 0.02 s
    torch.testing.assert_close(poses[0, 0, 1] @ poses[0, 0, 1], poses[0, 0, 2], atol=1e-5, rtol=1e-5)
    poses.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_unlabeled_synthetic_withholds_depth_and_mixes_by_ratio(tmp_path):
    base = {
        "train": {"type": "synthetic", "seeds": [3], "frames": 2, "stride": 3, "neighbours": [-1, 1]},
        "unlabeled": {
            "type": "synthetic",
            "seeds": [4],
            "frames": 3,
            "stride": 3,
            "neighbours": [-1, 1],
            "labeled": False,
        },
        "unlabeled_ratio": 0.5,
        "model": {"preset": "tiny", "input_size": list(SIZE), "overrides": {"radar": False, "temporal": True}},
        "losses": {"silog": 1.0, "bin_centre": 0.1, "photometric": 1.0},
        "optimizer": {"steps": 2, "batch_size": 2, "warmup_steps": 1},
        "validation": {"every": 2},
        "log_every": 1,
        "threads": 1,
        "device": "cpu",
        "out_dir": str(tmp_path / "run"),
        "data_cache_dir": str(tmp_path / "cache"),
    }
    trainer = Trainer(config_from_dict(base, "test"))
    assert (trainer.unlabeled_set.depth == 0).all() and (trainer.train_set.depth > 0).any()
    assert trainer.unlabeled_set.adjacent.shape[1:3] == (2, 6) and trainer.pose_net is None  # synthetic: exact poses
    batch = trainer.batch(0)
    assert batch.images.shape[0] == 2 and (batch.depth[0] > 0).any() and (batch.depth[1] == 0).all()
    # the temporal attention reads the previous frame: change that frame and the prediction changes
    depth, inputs = trainer.loss_inputs(batch, 0)
    assert len(inputs.adjacent_images) == 2 and inputs.poses.shape == (2, 6, 4, 4)
    altered = dataclasses.replace(batch, adjacent=batch.adjacent.clone())
    altered.adjacent[:, 0] = 255 - altered.adjacent[:, 0]
    assert not torch.allclose(depth, trainer.loss_inputs(altered, 0)[0])
    result = trainer.train()
    assert result.step == 2 and all(np.isfinite(h["photometric"]) for h in trainer.history)
    for change, message in (
        ({"unlabeled_ratio": 1.0}, r"unlabeled_ratio: 1.0 is outside the allowed range \(0, 1\)"),
        ({"unlabeled": {**base["unlabeled"], "neighbours": [1]}}, "unlabeled.neighbours: must equal train.neighbours"),
        ({"train": {**base["train"], "neighbours": [0, 1]}}, "distinct non-zero"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({**base, **change}, "test")


def test_sliding_window_neighbours():
    pairs = list(with_neighbours(iter(range(6)), [-2, 1]))
    assert pairs == [(2, [0, 3]), (3, [1, 4]), (4, [2, 5])]


@pytest.mark.parametrize("odometry", [True, False])
def test_train_command_runs_a_semi_supervised_config_from_a_bag_without_lidar(tmp_path, odometry):
    reader = SyntheticReader(default_rig(), 11, 6, image_size=SIZE[::-1], radar=False, lidar=False)
    frames = [f if odometry else dataclasses.replace(f, T_world_base=None) for f in reader]
    write_bag(frames, tmp_path / "drive", progress=False)
    config = {
        "train": {"type": "rosbag", "path": str(tmp_path / "drive"), "labeled": False, "neighbours": [-1, 1]},
        "model": {"preset": "tiny", "input_size": list(SIZE), "overrides": {"radar": False}},
        "losses": {"photometric": 1.0},
        "optimizer": {"steps": 2, "batch_size": 2, "warmup_steps": 1},
        "validation": {"every": 2},
        "log_every": 1,
        "threads": 1,
        "device": "cpu",
        "out_dir": str(tmp_path / "run"),
        "data_cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "semi.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = __import__("argparse").ArgumentParser()
    train_tool.add_arguments(parser)
    assert train_tool.run(parser.parse_args([str(path)])) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert ("pose_net" in state) == (not odometry)  # no odometry: the extrinsic-anchored pose network
    prepared = PreparedDataset.load(next((tmp_path / "cache").glob("rosbag_*.pt")), _key(config, path))
    assert prepared is not None and len(prepared) == 4 and (prepared.depth == 0).all()
    assert torch.isnan(prepared.poses).any() != odometry


def _key(config: dict, path) -> str:
    from surround_depth_ros.training.data import dataset_key

    return dataset_key(load_config(path).train, SIZE)
