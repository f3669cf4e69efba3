"""Every loss: zero where student equals teacher, invariances, gradients to the student only, masks honoured."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surround_depth_ros.base.geometry import rpy_to_matrix
from surround_depth_ros.losses import (
    LossInputs,
    PixelwiseFeatureKD,
    bin_centre_loss,
    build_losses,
    cross_interaction_kd_loss,
    cross_interaction_targets,
    curvature_consistency_loss,
    depth_distribution_kd_loss,
    find_view_overlap,
    grad_cam,
    inter_depth_kd_loss,
    log_spaced_centres,
    masked_l1_loss,
    mean_depth_target,
    pairwise_kd_loss,
    saliency_kd_loss,
    silog_loss,
    surround_photometric_loss,
    view_relational_kd_loss,
)
from surround_depth_ros.losses.self_supervised import photometric_error, warp_from_source
from surround_depth_ros.losses.view_relational import ViewOverlap

torch.manual_seed(0)


def depth_map(B=2, N=3, H=8, W=10, sparse=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(B, N, 1, H, W, generator=g) * 60 + 2
    if sparse:
        d[torch.rand(d.shape, generator=g) < sparse] = 0
    return d


def student(x):
    return x.clone().requires_grad_(True)


def teacher_like(x):
    return x.clone().requires_grad_(True)  # the losses must not send gradients here


def assert_student_only(loss, s, t):
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


# ----------------------------------------------------------------------------- supervised


def test_silog_zero_when_equal_and_masks():
    gt = depth_map(sparse=0.4)
    assert silog_loss(gt.clamp(min=1), gt).item() == pytest.approx(0.0, abs=1e-4)
    pred = student(gt.clamp(min=1) * 1.3)
    loss = silog_loss(pred, gt, variance_focus=0.85)
    e = math.log(1.3)
    assert loss.item() == pytest.approx(10 * math.sqrt(e * e - 0.85 * e * e), rel=1e-4)
    assert silog_loss(pred, gt, variance_focus=1.0).item() == pytest.approx(0.0, abs=1e-4)  # scale invariant
    loss.backward()
    assert (pred.grad[gt == 0] == 0).all()  # invalid pixels get no gradient
    changed = pred.detach().clone()
    changed[gt == 0] = 1234.0
    assert silog_loss(changed, gt).item() == pytest.approx(loss.item())


def test_l1_value_and_all_invalid_is_zero_not_nan():
    gt = depth_map(sparse=0.5)
    pred = student(gt + 2.0)
    loss = masked_l1_loss(pred, gt)
    assert loss.item() == pytest.approx(2.0, rel=1e-5)
    for fn in (masked_l1_loss, silog_loss):
        empty = fn(pred, torch.zeros_like(gt))
        assert empty.item() == 0.0
        empty.backward()
        assert torch.isfinite(pred.grad).all()
        pred.grad = None


def test_bin_centre_loss_matches_brute_force_chamfer():
    gt = depth_map(B=1, N=2, sparse=0.5)
    gt[0, 1] = 0  # one view without ground truth does not count
    centres = student(torch.rand(1, 2, 7) * 60 + 2)
    loss = bin_centre_loss(centres, gt)
    pts = gt[0, 0].flatten()
    pts = pts[pts > 0]
    c = centres[0, 0].detach()
    d = (pts[:, None] - c[None, :]) ** 2
    expected = d.min(dim=1).values.mean() + d.min(dim=0).values.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert centres.grad[0, 1].abs().sum() == 0 and centres.grad[0, 0].abs().sum() > 0
    assert bin_centre_loss(centres, torch.zeros_like(gt)).item() == 0.0


# ----------------------------------------------------------------------------- cross-interaction


@pytest.mark.parametrize("kind", ["relative", "relative_inverse"])
def test_cross_interaction_target_invariant_to_teacher_scale_and_shift(kind):
    ref = depth_map()
    centres = torch.sort(torch.rand(2, 3, 16) * 60 + 2, dim=-1).values
    teacher = torch.rand(2, 3, 1, 16, 20) + 0.1
    a, _ = cross_interaction_targets(teacher, kind, centres, ref, (8, 10))
    b, _ = cross_interaction_targets(teacher * 7.5 + 3.2, kind, centres, ref, (8, 10))
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.sum(dim=1), torch.ones(1), atol=1e-5)


def test_cross_interaction_inverse_teacher_picks_the_right_bin():
    centres = torch.linspace(2, 60, 16).expand(1, 2, 16)
    ref = centres[0, 0][torch.randint(0, 16, (1, 2, 1, 8, 10))]  # every pixel exactly on a centre
    disparity = 3.0 / ref + 0.7  # Depth Anything-like: affine in inverse depth
    target, valid = cross_interaction_targets(disparity, "relative_inverse", centres, ref, (8, 10), None, 0.01)
    assert valid.all()
    assert torch.equal(centres[0, 0][target.argmax(dim=1)], ref.reshape(2, 8, 10))


def test_cross_interaction_kd_zero_at_target_gradients_and_masks():
    ref = depth_map()
    centres = student(torch.sort(torch.rand(2, 3, 16) * 60 + 2, dim=-1).values)
    t = teacher_like(torch.rand(2, 3, 1, 8, 10))
    mask = torch.rand(2, 3, 1, 8, 10) > 0.3
    T = 2.0
    target, _ = cross_interaction_targets(t, "relative", centres, ref, (8, 10), mask)
    at_target = cross_interaction_kd_loss(T * torch.log(target), centres, ref, t, "relative", mask, temperature=T)
    assert at_target.item() == pytest.approx(0.0, abs=1e-5)
    logits = student(torch.randn(2, 3, 16, 8, 10))
    loss = cross_interaction_kd_loss(logits, centres, ref, t, "relative", mask, temperature=T)
    assert loss.item() > 0.01
    assert_student_only(loss, logits, t)
    assert centres.grad is None  # centres learn from ground truth only
    assert (logits.grad.sum(dim=2, keepdim=True)[~mask] == 0).all()
    changed = t.detach().clone()
    changed[~mask] = 99.0
    assert cross_interaction_kd_loss(logits, centres, ref, changed, "relative", mask, temperature=T).item() == (
        pytest.approx(loss.item(), rel=1e-6)
    )


# ----------------------------------------------------------------------------- view-relational


def two_camera_rig(yaw_deg=40.0, H=24, W=32):
    K = torch.tensor([[20.0, 0, W / 2 - 0.5], [0, 20.0, H / 2 - 0.5], [0, 0, 1]], dtype=torch.float64)
    optical = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=np.float64)  # optical -> base (REP 103)
    T = []
    for yaw in (0.0, math.radians(yaw_deg)):
        M = np.eye(4)
        M[:3, :3] = rpy_to_matrix(0, 0, yaw) @ optical
        M[:3, 3] = [1.0, 0.2 * (yaw != 0), 1.5]
        T.append(M)
    return K.expand(1, 2, 3, 3).float(), torch.tensor(np.stack(T))[None].float()


def test_view_overlap_geometry_round_trip():
    H, W = 24, 32
    K, T = two_camera_rig(H=H, W=W)
    depth = torch.full((1, 2, 1, H, W), 10.0)
    overlap = find_view_overlap(depth, K, T, torch.tensor([[0, 1]]), grid_size=(6, 8))
    valid = overlap.valid[0, 0]
    assert 0 < valid.sum() < valid.numel()  # part of camera 0 is seen by camera 1, not all
    # back-project the matches in camera 1 at the depth of the point there: same base point as from camera 0
    pix = lambda g: torch.stack([(g[..., 0] + 1) / 2 * W - 0.5, (g[..., 1] + 1) / 2 * H - 0.5], -1)  # noqa: E731
    p0, p1 = pix(overlap.grid_source[0, 0][valid]), pix(overlap.grid_target[0, 0][valid])
    ray0 = torch.cat([p0, torch.ones(len(p0), 1)], 1) @ torch.linalg.inv(K[0, 0]).T
    base = ray0 * 10.0 @ T[0, 0, :3, :3].T + T[0, 0, :3, 3]
    cam1 = (base - T[0, 1, :3, 3]) @ T[0, 1, :3, :3]
    uv1 = cam1 @ K[0, 1].T
    assert torch.allclose(uv1[:, :2] / uv1[:, 2:], p1, atol=1e-3)


def test_view_relational_zero_invariant_to_channel_rotation_and_student_only():
    H, W = 24, 32
    K, T = two_camera_rig(H=H, W=W)
    depth = torch.full((1, 2, 1, H, W), 10.0)
    overlap = find_view_overlap(depth, K, T, torch.tensor([[0, 1], [1, 0]]), grid_size=(6, 8))
    t = teacher_like(torch.randn(2, 8, 6, 8))
    assert view_relational_kd_loss(t.detach().clone(), t, overlap).item() == pytest.approx(0.0, abs=1e-6)
    q, _ = torch.linalg.qr(torch.randn(8, 8))  # orthogonal mix of channels keeps every cosine similarity
    rotated = torch.einsum("dc,nchw->ndhw", q, t.detach())
    assert view_relational_kd_loss(rotated, t, overlap).item() == pytest.approx(0.0, abs=1e-5)
    s = student(torch.randn(2, 5, 12, 16))  # other channels and resolution than the teacher
    loss = view_relational_kd_loss(s, t, overlap)
    assert loss.item() > 1e-3
    assert_student_only(loss, s, t)


def test_view_relational_ignores_features_outside_the_overlap():
    grid = torch.tensor([[[[-0.5, -0.5], [-0.4, -0.5], [0.9, 0.9]]]])  # (B=1, E=1, P=3, 2)
    overlap = ViewOverlap(torch.tensor([[0, 1]]), grid, grid.clone(), torch.tensor([[[True, True, False]]]))
    s, t = torch.randn(2, 4, 10, 10), torch.randn(2, 4, 10, 10)
    base = view_relational_kd_loss(s, t, overlap)
    s2 = s.clone()
    s2[:, :, 7:, 7:] = 50.0  # around the invalid third point only
    assert view_relational_kd_loss(s2, t, overlap).item() == pytest.approx(base.item(), rel=1e-6)
    empty = ViewOverlap(overlap.pairs, grid, grid, torch.zeros(1, 1, 3, dtype=torch.bool))
    assert view_relational_kd_loss(s, t, empty).item() == 0.0


# ----------------------------------------------------------------------------- LiRCDepth


def test_pixelwise_feature_kd_weights_and_gradients():
    kd = PixelwiseFeatureKD([4, 6], [4, 3])
    with torch.no_grad():
        kd.adapters[0].weight.copy_(torch.eye(4)[:, :, None, None])
        kd.adapters[0].bias.zero_()
    fs = [student(torch.randn(6, 4, 8, 8)), student(torch.randn(6, 6, 4, 4))]
    ft = [teacher_like(fs[0].detach()), teacher_like(torch.randn(6, 3, 8, 8))]
    loss = kd(fs, ft)
    second = (kd.adapters[1](fs[1]) - F.interpolate(ft[1].detach(), size=(4, 4), mode="bilinear")).abs().mean()
    assert loss.item() == pytest.approx(0.5 * second.item(), rel=1e-5)  # scale 0 matches exactly, scale 1 weighs 2^-1
    loss.backward()
    assert fs[1].grad.abs().sum() > 0 and kd.adapters[1].weight.grad.abs().sum() > 0
    assert ft[0].grad is None and ft[1].grad is None
    with pytest.raises(ValueError, match="channels"):
        kd([fs[1], fs[1]], ft)


def test_pairwise_kd_matches_formula_and_is_scale_free():
    fs = student(torch.rand(2, 3, 4, 10, 10))
    ft = teacher_like(torch.rand(6, 7, 20, 20))
    loss = pairwise_kd_loss(fs, ft)
    a = F.normalize(F.adaptive_max_pool2d(fs.detach().flatten(0, 1), 5).flatten(2), dim=1)
    b = F.normalize(F.adaptive_max_pool2d(ft.detach(), 5).flatten(2), dim=1)
    expected = ((a.transpose(1, 2) @ a - b.transpose(1, 2) @ b) ** 2).sum(dim=(1, 2)).mean() / 25**2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert pairwise_kd_loss(ft.detach() * 3.0, ft).item() == pytest.approx(0.0, abs=1e-7)
    assert_student_only(loss, fs, ft)


def test_inter_depth_kd_formula_zero_and_masks():
    """L = sum_i 2^-i sum u|e| / sum u over the teacher's own intermediate depths (i = 0 at the finest scale)."""
    dts = [depth_map(B=1, N=2, H=4, W=4, seed=3), depth_map(B=1, N=2, H=8, W=8, seed=4)]  # teacher's 1/8, 1/4
    ds = [student(torch.rand(1, 2, 1, 2, 2) * 50 + 1), student(torch.rand(1, 2, 1, 4, 4) * 50 + 1)]
    t = [teacher_like(d) for d in dts]
    loss = inter_depth_kd_loss(ds, t)
    terms = []
    for d, dt in zip(ds, dts, strict=True):
        r = F.interpolate(dt.flatten(0, 1), size=d.shape[-2:], mode="area")
        e = (r - d.detach().flatten(0, 1)).abs()
        u = 1 - torch.exp(-5 * e / (r + d.detach().flatten(0, 1)))
        terms.append((u * e).sum() / u.sum())
    assert loss.item() == pytest.approx(0.5 * terms[0].item() + terms[1].item(), rel=1e-5)
    same = [
        F.interpolate(dt.flatten(0, 1), size=d.shape[-2:], mode="area").reshape(d.shape)
        for d, dt in zip(ds, dts, strict=True)
    ]
    assert inter_depth_kd_loss(same, dts).item() == pytest.approx(0.0, abs=1e-6)
    assert_student_only(loss, ds[1], t[1])
    masked = [dt.clone() for dt in dts]
    masked[1][..., :4, :] = 0  # teacher has no depth in the top half at 1/4
    garbage = [d.detach().clone() for d in ds]
    garbage[1][..., :2, :] = 1e4
    assert inter_depth_kd_loss(garbage, masked).item() == pytest.approx(
        inter_depth_kd_loss(ds, masked).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="intermediate depths"):
        inter_depth_kd_loss(ds, dts[0])  # the final depth at every scale is what the paper does not do


# ----------------------------------------------------------------------------- XD-RCDepth


def test_depth_distribution_kd_formula_and_zero():
    centres = log_spaced_centres(1.0, 80.0, 32)
    dt = depth_map(sparse=0.3)
    ds = student(depth_map(seed=1))
    t = teacher_like(dt)
    loss = depth_distribution_kd_loss(ds, t, centres, tau=2.0)
    valid = dt > 0
    pt = torch.softmax(-(dt - centres.view(1, 1, -1, 1, 1)).abs() / 2.0, dim=2)
    ps = torch.softmax(-(ds.detach() - centres.view(1, 1, -1, 1, 1)).abs() / 2.0, dim=2)
    kl = (pt * (pt.log() - ps.log())).sum(dim=2, keepdim=True)
    assert loss.item() == pytest.approx(kl[valid].mean().item(), rel=1e-4)
    assert depth_distribution_kd_loss(dt.clamp(min=1), dt, centres).item() == pytest.approx(0.0, abs=1e-6)
    assert_student_only(loss, ds, t)
    assert (ds.grad[~valid] == 0).all()


def test_grad_cam_matches_hand_computation_and_is_differentiable():
    A = student(torch.rand(2, 3, 4, 5))
    w = torch.tensor([1.0, -2.0, 0.5])
    depth = torch.einsum("c,mchw->mhw", w, A).unsqueeze(1)
    cam = grad_cam(mean_depth_target(depth), A, create_graph=True)
    expected = F.relu(torch.einsum("c,mchw->mhw", w / 20, A.detach())).unsqueeze(1)
    expected = expected / expected.sum(dim=(2, 3), keepdim=True)
    assert torch.allclose(cam, expected, atol=1e-6)
    assert cam.requires_grad
    teacher_map = teacher_like(torch.rand(2, 1, 8, 10))
    assert saliency_kd_loss(cam.detach(), cam.detach()).item() == pytest.approx(0.0, abs=1e-6)  # float32 sums
    assert saliency_kd_loss(cam.detach(), cam.detach(), mode="cosine").item() == pytest.approx(0.0, abs=1e-6)
    loss = saliency_kd_loss(cam, teacher_map)
    assert 0 < loss.item() <= 2.0
    assert_student_only(loss, A, teacher_map)


# ----------------------------------------------------------------------------- Semi-SMD


def textured_plane_views(Z=8.0, baseline=0.5, H=32, W=48):
    """Two cameras side by side looking at a fronto-parallel textured plane at depth Z: exact images."""
    fx = 30.0
    K = torch.tensor([[fx, 0, W / 2 - 0.5], [0, fx, H / 2 - 0.5], [0, 0, 1]])
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")

    def render(cx_offset):
        X = (u - K[0, 2]) / fx * Z + cx_offset
        Y = (v - K[1, 2]) / fx * Z
        return torch.stack(
            [0.5 + 0.4 * torch.sin(1.3 * X), 0.5 + 0.4 * torch.cos(1.1 * Y), 0.5 + 0.2 * torch.sin(X + Y)]
        )

    T = torch.eye(4).expand(1, 2, 4, 4).clone()
    T[0, 1, 0, 3] = baseline  # camera 1 sits `baseline` metres to the right (x of the optical frame)
    images = torch.stack([render(0.0), render(baseline)])[None]
    return images, K.expand(1, 2, 3, 3), T


def test_photometric_loss_prefers_the_metric_depth():
    images, K, T = textured_plane_views()
    pairs = torch.tensor([[0, 1]])
    losses = {
        z: surround_photometric_loss(images, torch.full((1, 2, 1, 32, 48), float(z)), K, T, pairs).item()
        for z in (4, 8, 16)
    }
    assert losses[8] < 0.02 and losses[8] < 0.3 * min(losses[4], losses[16])
    depth = student(torch.full((1, 2, 1, 32, 48), 6.0))
    loss = surround_photometric_loss(images, depth, K, T, pairs)
    loss.backward()
    assert depth.grad.abs().sum() > 0


def test_warp_identity_and_temporal_ego_motion():
    images, K, T = textured_plane_views()
    depth = torch.full((1, 1, 32, 48), 8.0)
    warped, valid = warp_from_source(images[:, 0], depth, K[:, 0], K[:, 0], torch.eye(4)[None])
    assert valid.all() and torch.allclose(warped, images[:, 0], atol=1e-5)
    assert photometric_error(warped, images[:, 0]).abs().max() < 1e-4
    # camera 1's image seen as camera 0's next frame after the car moved 0.5 m to the right (optical x):
    # T_world_base(t+1) translates by +0.5 when T_world_base(t) is the identity
    plane = torch.full((1, 1, 1, 32, 48), 8.0)
    now = torch.eye(4).expand(1, 1, 4, 4)
    moved = now.clone()
    moved[0, 0, 0, 3] = 0.5

    def temporal(next_pose, auto_mask=True):
        return surround_photometric_loss(
            images[:, :1], plane, K[:, :1], T[:, :1], None, [images[:, 1:]], now, [next_pose], auto_mask=auto_mask
        )

    assert temporal(moved).item() < 0.3 * temporal(now, auto_mask=False).item()
    assert temporal(moved, auto_mask=False).item() == pytest.approx(
        surround_photometric_loss(images, torch.full((1, 2, 1, 32, 48), 8.0), K, T, torch.tensor([[1, 0]])).item(),
        rel=0.5,
    )
    # auto-masking: an adjacent frame identical to the current one (the scene moved with the car) explains
    # every pixel better unwarped than any reprojection, so nothing is left to learn from
    static = surround_photometric_loss(images[:, :1], plane, K[:, :1], T[:, :1], None, [images[:, :1]], now, [moved])
    assert static.item() == 0.0
    assert (
        surround_photometric_loss(
            images[:, :1], plane, K[:, :1], T[:, :1], None, [images[:, :1]], now, [moved], auto_mask=False
        ).item()
        > 0.01
    )


@pytest.mark.parametrize("kind", ["relative", "relative_inverse"])
def test_curvature_zero_for_affine_teacher_and_invariant(kind):
    s_depth = depth_map(B=1, N=2, H=12, W=12)
    base = 1.0 / s_depth if kind == "relative_inverse" else s_depth
    assert curvature_consistency_loss(s_depth, 4.0 * base + 2.0, kind).item() == pytest.approx(0.0, abs=1e-4)
    t = teacher_like(torch.rand(1, 2, 1, 12, 12))
    s = student(s_depth)
    a = curvature_consistency_loss(s, t, kind)
    b = curvature_consistency_loss(s, t.detach() * 9.0 - 3.0, kind)
    assert a.item() == pytest.approx(b.item(), rel=1e-4) and a.item() > 0.01
    assert_student_only(a, s, t)


# ----------------------------------------------------------------------------- registry


def full_inputs():
    from types import SimpleNamespace

    B, N, H, W = 1, 2, 24, 32
    K, T = two_camera_rig(H=H, W=W)
    features = [student(torch.randn(B * N, 8, 6, 8)), student(torch.randn(B * N, 4, 12, 16))]
    head = F.interpolate(features[0].mean(dim=1, keepdim=True), size=(H, W), mode="bilinear")
    depth = (10.0 + torch.sigmoid(head)).reshape(B, N, 1, H, W)  # a graph from features to depth, for Grad-CAM
    teacher = SimpleNamespace(
        depth=torch.full((B, N, 1, H, W), 10.0),
        kind="metric",
        features=[torch.randn(B * N, 16, 6, 8), torch.randn(B * N, 6, 12, 16)],
        intermediate_depths=[torch.rand(B, N, 1, 6, 8) * 20 + 1, torch.rand(B, N, 1, 12, 16) * 20 + 1],
        saliency=torch.rand(B * N, 1, 6, 8),
    )
    return LossInputs(
        depth=depth,
        gt_depth=depth_map(B, N, H, W, sparse=0.7),
        bin_logits=student(torch.randn(B, N, 16, 12, 16)),
        bin_centres=student(torch.sort(torch.rand(B, N, 16) * 60 + 1).values),
        features=features,
        intermediate_depths=[student(torch.rand(B, N, 1, 3, 4) * 20), student(torch.rand(B, N, 1, 6, 8) * 20)],
        teacher=teacher,
        images=torch.rand(B, N, 3, H, W),
        intrinsics=K,
        extrinsics=T,
        camera_pairs=torch.tensor([[0, 1]]),
    )


def test_build_losses_total_is_weighted_sum_and_everything_runs():
    config = {
        "silog": 1.0,
        "l1": {"weight": 0.5},
        "bin_centre": 0.1,
        "cross_interaction": {"weight": 1.0, "temperature": 2.0},
        "view_relational": {"weight": 2.0, "overlap_depth": "teacher"},
        "pairwise": {"weight": 1.0, "feature_set": "features"},
        "pixelwise_feature": {
            "weight": 1.0,
            "student_channels": [[8, 4]],
            "teacher_channels": [[16, 6]],
            "scales": [0, 1],
            "feature_sets": ["features"],
        },
        "inter_depth": 1.0,
        "depth_distribution": {"weight": 1.0, "tau": 2.0},
        "saliency": {"weight": 1.0, "student_feature": 0},
        "photometric": 1.0,
        "curvature": 1.0,
        "l1_unused": 0,
    }
    config.pop("l1_unused")
    losses = build_losses(config)
    assert sum(p.numel() for p in losses.parameters()) == (8 * 16 + 16) + (4 * 6 + 6)  # the adapters
    inputs = full_inputs()
    total, parts = losses(inputs)
    assert set(parts) == set(config)
    assert all(math.isfinite(v) for v in parts.values())
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    assert parts["l1"] == pytest.approx(0.5 * masked_l1_loss(inputs.depth, inputs.gt_depth).item(), rel=1e-5)
    total.backward()
    assert inputs.features[0].grad.abs().sum() > 0 and inputs.bin_logits.grad.abs().sum() > 0


def test_build_losses_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown loss 'sillog'"):
        build_losses({"sillog": 1.0})
    with pytest.raises(ValueError, match="unknown parameter.*'temprature'"):
        build_losses({"cross_interaction": {"temprature": 2.0}})
    with pytest.raises(ValueError, match="needs 'teacher.depth'"):
        build_losses({"cross_interaction": 1.0})(
            LossInputs(depth=torch.ones(1, 1, 1, 4, 4), bin_logits=torch.ones(1), bin_centres=torch.ones(1))
        )


def test_grad_cam_takes_the_students_batch_and_view_layout():
    """The student's features are (B, N, C, h, w): the map is per view, as for (B*N, C, h, w)."""
    A = torch.rand(2, 3, 4, 5, 6, requires_grad=True)
    depth = (A.sum(dim=2, keepdim=True) * 2.0).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    cam = grad_cam(mean_depth_target(depth), A, create_graph=True)
    flat = A.detach().flatten(0, 1).requires_grad_()
    depth_flat = (flat.sum(dim=1, keepdim=True) * 2.0).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    assert cam.shape == (6, 1, 5, 6)
    assert torch.allclose(cam, grad_cam(mean_depth_target(depth_flat), flat), atol=1e-6)
    assert cam.requires_grad


def test_saliency_kd_through_the_real_student():
    """Grad-CAM of the student's depth w.r.t. its returned encoder features, with gradients to its weights."""
    from surround_depth_ros.network.student import SurroundDepthStudent, preset

    model = SurroundDepthStudent(preset("tiny"))
    out = model(torch.rand(1, 6, 3, 64, 112), torch.tensor([[i, (i + 1) % 6] for i in range(6)]), return_aux=True)
    cam = grad_cam(mean_depth_target(out.depth), out.features[-1], create_graph=True)
    assert cam.shape == (6, 1, 2, 4) and torch.isfinite(cam).all()
    saliency_kd_loss(cam, torch.rand(6, 1, 2, 4)).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_affine_invariant_loss_is_zero_for_any_affine_disparity_and_trains_the_student():
    from surround_depth_ros.losses import affine_invariant_loss

    gt = depth_map(B=1, N=2, H=8, W=10, sparse=0.3)
    valid = gt > 0
    affine = torch.where(valid, 1.0 / (3.0 / gt.clamp(min=1e-6) + 0.2), torch.ones_like(gt))  # 1/p = 3/g + 0.2
    assert affine_invariant_loss(affine, gt).item() == pytest.approx(0.0, abs=1e-5)
    assert affine_invariant_loss(affine * 4.0, gt).item() == pytest.approx(0.0, abs=1e-5)  # scale is free
    p = student(depth_map(B=1, N=2, H=8, W=10, seed=5))
    loss = affine_invariant_loss(p, gt)
    assert loss.item() > 0.1
    loss.backward()
    assert p.grad.abs().sum() > 0 and (p.grad[~valid] == 0).all()
