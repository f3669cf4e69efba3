"""Evaluation: the engine path against full-resolution ground truth, the JSON + PNG report, numbers checked against
a direct computation; the shipped student against a trivial baseline; the pipeline on the real samples."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_harness import frame_set
from sample_framesets import small_rig

from surround_depth_ros.base import geometry
from surround_depth_ros.core.pipeline import SurroundDepthPipeline
from surround_depth_ros.evaluation.metrics import DepthMetrics
from surround_depth_ros.evaluation.report import write_report
from surround_depth_ros.inference.engine import DepthEngine
from surround_depth_ros.network.checkpoint import save_checkpoint
from surround_depth_ros.network.student import SurroundDepthStudent, preset
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.rig import CameraRig, resize_camera
from surround_depth_ros.training.data import PreparedDataset, prepare_frameset
from surround_depth_ros.training.evaluate import evaluate_frames, evaluate_model

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
    return {
        "abs_rel": np.mean(np.abs(g - p) / g),
        "rmse": np.sqrt(np.mean((g - p) ** 2)),
        "a1": np.mean(np.maximum(p / g, g / p) < 1.25),
    }


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
    # the same numbers, computed directly from the pipeline's predictions
    pipeline = SurroundDepthPipeline(engine, cloud=None)
    for mode, median in (("metric", False), ("median_scaled", True)):
        per_camera = {}
        for frame in frames:
            depths = pipeline.process(frame).depth
            for cam, depth, gt in zip(frame.rig.cameras, depths, frame.depth, strict=True):
                per_camera.setdefault(cam.name, []).append(_reference(depth, gt, 0.1, 80.0, median))
        for key in ("abs_rel", "rmse", "a1"):
            expected = np.mean([np.mean([r[key] for r in rows]) for rows in per_camera.values()])
            assert summary[mode]["mean"][key] == pytest.approx(expected, rel=1e-6), (mode, key)


def test_evaluate_frames_mixes_camera_sizes(tmp_path):
    frames = _frames(1)
    frame = frames[0]
    rig = frame.rig
    cameras = [rig.cameras[0], resize_camera(rig.cameras[1], 32, 24), *rig.cameras[2:]]
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
    with torch.no_grad():
        depth = model(dataset.images.float() / 255.0, dataset.adjacency).depth  # RGB in [0, 1]: the model normalises
    reference.update(depth, dataset.depth)
    assert summary == reference.summary()


def _held_out_synthetic(n_frames: int = 2) -> list[FrameSet]:
    from surround_depth_ros.datasets.synthetic import SyntheticReader
    from surround_depth_ros.sensors.rig import default_rig

    reader = SyntheticReader(
        default_rig(), seed=990, n_frames=n_frames * 7, image_size=(224, 128), radar=False, lidar=False
    )
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
    engine = DepthEngine(SHIPPED, backend="torch", device="cpu")  # its 3 cameras bound to 3 of the 6 slots
    summary = evaluate_frames(engine, [frame], 0.1, 200.0).summary
    assert summary["metric"]["images"] == 3 and summary["max_depth"] == 200.0
    assert np.isfinite(summary["metric"]["mean"]["abs_rel"])


# --------------------------------------------------------------------------- the command line


def _cli(*argv: str) -> int:
    from surround_depth_ros.tools.cli import main

    return main(["evaluate", *map(str, argv)])


def _random_checkpoint(path: Path, rig) -> Path:  # noqa: ANN001 - CameraRig
    torch.manual_seed(1)
    save_checkpoint(path, SurroundDepthStudent(preset("tiny")), rig=rig, adjacency=rig.adjacency())
    return path


def test_cli_compare_reports_b_minus_a_per_metric(tmp_path):
    from surround_depth_ros.sensors.rig import default_rig

    other = _random_checkpoint(tmp_path / "random.pt", default_rig())
    out = tmp_path / "out"
    assert (
        _cli(
            "--checkpoint",
            SHIPPED,
            "--compare",
            other,
            "--dataset",
            "synthetic",
            "--seeds",
            990,
            "--frames",
            1,
            "--size",
            "160x90",
            "--examples",
            1,
            "--out",
            out,
        )
        == 0
    )
    a, b = (json.loads((folder / "metrics.json").read_text()) for folder in (out, out / "compare"))
    assert a["checkpoint"] == str(SHIPPED) and b["checkpoint"] == str(other) and a["metric"]["images"] == 6
    comparison = json.loads((out / "comparison.json").read_text())
    for mode in ("metric", "median_scaled"):
        for part, key in (("mean", None), *(("per_camera", c) for c in a[mode]["per_camera"]), ("per_range", "0-50")):
            got = comparison[mode][part] if key is None else comparison[mode][part][key]
            ma, mb = (s[mode][part] if key is None else s[mode][part][key] for s in (a, b))
            for name, row in got.items():
                assert (row["a"], row["b"]) == (ma[name], mb[name])
                assert row["difference"] == pytest.approx(mb[name] - ma[name])
    # the shipped student beats random weights on a street it never saw
    assert (
        comparison["metric"]["mean"]["abs_rel"]["better"] == "a" and comparison["metric"]["mean"]["a1"]["better"] == "a"
    )
    for png in (out / "report.png", out / "compare" / "report.png", out / "comparison.png"):
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 50_000


@pytest.mark.parametrize(
    ("dataset", "parts", "images"),
    [("nuscenes", ("nuscenes_sample",), 6), ("ddad", ("ddad_dgp_sample", "scene_01"), 3)],
)
def test_cli_on_the_real_samples(tmp_path, shared_data_path, dataset, parts, images):
    out = tmp_path / dataset
    assert (
        _cli(
            "--checkpoint",
            SHIPPED,
            "--dataset",
            dataset,
            "--path",
            shared_data_path(*parts),
            "--limit",
            1,
            "--out",
            out,
        )
        == 0
    )
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metric"]["images"] == images and summary["frame_sets"] == 1
    assert np.isfinite(summary["median_scaled"]["mean"]["abs_rel"]) and (out / "report.png").is_file()


def _bag_framesets(lidar: bool):  # noqa: ANN202 - list[FrameSet]
    """Three frame sets of the small rig without ego motion (the lidar projects through /tf_static alone) and
    without radar, with a dense lidar: 20,000 points on walls 3-70 m around the car, 50-point sample sets' stamps."""
    from sample_framesets import T_BASE_LIDAR, make_framesets

    from surround_depth_ros.sensors.frameset import PointSweep
    from surround_depth_ros.sensors.rig import CameraRig

    frames = make_framesets(3, seed=4)
    rig = CameraRig(frames[0].rig.cameras, [], frames[0].rig.base_frame)
    rng = np.random.default_rng(4)
    out = []
    for frame in frames:
        angle, distance = rng.uniform(0, 2 * np.pi, 20_000), rng.uniform(3.0, 70.0, 20_000)
        points = np.stack([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(-1.5, 2.0, 20_000)], 1)
        sweep = PointSweep("lidar", frame.lidar.stamp_ns, points, T_base_sensor=T_BASE_LIDAR) if lidar else None
        out.append(FrameSet(rig, frame.images, frame.camera_stamps_ns, lidar=sweep, name=frame.name))
    return out


def _independent_ground_truth(
    bag: Path, image_suffix: str = "/image_raw", info_suffix: str = "/camera_info", lidar_topic: str = "/lidar/points"
) -> tuple[list[dict], list[list[np.ndarray]], list[list[np.ndarray]]]:
    """From the bag's own messages, read with rosbags: per camera (in the order of their first CameraInfo) its
    topic, K, frame and size, and per frame set the images and the lidar projected through the /tf_static chain
    (nearest point per pixel, pixel centres at integers, z > 1 m). The suffixes and the lidar topic name the
    bag's layout."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        messages = [(c.topic, reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages()]
    parent: dict[str, tuple[str, np.ndarray]] = {}
    for topic, msg in messages:
        for t in msg.transforms if topic == "/tf_static" else []:
            (x, y, z, w), p = (getattr(t.transform.rotation, a) for a in "xyzw"), t.transform.translation
            T = np.eye(4)
            T[:3, :3] = [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
            T[:3, 3] = [p.x, p.y, p.z]
            parent[t.child_frame_id] = (t.header.frame_id, T)

    def T_base(frame: str) -> np.ndarray:
        """T_base_frame: the edges from `frame` up to the root, composed."""
        chain = np.eye(4)
        while frame in parent:
            frame, T = parent[frame]
            chain = T @ chain
        return chain

    cameras: dict[str, object] = {}
    for topic, msg in messages:
        if topic.endswith(info_suffix):
            cameras.setdefault(topic, msg)
    infos = [
        {"topic": t, "K": np.array(m.k).reshape(3, 3), "frame": m.header.frame_id, "size": (m.height, m.width)}
        for t, m in cameras.items()
    ]
    per_camera: list[list[np.ndarray]] = [[] for _ in infos]
    for topic, msg in messages:
        if topic.endswith(image_suffix):
            index = [info["frame"] for info in infos].index(msg.header.frame_id)
            rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
            per_camera[index].append((rgb[..., ::-1] if msg.encoding == "bgr8" else rgb).copy())
    images = [list(row) for row in zip(*per_camera, strict=True)]
    gts = []
    for _, msg in (m for m in messages if m[0] == lidar_topic):
        fields = {f.name: f.offset for f in msg.fields}
        raw = np.frombuffer(msg.data, np.uint8).reshape(-1, msg.point_step)
        xyz = np.stack([raw[:, fields[a] : fields[a] + 4].copy().view("<f4")[:, 0] for a in "xyz"], 1)
        maps = []
        for info in infos:
            T = np.linalg.inv(T_base(info["frame"])) @ T_base(msg.header.frame_id)
            cam = xyz.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
            cam = cam[cam[:, 2] > 1.0]
            uvw = cam @ info["K"].T
            u, v = np.floor(uvw[:, 0] / uvw[:, 2] + 0.5), np.floor(uvw[:, 1] / uvw[:, 2] + 0.5)
            height, width = info["size"]
            inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
            depth = np.full((height, width), np.inf)
            np.minimum.at(depth, (v[inside].astype(int), u[inside].astype(int)), cam[inside, 2])
            maps.append(np.where(np.isfinite(depth), depth, 0.0))
        gts.append(maps)
    return infos, images, gts


def test_cli_on_a_bag_equals_an_independent_lidar_projection(tmp_path):
    from surround_depth_ros.bag import write_bag

    frames = _bag_framesets(lidar=True)
    bag = tmp_path / "drive"
    write_bag(frames, bag, progress=False)
    checkpoint = _random_checkpoint(tmp_path / "student.pt", frames[0].rig)
    out = tmp_path / "out"
    assert _cli("--checkpoint", checkpoint, "--dataset", "rosbag", "--path", bag, "--out", out) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frame_sets"] == 3 and summary["metric"]["images"] == 12

    infos, images, gts = _independent_ground_truth(bag)
    assert min(int((g > 0.1).sum()) for maps in gts for g in maps) > 100  # every camera sees the walls
    pipeline = SurroundDepthPipeline(DepthEngine(checkpoint, backend="torch", device="cpu"), cloud=None)
    # the rig's poses with the intrinsics the bag's CameraInfo holds (its cameras in the rig's order)
    rig = CameraRig(
        tuple(dataclasses.replace(c, K=info["K"]) for c, info in zip(frames[0].rig.cameras, infos, strict=True))
    )
    for mode, median in (("metric", False), ("median_scaled", True)):
        per_camera: dict[int, list] = {}
        for set_images, set_gt in zip(images, gts, strict=True):
            depths = pipeline.process(frame_set(set_images, rig)).depth
            for c, (depth, gt) in enumerate(zip(depths, set_gt, strict=True)):
                per_camera.setdefault(c, []).append(_reference(depth, gt, 0.1, 80.0, median))
        for c, camera in enumerate(frames[0].rig.camera_names):
            for key in ("abs_rel", "rmse", "a1"):
                expected = np.mean([row[key] for row in per_camera[c]])
                assert summary[mode]["per_camera"][camera][key] == pytest.approx(expected, rel=1e-6), (mode, c, key)


def test_cli_on_a_bag_without_lidar_says_so_in_one_line(tmp_path, capsys):
    from surround_depth_ros.bag import write_bag

    bag = tmp_path / "no_lidar"
    frames = _bag_framesets(lidar=False)
    write_bag(frames, bag, progress=False)
    checkpoint = _random_checkpoint(tmp_path / "student.pt", frames[0].rig)
    assert _cli("--checkpoint", checkpoint, "--dataset", "rosbag", "--path", bag, "--out", tmp_path / "out") == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith("surround-depth evaluate: error: ")
        and "\n" not in error
        and "lidar" in error
        and str(bag) in error
    )
    assert not (tmp_path / "out").exists()
