"""Evaluation: the engine path against full-resolution ground truth, the JSON + PNG report, numbers checked against
a direct computation; the shipped student against a trivial baseline; the pipeline on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sample_framesets import small_rig

from surround_depth_ros import geometry
from surround_depth_ros.checkpoint import save_checkpoint
from surround_depth_ros.frameset import FrameSet
from surround_depth_ros.inference.engine import DepthEngine
from surround_depth_ros.metrics import DepthMetrics
from surround_depth_ros.network.student import SurroundDepthStudent, preset
from surround_depth_ros.training.data import PreparedDataset, prepare_frameset
from surround_depth_ros.training.evaluate import evaluate_frames, evaluate_model, write_report

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "student_default.pt"


def _frames(n: int = 3) -> list[FrameSet]:
    """Frame sets of a small rig looking at a ground plane (dense GT with sky holes) and random textures."""
    rig = small_rig(4, 64, 48)
    frames = []
    for k in range(n):
        rng = np.random.default_rng(k)
        depths = []
        for cam in rig.cameras:
            rays = geometry.pixel_rays(cam.K, cam.width, cam.height) @ cam.T_base_cam[:3, :3].T
            t = -cam.T_base_cam[2, 3] / rays[:, 2]
            depths.append(np.where((t > 0) & (t < 150), t, 0).reshape(cam.height, cam.width).astype(np.float32))
        images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in rig.cameras]
        frames.append(FrameSet(rig, images, [k] * 4, depth=depths, name=f"plane/{k}"))
    return frames


def _engine(tmp_path: Path) -> DepthEngine:
    """A random tiny student saved as a checkpoint of the small rig (so the engine knows its training rig)."""
    torch.manual_seed(0)
    rig = small_rig(4, 64, 48)
    save_checkpoint(tmp_path / "student.pt", SurroundDepthStudent(preset("tiny")), rig=rig, adjacency=[(0, 1), (1, 2)])
    return DepthEngine(tmp_path / "student.pt", backend="torch", device="cpu")


def _reference(pred: np.ndarray, gt: np.ndarray, low: float, high: float, median: bool) -> dict[str, float]:
    """Straightforward per-image AbsRel / RMSE / delta1 of one camera image."""
    valid = np.isfinite(gt) & (gt > low) & (gt < high)
    g, p = gt[valid].astype(np.float64), np.nan_to_num(pred[valid].astype(np.float64), nan=low)
    if median:
        p = p * np.median(g) / np.median(p)
    p = np.clip(p, low, high)
    return {"abs_rel": np.mean(np.abs(g - p) / g), "rmse": np.sqrt(np.mean((g - p) ** 2)),
            "a1": np.mean(np.maximum(p / g, g / p) < 1.25)}  # fmt: skip


def test_evaluate_frames_report_and_numbers(tmp_path):
    engine = _engine(tmp_path)
    frames = _frames()
    evaluation = evaluate_frames(engine, frames, 0.1, 80.0, examples=2)
    files = write_report(evaluation, tmp_path, title="test")
    summary = json.loads(Path(files["json"]).read_text())
    assert set(summary) >= {"metric", "median_scaled", "min_depth", "max_depth"}
    assert set(summary["metric"]["per_range"]) == {"0-50", "50-70", "70-80", ">80"}
    assert list(summary["metric"]["per_camera"]) == [c.name for c in frames[0].rig.cameras]
    assert summary["metric"]["images"] == 12
    assert Path(files["png"]).stat().st_size > 10_000 and Path(files["png"]).read_bytes()[:4] == b"\x89PNG"
    # the same numbers, computed directly from the engine's predictions
    for mode, median in (("metric", False), ("median_scaled", True)):
        per_camera = {}
        for frame in frames:
            results = engine.infer(frame.images, intrinsics=frame.rig.intrinsics())
            for cam, result, gt in zip(frame.rig.cameras, results, frame.depth, strict=True):
                per_camera.setdefault(cam.name, []).append(_reference(result.depth, gt, 0.1, 80.0, median))
        for key in ("abs_rel", "rmse", "a1"):
            expected = np.mean([np.mean([r[key] for r in rows]) for rows in per_camera.values()])
            assert summary[mode]["mean"][key] == pytest.approx(expected, rel=1e-6), (mode, key)


def test_evaluate_frames_mixes_camera_sizes(tmp_path):
    frames = _frames(1)
    frame = frames[0]
    rig = frame.rig
    cameras = [rig.cameras[0], geometry.resize_camera(rig.cameras[1], 32, 24), *rig.cameras[2:]]
    mixed_rig = type(rig)(cameras, rig.radars, rig.base_frame)
    images = list(frame.images)
    images[1] = images[1][::2, ::2].copy()
    depth = list(frame.depth)
    depth[1] = np.ascontiguousarray(depth[1][::2, ::2])
    mixed = FrameSet(mixed_rig, images, frame.camera_stamps_ns, depth=depth, name="mixed")
    summary = evaluate_frames(_engine(tmp_path), [mixed], 0.1, 80.0).summary
    assert summary["metric"]["images"] == 4 and all(summary["metric"]["per_camera"].values())


def test_evaluate_model_matches_depth_metrics():
    frames = _frames(2)
    samples = [prepare_frameset(f, (32, 48)) for f in frames]
    dataset = PreparedDataset(samples, frames[0].rig.camera_names, [(0, 1), (1, 2), (2, 3), (0, 3)])
    torch.manual_seed(0)
    model = SurroundDepthStudent(preset("tiny")).eval()
    summary = evaluate_model(model, dataset, 0.1, 80.0, batch_size=1)
    reference = DepthMetrics(frames[0].rig.camera_names, 0.1, 80.0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        images = (dataset.images.float() / 255.0 - mean) / std
        depth = model(images, dataset.adjacency).depth
    reference.update(depth, dataset.depth)
    assert summary == reference.summary()


def _held_out_synthetic(n_frames: int = 2) -> list[FrameSet]:
    from surround_depth_ros.datasets.synthetic import SyntheticReader
    from surround_depth_ros.rig import default_rig

    reader = SyntheticReader(default_rig(), seed=990, n_frames=n_frames * 7, image_size=(224, 128), radar=False,
                             lidar=False)  # fmt: skip
    return [reader[i] for i in range(0, n_frames * 7, 7)]


def test_shipped_student_loads_and_beats_a_constant_depth():
    assert SHIPPED.is_file(), f"{SHIPPED} is missing: train it with config/training/synthetic_default.yaml"
    assert SHIPPED.stat().st_size < 5_000_000
    torch.set_num_threads(1)
    engine = DepthEngine(SHIPPED, backend="torch", device="cpu")
    frames = _held_out_synthetic()
    model_metrics = evaluate_frames(engine, frames, 0.1, 80.0).summary["metric"]["mean"]
    baseline = DepthMetrics(frames[0].rig.camera_names, 0.1, 80.0)
    for frame in frames:
        gt = np.stack(frame.depth)
        valid = (gt > 0.1) & (gt < 80.0)
        baseline.update(np.full_like(gt, np.median(gt[valid])), gt)  # the best constant, from the GT itself
    constant = baseline.summary()["metric"]["mean"]
    assert model_metrics["abs_rel"] < 0.6 * constant["abs_rel"], (model_metrics, constant)
    assert model_metrics["rmse"] < constant["rmse"] and model_metrics["a1"] > constant["a1"] + 0.2


def test_evaluation_runs_on_the_real_nuscenes_sample(shared_data_path):
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    reader = NuScenesReader(shared_data_path("nuscenes_sample"))
    engine = DepthEngine(SHIPPED, backend="torch", device="cpu")
    summary = evaluate_frames(engine, [reader[0]], 0.1, 80.0).summary
    assert summary["metric"]["images"] == 6
    assert 0 < summary["metric"]["mean"]["abs_rel"] < 5 and 0 < summary["median_scaled"]["mean"]["abs_rel"] < 1


def test_evaluation_runs_on_the_real_ddad_sample(shared_data_path):
    from surround_depth_ros.datasets.ddad import DGPSceneReader

    reader = DGPSceneReader(shared_data_path("ddad_dgp_sample", "scene_01"))
    frame = reader[0]
    engine = DepthEngine(SHIPPED, backend="torch", device="cpu", n_views=3, adjacency=frame.rig.adjacency())
    summary = evaluate_frames(engine, [frame], 0.1, 200.0).summary
    assert summary["metric"]["images"] == 3 and summary["max_depth"] == 200.0
    assert np.isfinite(summary["metric"]["mean"]["abs_rel"])
