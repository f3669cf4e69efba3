"""CloudFusion: the tensor cloud equals the numpy reference, points land on their pixels, budgets, packing, caching."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fusion_reference import FusedCloud, cylinder_depths, fuse_depth_maps

from surround_depth_ros import geometry as g
from surround_depth_ros.core.fusion import CloudFusion, CloudOptions, FusedPoints, cloud_points, stride_for_budget
from surround_depth_ros.pointcloud import FUSED_CLOUD_DTYPE, fields_from_dtype, unpack_rgb
from surround_depth_ros.rig import CameraRig, default_rig, resize_camera

ROOT = Path(__file__).resolve().parents[1]
POINT_TOLERANCE_M = 1e-5  # "the same points": float32 rounding only


def assert_same_cloud(fused: FusedPoints, reference: FusedCloud) -> None:
    assert len(fused.points) == len(reference)
    np.testing.assert_allclose(fused.points.cpu().numpy(), reference.points_base, rtol=0, atol=POINT_TOLERANCE_M)
    np.testing.assert_array_equal(fused.rgb.cpu().numpy(), reference.rgb)
    np.testing.assert_array_equal(fused.camera.cpu().numpy(), reference.camera_index)
    np.testing.assert_array_equal(fused.confidence.cpu().numpy(), reference.confidence)


def assert_points_on_their_pixels(fused: FusedPoints, rig: CameraRig, depths: list[np.ndarray]) -> None:
    """Every point projects into its camera at its pixel's centre, at the depth that pixel holds."""
    points, camera, pixel = (t.cpu().numpy() for t in (fused.points, fused.camera, fused.pixel))
    for i, cam in enumerate(rig.cameras):
        mine = camera == i
        uv, z = g.project_points(cam.K, g.transform_points(g.invert_transform(cam.T_base_cam), points[mine]))
        rows, cols = np.divmod(pixel[mine], cam.width)
        np.testing.assert_allclose(uv, np.stack([cols, rows], axis=-1), atol=1e-3)
        np.testing.assert_allclose(z, depths[i][rows, cols], rtol=1e-5)


@pytest.fixture(scope="module")
def synthetic() -> tuple[CameraRig, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A cylinder around the default rig with noisy depth, holes, coarse confidences (so that ties happen)."""
    rig = default_rig().scaled(160, 90)
    rng = np.random.default_rng(0)
    depths = [d * rng.uniform(0.97, 1.03, d.shape).astype(np.float32) for d in cylinder_depths(rig, 20.0)]
    depths[3][:10] = 0.0
    depths[3][10:12] = np.nan
    confidences = [np.round(rng.uniform(0, 1, d.shape), 1).astype(np.float32) for d in depths]
    colors = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in depths]
    return rig, depths, confidences, colors


@pytest.mark.parametrize("overlap", ["keep_all", "most_confident"])
@pytest.mark.parametrize("stride", [1, 3])
def test_equals_the_numpy_reference_on_synthetic_depth(synthetic, overlap, stride):
    rig, depths, confidences, colors = synthetic
    reference = fuse_depth_maps(depths, rig, colors=colors, confidences=confidences, overlap=overlap, stride=stride)
    fusion = CloudFusion(CloudOptions(overlap=overlap, stride=stride))
    fused = fusion.fuse(np.stack(depths), rig.intrinsics(), rig.extrinsics(), np.stack(confidences), np.stack(colors))
    assert_same_cloud(fused, reference)
    assert_points_on_their_pixels(fused, rig, depths)
    # only the pixels that can reach a neighbour are projected into it (the ring overlaps are ~15 % of a view)
    assert fusion.geometry(rig.intrinsics(), rig.extrinsics(), [(90, 160)] * 6).window_fraction() < 0.3


def test_lists_of_maps_of_different_sizes_equal_the_reference():
    rig = default_rig().scaled(160, 90)
    cameras = list(rig.cameras)
    cameras[2] = resize_camera(cameras[2], 120, 70)
    rig = CameraRig(tuple(cameras))
    depths = cylinder_depths(rig, 12.0)
    colors = [np.full((c.height, c.width, 3), 20 * i, np.uint8) for i, c in enumerate(rig.cameras)]
    reference = fuse_depth_maps(depths, rig, colors=colors, overlap="most_confident", stride=2)
    fusion = CloudFusion(CloudOptions(stride=2))
    fused = fusion.fuse([torch.from_numpy(d) for d in depths], rig.intrinsics(), rig.extrinsics(), images=colors)
    assert_same_cloud(fused, reference)


def test_equals_the_reference_on_the_real_nuscenes_sample_with_the_shipped_student(shared_data_path):
    from surround_depth_ros.datasets.nuscenes import NuScenesReader
    from surround_depth_ros.inference.engine import DepthEngine

    frame = NuScenesReader(shared_data_path("nuscenes_sample"))[0]
    engine = DepthEngine(ROOT / "models" / "student_default.pt", backend="torch", device="cpu")
    results = engine.infer(frame.images, intrinsics=frame.rig.intrinsics())
    depths, confidences = [r.depth for r in results], [r.confidence for r in results]
    reference = fuse_depth_maps(
        depths, frame.rig, colors=frame.images, confidences=confidences, overlap="most_confident", stride=4
    )
    fusion = CloudFusion(CloudOptions(stride=4))
    fused = fusion.fuse(
        np.stack(depths), frame.rig.intrinsics(), frame.rig.extrinsics(), np.stack(confidences), np.stack(frame.images)
    )
    assert_same_cloud(fused, reference)
    assert_points_on_their_pixels(fused, frame.rig, depths)
    assert len(reference) < 6 * 225 * 400  # the real overlaps were removed

    # at network resolution (the engine's device maps and scaled intrinsics): the same as the reference on the
    # network-sized rig with the colours of the image pixels holding the depth pixels' centres
    maps = engine.infer_maps(frame.images, intrinsics=frame.rig.intrinsics())
    h, w = engine.input_size
    small = frame.rig.scaled(w, h)
    np.testing.assert_allclose(maps.K, small.intrinsics())
    rows, cols = (np.arange(h) * 2 + 1) * 900 // (2 * h), (np.arange(w) * 2 + 1) * 1600 // (2 * w)
    nearest = [image[rows][:, cols] for image in frame.images]
    net_depth, net_conf = maps.depth.numpy(), maps.confidence.numpy()
    reference = fuse_depth_maps(
        list(net_depth), small, colors=nearest, confidences=list(net_conf), overlap="most_confident"
    )
    fused = CloudFusion(CloudOptions(max_points=6 * h * w)).fuse(
        maps.depth, maps.K, small.extrinsics(), maps.confidence, maps.images
    )
    assert_same_cloud(fused, reference)
    assert_points_on_their_pixels(fused, small, list(net_depth))


@pytest.mark.parametrize("size", [(900, 1600), (1216, 1936), (64, 112)])
def test_the_budget_picks_the_smallest_stride_that_fits(size):
    for budget in (200_000, 50_000, 6):
        stride = stride_for_budget([size] * 6, budget)
        count = 6 * math.ceil(size[0] / stride) * math.ceil(size[1] / stride)
        assert count <= budget
        if stride > 1:
            assert 6 * math.ceil(size[0] / (stride - 1)) * math.ceil(size[1] / (stride - 1)) > budget
    assert stride_for_budget([size] * 6, 10**9) == 1


def test_default_cloud_stays_under_ten_megabytes_at_both_camera_sizes():
    for width, height in ((1600, 900), (1936, 1216)):
        rig = default_rig().scaled(width, height)
        depths = torch.full((6, height, width), 30.0)  # every pixel valid, within range
        packed = CloudFusion().cloud(depths, rig.intrinsics(), rig.extrinsics())
        assert 150_000 < len(packed) // FUSED_CLOUD_DTYPE.itemsize <= CloudOptions().max_points
        assert packed.numel() < 10e6


def test_packed_bytes_are_the_documented_layout(synthetic):
    rig, depths, confidences, colors = synthetic
    fusion = CloudFusion(CloudOptions(stride=2))
    fused = fusion.fuse(np.stack(depths), rig.intrinsics(), rig.extrinsics(), np.stack(confidences), np.stack(colors))
    ids = [10, 11, 12, 13, 14, 15]
    cloud = cloud_points(fusion.pack(fused, camera_ids=ids))
    assert FUSED_CLOUD_DTYPE.itemsize == 24 and all(f.offset % 4 == 0 for f in fields_from_dtype(FUSED_CLOUD_DTYPE))
    assert [f.name for f in fields_from_dtype(FUSED_CLOUD_DTYPE)][:4] == ["x", "y", "z", "rgb"]
    np.testing.assert_array_equal(np.stack([cloud["x"], cloud["y"], cloud["z"]], -1), fused.points.numpy())
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), fused.rgb.numpy())
    np.testing.assert_array_equal(cloud["camera"], np.asarray(ids)[fused.camera.numpy()])
    np.testing.assert_array_equal(cloud["confidence"], fused.confidence.numpy())
    assert not cloud.view(np.uint8).reshape(-1, 24)[:, 17:20].any()  # the padding is zero
    out = torch.empty(len(cloud) * 24, dtype=torch.uint8)
    assert fusion.pack(fused, ids, out=out).data_ptr() == out.data_ptr()
    np.testing.assert_array_equal(out.numpy(), cloud.view(np.uint8).reshape(-1))


def test_range_confidence_and_voxel_filters(synthetic):
    rig, depths, confidences, colors = synthetic
    near = [np.where(np.arange(160) < 80, d, 2 * d).astype(np.float32) for d in depths]  # half the view at 40 m
    options = CloudOptions(overlap="keep_all", stride=1, max_range_m=30.0, min_confidence=0.25, voxel_size_m=0.5)
    fusion = CloudFusion(options)
    fused = fusion.fuse(np.stack(near), rig.intrinsics(), rig.extrinsics(), np.stack(confidences))
    kept = fusion.filter(fused)
    points = fused.points.numpy()
    within = (np.linalg.norm(points, axis=1) <= 30.0) & (fused.confidence.numpy() >= 0.25)
    cells = np.floor(points[within] / 0.5).astype(np.int64)
    _, first = np.unique(cells, axis=0, return_index=True)
    np.testing.assert_array_equal(kept.points.numpy(), points[within][np.sort(first)])
    assert 0 < len(kept.points) < within.sum() < len(points)


def test_rig_geometry_is_cached_until_the_rig_changes(synthetic):
    rig, depths, _, _ = synthetic
    fusion = CloudFusion(CloudOptions(stride=2))
    K, T = rig.intrinsics(), rig.extrinsics()
    first = fusion.geometry(K, T, [(90, 160)] * 6)
    assert fusion.geometry(K.copy(), T.copy(), [(90, 160)] * 6) is first
    moved = T.copy()
    moved[:, 2, 3] += 0.5  # the whole rig half a metre higher: every point too
    assert fusion.geometry(K, moved, [(90, 160)] * 6) is not first
    low = fusion.fuse(np.stack(depths), K, T).points
    high = fusion.fuse(np.stack(depths), K, moved).points
    np.testing.assert_allclose(high[:, 2] - low[:, 2], 0.5, atol=1e-5)
    assert fusion.geometry(K, moved, [(45, 80)] * 6) is not fusion.geometry(K, moved, [(90, 160)] * 6)


def test_bad_options_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="overlap must be one of"):
        CloudOptions(overlap="average")
    with pytest.raises(ValueError, match="max_points must be >= 1"):
        CloudOptions(max_points=0)
    rig = default_rig().scaled(16, 9)
    with pytest.raises(ValueError, match="6 depth maps, 5 intrinsics"):
        CloudFusion().fuse(np.ones((6, 9, 16), np.float32), rig.intrinsics()[:5], rig.extrinsics())


def test_messages_carry_the_packed_cloud_and_depth_maps_with_one_copy(synthetic):
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image, PointCloud2

    from surround_depth_ros.ros.messages import MESSAGES
    from surround_depth_ros.ros.messages import cloud_points as message_points

    rig, depths, confidences, colors = synthetic
    fusion = CloudFusion(CloudOptions(stride=2))
    packed = fusion.cloud(
        np.stack(depths),
        rig.intrinsics(),
        rig.extrinsics(),
        np.stack(confidences),
        np.stack(colors),
        camera_ids=[2, 3, 4, 5, 6, 7],
    )
    points = cloud_points(packed)
    msg = MESSAGES.point_cloud(points, 123, "base_link")
    assert msg.point_step == 24 and msg.row_step == 24 * len(points) and msg.width == len(points)
    assert [(f.name, f.offset) for f in msg.fields] == [
        (n, FUSED_CLOUD_DTYPE.fields[n][1]) for n in "x y z rgb camera confidence".split()
    ]
    received = deserialize_message(serialize_message(msg), PointCloud2)
    np.testing.assert_array_equal(message_points(received), points)

    depth = depths[0]
    image = deserialize_message(serialize_message(MESSAGES.image_array(depth, 123, "cam", "32FC1")), Image)
    assert (image.height, image.width, image.step, image.encoding) == (90, 160, 640, "32FC1")
    np.testing.assert_array_equal(np.frombuffer(image.data, np.float32).reshape(90, 160), depth)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\) array"):
        MESSAGES.image_array(depth.reshape(-1), 123, "cam", "32FC1")


def test_reference_places_points_on_the_surface_and_removes_doubles():
    rig = default_rig().scaled(160, 90)
    depths = cylinder_depths(rig, 20.0)
    depths[3][:10] = 0.0  # invalid pixels are skipped
    depths[3][10:12] = np.nan
    colors = [np.full((90, 160, 3), 10 * i, np.uint8) for i in range(6)]
    kept = fuse_depth_maps(depths, rig, colors=colors)
    assert len(kept) == 6 * 160 * 90 - 12 * 160
    np.testing.assert_allclose(np.hypot(kept.points_base[:, 0], kept.points_base[:, 1]), 20.0, rtol=1e-4)
    np.testing.assert_array_equal(kept.rgb[:, 0], 10 * kept.camera_index)

    fused = fuse_depth_maps(depths, rig, colors=colors, overlap="most_confident")
    assert len(kept) - len(fused) > 0.04 * len(kept)  # the ring overlaps are several percent of the views
    # no point survives twice: every kept point is seen by no lower-index camera
    for j, cam in enumerate(rig.cameras):
        later = fused.camera_index > j
        uv, z = g.project_points(
            cam.K, g.transform_points(g.invert_transform(cam.T_base_cam), fused.points_base[later])
        )
        inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < 159.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < 89.5)
        if j == 3:  # camera 3 has invalid rows: points there are not doubles
            inside &= uv[:, 1] >= 11.5
        assert inside.sum() == 0, cam.name

    # a more confident camera keeps the overlap: CAM_FRONT_LEFT (1) beats CAM_FRONT (0)
    confidences = [np.full((90, 160), 0.9 if i == 1 else 0.5, np.float32) for i in range(6)]
    preferred = fuse_depth_maps(depths, rig, confidences=confidences, overlap="most_confident")
    assert np.count_nonzero(preferred.camera_index == 1) == 160 * 90
    assert np.count_nonzero(preferred.camera_index == 0) < np.count_nonzero(fused.camera_index == 0)
    np.testing.assert_allclose(np.unique(preferred.confidence), [0.5, 0.9])


def test_reference_keeps_points_another_camera_sees_occluded():
    rig = default_rig().scaled(160, 90)
    depths = cylinder_depths(rig, 20.0)
    depths[1] = np.minimum(depths[1], 4.0)  # CAM_FRONT_LEFT sees a near wall: CAM_FRONT's far points are occluded there
    fused = fuse_depth_maps(depths, rig, overlap="most_confident")
    assert np.count_nonzero(fused.camera_index == 1) == 160 * 90
    assert np.count_nonzero(fused.camera_index == 0) == 160 * 90  # none of CAM_FRONT's points is dropped


def test_reference_stride_and_errors():
    rig = default_rig().scaled(160, 90)
    depths = cylinder_depths(rig, 15.0)
    sparse = fuse_depth_maps(depths, rig, stride=4)
    assert len(sparse) == 6 * 40 * 23
    assert sparse.points_base.dtype == np.float32 and sparse.rgb.dtype == np.uint8
    with pytest.raises(ValueError, match="CAM_FRONT: depth map is 80x45, rig says 160x90"):
        fuse_depth_maps([d[::2, ::2] for d in depths], rig)
    with pytest.raises(ValueError, match="5 depth maps for a rig of 6 cameras"):
        fuse_depth_maps(depths[:5], rig)
    with pytest.raises(ValueError, match="overlap must be"):
        fuse_depth_maps(depths, rig, overlap="average")
