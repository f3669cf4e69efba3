"""The surround depth node end to end over real DDS, node in its own process.

A test client publishes what a vehicle publishes (/tf_static through camera body frames,
camera_info, images with nuScenes-like staggered stamps, radar clouds) and checks what comes
back: one depth image per camera per accepted set with the source stamps and frames, a fused
cloud whose points sit where TF and the intrinsics put the published depth, and diagnostics that
name every rejected input while the good cameras keep being served.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import defaultdict

import numpy as np
import pytest
from ros_harness import NodeProcess, RigPublisher, RosClient, tiny_checkpoint, write_params

from surround_depth_ros.base import geometry
from surround_depth_ros.sensors.rig import default_rig

WIDTH, HEIGHT = 160, 90
OFFSETS_NS = [0, -8_000_000, 8_000_000, 30_000_000, 22_000_000, 38_000_000]  # nuScenes-like firing order
T0 = 1_700_000_000 * 10**9


@pytest.fixture(scope="module")
def rig():
    return default_rig().scaled(WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, rig):
    pytest.importorskip("torch")
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", rig)


def _params(tmp_path, checkpoint, rig, **overrides):
    values = {
        "cameras": rig.camera_names,
        "checkpoint": str(checkpoint),
        "backend": "torch",
        "device": "cpu",
        "diagnostics_period_s": 0.25,
        "cloud_stride": 4,
        "sync_wait_s": 0.15,
        "depth_resolution": "camera",  # pixel-aligned with the images: checked against the cameras' own K
    }
    values.update(overrides)  # None: leave the parameter out, the node's default
    return write_params(tmp_path / "params.yaml", {key: value for key, value in values.items() if value is not None})


class Outputs:
    """Everything the node publishes, collected by the test client."""

    def __init__(self, client: RosClient, cameras: list[str]) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.depth, self.info, self.confidence = defaultdict(list), defaultdict(list), defaultdict(list)
        self.clouds, self.diagnostics = [], []
        node = client.node
        for camera in cameras:
            node.create_subscription(Image, f"/{camera}/depth/image", self.depth[camera].append, 50)
            node.create_subscription(CameraInfo, f"/{camera}/depth/camera_info", self.info[camera].append, 50)
            node.create_subscription(Image, f"/{camera}/depth/confidence", self.confidence[camera].append, 50)
        node.create_subscription(PointCloud2, "/depth/points", self.clouds.append, 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)

    def status(self, suffix: str) -> dict:
        """The latest diagnostic status whose name ends with `suffix`, as a dict."""
        for array in reversed(self.diagnostics):
            for s in array.status:
                if s.name.endswith(suffix):
                    return {"level": s.level[0], "message": s.message, **{kv.key: kv.value for kv in s.values}}
        return {}


def _images(seed: int, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(n)]


def _drive(pub: RigPublisher, frames: range, skip=(), encodings=None, info_sizes=None, t0=T0, period_s=0.1):
    """Publish frames at 10 Hz wall time; returns {frame: [stamp per camera]}."""
    stamps = {}
    for k in frames:
        stamps[k] = [t0 + k * 100_000_000 + OFFSETS_NS[i] for i in range(6)]
        for i, image in enumerate(_images(k)):
            if i in skip:
                continue
            pub.publish_camera(i, image, stamps[k][i], (encodings or {}).get(i, "rgb8"), (info_sizes or {}).get(i))
        time.sleep(period_s)
    return stamps


def _drive_until(client: RosClient, pub: RigPublisher, condition, timeout: float, what: str, **drive) -> None:  # noqa: ANN001
    """Publish frame after frame at 10 Hz until `condition()` holds: wait for the node, not for a duration."""
    deadline = time.monotonic() + timeout
    for k in itertools.count():
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        _drive(pub, range(k, k + 1), **drive)


def _ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def _cloud(msg) -> np.ndarray:
    from surround_depth_ros.conversion.messages import cloud_points

    return cloud_points(msg)


def _depth(msg) -> np.ndarray:
    return np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)


def _start(tmp_path, checkpoint, rig, **overrides):
    node = NodeProcess(_params(tmp_path, checkpoint, rig, **overrides))
    client = RosClient()
    outputs = Outputs(client, rig.camera_names)
    pub = RigPublisher(client, rig)
    publishers = [
        *pub.infos.values(),
        *(pub.images.values() if overrides.get("image_transport") != "compressed" else []),
    ]
    client.wait_for(lambda: all(p.get_subscription_count() for p in publishers), 60, "the node's camera subscriptions")
    return node, client, outputs, pub


def _stop(node, client):
    client.close()
    code = node.stop()
    print(node.output)  # shown by pytest when the test fails
    assert code == 0, node.output
    assert "Traceback" not in node.output, node.output


def test_depth_per_camera_and_cloud_where_tf_and_intrinsics_put_it(tmp_path, checkpoint, rig):
    node, client, out, pub = _start(tmp_path, checkpoint, rig)
    try:
        pub.publish_tf()
        stamps = _drive(pub, range(16))
        frame_of = {s: k for k, row in stamps.items() for s in row}

        def complete(cloud_msg) -> bool:
            """A set all six cameras made it into (under load a late camera makes a partial set)."""
            return len(np.unique(_cloud(cloud_msg)["camera"])) == 6

        client.wait_for(lambda: sum(map(complete, out.clouds)) >= 2, 60, "two complete fused clouds")
        checked = [c for c in out.clouds if complete(c)][:2]

        def everything_of_those_sets_arrived() -> bool:
            wanted = {frame_of[_ns(c.header.stamp)] for c in checked}
            return all(
                {_ns(m.header.stamp) for m in out.depth[c.name]} >= {stamps[k][i] for k in wanted}
                and {_ns(m.header.stamp) for m in out.info[c.name]} >= {stamps[k][i] for k in wanted}
                for i, c in enumerate(rig.cameras)
            )

        client.wait_for(everything_of_those_sets_arrived, 30, "the depth images and infos of those sets")
        for cloud_msg in checked:
            assert cloud_msg.header.frame_id == "base_link"
            anchor = _ns(cloud_msg.header.stamp)
            k = frame_of[anchor]
            assert anchor == stamps[k][0]  # CAM_FRONT anchors the set
            cloud = _cloud(cloud_msg)
            assert set(cloud.dtype.names) >= {"x", "y", "z", "rgb", "camera", "confidence"}
            assert len(cloud) > 100
            for i, camera in enumerate(rig.cameras):
                depth_msgs = [m for m in out.depth[camera.name] if _ns(m.header.stamp) == stamps[k][i]]
                assert len(depth_msgs) == 1, f"{camera.name}: {len(depth_msgs)} depth images for frame {k}"
                msg = depth_msgs[0]
                assert (msg.encoding, msg.width, msg.height) == ("32FC1", WIDTH, HEIGHT)
                assert msg.header.frame_id == camera.frame_id
                info = [m for m in out.info[camera.name] if _ns(m.header.stamp) == stamps[k][i]]
                assert len(info) == 1 and info[0].header.frame_id == camera.frame_id
                np.testing.assert_allclose(np.reshape(info[0].k, (3, 3)), camera.K)
                depth = _depth(msg)
                assert np.isfinite(depth).all() and (depth > 0).all()
                # Every cloud point of this camera, taken back into its optical frame through the
                # published TF and projected with its intrinsics, lands on a stride-4 pixel and
                # has exactly the published depth there.
                mine = cloud[cloud["camera"] == i]
                points = np.stack([mine["x"], mine["y"], mine["z"]], axis=1).astype(np.float64)
                in_camera = geometry.transform_points(geometry.invert_transform(camera.T_base_cam), points)
                uv, z = geometry.project_points(camera.K, in_camera)
                pixels = np.rint(uv).astype(int)
                assert np.abs(uv - pixels).max() < 2e-3
                assert (pixels % 4 == 0).all()
                np.testing.assert_allclose(z, depth[pixels[:, 1], pixels[:, 0]], rtol=1e-4)
        # Sets the worker could not take in time were dropped and counted, not queued.
        client.wait_for(
            lambda: out.status("pipeline")["frame sets published"] == str(len(out.clouds)),
            10,
            "diagnostics counting every published set",
        )
    finally:
        _stop(node, client)


def test_bad_inputs_are_named_counted_and_the_good_cameras_served(tmp_path, checkpoint, rig):
    node, client, out, pub = _start(tmp_path, checkpoint, rig)
    try:
        pub.publish_tf()
        # A best-effort publisher on CAM_BACK_RIGHT cannot serve the node's reliable subscription: said, not silent.
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        client.node.create_publisher(Image, "/CAM_BACK_RIGHT/image_raw", qos_profile_sensor_data)
        # CAM_FRONT_RIGHT (2) sends 32-bit float images; CAM_BACK (3) a camera_info of another size.
        good = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]

        def served_and_named() -> bool:
            """Depth and a cloud from the good cameras, each bad input at ERROR saying why, the QoS mismatch counted.

            Frames keep coming meanwhile: on a busy machine the first depth can come later than the 5 s a
            rejection keeps its input at ERROR, which a fixed number of frames then a wait would miss.
            """
            bad_encoding, mismatch = out.status("input CAM_FRONT_RIGHT"), out.status("input CAM_BACK")
            return (
                all(out.depth[c] for c in good)
                and bool(out.clouds)
                and bad_encoding.get("level") == 2
                and "unsupported encoding '32FC1'" in bad_encoding["message"]
                and mismatch.get("level") == 2
                and int(mismatch.get("rejected: camera_info mismatch", 0)) > 0
                and "image is 160x90 but its camera_info says 320x180" in mismatch["message"]
                and int(out.status("input CAM_BACK_RIGHT").get("rejected: QoS mismatch", 0)) > 0
            )

        _drive_until(
            client,
            pub,
            served_and_named,
            120,
            "the good cameras served and the bad inputs named",
            encodings={2: "32FC1"},
            info_sizes={3: (320, 180)},
        )
        assert not out.depth["CAM_FRONT_RIGHT"] and not out.depth["CAM_BACK"]
        assert set(np.unique(_cloud(out.clouds[-1])["camera"])) <= {0, 1, 4, 5}
    finally:
        _stop(node, client)
    assert "CAM_FRONT_RIGHT: unsupported encoding '32FC1'" in node.output
    assert "CAM_BACK: image is 160x90 but its camera_info says 320x180" in node.output, node.output
    assert (
        "CAM_BACK_RIGHT: a publisher on /CAM_BACK_RIGHT/image_raw is incompatible with this node's RELIABILITY"
        in node.output
    )


def test_late_tf_then_a_silent_camera_then_a_loop_in_time(tmp_path, checkpoint, rig):
    node, client, out, pub = _start(tmp_path, checkpoint, rig)
    try:
        # No TF yet: a frame set needs every camera's extrinsics (they bind cameras to the model's slots), so
        # nothing is published and the diagnostics say which transform is missing.
        _drive(pub, range(8))
        client.wait_for(
            lambda: "no transform" in out.status("pipeline").get("message", ""),
            60,
            "a diagnostic naming the missing transform",
        )
        assert not out.clouds and not out.depth["CAM_FRONT"]
        pub.publish_tf()
        _drive(pub, range(8, 16))
        client.wait_for(lambda: out.clouds and out.depth["CAM_FRONT"], 60, "depth and a cloud once TF arrived")
        # CAM_BACK_LEFT (4) goes silent: the others keep flowing (policy partial).
        before = len(out.depth["CAM_FRONT"])
        _drive(pub, range(16, 30), skip={4})
        client.wait_for(lambda: len(out.depth["CAM_FRONT"]) > before + 1, 60, "sets without CAM_BACK_LEFT")
        last_back_left = max(_ns(m.header.stamp) for m in out.depth["CAM_BACK_LEFT"])
        assert last_back_left < T0 + 16 * 100_000_000
        pipeline = out.status("pipeline")
        assert int(pipeline.get("sync partial", 0)) > 0, pipeline
        # The bag loops: time jumps back 3 s; the node resets and keeps publishing.
        count = len(out.clouds)
        _drive(pub, range(0, 12), t0=T0 - 3 * 10**9)
        client.wait_for(lambda: any(_ns(c.header.stamp) < T0 for c in out.clouds[count:]), 60, "clouds after the loop")
        assert int(out.status("pipeline").get("sync clock_jump_reset", 0)) >= 1
    finally:
        _stop(node, client)
    assert "time jumped" in node.output
    assert "left out of the frame sets: no transform" in node.output


def _radar_points(n: int, seed: int) -> np.ndarray:
    from surround_depth_ros.sensors.pointcloud import NUSCENES_RADAR_DTYPE

    rng = np.random.default_rng(seed)
    points = np.zeros(n, NUSCENES_RADAR_DTYPE)
    points["x"], points["y"] = rng.uniform(5, 40, n), rng.uniform(-10, 10, n)
    points["rcs"], points["vx_comp"] = rng.uniform(-5, 20, n), rng.uniform(-3, 3, n)
    return points


def test_radar_reaches_the_network(tmp_path, checkpoint, rig):
    node, client, out, pub = _start(tmp_path, checkpoint, rig, radars=["RADAR_FRONT"])

    def serve(k: int, stamp: int, radar: bool) -> np.ndarray:
        """Publish frame k's images at `stamp` (after a radar sweep if asked) and wait for its front depth."""
        if radar:
            pub.publish_radar("RADAR_FRONT", _radar_points(80, k), stamp - 20_000_000)
            client.wait_for(lambda: out.status("input RADAR_FRONT").get("received") == str(k + 1), 30, "the sweep")
        for i, image in enumerate(_images(k)):
            pub.publish_camera(i, image, stamp + OFFSETS_NS[i])
        client.wait_for(lambda: any(_ns(m.header.stamp) == stamp for m in out.depth["CAM_FRONT"]), 60, f"frame {k}")
        return next(_depth(m) for m in out.depth["CAM_FRONT"] if _ns(m.header.stamp) == stamp)

    try:
        pub.publish_tf()
        for k in range(3):
            without = serve(k, T0 + k * 10**9, radar=False)
            with_radar = serve(k, T0 + k * 10**9 + 500_000_000, radar=True)
            # Same images, same model: any change comes from the radar maps reaching the network (an
            # untrained radar branch moves depth by only ~1e-5 m, far above float noise, which is 0 here).
            assert np.abs(with_radar - without).max() > 1e-6, f"frame {k}: radar changed nothing"
        radar_status = out.status("input RADAR_FRONT")
        assert radar_status["received"] == "3" and "rejected" not in str(radar_status), radar_status
    finally:
        _stop(node, client)


def test_corrupt_checkpoint_stops_the_node_with_what_to_fix(tmp_path, rig):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    node = NodeProcess(_params(tmp_path, broken, rig))
    assert node.wait() == 2, node.output
    assert f"cannot load the depth model {broken}" in node.output
    assert "Traceback" not in node.output


def test_bad_parameters_are_all_named(tmp_path, checkpoint, rig):
    node = NodeProcess(
        _params(
            tmp_path,
            checkpoint,
            rig,
            cameras=["CAM_A", "CAM_A"],
            diagnostics_period_s=-1.0,
            expected_rate_hz="fast",
            backend="cuda-magic",
        )
    )
    assert node.wait() == 2, node.output
    assert "cameras: repeated entries ['CAM_A']" in node.output
    assert "diagnostics_period_s: -1.0 is outside the allowed range [0.05, 60.0]" in node.output
    assert "expected_rate_hz: expected float, got str 'fast'" in node.output
    assert "backend: 'cuda-magic' is not one of ['auto', 'torch', 'tensorrt', 'onnxruntime']" in node.output
    assert "Traceback" not in node.output


def test_compressed_images(tmp_path, checkpoint, rig):
    import cv2
    from sensor_msgs.msg import CompressedImage

    from surround_depth_ros.ros.messages import MESSAGES

    node, client, out, pub = _start(tmp_path, checkpoint, rig, image_transport="compressed")
    try:
        compressed = {
            c.name: client.node.create_publisher(CompressedImage, f"/{c.name}/image_raw/compressed", 10)
            for c in rig.cameras
        }
        client.wait_for(lambda: all(p.get_subscription_count() for p in compressed.values()), 60, "the node")
        pub.publish_tf()
        for i, (camera, image) in enumerate(zip(rig.cameras, _images(3), strict=True)):
            stamp = T0 + OFFSETS_NS[i]
            pub.infos[camera.name].publish(MESSAGES.camera_info(camera, stamp))
            ok, png = cv2.imencode(".png", image[..., ::-1])
            msg = CompressedImage(format="rgb8; png compressed bgr8", data=png.tobytes())
            msg.header = MESSAGES.header(stamp, camera.frame_id)
            compressed[camera.name].publish(msg)
        client.wait_for(lambda: all(out.depth[c] for c in rig.camera_names), 60, "depth from compressed images")
        assert [_ns(out.depth[c.name][0].header.stamp) for c in rig.cameras] == [T0 + o for o in OFFSETS_NS]
    finally:
        _stop(node, client)


def test_16uc1_millimetres_equal_the_pipeline_depth(tmp_path, checkpoint, rig):
    from pipeline_harness import process

    from surround_depth_ros.inference.engine import DepthEngine

    node, client, out, pub = _start(tmp_path, checkpoint, rig, depth_encoding="16UC1", publish_cloud=False)
    try:
        pub.publish_tf()
        _drive(pub, range(1))
        client.wait_for(lambda: all(out.depth[c] for c in rig.camera_names), 60, "16UC1 depth")
    finally:
        _stop(node, client)
    expected = process(DepthEngine(checkpoint, backend="torch", device="cpu"), _images(0), rig)
    for camera, depth in zip(rig.camera_names, expected.depth, strict=True):
        msg = out.depth[camera][0]
        assert msg.encoding == "16UC1" and msg.step == 2 * msg.width
        millimetres = np.frombuffer(msg.data, np.uint16).reshape(msg.height, msg.width)
        assert np.abs(millimetres.astype(int) - np.rint(depth * 1000)).max() <= 1


def test_an_oversize_image_a_skewed_clock_a_silent_anchor_and_a_double_sigint(tmp_path, checkpoint, rig):
    """Each fails on the node before the decoder thread and the output watchdog (issue 14).

    An image over `max_image_pixels` is refused for its camera only; a camera whose clock is an hour
    ahead is rejected and named at ERROR, for that camera only; when the anchor camera's driver
    dies the pipeline says so (WARN) and, once nothing was published for `output_timeout_s` while the
    other cameras send, goes ERROR; two SIGINTs in a row still end in a clean exit 0.
    """
    node, client, out, pub = _start(tmp_path, checkpoint, rig, max_image_pixels=WIDTH * HEIGHT, output_timeout_s=1.0)
    try:
        pub.publish_tf()
        big = np.zeros((2 * HEIGHT, 2 * WIDTH, 3), np.uint8)
        frames = itertools.count()

        def drive(skip: tuple[int, ...]) -> None:
            k = next(frames)
            for i, image in enumerate(_images(k)):
                if i in skip:
                    continue
                oversize, skewed = i == 5, i == 4
                stamp = T0 + k * 100_000_000 + OFFSETS_NS[i] + skewed * 3600 * 10**9
                pub.publish_camera(
                    i, big if oversize else image, stamp, info_size=(2 * WIDTH, 2 * HEIGHT) if oversize else None
                )
            time.sleep(0.1)

        def refused_and_served() -> bool:
            refused, skewed = out.status("input CAM_BACK_RIGHT"), out.status("input CAM_BACK_LEFT")
            if skewed.get("level") != 2 or "this sensor's clock is off" not in skewed["message"]:
                return False
            return (
                bool(out.depth["CAM_FRONT"])
                and refused.get("level") == 2
                and (f"over the budget of {WIDTH * HEIGHT} (parameter max_image_pixels)" in refused["message"])
            )

        deadline = time.monotonic() + 120
        while not refused_and_served():
            assert time.monotonic() < deadline, "timed out waiting for the oversize image to be refused"
            drive(skip=())
        assert not out.depth["CAM_BACK_RIGHT"] and not out.depth["CAM_BACK_LEFT"]

        def stalled() -> bool:
            pipeline = out.status("pipeline")
            message = pipeline.get("message", "")
            return pipeline.get("level") == 2 and all(
                why in message for why in ("no frame set published for", "anchor camera CAM_FRONT is silent")
            )

        deadline = time.monotonic() + 120
        while not stalled():
            assert time.monotonic() < deadline, f"timed out waiting for the stall: {out.status('pipeline')}"
            drive(skip=(0,))
    finally:
        client.close()
        node.process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        node.process.send_signal(signal.SIGINT)
        code = node.wait(30)
        print(node.output)
    assert code == 0 and "Traceback" not in node.output and "terminate called" not in node.output, node.output


def test_depth_at_network_resolution_with_its_scaled_camera_info(tmp_path, checkpoint, rig):
    """The default, `depth_resolution: network`: a consumer that knows only the published depth and CameraInfo
    (REP 118) puts every cloud point on a pixel whose depth it is; the diagnostics break processing into stages."""
    node, client, out, pub = _start(tmp_path, checkpoint, rig, depth_resolution=None, cloud_stride=1)
    try:
        pub.publish_tf()
        _drive(pub, range(1))
        client.wait_for(
            lambda: out.clouds and all(out.depth[c] and out.info[c] for c in rig.camera_names),
            60,
            "network-sized depth",
        )
        client.wait_for(lambda: "stage forward ms (mean of last 100)" in out.status("pipeline"), 30, "stage timings")
    finally:
        _stop(node, client)
    cloud = _cloud(out.clouds[0])
    for i, camera in enumerate(rig.cameras):
        msg, info = out.depth[camera.name][0], out.info[camera.name][0]
        assert (msg.width, msg.height) == (info.width, info.height) and msg.width < WIDTH and msg.height < HEIGHT
        K = np.reshape(info.k, (3, 3))
        np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], K)
        np.testing.assert_allclose(K[0, 0] / camera.K[0, 0], msg.width / WIDTH)
        mine = cloud[cloud["camera"] == i]
        assert len(mine) > 100, camera.name
        points = np.stack([mine["x"], mine["y"], mine["z"]], axis=1).astype(np.float64)
        uv, z = geometry.project_points(
            K, geometry.transform_points(geometry.invert_transform(camera.T_base_cam), points)
        )
        pixels = np.rint(uv).astype(int)
        assert np.abs(uv - pixels).max() < 2e-3, camera.name
        np.testing.assert_allclose(z, _depth(msg)[pixels[:, 1], pixels[:, 0]], rtol=1e-4)


def _tf_bytes(edges, stamp_ns: int) -> bytes:
    """A serialized TFMessage of (parent, child) edges, each 0.1 m along x: built once, published as it is."""
    from rclpy.serialization import serialize_message

    from surround_depth_ros.ros.messages import MESSAGES

    T = np.eye(4)
    T[0, 3] = 0.1
    return serialize_message(MESSAGES.tf_message([MESSAGES.transform(T, p, c, stamp_ns) for p, c in edges]))


def test_a_10000_frame_tf_tree_leaves_the_node_serving(tmp_path, checkpoint, rig):
    """Issue 22 item 4: a 10,000-frame chain on /tf_static (latched, so every respawn got it again) kept the
    executor in a quadratic loop check until the watchdog ended the node, and a 10,000-frame tree on /tf at 2 Hz
    cost seconds per message with no diagnostics meanwhile. Now the node keeps publishing depth for every camera
    and diagnostics that name the frame-limit rejection, and stops cleanly."""
    from tf2_msgs.msg import TFMessage

    n = 10_000
    chain = _tf_bytes([(f"f{i}", f"f{i + 1}") for i in range(n)], 0)
    wide = _tf_bytes([("base_link", f"w{i}") for i in range(n)], T0)
    node, client, out, pub = _start(tmp_path, checkpoint, rig)
    try:
        pub.publish_tf()  # the rig first: its frames are in before the flood fills the frame limit
        pub.tf_static.publish(chain)
        tf = client.node.create_publisher(TFMessage, "/tf", 10)
        client.wait_for(lambda: tf.get_subscription_count() > 0, 60, "the node's /tf subscription")
        diagnostics_before = len(out.diagnostics)
        flood_start = T0 + 1_000_000_000

        def served() -> bool:
            after = [sum(_ns(m.header.stamp) >= flood_start for m in out.depth[c]) for c in rig.camera_names]
            pipeline = out.status("pipeline")
            return (
                min(after) >= 2
                and len(out.diagnostics) >= diagnostics_before + 8
                and int(pipeline.get("dropped: transforms ignored (frame limit)", 0)) >= 2 * (n - 1000)
            )

        deadline = time.monotonic() + 180
        for k in itertools.count(10):
            if served():
                break
            assert time.monotonic() < deadline, f"timed out: {out.status('pipeline')}"
            if k % 5 == 0:
                tf.publish(wide)  # 2 Hz, between camera frames at 10 Hz
            _drive(pub, range(k, k + 1))
        assert node.process.poll() is None
    finally:
        _stop(node, client)
    assert "/tf_static: " in node.output and "frame limit (parameter tf_max_frames)" in node.output
