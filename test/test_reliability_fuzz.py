"""Fuzz the running node over DDS: generated bad messages of every input type while valid cameras flow.

Hypothesis strategies build sensor_msgs/Image, CompressedImage, CameraInfo, tf2_msgs/TFMessage and
sensor_msgs/PointCloud2 messages that are well-typed (DDS carries nothing else) but wrong in every
other way: sizes that disagree with the data, declared sizes of billions of pixels, unknown
encodings, truncated and bit-flipped JPEG/PNG, singular intrinsics, NaN poses, clouds whose fields
point outside their points, stamps years off; then each type again as corrupt CDR bytes (truncated,
overwritten, impossible sequence lengths) published as they are. They go to one camera
(CAM_BACK_LEFT), the radar and /tf, /tf_static; the other cameras publish valid frames meanwhile.
After each burst the good cameras must still get depth, and the node must still run and exit
cleanly, without a traceback.

SURROUND_DEPTH_FUZZ_EXAMPLES sets the messages per input type: CI runs a short burst, the
done-criterion of issue 14 is 500 (`SURROUND_DEPTH_FUZZ_EXAMPLES=500 pytest test/test_reliability_fuzz.py`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np
import test_node_pipeline as node_test
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ros_harness import NodeProcess, RigPublisher, RosClient
from test_node_pipeline import HEIGHT, OFFSETS_NS, T0, WIDTH, Outputs, _params

rig, checkpoint = node_test.rig, node_test.checkpoint  # the node tests' fixtures: a tiny student for a 160x90 rig

EXAMPLES = int(os.environ.get("SURROUND_DEPTH_FUZZ_EXAMPLES", "40"))
FUZZED = 4  # CAM_BACK_LEFT gets the bad images and infos; the others stay valid
GOOD = [0, 1, 2, 3, 5]
RADAR = "RADAR_FRONT"

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
_uint32 = st.integers(0, 2**32 - 1)
_small = st.integers(0, 64)
_any_float = st.floats(allow_nan=True, allow_infinity=True)
# Fuzzed transforms may hang anything under the good cameras' frames, but re-parent only the fuzzed
# camera, the radar and unknown frames: a valid transform re-parenting a good camera would rightly
# take it out of the frame sets.
_PARENTS = ["base_link", "cam_front", "cam_front_optical_frame", "cam_back_left", "radar_front", "", "map", "a/"]
_CHILDREN = ["cam_back_left", "cam_back_left_optical_frame", "radar_front", "", "map", "odom", "a/"]


@st.composite
def _stamp(draw: st.DrawFn) -> tuple[int, int]:
    """(sec, nanosec): near the valid stream, years off, zero, or malformed (nanosec >= 1e9)."""
    kind = draw(st.sampled_from(["near", "far", "zero", "any"]))
    if kind == "near":
        ns = T0 + draw(st.integers(-3 * 10**9, 3 * 10**9))
        return ns // 10**9, ns % 10**9
    if kind == "far":
        return T0 // 10**9 + draw(st.sampled_from([-(10**8), -3600, 3600, 10**8])), 0
    if kind == "zero":
        return 0, 0
    return draw(st.integers(-(2**31), 2**31 - 1)), draw(_uint32)


def _header(draw: st.DrawFn, msg, frames: list[str]) -> None:  # noqa: ANN001 - any stamped message
    msg.header.stamp.sec, msg.header.stamp.nanosec = draw(_stamp())
    msg.header.frame_id = draw(st.sampled_from(frames) | _text)


@st.composite
def bad_images(draw: st.DrawFn):  # noqa: ANN201 - sensor_msgs/Image
    from sensor_msgs.msg import Image

    msg = Image()
    _header(draw, msg, ["cam_back_left_optical_frame"])
    msg.encoding = draw(
        st.sampled_from(
            ["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "32FC1", "16UC1", "yuv422", "bayer_rggb8", "RGB8", ""]
        )
        | _text
    )
    msg.is_bigendian = draw(st.integers(0, 255))
    if draw(st.booleans()):  # nearly consistent: off by a little, or a valid image with a wild stamp
        msg.height, msg.width = draw(
            st.sampled_from([(HEIGHT, WIDTH), (0, WIDTH), (HEIGHT, 0)]) | st.tuples(_small, _small)
        )
        msg.step = max(0, msg.width * 3 + draw(st.integers(-3, 8)))
        size = max(0, msg.step * msg.height + draw(st.integers(-5, 5)))
    else:  # declared sizes that have nothing to do with the data
        msg.height, msg.width, msg.step = draw(_uint32), draw(_uint32), draw(_uint32)
        size = draw(st.integers(0, 4096))
    msg.data = draw(st.binary(min_size=size, max_size=size)) if size <= 4096 else bytes(size)
    return msg


def _encoded_samples() -> dict[str, bytes]:
    import cv2

    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return {ext: cv2.imencode(f".{ext}", image)[1].tobytes() for ext in ("jpg", "png")}


_SAMPLES = _encoded_samples()


@st.composite
def bad_compressed_images(draw: st.DrawFn):  # noqa: ANN201 - sensor_msgs/CompressedImage
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    _header(draw, msg, ["cam_back_left_optical_frame"])
    msg.format = draw(st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "bmp", ""]) | _text)
    data = bytearray(_SAMPLES[draw(st.sampled_from(["jpg", "png"]))])
    kind = draw(st.sampled_from(["garbage", "truncated", "flipped", "declared size", "valid"]))
    if kind == "garbage":
        data = bytearray(draw(st.binary(max_size=2048)))
    elif kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "flipped":
        for index, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=8)):
            data[index] = value
    elif kind == "declared size":  # the 629-byte bomb family: a real header declaring up to 65535^2 / 2^32^2 pixels
        width, height = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
        if data.startswith(b"\x89PNG"):
            data[16:24] = draw(_uint32).to_bytes(4, "big") + draw(_uint32).to_bytes(4, "big")
        else:
            sof = data.index(b"\xff\xc0")
            data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    msg.data = bytes(data)
    return msg


def _floats(n: int, valid: list[float]):  # noqa: ANN202 - a strategy of lists
    """n floats: a valid list with a few entries replaced (NaN, inf, 0, negative), or anything."""
    mutated = st.lists(st.tuples(st.integers(0, n - 1), _any_float), min_size=1, max_size=3).map(
        lambda changes: [dict(changes).get(i, v) for i, v in enumerate(valid)]
    )
    return mutated | st.lists(_any_float, min_size=n, max_size=n) | st.just([0.0] * n)


_K = [100.0, 0.0, 80.0, 0.0, 100.0, 45.0, 0.0, 0.0, 1.0]
_P = [100.0, 0.0, 80.0, 0.0, 0.0, 100.0, 45.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@st.composite
def bad_camera_infos(draw: st.DrawFn):  # noqa: ANN201 - sensor_msgs/CameraInfo
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    _header(draw, msg, ["cam_back_left_optical_frame"])
    msg.width, msg.height = draw(st.sampled_from([(WIDTH, HEIGHT), (0, 0)]) | st.tuples(_uint32, _uint32))
    msg.k = draw(_floats(9, _K))
    msg.p = draw(_floats(12, _P))
    msg.r = draw(_floats(9, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]))
    msg.d = draw(st.lists(_any_float, max_size=16))
    msg.distortion_model = draw(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "fisheye"]) | _text)
    msg.binning_x, msg.binning_y = draw(_uint32), draw(_uint32)
    return msg


@st.composite
def bad_tf_messages(draw: st.DrawFn):  # noqa: ANN201 - tf2_msgs/TFMessage
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    transforms = []
    for _ in range(draw(st.integers(0, 6))):
        t = TransformStamped()
        _header(draw, t, _PARENTS)
        t.child_frame_id = draw(st.sampled_from(_CHILDREN) | _text)
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = draw(
            st.tuples(_any_float, _any_float, _any_float)
        )
        r = t.transform.rotation
        r.x, r.y, r.z, r.w = draw(
            st.just((0.0, 0.0, 0.0, 0.0)) | st.tuples(_any_float, _any_float, _any_float, _any_float)
        )
        transforms.append(t)
    return TFMessage(transforms=transforms)


@st.composite
def bad_point_clouds(draw: st.DrawFn):  # noqa: ANN201 - sensor_msgs/PointCloud2
    from sensor_msgs.msg import PointCloud2, PointField

    msg = PointCloud2()
    _header(draw, msg, ["radar_front"])
    names = st.sampled_from(["x", "y", "z", "rcs", "vx_comp", "vy_comp", "intensity"]) | _text
    msg.fields = [
        PointField(
            name=draw(names),
            offset=draw(_small | _uint32),
            datatype=draw(st.integers(0, 255)),
            count=draw(st.integers(0, 4) | _uint32),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    msg.height, msg.width = draw(st.tuples(st.integers(0, 4), _small) | st.tuples(_uint32, _uint32))
    msg.point_step, msg.row_step = draw(_small | _uint32), draw(_small | _uint32)
    msg.is_bigendian, msg.is_dense = draw(st.booleans()), draw(st.booleans())
    msg.data = draw(st.binary(max_size=4096))
    return msg


@st.composite
def corrupt_serialized(draw: st.DrawFn, messages: st.SearchStrategy) -> bytes:
    """A message of `messages` as CDR bytes, then truncated, overwritten in places, or given a huge sequence length.

    What a crashed peer's half-written shared-memory sample or a broken driver puts on the wire. The
    middleware drops what does not deserialize (the node never sees it), and a string that is not
    UTF-8 arrives with replacement characters: either way the node must go on.
    """
    from rclpy.serialization import serialize_message

    data = bytearray(serialize_message(draw(messages)))
    kind = draw(st.sampled_from(["truncate", "overwrite", "length"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "overwrite":
        for _ in range(draw(st.integers(1, 16))):
            data[draw(st.integers(4, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    start = draw(st.integers(4, max(4, len(data) - 4))) // 4 * 4  # a 4-byte aligned field, maybe a length
    data[start : start + 4] = draw(st.sampled_from([2**32 - 1, 2**31, 10**9, len(data)])).to_bytes(4, "little")
    return bytes(data)


def _publish_generated(strategy: st.SearchStrategy, publish: Callable, n: int) -> int:
    """Publish `n` generated messages (paced so that a reliable reader keeps every one); returns the count."""
    sent = 0

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def send(msg) -> None:  # noqa: ANN001
        nonlocal sent
        publish(msg)
        sent += 1
        time.sleep(0.01)

    send()
    return sent


class Session:
    """The node under fuzz, valid frames on the good cameras from a thread, and bad-message publishers."""

    def __init__(self, tmp_path, checkpoint, rig, compressed: bool) -> None:  # noqa: ANN001
        overrides = {"radars": [RADAR], "image_transport": "compressed" if compressed else "raw"}
        self.node = NodeProcess(_params(tmp_path, checkpoint, rig, **overrides))
        self.client = RosClient("fuzzer")
        self.rig, self.compressed = rig, compressed
        self.out = Outputs(self.client, rig.camera_names)
        self.pub = RigPublisher(self.client, rig)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, daemon=True)
        # While its CameraInfo is fuzzed, the fuzzed camera sends valid images (and no CameraInfo of its
        # own): an accepted but unusable camera model then meets real frame sets.
        self.fuzzed_camera_images = threading.Event()

    def publisher(self, kind: type, topic: str, qos=1000):  # noqa: ANN001, ANN201
        publisher = self.client.node.create_publisher(kind, topic, qos)
        self.client.wait_for(lambda: publisher.get_subscription_count() > 0, 60, f"the node to subscribe {topic}")
        return publisher

    def start(self) -> None:
        from sensor_msgs.msg import CompressedImage

        self._compressed = {}
        if self.compressed:
            topics = {i: f"/{self.rig.cameras[i].name}/image_raw/compressed" for i in GOOD}
            self._compressed = {i: self.publisher(CompressedImage, topic, 10) for i, topic in topics.items()}
        else:
            self.client.wait_for(
                lambda: all(self.pub.images[self.rig.cameras[i].name].get_subscription_count() for i in GOOD),
                60,
                "the node's image subscriptions",
            )
        self.pub.publish_tf()
        self._thread.start()

    def _drive(self) -> None:
        """Valid frames at 10 Hz of message time and wall time for the good cameras."""
        import cv2

        from surround_depth_ros.ros.messages import MESSAGES

        image = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        png = cv2.imencode(".png", image[..., ::-1])[1].tobytes()
        k = 0
        while not self._stop.is_set():
            for i in GOOD:
                stamp = T0 + k * 100_000_000 + OFFSETS_NS[i]
                if self.compressed:
                    camera = self.rig.cameras[i]
                    self.pub.infos[camera.name].publish(MESSAGES.camera_info(camera, stamp))
                    msg = self._compressed[i].msg_type(format="png", data=png)
                    msg.header = MESSAGES.header(stamp, camera.frame_id)
                    self._compressed[i].publish(msg)
                else:
                    self.pub.publish_camera(i, image, stamp)
            if self.fuzzed_camera_images.is_set():
                camera = self.rig.cameras[FUZZED]
                stamp = T0 + k * 100_000_000 + OFFSETS_NS[FUZZED]
                self.pub.images[camera.name].publish(MESSAGES.image(image, stamp, camera.frame_id))
            k += 1
            self._stop.wait(0.1)

    def assert_good_cameras_served(self, what: str) -> None:
        """Each good camera gets new depth after the burst, and the node still runs."""
        names = [self.rig.cameras[i].name for i in GOOD]
        before = {c: len(self.out.depth[c]) for c in names}
        self.client.wait_for(
            lambda: all(len(self.out.depth[c]) >= before[c] + 3 for c in names) or self.node.process.poll() is not None,
            90,
            f"depth of {names} after {what}",
        )
        assert self.node.process.poll() is None, f"the node died during {what}"

    def received(self, name: str) -> int:
        return int(self.out.status(f"input {name}").get("received", 0))

    def close(self) -> str:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()
        code = self.node.stop()
        print(self.node.output)
        assert code == 0, self.node.output
        assert "Traceback" not in self.node.output, self.node.output
        return self.node.output


def _fuzz(session: Session, name: str, strategy: st.SearchStrategy, publish: Callable) -> None:
    sent = _publish_generated(strategy, publish, EXAMPLES)
    print(f"{name}: {sent} generated bad messages published")
    assert sent == EXAMPLES
    session.assert_good_cameras_served(f"{sent} bad {name} messages")


def test_fuzzed_raw_images_infos_transforms_and_radar(tmp_path, checkpoint, rig):
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    session = Session(tmp_path, checkpoint, rig, compressed=False)
    try:
        session.start()
        session.assert_good_cameras_served("start")
        fuzzed = rig.cameras[FUZZED].name
        images = session.publisher(Image, f"/{fuzzed}/image_raw")
        _fuzz(session, "Image", bad_images(), images.publish)
        assert session.received(fuzzed) > 0
        infos = session.publisher(CameraInfo, f"/{fuzzed}/camera_info")
        session.fuzzed_camera_images.set()
        _fuzz(session, "CameraInfo", bad_camera_infos(), infos.publish)
        session.fuzzed_camera_images.clear()
        clouds = session.publisher(PointCloud2, f"/{RADAR}/points")
        _fuzz(session, "PointCloud2", bad_point_clouds(), clouds.publish)
        client_tf = session.publisher(TFMessage, "/tf")
        _fuzz(session, "TFMessage on /tf", bad_tf_messages(), client_tf.publish)
        _fuzz(session, "TFMessage on /tf_static", bad_tf_messages(), session.pub.tf_static.publish)
        assert session.received(RADAR) > 0
        for name, strategy, publisher in [
            ("Image", bad_images(), images),
            ("CameraInfo", bad_camera_infos(), infos),
            ("PointCloud2", bad_point_clouds(), clouds),
            ("TFMessage", bad_tf_messages(), client_tf),
        ]:  # bytes that do not deserialize, published as they are
            _fuzz(session, f"corrupt serialized {name}", corrupt_serialized(strategy), publisher.publish)
    finally:
        session.close()


def test_fuzzed_compressed_images(tmp_path, checkpoint, rig):
    from sensor_msgs.msg import CompressedImage

    session = Session(tmp_path, checkpoint, rig, compressed=True)
    try:
        session.start()
        session.assert_good_cameras_served("start")
        fuzzed = rig.cameras[FUZZED].name
        compressed = session.publisher(CompressedImage, f"/{fuzzed}/image_raw/compressed")
        _fuzz(session, "CompressedImage", bad_compressed_images(), compressed.publish)
        session.client.wait_for(lambda: session.received(fuzzed) > 0, 30, "the node to count the bad images")
    finally:
        session.close()
