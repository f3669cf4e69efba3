"""The student network: every preset's forward, the bin identity, gradients, attention neighbourhoods."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from surround_depth_ros.network import MEAN, PRESETS, STD, StudentConfig, SurroundDepthStudent, preset
from surround_depth_ros.network.attention import neighbour_table, ring_adjacency

H, W, N = 64, 112, 6  # not divisible by 32 on purpose
RING = ring_adjacency(N)


def sparse_radar(batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Radar maps with about 1 % of pixels holding a return (depth, rcs, vx, vy), zeros elsewhere."""
    g = torch.Generator().manual_seed(seed)
    hit = torch.rand(batch, N, 1, H, W, generator=g) < 0.01
    values = torch.stack(
        [torch.rand(batch, N, H, W, generator=g) * 60 + 2, torch.randn(batch, N, H, W, generator=g) * 10]
        + [torch.randn(batch, N, H, W, generator=g) * 5] * 2,
        dim=2,
    )
    return values * hit


def images(batch: int = 1, seed: int = 0) -> torch.Tensor:
    """RGB in [0, 1], what the student takes (it normalises inside)."""
    return torch.rand(batch, N, 3, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny() -> SurroundDepthStudent:
    torch.manual_seed(0)
    return SurroundDepthStudent(PRESETS["tiny"]).eval()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_on_six_views_with_and_without_radar(name):
    torch.manual_seed(0)
    config = PRESETS[name]
    model = SurroundDepthStudent(config).eval()
    radars = [None, sparse_radar()] if config.radar else [None]
    with torch.no_grad():
        for radar in radars:
            out = model(images(), RING, radar=radar)
            for tensor in (out.depth, out.confidence):
                assert tensor.shape == (1, N, 1, H, W)
                assert torch.isfinite(tensor).all()
            assert out.depth.min() >= config.min_depth and out.depth.max() <= config.max_depth
            assert out.confidence.min() >= 0 and out.confidence.max() <= 1
    if config.radar:
        with torch.no_grad():
            empty = model(images(), RING, radar=torch.zeros(1, N, 4, H, W)).depth
            assert torch.equal(empty, model(images(), RING).depth)  # None means "no returns"
            assert (empty - model(images(), RING, radar=sparse_radar()).depth).abs().max() > 1e-6


def test_parameter_budgets():
    counts = {name: sum(p.numel() for p in SurroundDepthStudent(cfg).parameters()) for name, cfg in PRESETS.items()}
    assert counts["tiny"] < 0.5e6
    assert counts["default"] < 4e6
    assert counts["radar"] < 5e6
    assert counts["large"] > 3 * counts["default"]  # a teacher-sized member of the family


def test_aux_outputs_and_bin_identity(tiny):
    with torch.no_grad():
        out = tiny(images(batch=2), RING, radar=sparse_radar(batch=2), return_aux=True)
    k = tiny.config.n_bins
    h2, w2 = H // 2, W // 2
    assert out.bin_centres.shape == (2, N, k)
    assert out.bin_probs.shape == out.bin_logits.shape == (2, N, k, h2, w2)
    # Centres increase within the range; probabilities sum to one.
    assert (out.bin_centres.diff(dim=-1) > 0).all()
    assert out.bin_centres.min() > tiny.config.min_depth and out.bin_centres.max() < tiny.config.max_depth
    torch.testing.assert_close(out.bin_probs.sum(2), torch.ones(2, N, h2, w2))
    # depth = sum_k prob_k * centre_k at the head's resolution, and the output is its bilinear upsampling.
    head_depth = (out.bin_probs * out.bin_centres[..., None, None]).sum(2, keepdim=True)
    torch.testing.assert_close(out.intermediate_depths[-1], head_depth, rtol=1e-6, atol=1e-5)
    upsampled = F.interpolate(head_depth.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.depth, upsampled.unflatten(0, (2, N)), rtol=1e-6, atol=1e-5)
    assert [d.shape[-2:] for d in out.intermediate_depths] == [(8, 14), (16, 28), (32, 56)]  # 1/8, 1/4, 1/2
    assert [f.shape[-1] for f in out.features] == [56, 28, 14, 7, 4]
    assert [f.shape[-1] for f in out.decoder_features] == [7, 14, 28, 56]


def _gradients_reach_every_parameter(config: StudentConfig, **inputs):
    torch.manual_seed(0)
    model = SurroundDepthStudent(config).train()
    if config.temporal:
        inputs["prev_features"] = torch.randn(2, N, model.encoder.channels[4], 2, 4)
    out = model(images(batch=2), RING, return_aux=True, **inputs)
    weights = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=weights)).mean() for t in (out.depth, *out.intermediate_depths))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_gradients_reach_every_parameter_including_radar(tiny):
    _gradients_reach_every_parameter(PRESETS["tiny"], radar=sparse_radar(batch=2))


def test_gradients_reach_every_parameter_of_temporal_and_daspp_variants():
    config = dataclasses.replace(PRESETS["tiny"], name="tiny-temporal", temporal=True, decoder="daspp", radar=False)
    _gradients_reach_every_parameter(config)


def test_cross_view_attention_only_mixes_adjacent_cameras(tiny):
    base = images()
    changed = base.clone()
    changed[:, 3] += 1.0  # camera 3 is adjacent to 2 and 4 in the ring
    with torch.no_grad():
        a, b = tiny(base, RING).depth, tiny(changed, RING).depth
    moved = (a - b).abs().amax(dim=(2, 3, 4))[0]
    assert moved[[0, 1, 5]].max() == 0  # not adjacent: bit-identical (eval BatchNorm is per sample)
    assert (moved[[2, 3, 4]] > 0).all()


def test_neighbour_table_pads_and_masks_a_general_graph():
    table, mask = neighbour_table(torch.tensor([[0, 1], [0, 2], [0, 3]]), 4)  # a star
    assert table.shape == (4, 4) and table[0].tolist() == [0, 1, 2, 3] and mask[0].all()
    assert table[1].tolist() == [1, 0, 1, 1] and mask[1].tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="not two different camera indices"):
        neighbour_table(torch.tensor([[0, 6]]), 6)
    with pytest.raises(ValueError, match=r"cameras \[2\] have no neighbour"):
        neighbour_table(torch.tensor([[0, 1]]), 3, include_self=False)


def test_star_graph_runs_and_unlisted_cameras_stay_independent(tiny):
    star = torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4], [0, 5]])
    base = images()
    changed = base.clone()
    changed[:, 2] -= 1.0
    with torch.no_grad():
        a, b = tiny(base, star).depth, tiny(changed, star).depth
    moved = (a - b).abs().amax(dim=(2, 3, 4))[0]
    assert moved[[1, 3, 4, 5]].max() == 0 and moved[0] > 0


def test_temporal_forward_without_previous_frame_uses_the_current_one():
    torch.manual_seed(0)
    model = SurroundDepthStudent(dataclasses.replace(PRESETS["tiny"], temporal=True, name="t")).eval()
    with torch.no_grad():
        first = model(images(), RING)
        again = model(images(), RING, prev_features=first.temporal_features)
        other = model(images(), RING, prev_features=torch.randn_like(first.temporal_features))
    assert first.temporal_features.shape == (1, N, model.encoder.channels[4], 2, 4)
    torch.testing.assert_close(first.depth, again.depth)
    assert (first.depth - other.depth).abs().max() > 1e-6


def test_the_student_normalises_uint8_and_unit_float_images_alike(tiny):
    """The model owns its ImageNet normalisation: uint8 and x / 255 give the same depth, the statistics are buffers
    outside the state dict (checkpoints written before keep loading strictly) and follow the model's device."""
    pixels = torch.randint(0, 256, (1, N, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(tiny(pixels, RING).depth, tiny(pixels.float() / 255, RING).depth)
    x = pixels[0].float() / 255
    expected = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(tiny.normalise(pixels[0]), expected, rtol=0, atol=1e-6)
    assert not any(k.startswith("normalise") or k.endswith((".mean", ".std")) for k in tiny.state_dict())
    assert {name for name, _ in tiny.named_buffers()} >= {"normalise.mean", "normalise.std"}
    with pytest.raises(ValueError, match="uint8 RGB or floats"):
        tiny(pixels.long(), RING)


def test_pose_net_normalises_its_images():
    from surround_depth_ros.network.pose import PoseNet

    torch.manual_seed(0)
    net = PoseNet().eval()
    first, second = torch.randint(0, 256, (2, 2, 3, 32, 48), dtype=torch.uint8).unbind(0)
    with torch.no_grad():
        torch.testing.assert_close(net(first, second), net(first.float() / 255, second.float() / 255))
    assert not any("normalise" in k for k in net.state_dict())


def test_bad_inputs_get_clear_errors(tiny):
    with pytest.raises(ValueError, match="batch, views, 3"):
        tiny(torch.zeros(N, 3, H, W), RING)
    with pytest.raises(ValueError, match="radar maps must be"):
        tiny(images(), RING, radar=torch.zeros(1, N, 3, H, W))
    with pytest.raises(ValueError, match="no radar branch"):
        SurroundDepthStudent(preset("default"))(images(), RING, radar=sparse_radar())
    with pytest.raises(ValueError, match="is not temporal"):
        tiny(images(), RING, prev_features=torch.zeros(1))
    with pytest.raises(KeyError, match="presets are"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown encoder"):
        StudentConfig(encoder="vit")


def test_config_round_trips_through_a_plain_dict():
    for config in PRESETS.values():
        assert StudentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown student config keys"):
        StudentConfig.from_dict({**PRESETS["tiny"].to_dict(), "dropout": 0.1})
