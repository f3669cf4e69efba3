"""Teacher adapters on real code paths: a tiny random Depth Anything saved and loaded from disk, a checkpoint
of the project's own network, and the disk cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import save_tiny_depth_anything

from surround_depth_ros.teachers import CachedTeacher, Teacher, TeacherOutput
from surround_depth_ros.teachers.base import ForwardResult

pytest.importorskip("transformers", reason="the Depth Anything adapter needs `transformers`")


@pytest.fixture(scope="module")
def tiny_depth_anything(tmp_path_factory):
    """A randomly initialised Depth Anything of the real architecture (small Dinov2 backbone), saved locally."""
    path = tmp_path_factory.mktemp("depth_anything_tiny")
    model = save_tiny_depth_anything(path)
    return path, model


def test_depth_anything_adapter_matches_the_model(tiny_depth_anything):
    from surround_depth_ros.teachers import DepthAnythingTeacher

    path, model = tiny_depth_anything
    teacher = DepthAnythingTeacher(path, input_height=56)
    images = torch.rand(2, 3, 3, 40, 72)
    out = teacher.predict(images)
    assert out.kind == "relative_inverse"
    assert out.depth.shape == (2, 3, 1, 40, 72) and not out.depth.requires_grad
    assert teacher.network_size(40, 72) == (56, 98)
    assert [tuple(f.shape) for f in out.features] == [(2, 3, 32, 4, 7)] * 4
    # the same numbers as running the model by hand on the documented preprocessing
    x = F.interpolate(images.flatten(0, 1), size=(56, 98), mode="bilinear", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        ref = model(pixel_values=x, output_hidden_states=True)
    ref_depth = F.interpolate(ref.predicted_depth[:, None], size=(40, 72), mode="bilinear", align_corners=False)
    assert torch.allclose(out.depth.flatten(0, 1), ref_depth, atol=1e-5)
    tokens = ref.hidden_states[4][:, 1:]  # drop the class token
    assert torch.allclose(out.features[-1].flatten(0, 1), tokens.transpose(1, 2).reshape(6, 32, 4, 7), atol=1e-5)


def test_depth_anything_saliency_and_frozen(tiny_depth_anything):
    from surround_depth_ros.teachers import DepthAnythingTeacher

    teacher = DepthAnythingTeacher(tiny_depth_anything[0], input_height=28)
    out = teacher.predict(torch.rand(1, 2, 3, 28, 28), saliency=True)
    assert out.saliency.shape == (1, 2, 1, 2, 2) and not out.saliency.requires_grad
    assert torch.allclose(out.saliency.sum(dim=(3, 4)), torch.ones(1, 2, 1), atol=1e-5)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_depth_anything_clear_errors(tmp_path, tiny_depth_anything):
    from surround_depth_ros.teachers import DepthAnythingTeacher

    with pytest.raises(FileNotFoundError, match="does not exist"):
        DepthAnythingTeacher(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        DepthAnythingTeacher(tmp_path)
    (tmp_path / "config.json").write_text((tiny_depth_anything[0] / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="weight files"):
        DepthAnythingTeacher(tmp_path)
    teacher = DepthAnythingTeacher(tiny_depth_anything[0], input_height=28)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        teacher.predict(torch.rand(1, 1, 3, 28, 28) * 255)


def test_own_family_teacher_from_checkpoint(tmp_path):
    from surround_depth_ros.network.checkpoint import save_checkpoint
    from surround_depth_ros.network.student import SurroundDepthStudent, preset
    from surround_depth_ros.teachers import OwnFamilyTeacher

    torch.manual_seed(0)
    model = SurroundDepthStudent(preset("tiny")).eval()
    adjacency = torch.tensor([[0, 1], [1, 0]])
    save_checkpoint(tmp_path / "teacher.pt", model, adjacency=adjacency)
    teacher = OwnFamilyTeacher(tmp_path / "teacher.pt")
    assert not any(p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
    h, w = preset("tiny").input_size
    images = torch.rand(1, 2, 3, h, w)
    out = teacher.predict(images)
    with torch.no_grad():
        ref = model(images, adjacency, return_aux=True)  # [0, 1]: teacher and model normalise alike
    assert out.kind == "metric" and torch.allclose(out.depth, ref.depth, atol=1e-5)
    assert out.bin_centres.shape == (1, 2, preset("tiny").n_bins) and len(out.intermediate_depths) == 3
    assert len(out.features) == 5 and out.features[0].shape[:2] == (1, 2)
    salient = teacher.predict(images, saliency=True)
    assert salient.saliency.shape[:3] == (1, 2, 1)
    assert torch.allclose(salient.saliency.sum(dim=(3, 4)), torch.ones(1, 2, 1), atol=1e-5)
    assert len(out.image_features) == 5 and len(out.radar_features) == 5  # the tiny preset has radar
    # an affine-invariant model is served like Depth Anything's relative output: disparity, nothing metric
    relative = OwnFamilyTeacher(tmp_path / "teacher.pt", output="relative_inverse").predict(images)
    assert relative.kind == "relative_inverse" and torch.allclose(relative.depth, 1.0 / ref.depth, rtol=1e-4)
    assert relative.intermediate_depths is None and relative.bin_centres is None


class CountingTeacher(Teacher):
    """A real (tiny, deterministic) conv teacher that counts how many frame sets it was run on."""

    def __init__(self) -> None:
        torch.manual_seed(1)
        self.net = torch.nn.Conv2d(3, 4, 3, padding=1).requires_grad_(False)
        self.calls = 0

    @property
    def identity(self) -> str:
        return "counting-conv"

    def forward(self, images, radar, adjacency):
        self.calls += images.shape[0]
        b, n = images.shape[:2]
        feats = self.net(images.flatten(0, 1))
        depth = 1.0 + feats[:, :1].abs() * 10
        return ForwardResult(TeacherOutput(depth.unflatten(0, (b, n)), "metric", features=[feats.unflatten(0, (b, n))]))


def test_cache_reuses_predictions_without_calling_the_teacher(tmp_path):
    inner = CountingTeacher()
    cached = CachedTeacher(inner, tmp_path / "cache")
    images = torch.rand(2, 3, 3, 8, 12)
    first = cached.predict(images, ["scene_a/0", "scene_a/1"])
    assert inner.calls == 2 and cached.misses == 2
    second = cached.predict(images, ["scene_a/0", "scene_a/1"])
    assert inner.calls == 2 and cached.hits == 2  # not run again
    for key, value in first.to_tensors().items():
        assert torch.equal(value, second.to_tensors()[key])
    direct = CountingTeacher().predict(images)
    assert torch.allclose(first.depth, direct.depth, rtol=1e-3)  # float16 storage
    # one new frame set in the batch: only it runs; a new image size is a new key
    cached.predict(images, ["scene_a/1", "scene_b/0"])
    assert inner.calls == 3
    cached.predict(F.interpolate(images.flatten(0, 1), size=(4, 6)).unflatten(0, (2, 3)), ["scene_a/0", "scene_a/1"])
    assert inner.calls == 5


def test_cache_recovers_from_a_damaged_file_and_checks_names(tmp_path):
    inner = CountingTeacher()
    cached = CachedTeacher(inner, tmp_path, dtype=torch.float32)
    images = torch.rand(1, 2, 3, 8, 8)
    first = cached.predict(images, ["x"])
    for file in tmp_path.glob("*.pt"):
        file.write_bytes(b"garbage")
    again = cached.predict(images, ["x"])
    assert inner.calls == 2 and torch.equal(first.depth, again.depth)
    with pytest.raises(ValueError, match="unique"):
        cached.predict(torch.rand(2, 2, 3, 8, 8), ["x", "x"])
