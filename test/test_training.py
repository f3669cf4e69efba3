"""Training: config validation, geometry-consistent data preparation, the loop (loss falls), checkpoints, resume,
and the teacher paths (own-family checkpoint and a tiny random Depth Anything) wired from the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import save_tiny_depth_anything
from sample_framesets import small_rig

from surround_depth_ros.base import geometry
from surround_depth_ros.network.checkpoint import load_checkpoint
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.training.config import ConfigError, config_from_dict, load_config
from surround_depth_ros.training.data import PreparedDataset, min_pool_depth, prepare_frameset, resize_images
from surround_depth_ros.training.trainer import Trainer, batch_indices, lr_factor

BASE = {
    "train": {"type": "synthetic", "seeds": [1], "frames": 2, "stride": 4},
    "model": {"preset": "tiny", "input_size": [32, 64], "overrides": {"radar": False}},
    "optimizer": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "lr": 0.003},
    "validation": {"every": 3},
    "log_every": 1,
    "threads": 1,
}


def make_config(tmp, **changes):
    data = {**BASE, "data_cache_dir": str(tmp / "data"), "out_dir": str(tmp / "run"), **changes}
    return config_from_dict(data, "test")


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """Prepared synthetic frame sets shared by the tests of this module (rendered once)."""
    root = tmp_path_factory.mktemp("training")
    Trainer(make_config(root))  # renders and caches the training set
    return root


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimiser": {}}, r"optimiser: unknown key \(did you mean 'optimizer'\?\)"),
        ({"optimizer": {"steps": 0}}, "optimizer.steps: must be > 0, got 0"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr: expected float, got str 'fast'"),
        ({"optimizer": {"batch_size": True}}, "optimizer.batch_size: expected int, got bool True"),
        ({"optimizer": {"min_lr_ratio": 2}}, r"optimizer.min_lr_ratio: 2.0 is outside the allowed range \[0, 1\]"),
        ({"model": {"preset": "huge"}}, r"model.preset: 'huge' is not one of \["),
        ({"model": {"preset": "tiny", "overrides": {"n_bins_typo": 3}}}, "model.overrides: "),
        ({"model": {"input_size": [16, 64]}}, r"model.input_size: expected \[height, width\], each >= 32"),
        ({"losses": {"silog": 1.0, "sillog": 1.0}}, "losses: unknown loss 'sillog'"),
        (
            {"losses": {"silog": {"weight": 1.0, "lambda": 2}}},
            r"losses: loss 'silog': unknown parameter\(s\) \['lambda'\]",
        ),
        ({"losses": {}}, "losses: needs at least 1 entries, got 0"),
        ({"val": {"type": "synthetic", "seeds": [1]}}, "val.seeds: .* held-out scenes must come from other seeds"),
        ({"val": {"type": "nuscenes"}}, "val.path: a nuscenes dataset needs a path"),
        ({"train": {"type": "kitti", "path": "x"}}, r"train.type: 'kitti' is not one of \['synthetic'"),
        ({"train": {"frames": 2.5}}, "train.frames: expected int, got float 2.5"),
        ({"teacher": {"type": "own_family"}}, "teacher.checkpoint: required for the own_family teacher"),
        ({"teacher": {"checkpoint": "x.pt"}}, "teacher: missing key 'type'"),
        ({"validation": {"min_depth": 90.0}}, r"validation.min_depth: must be < max_depth \(80.0\)"),
        ({"device": "tpu"}, r"device: 'tpu' is not one of \['auto'"),
        ({"threads": 0}, "threads: must be > 0, got 0"),
    ],
)
def test_config_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=f"test: {message}"):
        make_config(tmp_path, **change)


def test_every_config_error_is_listed_at_once(tmp_path):
    change = {"optimiser": {}, "optimizer": {"lr": -1.0, "steps": "many"}, "device": "tpu", "train": {"stride": 0}}
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, **change)
    assert info.value.problems == [
        "optimiser: unknown key (did you mean 'optimizer'?)",
        "train.stride: must be > 0, got 0",
        "optimizer.lr: must be > 0, got -1.0",
        "optimizer.steps: expected int, got str 'many'",
        "device: 'tpu' is not one of ['auto', 'cpu', 'cuda']",
    ]
    assert str(info.value).startswith("test:\n  - optimiser: unknown key")


def test_shipped_configs_load():
    for name in ("synthetic_default", "synthetic_teacher"):
        config = load_config(f"config/training/{name}.yaml")
        assert config.train.type == "synthetic" and not set(config.val.seeds) & set(config.train.seeds)
    assert load_config("config/training/synthetic_default.yaml").teacher.type == "own_family"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("config/training/nowhere.yaml")


def test_schedule_and_batch_order():
    opt = config_from_dict(BASE, "test").optimizer
    assert lr_factor(0, opt) == pytest.approx(1.0) and lr_factor(opt.steps, opt) == pytest.approx(opt.min_lr_ratio)
    # every frame set once per epoch, a different order next epoch, the same order for the same seed
    first = batch_indices(0, 5, 5, seed=3) + batch_indices(1, 5, 5, seed=3)
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:]) == list(range(5))
    assert first == batch_indices(0, 5, 5, seed=3) + batch_indices(1, 5, 5, seed=3)


# --------------------------------------------------------------------------- data pipeline geometry


def _points_and_camera():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-20, 20, 3000), rng.uniform(-8, 8, 3000), rng.uniform(2, 70, 3000)])
    K = np.array([[200.0, 0, 159.5], [0, 200.0, 89.5], [0, 0, 1]])
    return points, K


def test_min_pooled_sparse_depth_backprojects_onto_the_original_points():
    points, K = _points_and_camera()
    depth = geometry.points_to_depth_map(points, K, 320, 180)
    size = (72, 128)
    small = min_pool_depth(torch.from_numpy(depth), size).numpy()
    assert set(np.unique(small[small > 0])) <= set(np.unique(depth[depth > 0]))  # measured values only
    K_small = geometry.resize_intrinsics(K, 128 / 320, 72 / 180)
    rows, cols = np.nonzero(small)
    back = geometry.backproject_depth(small, K_small).reshape(72, 128, 3)[rows, cols]
    # each resized GT pixel lies within one output pixel (in angle) of a real point with its depth
    ratios = points[:, :2] / points[:, 2:]
    for p in back[::7]:
        same = np.isclose(points[:, 2], p[2], rtol=1e-5)
        lateral = np.abs(ratios[same] - p[:2] / p[2]).max(axis=1).min()
        assert lateral <= 1.0 / K_small[0, 0] + 1e-6
    # and it is the nearest point of its footprint: a full-resolution pixel in the cell is never nearer
    coarse = min_pool_depth(torch.from_numpy(depth), (1, 1)).item()
    assert coarse == depth[depth > 0].min()


def test_prepared_ground_truth_matches_the_scene_through_the_new_intrinsics():
    """A ground plane seen by a small rig: resized depth back-projected with the resized K lands on the plane."""
    rig = small_rig(2, 160, 120)
    depths = []
    for cam in rig.cameras:
        rays = geometry.pixel_rays(cam.K, cam.width, cam.height)  # z = 1 rays in the camera frame
        rays_base = rays @ cam.T_base_cam[:3, :3].T
        t = -cam.T_base_cam[2, 3] / rays_base[:, 2]
        depths.append(np.where(t > 0, t, 0).reshape(cam.height, cam.width).astype(np.float32))
    images = [np.zeros((120, 160, 3), np.uint8) for _ in rig.cameras]
    frame = FrameSet(rig, images, [0, 0], depth=depths, name="plane")
    sample = prepare_frameset(frame, (48, 72))
    for i, cam in enumerate(rig.cameras):
        d = sample.depth[i, 0].numpy()
        ok = (d > 0) & (d < 30)
        assert ok.sum() > 300
        pixel_angle = 1.0 / sample.intrinsics[i, 0, 0].item()  # one output pixel, in radians
        errors = []
        for K in (sample.intrinsics[i].numpy(), cam.K):  # the resized K, and the stale one for contrast
            points = geometry.backproject_depth(d, K).reshape(48, 72, 3)[ok]
            height = geometry.transform_points(cam.T_base_cam, points.astype(np.float64))[:, 2]
            errors.append(np.median(np.abs(height) / d[ok]))  # height above the plane relative to the distance
        # min-pooling keeps the nearest sample of a cell: off the cell centre by less than half a cell
        assert errors[0] < 0.5 * pixel_angle and errors[1] > 2 * pixel_angle, (errors, pixel_angle)


def test_training_images_are_what_the_engine_feeds_the_network():
    from surround_depth_ros.inference.engine import DepthEngine
    from surround_depth_ros.network.student import SurroundDepthStudent, preset

    images = [np.random.default_rng(i).integers(0, 256, (90, 160, 3), dtype=np.uint8) for i in range(6)]
    engine = DepthEngine(SurroundDepthStudent(preset("tiny")), backend="torch", device="cpu")
    expected = engine.preprocess(images)[0][0]
    ours = resize_images(images, engine.input_size)  # uint8, as the trainer and evaluation feed the student
    assert torch.equal(ours.float() / 255.0, expected)


# --------------------------------------------------------------------------- the loop


def test_training_reduces_the_loss_and_writes_a_loadable_checkpoint(data_cache, tmp_path):
    config = make_config(
        tmp_path, data_cache_dir=str(data_cache / "data"), optimizer={**BASE["optimizer"], "steps": 30}
    )
    trainer = Trainer(config, out_dir=tmp_path / "run")
    result = trainer.train()
    losses = [h["loss"] for h in trainer.history]
    assert result.step == 30 and len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    model, info = load_checkpoint(tmp_path / "run" / "last.pt")
    assert info.config.input_size == (32, 64) and info.rig.cameras[0].width == 64
    assert info.extra["training"]["step"] == 30
    for name in ("losses.png", "history.json", "train_state.pt"):
        assert (tmp_path / "run" / name).is_file()
    torch.testing.assert_close(model.state_dict(), trainer.model.state_dict())


def test_resume_continues_from_the_saved_step_with_the_same_state(data_cache, tmp_path):
    config = make_config(tmp_path, data_cache_dir=str(data_cache / "data"))
    straight = Trainer(config, out_dir=tmp_path / "a")
    straight.train()
    interrupted = Trainer(config, out_dir=tmp_path / "b")
    interrupted.train(until=3)
    assert interrupted.step == 3
    resumed = Trainer(config, out_dir=tmp_path / "b")
    resumed.train(resume=True)
    assert resumed.step == 6 and [h["step"] for h in resumed.history] == list(range(6))
    torch.testing.assert_close(resumed.model.state_dict(), straight.model.state_dict(), rtol=1e-5, atol=1e-6)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-4)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        Trainer(config, out_dir=tmp_path / "c").train(resume=True)


def test_own_family_teacher_distils_through_the_cache(data_cache, tmp_path):
    base = make_config(tmp_path, data_cache_dir=str(data_cache / "data"), out_dir=str(tmp_path / "teacher"))
    Trainer(base).train(until=1)
    losses = {
        "silog": 1.0,
        "cross_interaction": 1.0,
        "view_relational": {"weight": 1.0, "student_feature": -2},
        "inter_depth": 1.0,
        "depth_distribution": 1.0,
    }
    config = make_config(
        tmp_path,
        data_cache_dir=str(data_cache / "data"),
        losses=losses,
        teacher={"type": "own_family", "checkpoint": str(tmp_path / "teacher" / "last.pt")},
        optimizer={**BASE["optimizer"], "steps": 2},
    )
    trainer = Trainer(config, out_dir=tmp_path / "student")
    trainer.train()
    assert set(trainer.history[0]) >= {"cross_interaction", "view_relational", "inter_depth", "depth_distribution"}
    assert all(np.isfinite(h["loss"]) for h in trainer.history)
    assert trainer.teacher.misses == 2 and trainer.teacher.hits == 2  # 2 frame sets, second epoch from disk


def test_depth_anything_teacher_from_the_config(data_cache, tmp_path):
    pytest.importorskip("transformers", reason="the Depth Anything teacher needs `transformers`")
    save_tiny_depth_anything(tmp_path / "da")
    config = make_config(
        tmp_path,
        data_cache_dir=str(data_cache / "data"),
        losses={"silog": 1.0, "cross_interaction": 1.0, "curvature": 1.0},
        teacher={"type": "depth_anything", "model_dir": str(tmp_path / "da"), "input_height": 28},
        optimizer={**BASE["optimizer"], "steps": 2},
    )
    trainer = Trainer(config, out_dir=tmp_path / "student")
    trainer.train()
    assert trainer.teacher.identity.startswith("depth_anything")
    assert all(np.isfinite(h["cross_interaction"]) and h["cross_interaction"] > 0 for h in trainer.history)


def test_prepared_dataset_round_trips_and_resizes(data_cache, tmp_path):
    config = make_config(data_cache)
    trainer = Trainer(config, out_dir=tmp_path / "x")
    dataset = trainer.train_set
    dataset.save(tmp_path / "d.pt", "k")
    again = PreparedDataset.load(tmp_path / "d.pt", "k")
    assert torch.equal(again.images, dataset.images) and again.names == dataset.names
    assert PreparedDataset.load(tmp_path / "d.pt", "other key") is None
    half = dataset.resized((16, 32))
    assert half.images.shape[-2:] == (16, 32)
    torch.testing.assert_close(half.intrinsics[..., 0, 0], dataset.intrinsics[..., 0, 0] / 2)
