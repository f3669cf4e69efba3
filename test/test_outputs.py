"""What the pipeline hands a publisher: maps with the camera model they are at, a cloud within its budget, stage
timings; and a 1936x1216 six-camera set through the node over DDS with the shipped Fast DDS profile."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from surround_depth_ros.base import geometry as g
from surround_depth_ros.base.resources import packaged_file
from surround_depth_ros.core.params import NodeSettings, settings_from_values
from surround_depth_ros.core.pipeline import STAGES, SurroundDepthPipeline, pipeline_from_settings
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.pointcloud import FUSED_CLOUD_DTYPE
from surround_depth_ros.sensors.rig import CameraRig, default_rig

SHIPPED = str(packaged_file("models", "student_default.pt"))


def _values(rig: CameraRig, **overrides) -> dict:
    """Parameter values for this rig with the shipped student on the CPU (the rest: the node's defaults)."""
    return {
        "cameras": rig.camera_names,
        "checkpoint": SHIPPED,
        "backend": "torch",
        "device": "cpu",
        **overrides,
    }


def _settings(rig: CameraRig, **overrides) -> NodeSettings:
    return settings_from_values(_values(rig, **overrides))


def _ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


@pytest.fixture(scope="module")
def nuscenes(shared_data_path) -> FrameSet:
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    return NuScenesReader(shared_data_path("nuscenes_sample"))[0]


@pytest.fixture(scope="module")
def ddad(shared_data_path) -> FrameSet:
    from surround_depth_ros.datasets.ddad import DGPSceneReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DGPSceneReader(shared_data_path("ddad_dgp_sample", "scene_01"))[0]


def test_calibration_for_resized_maps_projects_where_the_resize_moved_the_pixel():
    """K and P (with a stereo baseline term) scale so that a point lands where the resize moved its pixel."""
    K = np.array([[1260.0, 0, 815.3], [0, 1255.0, 452.1], [0, 0, 1]])
    P = np.hstack([K, [[-1260.0 * 0.54], [0.0], [0.0]]])
    resized = g.resize_intrinsics(K, 640 / 1600, 352 / 900)
    k, p = g.calibration_for_maps(K.reshape(-1), P.reshape(-1), resized)
    np.testing.assert_allclose(k.reshape(3, 3), resized)
    point = np.array([2.0, -1.0, 10.0, 1.0])
    u, v, w = P @ point
    u2, v2, w2 = p.reshape(3, 4) @ point
    np.testing.assert_allclose([u2 / w2, v2 / w2], [(u / w + 0.5) * 0.4 - 0.5, (v / w + 0.5) * 352 / 900 - 0.5])


def test_calibration_for_maps_follows_a_placement_inside_a_border():
    """Maps that hold the image scaled by 0.3 and shifted by (40, 12) pixels: P moves each point there too."""
    K = np.array([[1260.0, 0, 815.3], [0, 1255.0, 452.1], [0, 0, 1]])
    P = np.hstack([K, [[-1260.0 * 0.54], [0.0], [0.0]]])
    A = np.array([[0.3, 0, 40.0], [0, 0.3, 12.0], [0, 0, 1]])
    k, p = g.calibration_for_maps(K.reshape(-1), P.reshape(-1), A @ K)
    np.testing.assert_allclose(k.reshape(3, 3), A @ K)
    point = np.array([2.0, -1.0, 10.0, 1.0])
    u, v, w = P @ point
    u2, v2, w2 = p.reshape(3, 4) @ point
    np.testing.assert_allclose([u2 / w2, v2 / w2], [0.3 * u / w + 40, 0.3 * v / w + 12])


@pytest.mark.parametrize("sample", ["nuscenes", "ddad"])
def test_network_resolution_maps_come_with_the_camera_info_that_reprojects_the_cloud(request, sample):
    """depth_resolution network on real rigs (nuScenes: the trained rig; DDAD: cameras the network places inside a
    border): maps at the network's size, and every cloud point, taken into its camera with the CameraInfo a
    publisher derives for the maps (REP 118, `output_messages`, what the node and run-bag publish),
    lands on its pixel at the depth published."""
    from surround_depth_ros.bag.storage import TYPESTORE
    from surround_depth_ros.conversion.messages import MessageKit
    from surround_depth_ros.core.outputs import output_messages

    frame_set = request.getfixturevalue(sample)
    settings = _settings(frame_set.rig)  # the default: depth_resolution network
    pipeline = pipeline_from_settings(settings)
    outputs = pipeline.process(frame_set)
    kit = MessageKit(lambda name: TYPESTORE.types[name], lambda data: np.frombuffer(data, np.uint8))
    infos = {camera.name: kit.camera_info(camera, 0) for camera in frame_set.rig.cameras}  # P = [K 0], rectified
    published = {topic: msg for topic, _, _, msg in output_messages(kit, frame_set, outputs, infos, settings)}
    h, w = pipeline.engine.input_size
    assert pipeline.cloud_options.stride is None  # cloud_stride 0: the budget picks it (stride 1 for 6 x 128x224)
    cloud = outputs.cloud
    assert len(np.unique(cloud["camera"])) == len(frame_set.rig.cameras) and len(cloud) > 20_000
    for i, camera in enumerate(frame_set.rig.cameras):
        depth, confidence, model = outputs.depth[i], outputs.confidence[i], outputs.cameras[i]
        assert depth.shape == confidence.shape == (h, w) == (model.height, model.width)
        P = np.hstack([camera.K, np.zeros((3, 1))])  # what the camera's CameraInfo says (rectified images)
        info = published[f"{camera.name}/depth/camera_info"]
        assert (info.width, info.height) == (w, h)
        k, p = np.asarray(info.k), np.asarray(info.p)
        if sample == "nuscenes":  # the trained rig: the network sees each camera plainly resized
            resized = g.resize_intrinsics(camera.K, w / camera.width, h / camera.height)
            plain = g.calibration_for_maps(camera.K.reshape(-1), P.reshape(-1), resized)
            np.testing.assert_allclose(np.concatenate(plain), np.concatenate([k, p]), atol=1e-9)
        mine = cloud[cloud["camera"] == pipeline.camera_ids.index(camera.name)]
        points = np.stack([mine["x"], mine["y"], mine["z"]], axis=-1).astype(np.float64)
        uv, z = g.project_points(
            p.reshape(3, 4)[:, :3], g.transform_points(g.invert_transform(camera.T_base_cam), points)
        )
        pixels = np.rint(uv).astype(int)
        assert np.abs(uv - pixels).max() < 2e-3
        assert ((pixels >= 0) & (pixels < [w, h])).all()
        np.testing.assert_allclose(z, depth[pixels[:, 1], pixels[:, 0]], rtol=1e-5)
        np.testing.assert_array_equal(mine["confidence"], confidence[pixels[:, 1], pixels[:, 0]])


@pytest.mark.parametrize(("budget", "resolution"), [(200_000, "camera"), (20_000, "camera"), (20_000, "network")])
def test_the_point_budget_holds_at_1600x900_and_1936x1216_on_real_rigs(nuscenes, ddad, budget, resolution):
    """The node's defaults (cloud_stride 0) keep the cloud within cloud_max_points and under 10 MB at both sizes,
    from camera-sized maps (1.4-2.4 M pixels a camera) and from the network's (the default)."""
    for frame_set in (nuscenes, ddad):
        width, height = frame_set.rig.cameras[0].width, frame_set.rig.cameras[0].height
        assert (width, height) in ((1600, 900), (1936, 1216))
        settings = _settings(frame_set.rig, cloud_max_points=budget, depth_resolution=resolution)
        outputs = pipeline_from_settings(settings).process(frame_set)
        sizes = {d.shape for d in outputs.depth}
        assert sizes == {(height, width)} if resolution == "camera" else max(sizes) < (height, width)
        # most sampled pixels are valid, in range and seen by no more confident camera: the budget binds
        assert budget / 4 < len(outputs.cloud) <= budget
        assert outputs.cloud.dtype == FUSED_CLOUD_DTYPE and outputs.cloud.nbytes < 10e6


def test_timings_name_every_stage_and_add_up(nuscenes):
    pipeline = SurroundDepthPipeline(pipeline_from_settings(_settings(nuscenes.rig)).engine)
    timings = pipeline.process(nuscenes).timings_ms
    assert list(timings) == [*STAGES, "total"]
    assert timings["radar"] == 0.0  # a camera-only student
    assert all(timings[stage] > 0 for stage in ("preprocess", "forward", "mask", "upsample", "cloud"))
    assert sum(timings[stage] for stage in STAGES) <= timings["total"]


def test_a_1936x1216_six_camera_set_crosses_dds_with_the_shipped_profile(tmp_path):
    """Six 1936x1216 images (7 MB each) in, twelve 9.4 MB maps and the cloud out, over the shipped Fast DDS profile
    (the test process and the node both use it): the depth the node publishes is the depth of the images sent."""
    pytest.importorskip("rclpy")
    from ros_harness import NodeProcess, RigPublisher, RosClient, write_params
    from sensor_msgs.msg import Image, PointCloud2

    from surround_depth_ros.conversion.messages import cloud_points

    rig = default_rig().scaled(1936, 1216)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (1216, 1936, 3), dtype=np.uint8) for _ in rig.cameras]
    camera_sized = {"depth_resolution": "camera"}  # the largest messages: 12 x 9.4 MB of maps a set
    node = NodeProcess(write_params(tmp_path / "params.yaml", _values(rig, **camera_sized)))
    client = RosClient()
    depth, clouds, t0 = [], [], 1_700_000_000 * 10**9
    try:
        for name in rig.camera_names:
            client.node.create_subscription(Image, f"/{name}/depth/image", depth.append, 2)
        client.node.create_subscription(PointCloud2, "/depth/points", clouds.append, 2)
        pub = RigPublisher(client, rig)
        publishers = [*pub.infos.values(), *pub.images.values()]
        client.wait_for(lambda: all(p.get_subscription_count() for p in publishers), 60, "the node")
        pub.publish_tf()

        def complete() -> list:
            """Clouds of sets all six cameras made it into."""
            return [c for c in clouds if len(np.unique(cloud_points(c)["camera"])) == 6]

        # The same images at 10 Hz (message time) until a whole set came back: a CameraInfo sent before discovery
        # matched it is lost, and a set without that camera is partial.
        for k in range(60):
            for i, image in enumerate(images):
                pub.publish_camera(i, image, t0 + k * 100_000_000 + i * 1_000_000)
            deadline = time.monotonic() + 2.0
            while not complete() and time.monotonic() < deadline:
                time.sleep(0.05)
            if complete():
                break
        cloud = complete()[0]
        anchor = _ns(cloud.header.stamp)
        wanted = {anchor + i * 1_000_000 for i in range(6)}
        client.wait_for(lambda: wanted <= {_ns(m.header.stamp) for m in depth}, 30, "the set's depth images")
    finally:
        client.close()
        assert node.stop() == 0, node.output
    assert "Traceback" not in node.output, node.output
    expected = pipeline_from_settings(_settings(rig, **camera_sized)).process(FrameSet(rig, images, np.arange(6)))
    by_stamp = {_ns(m.header.stamp): m for m in depth}
    for i, camera in enumerate(rig.cameras):
        msg = by_stamp[anchor + i * 1_000_000]
        assert (msg.header.frame_id, msg.width, msg.height, msg.encoding) == (camera.frame_id, 1936, 1216, "32FC1")
        received = np.frombuffer(msg.data, np.float32).reshape(1216, 1936)
        np.testing.assert_allclose(received, expected.depth[i], rtol=1e-4)
    assert abs(len(cloud_points(cloud)) - len(expected.cloud)) <= len(expected.cloud) // 100
