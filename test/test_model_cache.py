"""The model cache: ONNX files and TensorRT engines keyed and verified by content, and a folder that cannot be made."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from pipeline_harness import process

from surround_depth_ros.core.params import settings_from_values
from surround_depth_ros.core.pipeline import StartupError, pipeline_from_settings
from surround_depth_ros.inference import BackendUnavailable, DepthEngine
from surround_depth_ros.inference.cache import cache_entry, entry_problem, file_sha256, sidecar_path
from surround_depth_ros.inference.onnx_backend import onnx_cache_key
from surround_depth_ros.inference.tensorrt_backend import engine_path, engine_signature
from surround_depth_ros.network import PRESETS, SurroundDepthStudent
from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime")
N = 6
H, W = PRESETS["tiny"].input_size


def _student(seed: int) -> SurroundDepthStudent:
    torch.manual_seed(seed)
    return SurroundDepthStudent(PRESETS["tiny"]).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two students of the same preset and shape (other weights), saved as checkpoints."""
    folder = tmp_path_factory.mktemp("students")
    paths = [folder / f"student_{seed}.pt" for seed in (0, 1)]
    for seed, path in enumerate(paths):
        save_checkpoint(path, _student(seed), adjacency=ring_adjacency(N))
    return paths


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    """A cache holding both students' ONNX entries, exported once for the module (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("cache")
    for path in checkpoints:
        DepthEngine(path, backend="onnxruntime", device="cpu", cache_dir=folder)
    return folder


def _onnx(checkpoint, cache) -> DepthEngine:  # noqa: ANN001
    return DepthEngine(checkpoint, backend="onnxruntime", device="cpu", cache_dir=cache)


def test_the_sidecar_records_the_checkpoints_weights_and_the_files_own_hash(checkpoints, exported):
    engine = _onnx(checkpoints[0], exported)
    recorded = json.loads(sidecar_path(engine.backend.path).read_text())
    assert recorded["checksum"] == engine.info.checksum and recorded["sha256"] == file_sha256(engine.backend.path)
    assert recorded["input_shapes"][0] == [1, N, 3, H, W]
    assert len(list(exported.iterdir())) == 4  # two entries, two sidecars


def test_another_models_onnx_swapped_in_is_exported_again_with_a_warning(checkpoints, exported, tmp_path, caplog):
    """The issue's case: the shipped student's cached ONNX replaced by another model's ONNX of the same shape."""
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)]
    expected = process(DepthEngine(checkpoints[0], backend="torch", device="cpu"), frames)
    cache = shutil.copytree(exported, tmp_path / "cache")
    mine, other = (_onnx(path, cache).backend.path for path in checkpoints)
    shutil.copyfile(other, mine)
    with caplog.at_level("WARNING"):
        engine = _onnx(checkpoints[0], cache)
    assert f"cached ONNX file {mine} is unusable" in caplog.text and "was replaced" in caplog.text
    for want, got in zip(expected.depth, process(engine, frames).depth, strict=True):
        assert np.abs(want - got).max() < 1e-3  # its own weights again, not the other model's
    caplog.clear()
    with caplog.at_level("INFO"):
        _onnx(checkpoints[0], cache)
    assert "exporting" not in caplog.text  # verified now: used as it is


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]), "cut short"),  # a copy cut short
        (lambda p: sidecar_path(p).unlink(), "has no sidecar"),  # a foreign file dropped into the cache
        (lambda p: sidecar_path(p).write_text("{"), "sidecar .* is unreadable"),
        (
            lambda p: sidecar_path(p).write_text(json.dumps({**json.loads(sidecar_path(p).read_text()), "opset": 11})),
            "built for another opset 11 -> 17",
        ),
    ],
)
def test_a_damaged_or_foreign_entry_is_rebuilt_with_a_warning(checkpoints, exported, tmp_path, caplog, damage, reason):
    cache = shutil.copytree(exported, tmp_path / "cache")
    first = _onnx(checkpoints[0], cache)
    path, digest = first.backend.path, file_sha256(first.backend.path)
    damage(path)
    with caplog.at_level("WARNING"):
        _onnx(checkpoints[0], cache)
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert warning.startswith(f"cached ONNX file {path} is unusable") and "exporting it again" in warning
    assert re.search(reason, warning), warning
    assert entry_problem(path, onnx_cache_key(first.module, first.checksum)) is None
    assert file_sha256(path) == digest  # the export is deterministic: the same file again
    assert len(list(cache.iterdir())) == 4  # entries and sidecars, no temporary left behind


def test_a_verified_entry_in_a_read_only_folder_is_only_read(checkpoints, exported, tmp_path):
    cache = shutil.copytree(exported, tmp_path / "cache")
    before = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    cache.chmod(0o555)
    try:
        _onnx(checkpoints[0], cache)
    finally:
        cache.chmod(0o755)
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == before


def test_a_cache_folder_that_cannot_be_made_is_a_clear_start_up_error(checkpoints, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(BackendUnavailable) as info:
        DepthEngine(checkpoints[0], backend="onnxruntime", device="cpu", cache_dir=blocker / "cache")
    assert str(info.value) == (
        f"the model cache folder {blocker / 'cache'} cannot be created (a file is in the way); set "
        "SURROUND_DEPTH_CACHE (or --cache-dir) to a writable folder"
    )
    monkeypatch.setenv("SURROUND_DEPTH_CACHE", str(blocker))  # the folder itself is a file
    values = {"cameras": [f"CAM_{i}" for i in range(N)], "checkpoint": str(checkpoints[0]), "device": "cpu"}
    with pytest.raises(StartupError, match=rf"cannot load the depth model .*: the model cache folder {blocker} cannot"):
        pipeline_from_settings(settings_from_values({**values, "backend": "onnxruntime"}))
    pipeline_from_settings(settings_from_values({**values, "backend": "torch"}))  # torch caches nothing


# ----------------------------------------------------------------- TensorRT engines (pure functions, no GPU)

H100 = {
    "torch": "2.9.0",
    "torch_tensorrt": "2.9.0",
    "tensorrt": "10.13.3.9",
    "gpu": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
}
H200 = H100 | {"gpu": "NVIDIA H200"}
ARGUMENTS = {"min_block_size": 1, "use_explicit_typing": True}


def _signature(runtime: dict, **changes) -> dict:
    fields = {"checksum": "ab" * 32, "neighbours": "cd" * 32, "shapes": [(1, N, 3, H, W)], "precision": "fp16"}
    fields |= changes
    return engine_signature(*fields.values(), runtime, ARGUMENTS)


def test_engine_names_carry_precision_gpu_and_tensorrt_version_so_two_gpus_keep_their_own(tmp_path):
    h100, h200 = engine_path(tmp_path, _signature(H100)), engine_path(tmp_path, _signature(H200))
    assert h100.name.startswith("student_fp16_NVIDIA-H100-80GB-HBM3_trt10.13.3.9_")
    assert h200.name.startswith("student_fp16_NVIDIA-H200_trt10.13.3.9_") and h100 != h200
    newer = engine_path(tmp_path, _signature(H100 | {"tensorrt": "10.14.1.48"}))
    assert newer.name.startswith("student_fp16_NVIDIA-H100-80GB-HBM3_trt10.14.1.48_")
    other_weights = engine_path(tmp_path, _signature(H100, checksum="ef" * 32))
    assert len({h100, newer, other_weights}) == 3
    assert engine_path(tmp_path, _signature(H100)) == h100  # deterministic
    weak = engine_signature("ab" * 32, "cd" * 32, [(1, N, 3, H, W)], "fp16", H100, {"enabled_precisions": {torch.half}})
    assert weak["compile_arguments"] == {"enabled_precisions": ["torch.float16"]}  # recorded as built


def test_a_swapped_truncated_or_foreign_engine_does_not_verify(tmp_path):
    signature = _signature(H100)
    path = engine_path(tmp_path, signature)
    with cache_entry(path, signature) as tmp:
        tmp.write_bytes(b"engine built on this H100" * 1000)
    assert entry_problem(path, signature) is None
    other = engine_path(tmp_path, _signature(H200))
    with cache_entry(other, _signature(H200)) as tmp:
        tmp.write_bytes(b"engine built on an H200" * 1000)
    assert entry_problem(path, signature) is None and entry_problem(other, _signature(H200)) is None  # both kept
    assert "built for another gpu 'NVIDIA H200' -> 'NVIDIA H100 80GB HBM3'" in entry_problem(other, signature)
    shutil.copyfile(other, path)  # the H200's engine under the H100's name
    assert "the file was replaced, cut short or damaged" in entry_problem(path, signature)
    path.write_bytes(b"engine built on this H100" * 10)
    assert "the file was replaced, cut short or damaged" in entry_problem(path, signature)
    sidecar_path(path).unlink()
    assert "has no sidecar" in entry_problem(path, signature)
    assert entry_problem(tmp_path / "absent.ep", signature) == "not in the cache"
