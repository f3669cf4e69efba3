"""Checkpoints (round trip, every kind of bad file) and export (torch.export, ONNX, the CLI tools)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading

import numpy as np
import pytest
import torch

from surround_depth_ros.base.atomic_file import atomic_path
from surround_depth_ros.base.resources import packaged_file
from surround_depth_ros.inference.onnx_backend import OnnxRuntimeBackend, export_onnx
from surround_depth_ros.inference.verify import TOLERANCES, output_errors, within_tolerance
from surround_depth_ros.network import PRESETS, ExportableStudent, SurroundDepthStudent
from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar, rig_to_dict
from surround_depth_ros.tools import export as export_tool
from surround_depth_ros.tools import model_info

N = 6
RING = ring_adjacency(N)


@pytest.fixture(scope="module")
def model() -> SurroundDepthStudent:
    torch.manual_seed(0)
    return SurroundDepthStudent(PRESETS["tiny"]).eval()


@pytest.fixture
def rig() -> CameraRig:
    K = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    T = np.eye(4)
    T[:3, 3] = [1.7, 0.0, 1.5]
    return CameraRig(tuple(Camera(f"CAM_{i}", 1600, 900, K, T) for i in range(N)))


@pytest.fixture
def saved(model, rig, tmp_path):
    path = tmp_path / "student.pt"
    checksum = save_checkpoint(path, model, rig=rig, adjacency=RING, extra={"epoch": 3})
    return path, checksum


def test_save_load_round_trip_gives_identical_outputs(model, saved, rig):
    path, checksum = saved
    loaded, info = load_checkpoint(path, expected="tiny")
    assert info.config == model.config and info.input_size == (64, 112) and info.checksum == checksum
    assert info.bins == {"n_bins": 16, "min_depth": 0.5, "max_depth": 80.0, "log": True, "temperature": 1.0}
    assert isinstance(info.rig, CameraRig) and info.rig.camera_names == rig.camera_names
    np.testing.assert_array_equal(info.rig.intrinsics(), rig.intrinsics())
    np.testing.assert_allclose(info.rig.extrinsics(), rig.extrinsics(), atol=1e-12)
    assert info.adjacency == RING.tolist() and info.extra == {"epoch": 3}
    x = torch.rand(1, N, 3, 64, 112)
    with torch.no_grad():
        assert torch.equal(model(x, RING).depth, loaded(x, RING).depth)


def _resave(path, mutate):
    payload = torch.load(path, weights_only=True)
    mutate(payload)
    torch.save(payload, path)


def test_checkpoint_stores_the_rig_in_the_rig_yaml_structure(model, tmp_path):
    """The rig is written as `rig.rig_to_dict` writes rig files (one format for both), radars and rotations kept."""
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # a forward-looking optical frame
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    rig = CameraRig((Camera("FRONT", 640, 480, K, T), Camera("BACK", 640, 480, K, T)), (Radar("R0", np.eye(4)),))
    path = tmp_path / "rig.pt"
    save_checkpoint(path, model, rig=rig, adjacency=[[0, 1]])
    assert torch.load(path, weights_only=True)["rig"] == rig_to_dict(rig)
    _, info = load_checkpoint(path)
    assert info.version == 2 and info.rig.camera_names == ["FRONT", "BACK"] and info.rig.radar_names == ["R0"]
    np.testing.assert_allclose(info.rig.extrinsics(), rig.extrinsics(), atol=1e-12)


def _version_1_rig(rig: CameraRig) -> dict:
    """The rig as format version 1 wrote it: K / T_base_cam matrices as nested lists."""
    return {
        "base_frame": rig.base_frame,
        "cameras": [
            {
                "name": c.name,
                "width": c.width,
                "height": c.height,
                "K": c.K.tolist(),
                "T_base_cam": c.T_base_cam.tolist(),
            }
            | {"frame_id": c.frame_id}
            for c in rig.cameras
        ],
        "radars": [
            {"name": r.name, "T_base_radar": r.T_base_radar.tolist(), "frame_id": r.frame_id} for r in rig.radars
        ],
    }


def test_version_1_checkpoint_with_the_matrix_rig_still_loads(model, saved, rig):
    """Checkpoints written before the rig YAML structure (format version 1) load into the same `CameraRig`."""
    path, checksum = saved
    _resave(path, lambda p: p.update(version=1, rig=_version_1_rig(rig)))
    loaded, info = load_checkpoint(path, expected="tiny")
    assert info.version == 1 and info.checksum == checksum and info.rig.camera_names == rig.camera_names
    np.testing.assert_array_equal(info.rig.intrinsics(), rig.intrinsics())
    np.testing.assert_array_equal(info.rig.extrinsics(), rig.extrinsics())
    assert [c.frame_id for c in info.rig.cameras] == [c.frame_id for c in rig.cameras]
    x = torch.rand(1, N, 3, 64, 112)
    with torch.no_grad():
        assert torch.equal(model(x, RING).depth, loaded(x, RING).depth)


def test_shipped_default_checkpoint_is_version_1_and_loads_its_rig():
    """The packaged student predates format version 2: its matrix rig becomes the six nuScenes-like cameras."""
    _, info = load_checkpoint(packaged_file("models", "student_default.pt"))
    assert info.version == 1 and len(info.rig.cameras) == 6
    assert info.rig.cameras[0].K[0, 0] > 0 and (info.rig.cameras[0].width, info.rig.cameras[0].height) == (224, 128)


def test_unusable_rig_is_a_clear_error(saved):
    path, _ = saved
    _resave(path, lambda p: p["rig"]["cameras"][0].pop("intrinsics"))
    with pytest.raises(CheckpointError, match="unusable rig.*intrinsics"):
        load_checkpoint(path)


def test_truncated_file_is_a_clear_error(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated.*copy it again"):
        load_checkpoint(path)


def test_modified_weights_fail_the_checksum(saved):
    path, _ = saved
    _resave(path, lambda p: p["state_dict"]["bin_head.logits.1.bias"].add_(1e-3))
    with pytest.raises(CheckpointError, match="checksum .* does not match"):
        load_checkpoint(path)


def test_wrong_version_missing_file_and_foreign_file(saved, tmp_path):
    path, _ = saved
    _resave(path, lambda p: p.update(version=99))
    with pytest.raises(CheckpointError, match="format version 99, this surround_depth_ros reads versions \\[1, 2\\]"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a surround_depth_ros student checkpoint"):
        load_checkpoint(foreign)


def test_a_directory_or_a_fifo_is_named_for_what_it_is_and_the_fifo_is_not_opened(tmp_path):
    with pytest.raises(CheckpointError, match=r"is a directory, not a checkpoint file; check the path"):
        load_checkpoint(tmp_path)
    fifo = tmp_path / "student.pt"
    os.mkfifo(fifo)
    raised: list[BaseException] = []
    loader = threading.Thread(target=lambda: raised.extend(_raised(load_checkpoint, fifo)), daemon=True)
    loader.start()
    loader.join(30)
    if loader.is_alive():  # it opened the FIFO and waits for a writer: give it one that leaves at once
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_checkpoint opened the FIFO and blocked until a writer came")
    assert isinstance(raised[0], CheckpointError)
    assert "student.pt is not a regular file (a FIFO, device or socket)" in str(raised[0])


def _raised(function, *args) -> list[BaseException]:  # noqa: ANN001 - any callable
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - handed to the test thread
        return [error]
    return []


def test_empty_checkpoint_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match=r"empty.pt is empty \(0 bytes\); copy it again"):
        load_checkpoint(empty)


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "cache" / "engine.ep"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".ep"
        tmp.write_bytes(b"half of a new fi")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in target.parent.iterdir()) == ["engine.ep"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and len(list(target.parent.iterdir())) == 1


def test_config_that_does_not_fit_the_weights(saved):
    path, _ = saved
    _resave(path, lambda p: p["config"].update(n_bins=32))
    with pytest.raises(CheckpointError, match="weights do not fit preset 'tiny'"):
        load_checkpoint(path)
    _resave(path, lambda p: p["config"].update(n_bins=16, attention="flash"))
    with pytest.raises(CheckpointError, match="unusable config.*unknown student config keys"):
        load_checkpoint(path)


def test_expected_preset_mismatch(saved):
    path, _ = saved
    with pytest.raises(CheckpointError, match="holds preset 'tiny' but 'default' was asked for"):
        load_checkpoint(path, expected="default")


def test_onnx_runtime_matches_pytorch_within_tolerance(tmp_path):
    # radar FiLM, temporal attention and the DASPP decoder all in one graph (plain tiny: test_export_cli_...)
    config = dataclasses.replace(PRESETS["tiny"], name="tiny-temporal-daspp", temporal=True, decoder="daspp")
    torch.manual_seed(0)
    module = ExportableStudent(SurroundDepthStudent(config).eval(), RING, N)
    inputs = list(module.example_inputs())
    inputs[1][:, :, 0, 20, 30] = 15.0  # a few radar returns
    inputs[2] = torch.randn_like(inputs[2])  # previous frame's features
    inputs = tuple(inputs)
    path = export_onnx(module, tmp_path / "m.onnx", inputs)
    with torch.no_grad():
        reference = module(*inputs)
    outputs = OnnxRuntimeBackend(path).run(inputs)
    assert len(outputs) == len(module.output_names)
    errors = output_errors(reference, outputs)
    assert within_tolerance(errors, "fp32"), (errors, TOLERANCES["fp32"])
    torch.testing.assert_close(outputs[2], reference[2], rtol=1e-4, atol=1e-4)


def test_tolerance_check_fails_on_a_real_difference():
    depth = torch.full((1, N, 1, 4, 4), 10.0)
    conf = torch.full_like(depth, 0.9)
    assert within_tolerance(output_errors((depth, conf), (depth * 1.00001, conf)), "fp32")
    assert not within_tolerance(output_errors((depth, conf), (depth * 1.001, conf)), "fp32")
    assert not within_tolerance(output_errors((depth, conf), (depth * float("nan"), conf)), "fp16")


def _tool_args(tool, argv):
    parser = argparse.ArgumentParser()
    tool.add_arguments(parser)
    return parser.parse_args(argv)


def test_export_cli_writes_and_verifies_onnx_and_exported_program(saved, tmp_path, capsys):
    """Covers the torch.export -> save -> load round trip and ONNX Runtime against PyTorch."""
    path, _ = saved
    out = tmp_path / "export"
    assert export_tool.run(_tool_args(export_tool, ["--checkpoint", str(path), "--output-dir", str(out)])) == 0
    printed = capsys.readouterr().out
    assert (out / "student.onnx").is_file() and (out / "student.pt2").is_file()
    assert printed.count(": OK") == 2 and "tolerance 1e-04" in printed
    if not torch.cuda.is_available():
        from surround_depth_ros.tools.cli import main

        assert main(["export", "--checkpoint", str(path), "--build-engine"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("surround-depth export: error: cannot build a TensorRT engine") and "\n" not in error


def test_models_cli_prints_params_and_flops(capsys):
    assert model_info.run(_tool_args(model_info, ["--presets", "tiny", "default"])) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:3]}
    tiny_params = sum(p.numel() for p in SurroundDepthStudent(PRESETS["tiny"]).parameters())
    assert rows["tiny"][7] == f"{tiny_params / 1e6:.2f}M"
    assert 10 < float(rows["default"][8]) < 100  # GFLOPs of 6 x 352x640
