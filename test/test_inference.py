"""DepthEngine: pre/post-processing, backends agreeing, NaN for invalid pixels, clear errors; through the pipeline
(`SurroundDepthPipeline.process`, the one path composing the stages) or stage by stage where that is the floor."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pipeline_harness import frame_set, process, ring_rig

from surround_depth_ros.base import geometry
from surround_depth_ros.core.pipeline import SurroundDepthPipeline
from surround_depth_ros.inference import BackendUnavailable, DepthEngine
from surround_depth_ros.inference.backend_factory import auto_backend
from surround_depth_ros.inference.engine import Placement
from surround_depth_ros.inference.onnx_backend import provider_options
from surround_depth_ros.inference.staging import StagingBuffer
from surround_depth_ros.network import MEAN, PRESETS, ImageNormalisation, SurroundDepthStudent
from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.checkpoint import save_checkpoint
from surround_depth_ros.sensors.rig import CameraRig, resize_camera

N = 6
H, W = PRESETS["tiny"].input_size
ONNX_DEPTH_TOLERANCE_M = 1e-3  # fp32 ONNX Runtime vs PyTorch, metres (observed ~1e-5)


@pytest.fixture(scope="module")
def model() -> SurroundDepthStudent:
    torch.manual_seed(0)
    return SurroundDepthStudent(PRESETS["tiny"]).eval()


def camera_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def network_depth(engine: DepthEngine, frames: list[np.ndarray]) -> torch.Tensor:
    """Masked depth (N, 1, h, w) of the engine's own stages, without a pipeline binding a rig (and its adjacency)."""
    return engine.mask(*engine.run_network(engine.preprocess(frames)))[0]


def test_auto_picks_onnxruntime_on_the_cpu_when_installed(monkeypatch):
    assert auto_backend(torch.device("cpu")) == "onnxruntime"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert auto_backend(torch.device("cpu")) == "torch"


def test_results_come_back_at_each_cameras_size(model):
    engine = DepthEngine(model, backend="torch", device="cpu", adjacency=ring_adjacency(N))
    sizes = [(90, 160)] * 3 + [(121, 203), (64, 112), (40, 50)]
    outputs = process(engine, camera_images(sizes))
    assert [d.shape for d in outputs.depth] == [c.shape for c in outputs.confidence] == sizes
    for depth, confidence in zip(outputs.depth, outputs.confidence, strict=True):
        assert depth.dtype == np.float32 and confidence.dtype == np.float32
        assert np.isfinite(depth).all()
        assert depth.min() >= model.config.min_depth and depth.max() <= model.config.max_depth
        assert 0 <= confidence.min() and confidence.max() <= 1


def test_engine_equals_the_model_on_network_sized_images(model):
    frames = camera_images([(H, W)] * N)
    radar = np.zeros((N, 4, H, W), dtype=np.float32)
    radar[:, 0, 30, 50], radar[:, 1, 30, 50] = 12.0, 5.0
    engine = DepthEngine(model, backend="torch", device="cpu", adjacency=ring_adjacency(N))
    depth, confidence = engine.mask(*engine.run_network(engine.preprocess(frames, radar)))
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # uint8: the model normalises its input
    with torch.no_grad():
        out = model(x[None], ring_adjacency(N), radar=torch.from_numpy(radar)[None])
    np.testing.assert_allclose(depth.numpy(), out.depth[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(confidence.numpy(), out.confidence[0].numpy(), atol=1e-6)


def test_onnxruntime_matches_torch(model, tmp_path):
    frames = camera_images([(90, 160)] * N, seed=1)
    torch_outputs = process(DepthEngine(model, backend="torch", device="cpu"), frames)
    onnx_engine = DepthEngine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path)
    assert onnx_engine.backend.provider == "cpu" and list(tmp_path.glob("*.onnx"))
    onnx_outputs = process(onnx_engine, frames)
    for a, b in zip(torch_outputs.depth, onnx_outputs.depth, strict=True):
        assert np.abs(a - b).max() < ONNX_DEPTH_TOLERANCE_M
    for a, b in zip(torch_outputs.confidence, onnx_outputs.confidence, strict=True):
        assert np.abs(a - b).max() < 1e-4


def test_temporal_engine_carries_features_between_frames(tmp_path):
    torch.manual_seed(0)
    temporal = SurroundDepthStudent(dataclasses.replace(PRESETS["tiny"], name="tiny-t", temporal=True, radar=False))
    temporal.eval()
    frames = [camera_images([(H, W)] * N, seed=s) for s in (0, 1)]
    engines = [DepthEngine(temporal, backend=b, device="cpu", cache_dir=tmp_path) for b in ("torch", "onnxruntime")]
    rig = ring_rig([(H, W)] * N)
    for engine in engines:
        pipeline = SurroundDepthPipeline(engine, cloud=None)
        results = [pipeline.process(frame_set(f, rig)).depth for f in frames]
        with torch.no_grad():
            batches = [engine.preprocess(f)[0] for f in frames]
            first = temporal(batches[0], ring_adjacency(N))
            second = temporal(batches[1], ring_adjacency(N), prev_features=first.temporal_features)
        for got, want in zip(results, (first, second), strict=True):
            np.testing.assert_allclose(got[2], want.depth[0, 2, 0].numpy(), rtol=1e-4)
        engine.reset()
        restarted = pipeline.process(frame_set(frames[1], rig)).depth[0]
        with torch.no_grad():
            fresh = temporal(batches[1], ring_adjacency(N)).depth[0, 0, 0].numpy()
        np.testing.assert_allclose(restarted, fresh, rtol=1e-4)


def test_mask_on_every_kind_of_bad_value_against_an_isfinite_reference(model):
    """NaN or inf in either map, low confidence and the placement border: NaN depth and 0 confidence there; the
    rest clamped, to the bit. The reference is the plain `isfinite` formulation the engine's arithmetic replaces."""
    engine = DepthEngine(model, backend="torch", device="cpu", min_confidence=0.3)
    rng = np.random.default_rng(4)
    depth = torch.from_numpy(rng.uniform(-5, 500, (N, 1, H, W)).astype(np.float32))
    confidence = torch.from_numpy(rng.uniform(-0.5, 1.5, (N, 1, H, W)).astype(np.float32))
    for maps in (depth, confidence):
        flat = maps.view(-1)
        for value in (float("nan"), float("inf"), -float("inf")):
            flat[torch.from_numpy(rng.choice(flat.numel(), 500, replace=False))] = value
    Kp = np.eye(3)
    placements = [Placement(0, 0, H, W, Kp)] * (N - 1) + [Placement(2, 5, H - 4, W - 10, Kp)]  # the last bordered
    border = torch.zeros((N, 1, H, W), dtype=torch.bool)
    border[-1] = True
    border[-1, :, 2 : H - 2, 5 : W - 5] = False
    invalid = ~torch.isfinite(depth) | ~torch.isfinite(confidence) | (confidence < 0.3) | border
    cfg = engine.config
    expected_depth = depth.clamp(cfg.min_depth, cfg.max_depth).masked_fill(invalid, float("nan"))
    expected_confidence = confidence.clamp(0.0, 1.0).masked_fill(invalid, 0.0)
    got_depth, got_confidence = engine.mask(depth.clone(), confidence.clone(), placements=placements)
    assert torch.equal(torch.isnan(got_depth), invalid) and invalid.any() and not invalid.all()
    assert torch.equal(got_depth[~invalid], expected_depth[~invalid])
    assert torch.equal(got_confidence, expected_confidence)


def test_nan_where_confidence_is_low_or_output_not_finite(model):
    frames = camera_images([(H, W)] * N)  # network size: pixels map one to one
    reference = process(DepthEngine(model, backend="torch", device="cpu"), frames)
    threshold = float(np.median(np.concatenate([c.ravel() for c in reference.confidence])))
    gated = process(DepthEngine(model, backend="torch", device="cpu", min_confidence=threshold), frames)
    for depth, confidence, gated_depth, gated_confidence in zip(
        reference.depth, reference.confidence, gated.depth, gated.confidence, strict=True
    ):
        low = confidence < threshold
        assert np.isnan(gated_depth[low]).all() and np.isfinite(gated_depth[~low]).all()
        np.testing.assert_array_equal(gated_depth[~low], depth[~low])
        assert (gated_confidence[low] == 0).all()
    broken = SurroundDepthStudent(model.config).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.bin_head.logits[-1].bias[0] = float("nan")
    outputs = process(DepthEngine(broken, backend="torch", device="cpu"), frames)
    for depth, confidence in zip(outputs.depth, outputs.confidence, strict=True):
        assert np.isnan(depth).all() and (confidence == 0).all()  # NaN, not clamped into range


def _engine_trained_on(model, tmp_path, K: np.ndarray, width: int, height: int):  # noqa: ANN001, ANN202
    """The model saved with a ring of N cameras of intrinsics K at width x height, and the engine running it."""
    rig = ring_rig([(height, width)] * N, K)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, rig=rig, adjacency=ring_adjacency(N))
    return DepthEngine(path, backend="torch", device="cpu"), rig


def _with_intrinsics(rig: CameraRig, K: np.ndarray) -> CameraRig:
    """The rig with camera i's intrinsics K[i]."""
    return CameraRig(tuple(dataclasses.replace(c, K=k) for c, k in zip(rig.cameras, K, strict=True)))


def test_a_narrower_camera_is_placed_into_the_training_camera_and_others_are_resized_as_before(model, tmp_path):
    """Canonical camera: a longer lens is shrunk to the training focal length inside a border, depth unscaled."""
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 44.5], [0, 0, 1]])
    engine, rig = _engine_trained_on(model, tmp_path, K, 160, 90)
    frames = camera_images([(90, 160)] * N)
    base = process(engine, frames, rig, canonical_camera=False)
    for same_or_wider in (np.stack([K] * N), np.stack([K * [[0.8], [0.8], [1]]] * N)):
        for b, r in zip(base.depth, process(engine, frames, _with_intrinsics(rig, same_or_wider)).depth, strict=True):
            np.testing.assert_array_equal(r, b)  # plainly resized, no depth factor
    longer = np.stack([K] * N)
    longer[0, :2, :2] *= 1.25  # camera 0 sees 1.25x narrower than the training camera
    (view, *rest) = engine.placements(longer, [(90, 160)] * N)
    trained_K = geometry.resize_intrinsics(K, W / 160, H / 90)
    assert all(p.fills((H, W)) for p in rest)
    assert (view.height, view.width) == (round(90 / 1.25 * H / 90), round(160 / 1.25 * W / 160)) == (51, 90)
    np.testing.assert_allclose(np.diag(view.K)[:2], np.diag(trained_K)[:2], rtol=0.02)
    np.testing.assert_allclose(view.K[:2, 2], trained_K[:2, 2], atol=0.5)  # principal point on the training one
    # The network input: the resized image in its box, the mean colour (0 after the model's normalisation) around it.
    border = torch.ones((H, W), dtype=torch.bool)
    border[view.top : view.top + view.height, view.left : view.left + view.width] = False
    batch = engine.network_images(engine.upload(frames), engine.placements(longer, [(90, 160)] * N))[0, 0]
    normalised = ImageNormalisation()(batch)
    assert (normalised[:, border] == 0).all() and (normalised[:, ~border] != 0).any()
    np.testing.assert_array_equal(batch[:, border], torch.tensor(MEAN)[:, None].expand(3, int(border.sum())))
    placed = _with_intrinsics(rig, longer)
    maps = process(engine, frames, placed, resolution="network")
    depth = torch.from_numpy(maps.depth[0])
    assert torch.isnan(depth[border]).all() and torch.isfinite(depth[~border]).all()
    np.testing.assert_allclose(maps.cameras[0].K, view.K)
    box = depth[view.top : view.top + view.height, view.left : view.left + view.width]
    upsampled = F.interpolate(box[None, None], size=(90, 160), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(process(engine, frames, placed).depth[0], upsampled.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="no training rig"):
        DepthEngine(model, backend="torch", device="cpu").placements(longer, [(90, 160)] * N)


def test_set_adjacency_rebuilds_the_network_for_other_pairs_only(model):
    frames = camera_images([(H, W)] * N, seed=3)
    engine = DepthEngine(model, backend="torch", device="cpu", adjacency=ring_adjacency(N))
    ring = network_depth(engine, frames)
    module = engine.module
    assert not engine.set_adjacency([(j, i) for i, j in reversed(ring_adjacency(N).tolist())])  # same pairs
    assert engine.module is module
    with pytest.raises(ValueError, match=r"adjacency pair \(3, 6\)"):
        engine.set_adjacency([(3, 6)])
    assert engine.module is module and engine.adjacency == frozenset(map(tuple, ring_adjacency(N).tolist()))
    assert engine.set_adjacency([(5, 3)])  # a rig of cameras 0, 3 and 5 where only 3 and 5 overlap
    live = network_depth(engine, frames)
    assert torch.equal(
        live, network_depth(DepthEngine(model, backend="torch", device="cpu", adjacency=[(3, 5)]), frames)
    )
    assert not torch.equal(live[3], ring[3])  # the attention really changed


def test_onnx_cache_keeps_one_file_per_adjacency(model, tmp_path):
    frames = camera_images([(H, W)] * N, seed=4)
    engine = DepthEngine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path, adjacency=ring_adjacency(N))
    ring_file = engine.backend.path
    exported = ring_file.stat().st_mtime_ns
    assert engine.set_adjacency([(3, 5)]) and engine.backend.path != ring_file
    expected = network_depth(DepthEngine(model, backend="torch", device="cpu", adjacency=[(3, 5)]), frames)
    assert (network_depth(engine, frames) - expected).abs().max() < ONNX_DEPTH_TOLERANCE_M
    files = sorted(tmp_path.glob("*.onnx"))
    assert files == sorted([ring_file, engine.backend.path])
    assert engine.set_adjacency(ring_adjacency(N)) and engine.backend.path == ring_file
    assert sorted(tmp_path.glob("*.onnx")) == files and ring_file.stat().st_mtime_ns == exported  # from the cache


def test_bad_inputs_name_the_camera_and_the_expectation(model):
    engine = DepthEngine(model, backend="torch", device="cpu")
    with pytest.raises(ValueError, match="expected 6 camera images, got 5"):
        engine.upload(camera_images([(90, 160)] * 5))
    frames = camera_images([(90, 160)] * N)
    frames[4] = frames[4].astype(np.float32)
    with pytest.raises(ValueError, match="camera 4: expected an HxWx3 uint8 RGB image"):
        process(engine, frames)
    with pytest.raises(ValueError, match=r"radar maps must be \(6, 4, 64, 112\)"):
        engine.preprocess(camera_images([(90, 160)] * N), radar=np.zeros((N, 4, 90, 160), np.float32))
    with pytest.raises(ValueError, match="unknown backend"):
        DepthEngine(model, backend="tflite")


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None, reason="torch_tensorrt is installed")
def test_absent_tensorrt_names_the_package(model):
    with pytest.raises(BackendUnavailable, match="pip install torch-tensorrt"):
        DepthEngine(model, backend="tensorrt", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_absent_cuda_is_a_clear_error(model):
    with pytest.raises(BackendUnavailable, match="CUDA build of PyTorch"):
        DepthEngine(model, backend="torch", device="cuda")
    with pytest.raises(BackendUnavailable, match="fp16 autocast needs a CUDA device"):
        DepthEngine(model, backend="torch", device="cpu", precision="fp16")


def test_absent_onnxruntime_or_provider_names_the_package(model, tmp_path, monkeypatch):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
            DepthEngine(model, backend="onnxruntime", device="cpu", onnx_provider="cuda", cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does when the package is missing
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime"):
        DepthEngine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path)


def test_bf16_autocast_on_cpu_stays_close(model):
    frames = camera_images([(H, W)] * N)
    fp32 = process(DepthEngine(model, backend="torch", device="cpu"), frames)
    bf16 = process(DepthEngine(model, backend="torch", device="cpu", precision="bf16"), frames)
    for a, b in zip(fp32.depth, bf16.depth, strict=True):
        assert np.abs(b - a).max() / a.min() < 5e-2


def test_real_nuscenes_cameras_come_back_at_1600x900(model, shared_data_path):
    root = shared_data_path("nuscenes_sample", "samples")
    cv2 = pytest.importorskip("cv2")
    names = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]
    frames = [cv2.cvtColor(cv2.imread(str(next((root / n).glob("*.jpg")))), cv2.COLOR_BGR2RGB) for n in names]
    engine = DepthEngine(model, backend="torch", device="cpu")
    outputs = process(engine, frames)
    assert all(depth.shape == (900, 1600) and np.isfinite(depth).all() for depth in outputs.depth)
    # The antialiased uint8 resize agrees with a float area resize of the real image to within 2 grey levels.
    batch = engine.preprocess(frames)[0][0, 0]  # RGB in [0, 1]
    area = F.interpolate(torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float(), size=(H, W), mode="area")[0]
    assert (batch * 255 - area).abs().mean() < 2.0


def test_device_maps_at_network_resolution_come_with_scaled_intrinsics(model, tmp_path):
    K = np.array([[200.0, 0, 159.5], [0, 200.0, 89.5], [0, 0, 1]])
    engine, rig = _engine_trained_on(model, tmp_path, K, 320, 180)
    frames = camera_images([(180, 320)] * N)
    maps = process(engine, frames, rig, resolution="network")
    assert [d.shape for d in maps.depth] == [c.shape for c in maps.confidence] == [(H, W)] * N
    for camera, original in zip(maps.cameras, rig.cameras, strict=True):
        np.testing.assert_allclose(camera.K, resize_camera(original, W, H).K)
    assert all(
        np.shares_memory(image.numpy(), frame) for image, frame in zip(engine.upload(frames), frames, strict=True)
    )
    # upsampled on the device, they are what the pipeline returns at camera resolution
    full = process(engine, frames, rig)
    assert [d.shape for d in full.depth] == [(180, 320)] * N
    upsampled = F.interpolate(torch.from_numpy(np.stack(maps.depth))[:, None], size=(180, 320), mode="bilinear")
    np.testing.assert_allclose(np.stack(full.depth), upsampled[:, 0].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="resolution must be one of"):
        SurroundDepthPipeline(engine, cloud=None, resolution="full")


def test_mixed_camera_sizes_come_back_as_a_list_of_maps(model):
    engine = DepthEngine(model, backend="torch", device="cpu")
    maps = torch.rand((N, 1, H, W))
    sizes = [(90, 160)] * 5 + [(121, 203)]
    assert [tuple(d.shape) for d in engine.resize(maps, sizes)] == sizes
    assert engine.resize(maps, [(90, 160)] * N).shape == (N, 90, 160)  # one size: one tensor


def test_thread_settings_keep_backends_from_fighting_over_cores(model, tmp_path):
    torch_engine = DepthEngine(model, backend="torch", device="cpu", threads=1)
    assert torch_engine.backend.threads == 1 and torch_engine.threads == 1
    before = torch.get_num_threads()
    process(torch_engine, camera_images([(H, W)] * N))
    assert torch.get_num_threads() == before  # the engine's thread switches leave the caller's count alone
    onnx_engine = DepthEngine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path, threads=2)
    options = onnx_engine.backend.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnx_runtime_gets_the_stream_to_run_on_and_a_per_gpu_engine_folder():
    """What ONNX Runtime is given on CUDA (built here without a GPU): torch's stream for every CUDA provider, so
    the backend orders runs with stream waits rather than torch.cuda.synchronize before each."""
    assert provider_options("cpu", 0, "fp32", None, None) == ["CPUExecutionProvider"]
    stream = {"device_id": "1", "has_user_compute_stream": "1", "user_compute_stream": "94011"}
    assert provider_options("cuda", 1, "fp32", 94011, None) == [
        ("CUDAExecutionProvider", stream),
        "CPUExecutionProvider",
    ]
    folder = Path("/cache/tensorrt_ep/NVIDIA-H200_ort1.22.0")
    (trt, options), cuda, cpu = provider_options("tensorrt", 1, "fp16", 94011, folder)
    assert (
        trt == "TensorrtExecutionProvider"
        and cuda == ("CUDAExecutionProvider", stream)
        and cpu == "CPUExecutionProvider"
    )
    assert options == stream | {
        "trt_fp16_enable": "1",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(folder),
    }
    assert provider_options("tensorrt", 0, "fp32", 94011, None)[0][1]["trt_fp16_enable"] == "0"


def test_a_staging_buffer_on_the_cpu_is_the_buffer_itself_and_never_waits():
    """The CUDA branch (pinned memory, an event per copy that `host` waits for before reuse) runs in
    benchmarks/bench_gpu.py, which checks that a second upload cannot overwrite a copy still queued."""
    staging = StagingBuffer((2, 4, 5, 3), torch.device("cpu"))
    host = staging.host()
    assert host.shape == (2, 4, 5, 3) and host.dtype == torch.uint8 and not host.is_pinned()
    host.fill_(7)
    assert staging.upload() is host and staging.host() is host  # no copy, no event to wait for
    assert (staging.upload() == 7).all()


def test_warm_up_runs_at_start_up_and_again_for_a_new_rig(model, tmp_path, caplog):
    engine = DepthEngine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path, adjacency=ring_adjacency(N))
    with caplog.at_level("INFO"):
        assert engine.warm_up() > 0
    assert "warming up the onnxruntime back-end on cpu" in caplog.text and "back-end ready in" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        assert engine.set_adjacency([(3, 5)])
    assert "back-end ready in" in caplog.text  # a warmed engine warms the back-end it builds for a new rig
    cold = DepthEngine(model, backend="torch", device="cpu")
    caplog.clear()
    with caplog.at_level("INFO"):
        cold.set_adjacency([(3, 5)])
    assert "warming up" not in caplog.text  # not asked to: the tools and tests build engines without it


def test_the_pipeline_warms_its_engine_up_before_it_is_handed_to_the_node(tmp_path, monkeypatch, caplog):
    """pipeline_from_settings runs in the node's constructor before any subscription is made (ros/node.py)."""
    from surround_depth_ros.core.params import settings_from_values
    from surround_depth_ros.core.pipeline import pipeline_from_settings

    monkeypatch.setenv("SURROUND_DEPTH_CACHE", str(tmp_path))
    values = {"cameras": [f"CAM_{i}" for i in range(N)], "backend": "onnxruntime", "device": "cpu"}
    with caplog.at_level("INFO"):
        pipeline = pipeline_from_settings(settings_from_values(values))
    assert pipeline.engine.backend_name == "onnxruntime"
    assert "depth engine: onnxruntime back-end ready in" in caplog.text
