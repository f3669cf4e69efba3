"""CloudFusion: the tensor cloud equals the numpy reference, points land on their pixels and take the colours of the
image pixels they project to, budgets, packing, caching."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fusion_reference import FusedCloud, cylinder_depths, fuse_depth_maps
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from surround_depth_ros.base import geometry as g
from surround_depth_ros.core.fusion import (
    CloudFusion,
    CloudOptions,
    FusedPoints,
    cloud_points,
    even_pixels,
    pixel_counts,
)
from surround_depth_ros.sensors.pointcloud import FUSED_CLOUD_DTYPE, fields_from_dtype, unpack_rgb
from surround_depth_ros.sensors.rig import Camera, CameraRig, default_rig, resize_camera

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


def coded_image(height: int, width: int) -> np.ndarray:
    """An RGB image whose colour names its pixel: R = u mod 256, G = v mod 256, B = 16 (u div 256) + v div 256."""
    v, u = np.mgrid[0:height, 0:width]
    return np.stack([u % 256, v % 256, u // 256 * 16 + v // 256], axis=-1).astype(np.uint8)


def assert_colours_from_projected_pixels(
    points: np.ndarray, rgb: np.ndarray, camera: np.ndarray, cameras: list[Camera]
) -> None:
    """Each point's colour (from `coded_image`s) is the source image's pixel nearest to where the point projects
    through its camera's extrinsics and own K: at most half a pixel away along each axis."""
    for i, cam in enumerate(cameras):
        mine = camera == i
        assert mine.any(), cam.name
        uv, _ = g.project_points(cam.K, g.transform_points(g.invert_transform(cam.T_base_cam), points[mine]))
        code = rgb[mine].astype(np.int64)
        source = np.stack([code[:, 2] // 16 * 256 + code[:, 0], code[:, 2] % 16 * 256 + code[:, 1]], axis=-1)
        assert np.abs(source - uv).max() <= 0.5 + 2e-3, cam.name


def camera_ring(count: int, width: int, height: int) -> CameraRig:
    """`count` copies of the default rig's front camera looking around the base, evenly spaced in yaw."""
    front = default_rig().cameras[0]
    return CameraRig(
        tuple(
            Camera(
                f"camera_{k}",
                front.width,
                front.height,
                front.K,
                g.make_transform(g.rpy_to_matrix(0.0, 0.0, 2 * math.pi * k / count), np.zeros(3)) @ front.T_base_cam,
            )
            for k in range(count)
        )
    ).scaled(width, height)


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
    from surround_depth_ros.core.pipeline import SurroundDepthPipeline
    from surround_depth_ros.datasets.nuscenes import NuScenesReader
    from surround_depth_ros.inference.engine import DepthEngine

    frame = NuScenesReader(shared_data_path("nuscenes_sample"))[0]
    engine = DepthEngine(ROOT / "models" / "student_default.pt", backend="torch", device="cpu")
    outputs = SurroundDepthPipeline(engine, cloud=None).process(frame)
    depths, confidences = outputs.depth, outputs.confidence
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

    # at network resolution (the maps and their scaled intrinsics): the same as the reference on the
    # network-sized rig with the colours of the camera-sized images
    maps = SurroundDepthPipeline(engine, cloud=None, resolution="network").process(frame)
    h, w = engine.input_size
    small = frame.rig.scaled(w, h)
    maps_K = np.stack([camera.K for camera in maps.cameras])
    np.testing.assert_allclose(maps_K, small.intrinsics())
    net_depth, net_conf = np.stack(maps.depth), np.stack(maps.confidence)
    reference = fuse_depth_maps(
        list(net_depth), small, colors=frame.images, confidences=list(net_conf), overlap="most_confident"
    )
    fused = CloudFusion(CloudOptions(max_points=6 * h * w)).fuse(
        net_depth, maps_K, small.extrinsics(), net_conf, frame.images, image_K=frame.rig.intrinsics()
    )
    assert_same_cloud(fused, reference)
    assert_points_on_their_pixels(fused, small, list(net_depth))


def test_colours_of_maps_placed_as_the_canonical_camera_come_from_the_pixels_the_points_project_to():
    """Maps at the network's size of cameras whose focal lengths differ from the trained rig's: those the network saw
    placed inside a border (a longer focal length) or resized plainly. Every point takes the colour of the camera
    image's pixel it projects to through the camera's own K, as the reference says, not the pixel a plain resize
    would put there (20 px off and more for the placed camera)."""
    from surround_depth_ros.inference.engine import canonical_placement

    h, w = 128, 224
    trained = default_rig()
    cameras = list(trained.cameras)
    cameras[0] = Camera("long", 1600, 900, cameras[0].K @ np.diag([1.7, 1.6, 1.0]), cameras[0].T_base_cam)
    cameras[3] = Camera("wide", 1936, 1216, cameras[3].K @ np.diag([0.8, 0.8, 1.0]), cameras[3].T_base_cam)
    source = CameraRig(tuple(cameras))
    placements = [
        canonical_placement(c.K, (c.height, c.width), resize_camera(t, w, h).K, (h, w))
        for c, t in zip(source.cameras, trained.cameras, strict=True)
    ]
    assert not placements[0].fills((h, w)) and placements[3].fills((h, w))
    maps = CameraRig(tuple(Camera(c.name, w, h, p.K, c.T_base_cam) for c, p in zip(cameras, placements, strict=True)))
    depths = cylinder_depths(maps, 15.0)
    for depth, (top, left, height, width, _) in zip(depths, placements, strict=True):
        border = np.ones((h, w), bool)
        border[top : top + height, left : left + width] = False
        depth[border] = np.nan  # as `DepthEngine.mask` leaves it
    images = [coded_image(c.height, c.width) for c in cameras]
    fused = CloudFusion(CloudOptions(overlap="keep_all", max_points=6 * h * w)).fuse(
        depths, maps.intrinsics(), maps.extrinsics(), images=images, image_K=source.intrinsics()
    )
    points, rgb, camera = (t.numpy() for t in (fused.points, fused.rgb, fused.camera))
    assert_colours_from_projected_pixels(points, rgb, camera, cameras)
    reference = fuse_depth_maps(depths, maps, colors=images, color_K=source.intrinsics())
    assert_same_cloud(fused, reference)


@pytest.mark.parametrize("resolution", ["network", "camera"])
def test_the_pipeline_colours_every_point_from_its_source_pixel_on_the_real_ddad_rig(shared_data_path, resolution):
    """The DDAD calibration (CAMERA_01 at 1.8x the trained focal length is placed inside a border, the other two fill
    the input) with images whose colours name their pixels: through the node's pipeline, every cloud point's colour
    is the image pixel nearest to where the point projects through its camera's extrinsics and CameraInfo K."""
    from surround_depth_ros.core.params import settings_from_values
    from surround_depth_ros.core.pipeline import pipeline_from_settings
    from surround_depth_ros.datasets.ddad import rig_from_dgp
    from surround_depth_ros.sensors.frameset import FrameSet

    rig = rig_from_dgp(next(shared_data_path("ddad_dgp_sample", "scene_01", "calibration").glob("*.json")))
    images = [coded_image(c.height, c.width) for c in rig.cameras]
    values = {"cameras": rig.camera_names, "backend": "torch", "device": "cpu", "depth_resolution": resolution}
    pipeline = pipeline_from_settings(settings_from_values(values))
    outputs = pipeline.process(FrameSet(rig, images, np.zeros(3)))
    if resolution == "network":  # CAMERA_01's maps are not a plain resize of its image
        h, w = pipeline.engine.input_size
        assert np.abs(outputs.cameras[0].K - resize_camera(rig.cameras[0], w, h).K).max() > 10
    cloud = outputs.cloud
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1).astype(np.float64)
    assert pipeline.camera_ids == rig.camera_names  # the cloud's camera field is the rig's index
    assert_colours_from_projected_pixels(points, unpack_rgb(cloud["rgb"]), cloud["camera"], list(rig.cameras))


@pytest.mark.parametrize("size", [(128, 224), (900, 1600), (1216, 1936)])
def test_the_budget_is_used_to_the_last_point_and_grows_with_budget_and_cameras(size):
    """The pixels a budget samples: min(budget, all), so never over it and never fewer with a larger budget or more
    cameras (a stride sampled 8 x 128x224 = 229k pixels with 57k for a 200k budget, 7 with 50k, 6 with 172k)."""
    h, w = size
    budgets = (1, 5, 1000, 7_777, 20_000, 50_000, 100_000, 172_032, 200_000, 229_376, 1_000_000, 50_000_000)
    for budget in budgets:
        used = [sum(pixel_counts([size] * n, budget)) for n in range(1, 9)]
        assert used == [min(budget, n * h * w) for n in range(1, 9)]
        for n in range(1, 9):
            counts = pixel_counts([size] * n, budget)
            assert max(counts) - min(counts) <= 1  # equal maps, equal shares
    mixed = [(900, 1600), (1216, 1936), (128, 224)]
    areas = [a * b for a, b in mixed]
    counts = pixel_counts(mixed, 100_000)
    assert sum(counts) == 100_000  # shared in proportion to the areas: the same density in every map
    np.testing.assert_allclose(np.divide(counts, areas), 100_000 / sum(areas), rtol=1e-3)


def test_eight_cameras_at_the_network_size_keep_the_budget():
    """Issue 22 item 10: 8 x 128x224 is 229k pixels, over the 200k budget; the cloud keeps all 200k of them to fuse,
    more than six cameras' 172k."""
    clouds = {}
    for n in (6, 7, 8):
        rig = camera_ring(n, 224, 128)
        fusion = CloudFusion(CloudOptions(overlap="keep_all"))
        geometry = fusion.geometry(rig.intrinsics(), rig.extrinsics(), [(128, 224)] * n)
        assert len(geometry) == min(200_000, n * 128 * 224)
        clouds[n] = len(fusion.fuse(np.stack(cylinder_depths(rig, 20.0)), rig.intrinsics(), rig.extrinsics()).points)
    assert clouds[6] < clouds[7] == clouds[8] == 200_000


@pytest.mark.parametrize("size", [(128, 224), (900, 1600), (1216, 1936), (9, 16), (1, 5)])
def test_budget_pixels_spread_evenly_over_the_map(size):
    """Equally spaced rows holding equal shares (within one) at equally spaced columns, rows about as far apart as
    columns: no gap along either axis over the ceiling of its step, edges at most half a step away."""
    h, w = size
    for count in sorted({1, 2, 7, 100, 1000, 25_000, 33_333, h * w // 2, h * w - 1, h * w} & set(range(1, h * w + 1))):
        rows, cols = even_pixels(h, w, count)
        assert len(rows) == count and rows.dtype == cols.dtype == np.int64
        flat = rows * w + cols
        assert (np.diff(flat) > 0).all() and flat[0] >= 0 and flat[-1] < h * w  # distinct, row-major, inside
        chosen, per_row = np.unique(rows, return_counts=True)
        assert per_row.max() - per_row.min() <= 1
        for positions, length, step in (
            (chosen, h, h / len(chosen)),
            *((cols[rows == row], w, w / len(cols[rows == row])) for row in chosen[:: max(1, len(chosen) // 7)]),
        ):
            assert np.diff(positions).max(initial=0) <= math.ceil(step)
            assert positions[0] <= step / 2 and length - 1 - positions[-1] <= step / 2
        if 100 <= count <= h * w // 2 and min(h, w) > 100:
            assert 0.8 < (h / len(chosen)) / (w / per_row.min()) < 1.25, count
        np.testing.assert_array_equal(even_pixels(h, w, count)[1], cols)  # the same every call: no shimmer


def test_budget_sampling_equals_the_reference(synthetic):
    rig, depths, confidences, colors = synthetic
    counts = pixel_counts([(90, 160)] * 6, 30_000)
    pixels = [even_pixels(90, 160, count) for count in counts]
    reference = fuse_depth_maps(
        depths, rig, colors=colors, confidences=confidences, overlap="most_confident", pixels=pixels
    )
    fusion = CloudFusion(CloudOptions(max_points=30_000))
    fused = fusion.fuse(np.stack(depths), rig.intrinsics(), rig.extrinsics(), np.stack(confidences), np.stack(colors))
    assert_same_cloud(fused, reference)
    assert_points_on_their_pixels(fused, rig, depths)


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


# Every branch of the cloud: overlap removal, the range and confidence limits, voxels, stride or budget.
CLOUD_OPTIONS = [
    CloudOptions(),
    CloudOptions(overlap="keep_all", stride=3, max_range_m=30.0),
    CloudOptions(max_points=30_000, max_range_m=30.0, min_confidence=0.25, voxel_size_m=0.5),
    CloudOptions(overlap="keep_all", stride=1, voxel_size_m=2.0),
    CloudOptions(max_range_m=1.0, voxel_size_m=0.5),  # nothing within range: an empty cloud
]


@pytest.mark.parametrize("options", CLOUD_OPTIONS, ids=range(len(CLOUD_OPTIONS)))
def test_the_cloud_packs_every_pixel_and_cuts_to_fuse_filter_pack(synthetic, options):
    """`packed` holds a row for every sampled pixel, the cloud's first: `cloud` cuts them, and they are the bytes of
    fuse, filter and pack one after the other (each compacting its points), in input order."""
    rig, depths, confidences, colors = synthetic
    near = [np.where(np.arange(160) < 80, d, 2 * d).astype(np.float32) for d in depths]  # half the view at 40 m
    args = (np.stack(near), rig.intrinsics(), rig.extrinsics(), np.stack(confidences), np.stack(colors))
    fusion = CloudFusion(options)
    ids = [9, 8, 7, 6, 5, 4]
    rows, count = fusion.packed(*args, ids)
    cloud = fusion.cloud(*args, ids)
    assert len(rows) == len(fusion.geometry(rig.intrinsics(), rig.extrinsics(), [(90, 160)] * 6)) * 24
    torch.testing.assert_close(cloud, rows[: int(count) * 24], rtol=0, atol=0)
    torch.testing.assert_close(cloud, fusion.pack(fusion.filter(fusion.fuse(*args)), ids), rtol=0, atol=0)
    assert (len(cloud) == 0) == (options.max_range_m < 20)
    nothing = np.full_like(args[0], np.nan)
    assert len(fusion.cloud(nothing, *args[1:])) == len(fusion.filter(fusion.fuse(nothing, *args[1:])).points) == 0


class HostReads(TorchDispatchMode):
    """Fails, naming the op, on every aten op that needs tensor data on the host or host memory on the device.

    With meta tensors, which have shapes but no data, the ops that need the data raise anyway; this names them.
    A tensor made on the device from Python data (`torch.as_tensor(list, device=...)`) is no op here; one made on
    the host and copied (`torch.tensor(list).to(device)`, `torch.as_tensor(array, device=...)`) is.
    """

    DATA_DEPENDENT = {
        torch.ops.aten.nonzero,  # a size only the data gives
        torch.ops.aten.masked_select,
        torch.ops.aten._unique2,
        torch.ops.aten.unique_dim,
        torch.ops.aten.unique_consecutive,
        torch.ops.aten._local_scalar_dense,  # .item(), int(), float(), bool()
    }
    INDEXING = {torch.ops.aten.index, torch.ops.aten.index_put, torch.ops.aten.index_put_}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func.overloadpacket in self.DATA_DEPENDENT:
            raise AssertionError(f"{func} needs the data on the host: a host sync on CUDA")
        if func.overloadpacket in self.INDEXING and any(t.dtype == torch.bool for t in tensors[1:]):
            raise AssertionError(f"{func} with a boolean mask: a nonzero, a host sync on CUDA")
        if any(t.device.type == "cpu" and t.dim() > 0 for t in tensors):  # a 0-d one is a Python number
            raise AssertionError(f"{func} takes host memory: on CUDA a copy that waits for the device")
        return func(*args, **kwargs)


def meta_cloud_inputs(rig: CameraRig, image_size: tuple[int, int]) -> tuple[object, ...]:
    """`CloudFusion.packed`'s arguments as meta tensors: depth, K, T, confidence, images, camera ids, images' K."""
    h, w = rig.cameras[0].height, rig.cameras[0].width
    image_h, image_w = image_size
    maps = torch.empty((6, h, w), device="meta")
    images = [torch.empty((image_h, image_w, 3), dtype=torch.uint8, device="meta") for _ in rig.cameras]
    image_K = rig.scaled(image_w, image_h).intrinsics()
    return maps, rig.intrinsics(), rig.extrinsics(), torch.empty_like(maps), images, [3, 5, 7, 9, 11, 13], image_K


@pytest.fixture(scope="module")
def gpu_sync_check():
    """benchmarks/gpu_sync_check.py, the check a CUDA machine runs under `torch.cuda.set_sync_debug_mode("error")`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        import gpu_sync_check

        yield gpu_sync_check


@pytest.mark.parametrize("options", CLOUD_OPTIONS, ids=range(len(CLOUD_OPTIONS)))
def test_the_cloud_reaches_its_packed_rows_without_a_host_sync(gpu_sync_check, options):
    """Issue 23 item 11: from depth maps to packed rows, the cloud never needs data on the host, so a GPU runs ahead.

    It runs on meta tensors, which have shapes and no data: every op whose output size only the data
    gives (nonzero, masked_select, boolean indexing, unique), and every value read into Python (.item(),
    int(), bool(), .tolist(), .cpu(), .numpy()) raises there, and these are what make CUDA wait for the
    device. `HostReads` names such an op and also fails on host memory handed to an op (a copy from the
    host waits for the device too). A CPU run cannot show this (its syncs are free), and
    `torch.cuda.set_sync_debug_mode` needs CUDA: the same function, `cloud_without_host_sync` of
    benchmarks/gpu_sync_check.py, runs under it there. The guard is live: it stops `cloud`, which reads
    the point count (the one sync, inherent: the message's size), and `fuse`, which compacts with nonzero.
    """
    fusion = CloudFusion(options, device="meta")
    for rig, image_size in ((default_rig().scaled(160, 90), (900, 1600)), (default_rig().scaled(224, 128), (90, 160))):
        inputs = meta_cloud_inputs(rig, image_size)
        rows, count = gpu_sync_check.cloud_without_host_sync(fusion, *inputs, guard=HostReads)
        depth, K, T, confidence, images, ids, image_K = inputs
        sampled = len(fusion.geometry(K, T, [depth.shape[1:]] * 6, [image_size] * 6, image_K))  # cached: no rebuild
        assert rows.device.type == count.device.type == "meta"
        assert rows.shape == (sampled * 24,) and count.shape == () and count.dtype == torch.int64
        with HostReads(), pytest.raises(AssertionError, match="takes host memory"):  # new ids: copied once
            fusion.packed(depth, K, T, confidence, images, ids[::-1], image_K)
        with HostReads(), pytest.raises(AssertionError, match="_local_scalar_dense.* needs the data on the host"):
            fusion.cloud(*inputs)
        with HostReads(), pytest.raises(AssertionError, match="nonzero.* needs the data on the host"):
            fusion.fuse(depth, K, T, confidence, images, image_K)


def test_the_host_read_guard_names_the_ops_that_made_the_cloud_wait():
    """The ops the cloud had (about 20 host syncs a set on CUDA): each one stops `HostReads` on meta tensors."""
    points, keep = torch.empty((3, 100), device="meta"), torch.empty(100, dtype=torch.bool, device="meta")
    for op, name in (
        (lambda: keep.nonzero(), "nonzero"),
        (lambda: points[0].masked_select(keep), "masked_select"),
        (lambda: points[:, keep], "boolean mask"),
        (lambda: torch.unique(points[0], return_inverse=True), "_unique2"),
        (lambda: int(points.max()), "_local_scalar_dense"),
        (lambda: points + torch.ones(3, 1), "takes host memory"),
    ):
        with HostReads(), pytest.raises(AssertionError, match=name):
            op()


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
    same = fusion.geometry(K, moved, [(90, 160)] * 6, [(900, 1600)] * 6)
    assert fusion.geometry(K, moved, [(90, 160)] * 6, [(900, 1600)] * 6) is same
    zoomed = K @ np.diag([1.5, 1.5, 1.0])  # the images' own K differs from the scaled maps' K: other colour pixels
    assert fusion.geometry(K, moved, [(90, 160)] * 6, [(900, 1600)] * 6, zoomed) is not same


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

    from surround_depth_ros.conversion.messages import cloud_points as message_points
    from surround_depth_ros.ros.messages import MESSAGES

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


def test_reference_colours_of_images_at_another_size_follow_the_resize_convention():
    """Maps at a third of the images' size: the image pixel holding each depth pixel's centre, c' = 3 c + 1."""
    rig = default_rig().scaled(160, 90)
    images = [coded_image(270, 480) for _ in rig.cameras]
    cloud = fuse_depth_maps(cylinder_depths(rig, 15.0), rig, colors=images, stride=7)
    code = cloud.rgb.astype(np.int64)
    u, v = code[:, 2] // 16 * 256 + code[:, 0], code[:, 2] % 16 * 256 + code[:, 1]
    assert set(np.unique(u % 21)) == {1} and set(np.unique(v % 21)) == {1}  # depth pixels 0, 7, 14: image 1, 22, 43


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
