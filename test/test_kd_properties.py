"""Every KD loss through real networks: 0 when the student is its teacher (same architecture and weights),
positive when it is not. Where a loss cannot be 0 by construction, the test says why and checks what holds.

Student and teacher are the tiny radar preset (image and radar encoders, cross-view attention),
the teacher loaded from a checkpoint through `OwnFamilyTeacher` exactly as training loads it;
both run in eval mode on the same images and radar, so "the student is the teacher" is exact.
Fresh networks have BatchNorm statistics of (0, 1) and predict a nearly constant depth with
featureless maps (every Grad-CAM is then uniform); their statistics are first measured on a few
random batches, which gives them the varied activations of a trained network.
"""

from __future__ import annotations

import pytest
import torch

from surround_depth_ros.losses import LossInputs, build_losses, cross_interaction_targets
from surround_depth_ros.network.checkpoint import save_checkpoint
from surround_depth_ros.network.student import SurroundDepthStudent, preset
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.teachers import OwnFamilyTeacher

CONFIG = preset("tiny")
H, W = CONFIG.input_size
# tiny preset: image encoder (width 0.25) and radar encoder (width 0.25) channels at strides 4, 8, 16
PIXELWISE = {"student_channels": [[8, 8, 24], [8, 8, 24]], "teacher_channels": [[8, 8, 24], [8, 8, 24]]}

# Each loss that is 0 for identical networks, with the parameters it is run with.
ZERO_WHEN_IDENTICAL = {
    "pixelwise_feature": {"weight": 1.0, **PIXELWISE},
    "pairwise": {"weight": 1.0},
    "inter_depth": 1.0,
    "depth_distribution": {"weight": 1.0, "bins": "fixed"},
    "depth_distribution_student_bins": {"weight": 1.0, "bins": "student"},
    "saliency": {"weight": 1.0},
    "saliency_cosine": {"weight": 1.0, "mode": "cosine"},
    "view_relational": {"weight": 1.0, "student_feature": -2, "teacher_feature": -2, "overlap_depth": "student"},
    "curvature": 1.0,
}


def calibrated_network(seed: int, adjacency: torch.Tensor) -> SurroundDepthStudent:
    """A fresh tiny network whose BatchNorm statistics are measured on three random batches, in eval mode."""
    torch.manual_seed(seed)
    model = SurroundDepthStudent(CONFIG)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    generator = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 6, 3, H, W, generator=generator), adjacency)
    return model.eval()


def _loss(name: str, inputs: LossInputs) -> float:
    base = name.removesuffix("_student_bins").removesuffix("_cosine")
    total, _ = build_losses({base: ZERO_WHEN_IDENTICAL[name]})(inputs)
    return float(total)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    rig = default_rig().scaled(W, H)
    adjacency = torch.tensor(rig.adjacency())
    teacher_model = calibrated_network(0, adjacency)
    path = tmp_path_factory.mktemp("kd") / "teacher.pt"
    save_checkpoint(path, teacher_model, adjacency=adjacency)
    teacher = OwnFamilyTeacher(path)
    other = calibrated_network(1, adjacency)
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(1, 6, 3, H, W, generator=generator)
    radar = torch.zeros(1, 6, 4, H, W)
    hits = torch.rand(1, 6, 1, H, W, generator=generator) < 0.02
    radar[:, :, :1] = torch.where(hits, torch.rand(hits.shape, generator=generator) * 40 + 2, 0.0)
    radar[:, :, 1:2] = torch.where(hits, 10.0, 0.0)
    target = teacher.predict(images, radar=radar, adjacency=adjacency, saliency=True)
    return teacher_model, other, images, radar, adjacency, target, rig


def student_inputs(model, images, radar, adjacency, target, rig) -> LossInputs:
    """What the trainer hands the losses, for `model` as student (eval mode, graph kept for Grad-CAM)."""
    out = model(images, adjacency, radar=radar, return_aux=True)
    return LossInputs(
        depth=out.depth,
        bin_logits=out.bin_logits,
        bin_centres=out.bin_centres,
        features=out.features,
        decoder_features=out.decoder_features,
        image_features=out.image_features,
        radar_features=out.radar_features,
        intermediate_depths=out.intermediate_depths,
        teacher=target,
        images=images,
        intrinsics=torch.from_numpy(rig.intrinsics()).float()[None],
        extrinsics=torch.from_numpy(rig.extrinsics()).float()[None],
        camera_pairs=adjacency,
    )


@pytest.mark.parametrize("name", sorted(ZERO_WHEN_IDENTICAL))
def test_kd_loss_is_zero_when_the_student_is_the_teacher_and_positive_otherwise(setting, name):
    teacher_model, other, images, radar, adjacency, target, rig = setting
    same = _loss(name, student_inputs(teacher_model, images, radar, adjacency, target, rig))
    different = _loss(name, student_inputs(other, images, radar, adjacency, target, rig))
    assert same == pytest.approx(0.0, abs=1e-5), f"{name}: {same} for identical networks"
    assert different > 1e-3, f"{name}: {different} for different networks"


def test_cross_interaction_cannot_be_zero_for_identical_networks_and_why(setting):
    """Cross-interaction KD (2512.08700) targets the soft assignment q of the teacher's *normalised depth* to the
    student's normalised centres, q_k = softmax(-|t' - c'_k| / tau_a), not the teacher's bin probabilities: it is
    built for a relative teacher that has no bins. A network's own bin distribution p is whatever ground truth
    trained, generally wider or narrower than q, so KL(q || p) > 0 even when student = teacher (here it is even
    larger than for a different network: the identical network's own distribution is far from the assignment).
    What holds: the loss is 0 exactly when the student's probabilities are q, and positive otherwise."""
    teacher_model, other, images, radar, adjacency, target, rig = setting
    kd = build_losses({"cross_interaction": 1.0})
    same_inputs = student_inputs(teacher_model, images, radar, adjacency, target, rig)
    same = float(kd(same_inputs)[0])
    different = float(kd(student_inputs(other, images, radar, adjacency, target, rig))[0])
    assert same > 1e-3 and different > 1e-3
    q, _ = cross_interaction_targets(
        target.depth, "metric", same_inputs.bin_centres, same_inputs.depth, tuple(same_inputs.bin_logits.shape[-2:])
    )
    same_inputs.bin_logits = q.clamp(min=1e-30).log().unflatten(0, (1, 6))
    assert float(kd(same_inputs)[0]) == pytest.approx(0.0, abs=1e-5)
