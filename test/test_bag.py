"""rosbag2 writer and reader: written bags read back by the independent `rosbags` reader and by RosbagReader."""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_typestore
from sample_framesets import T_BASE_LIDAR, make_framesets, small_rig

from surround_depth_ros.bag import BagFormatError, BagWriter, RosbagReader, TopicNames, write_bag
from surround_depth_ros.bag.reader import dataset_settings
from surround_depth_ros.bag.topics import body_frame
from surround_depth_ros.conversion.messages import MessageKit, camera_from_info, cloud_points, transform_matrix
from surround_depth_ros.core.transforms import TransformBuffer
from surround_depth_ros.sensors import pointcloud

# The independent reference: rosbags' own type store and reader (no code of ours on the read path).
STORE = get_typestore(Stores.ROS2_KILTED)
N_FRAMES = 5


def _settings(rig, **values):  # noqa: ANN001, ANN202
    """The reader's settings over a bag of `rig`: settings name the sensors, as a params file does."""
    return dataset_settings(cameras=rig.camera_names, radars=rig.radar_names, **values)


def _read_all(path) -> dict[str, list]:
    messages: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = STORE.deserialize_cdr(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((timestamp, connection.msgtype, msg))
    return messages


@pytest.fixture(scope="module")
def framesets():
    return make_framesets(N_FRAMES)


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, tmp_path_factory, framesets):
    path = tmp_path_factory.mktemp(request.param) / "drive"
    stats = write_bag(framesets, path, storage=request.param, progress=False)  # lidar extrinsic from the sweeps
    return path, stats, request.param


def test_independent_reader_sees_layout_types_and_counts(bag, framesets):
    path, stats, storage = bag
    rig = framesets[0].rig
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == storage
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
        digests = {c.msgtype: c.digest for c in reader.connections}
    expected = {"/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage"}
    expected |= {"/clock": "rosgraph_msgs/msg/Clock", "/lidar/points": "sensor_msgs/msg/PointCloud2"}
    for cam in rig.camera_names:
        expected[f"/{cam}/image_raw"] = "sensor_msgs/msg/Image"
        expected[f"/{cam}/camera_info"] = "sensor_msgs/msg/CameraInfo"
    expected |= {f"/{r}/points": "sensor_msgs/msg/PointCloud2" for r in rig.radar_names}
    assert types == expected
    assert digests["tf2_msgs/msg/TFMessage"].endswith(
        "e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
    )
    assert qos["/tf_static"].durability.name == "TRANSIENT_LOCAL" and qos["/tf_static"].reliability.name == "RELIABLE"
    assert qos["/CAM_0/image_raw"].durability.name == "VOLATILE"

    messages = _read_all(path)
    counts = {topic: len(items) for topic, items in messages.items()}
    for cam in rig.camera_names:
        assert counts[f"/{cam}/image_raw"] == counts[f"/{cam}/camera_info"] == N_FRAMES
    assert counts["/tf_static"] == 1
    assert counts["/lidar/points"] == N_FRAMES
    assert counts["/RADAR_FRONT/points"] == counts["/RADAR_BACK/points"] == N_FRAMES
    # /tf: one pose per distinct stamp: 4 cameras + 2 radars + 1 lidar per frame
    assert counts["/tf"] == N_FRAMES * 7
    span = int(framesets[-1].camera_stamps_ns.max() - framesets[0].stamp_ns)
    assert counts["/clock"] == span // 10_000_000 + 1
    clock = [stamp for stamp, _, _ in messages["/clock"]]
    assert np.all(np.diff(clock) == 10_000_000)
    assert stats.messages == sum(counts.values()) and stats.frames == N_FRAMES


def test_independent_reader_contents_match_framesets(bag, framesets):
    path, _, _ = bag
    messages = _read_all(path)
    rig = framesets[0].rig
    for index, cam in enumerate(rig.cameras):
        images = messages[f"/{cam.name}/image_raw"]
        for frameset, (timestamp, _, msg) in zip(framesets, images, strict=True):
            stamp = int(frameset.camera_stamps_ns[index])
            assert timestamp == stamp
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
            assert msg.header.frame_id == cam.frame_id == f"cam_{index}_optical_frame"
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", cam.width, cam.height, cam.width * 3)
            np.testing.assert_array_equal(msg.data.reshape(cam.height, cam.width, 3), frameset.images[index])
        info = messages[f"/{cam.name}/camera_info"][0][2]
        assert info.distortion_model == "plumb_bob" and not np.any(info.d)
        np.testing.assert_array_equal(info.k.reshape(3, 3), cam.K)
        np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], cam.K)
        np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))

    # /tf_static: a chain base_link -> cam body (x forward) -> optical frame, radars and lidar directly under base_link
    static = messages["/tf_static"][0][2].transforms
    edges = {t.child_frame_id: (t.header.frame_id, transform_matrix(t.transform)) for t in static}
    assert len(static) == 2 * len(rig.cameras) + len(rig.radars) + 1
    tree = TransformBuffer()
    for child, (parent, T) in edges.items():
        tree.set_transform(parent, child, T, static=True)
    for cam in rig.cameras:
        assert edges[cam.frame_id][0] == body_frame(cam.frame_id) == cam.frame_id.removesuffix("_optical_frame")
        np.testing.assert_allclose(tree.lookup("base_link", cam.frame_id), cam.T_base_cam, atol=1e-12)
        body = edges[body_frame(cam.frame_id)][1]
        yaw = np.arctan2(body[1, 0], body[0, 0])
        forward = cam.T_base_cam[:3, 2]  # optical z axis
        assert abs(np.arctan2(forward[1], forward[0]) - yaw) < 1e-9
    for radar in rig.radars:
        np.testing.assert_allclose(edges[radar.frame_id][1], radar.T_base_radar, atol=1e-12)
    np.testing.assert_allclose(edges["lidar"][1], T_BASE_LIDAR, atol=1e-12)

    # radar clouds keep the nuScenes field layout and values
    radar_msgs = messages["/RADAR_FRONT/points"]
    for frameset, (_, _, cloud) in zip(framesets, radar_msgs, strict=True):
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
            (f.name, f.offset, f.datatype) for f in pointcloud.fields_from_dtype(pointcloud.NUSCENES_RADAR_DTYPE)
        ]
        assert cloud.point_step == 43 and cloud.header.frame_id == "radar_front"
        points = np.frombuffer(cloud.data.tobytes(), dtype=pointcloud.NUSCENES_RADAR_DTYPE)
        sweep = frameset.radar[0]
        np.testing.assert_array_equal(np.stack([points["x"], points["y"], points["z"]], -1), sweep.points)
        for name, column in sweep.fields.items():
            np.testing.assert_array_equal(points[name], column)

    # ego poses on /tf at the camera stamps
    poses = {
        t.header.stamp.sec * 10**9 + t.header.stamp.nanosec: transform_matrix(t.transform)
        for _, _, msg in messages["/tf"]
        for t in msg.transforms
    }
    for frameset in framesets:
        for stamp, pose in zip(frameset.camera_stamps_ns, frameset.T_world_base, strict=True):
            np.testing.assert_allclose(poses[int(stamp)], pose, atol=1e-12)


def test_rosbag_reader_round_trip(bag, framesets):
    path, _, _ = bag
    reader = RosbagReader(path)
    rig, original = reader.rig, framesets[0].rig
    assert rig.camera_names == original.camera_names and rig.radar_names == original.radar_names
    for a, b in zip(rig.cameras, original.cameras, strict=True):
        assert (a.width, a.height, a.frame_id) == (b.width, b.height, b.frame_id)
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_allclose(a.T_base_cam, b.T_base_cam, atol=1e-12)
    for a, b in zip(rig.radars, original.radars, strict=True):
        assert a.frame_id == b.frame_id
        np.testing.assert_allclose(a.T_base_radar, b.T_base_radar, atol=1e-12)
    np.testing.assert_allclose(reader.T_base_lidar, T_BASE_LIDAR, atol=1e-12)
    assert len(reader) == N_FRAMES

    read = list(reader)
    assert len(read) == N_FRAMES and reader.dropped == 0
    for got, want in zip(read, framesets, strict=True):
        np.testing.assert_array_equal(got.camera_stamps_ns, want.camera_stamps_ns)
        for image_got, image_want in zip(got.images, want.images, strict=True):
            np.testing.assert_array_equal(image_got, image_want)
        np.testing.assert_allclose(got.T_world_base, want.T_world_base, atol=1e-12)
        assert [s.sensor for s in got.radar] == [s.sensor for s in want.radar]
        for sweep_got, sweep_want in [*zip(got.radar, want.radar, strict=True), (got.lidar, want.lidar)]:
            assert sweep_got.stamp_ns == sweep_want.stamp_ns
            np.testing.assert_array_equal(sweep_got.points, sweep_want.points)
            assert list(sweep_got.fields) == list(sweep_want.fields)
            for name, column in sweep_want.fields.items():
                assert sweep_got.fields[name].dtype == column.dtype
                np.testing.assert_array_equal(sweep_got.fields[name], column)
            np.testing.assert_allclose(sweep_got.T_world_base, sweep_want.T_world_base, atol=1e-12)
        np.testing.assert_allclose(got.lidar.T_base_sensor, T_BASE_LIDAR, atol=1e-12)
        np.testing.assert_array_equal(got.radar[1].T_base_sensor, got.rig.radars[1].T_base_radar)


def test_bgr8_bag_decodes_to_the_same_rgb(tmp_path, framesets):
    write_bag(framesets[:2], tmp_path / "bgr", encoding="bgr8", progress=False)
    raw = _read_all(tmp_path / "bgr")["/CAM_1/image_raw"][0][2]
    assert raw.encoding == "bgr8"
    np.testing.assert_array_equal(raw.data.reshape(30, 40, 3), framesets[0].images[1][..., ::-1])
    read = list(RosbagReader(tmp_path / "bgr", rig=framesets[0].rig))
    np.testing.assert_array_equal(read[1].images[1], framesets[1].images[1])


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_compressed_bags_on_image_transport_topics_read_back(tmp_path, framesets, encoding):
    """png/jpeg bags carry CompressedImage on <image topic>/compressed; the reader takes them with the params'
    image_transport: compressed (png exactly, jpeg within its loss); the raw layout does not see them."""
    write_bag(framesets[:2], tmp_path / encoding, encoding=encoding, progress=False)
    messages = _read_all(tmp_path / encoding)
    assert "/CAM_1/image_raw" not in messages and messages["/CAM_1/image_raw/compressed"][0][2].format == encoding
    with pytest.raises(BagFormatError, match=r"no topic /CAM_0/image_raw .*image_transport raw.*/compressed"):
        RosbagReader(tmp_path / encoding)
    read = list(RosbagReader(tmp_path / encoding, _settings(framesets[0].rig, image_transport="compressed")))
    assert len(read) == 2
    for got, image in zip(read[1].images, framesets[1].images, strict=True):
        want = image  # png is lossless; jpeg gives what OpenCV's own round trip at quality 95 gives
        if encoding == "jpeg":
            data = cv2.imencode(".jpg", image[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            want = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(got, want)


def test_multi_sweep_framesets_write_each_sweep_once(tmp_path):
    """Accumulated radar (the sweeps of the previous frame set too) must not duplicate messages."""
    framesets = make_framesets(N_FRAMES)
    want = [f.radar[0].stamp_ns for f in framesets]
    for previous, frameset in zip(framesets, framesets[1:], strict=False):
        frameset.radar = previous.radar[:1] + frameset.radar
    write_bag(framesets, tmp_path / "multi", progress=False)
    messages = _read_all(tmp_path / "multi")
    assert len(messages["/RADAR_FRONT/points"]) == N_FRAMES
    read = list(RosbagReader(tmp_path / "multi", _settings(framesets[0].rig, radar_sweeps=2)))
    stamps = [[s.stamp_ns for s in f.radar if s.sensor == "RADAR_FRONT"] for f in read]
    assert stamps == [[want[0]]] + [[want[k - 1], want[k]] for k in range(1, N_FRAMES)]


def test_reader_drops_and_counts_incomplete_sets(tmp_path, framesets):
    """A frame whose CAM_2 image is lost is dropped (its 3 other images counted), the others stay intact."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    write_bag(framesets, full, progress=False)
    lost_stamp = int(framesets[2].camera_stamps_ns[2])
    with Reader(full) as reader, Writer(cut, version=9) as writer:
        out = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=STORE) for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            if not (connection.topic == "/CAM_2/image_raw" and timestamp == lost_stamp):
                writer.write(out[connection.id], timestamp, raw)
    reader = RosbagReader(cut, _settings(framesets[0].rig, sync_window_s=0.05))
    read = list(reader)
    assert [int(f.camera_stamps_ns[0]) for f in read] == [
        int(f.camera_stamps_ns[0]) for i, f in enumerate(framesets) if i != 2
    ]
    assert reader.dropped == 3
    for got, want in zip(read, [f for i, f in enumerate(framesets) if i != 2], strict=True):
        for image_got, image_want in zip(got.images, want.images, strict=True):
            np.testing.assert_array_equal(image_got, image_want)


def _rewritten(source, path, change=lambda connection, raw: raw, extra=()) -> None:  # noqa: ANN001
    """`source` rewritten to `path`, each message's bytes through `change` (None: left out); `extra`: (topic,
    type, [(log time, bytes)]) connections added."""
    with Reader(source) as reader, Writer(path, version=9) as writer:
        out = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=STORE) for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            if (changed := change(connection, raw)) is not None:
                writer.write(out[connection.id], timestamp, changed)
        for topic, msgtype, messages in extra:
            connection = writer.add_connection(topic, msgtype, typestore=STORE)
            for timestamp, raw in messages:
                writer.write(connection, timestamp, raw)


def test_undecodable_messages_are_skipped_counted_by_topic_and_cause_and_the_rest_read(tmp_path, framesets):
    """A CAM_1 image and a radar cloud whose CDR is cut short: the image's set is dropped (3 images in no set), the
    radar sweep is missing from its set, every other set is read, and `faults` says which messages and why."""
    write_bag(framesets, tmp_path / "full", progress=False)
    cut = {("/CAM_1/image_raw", 2), ("/RADAR_FRONT/points", 1)}
    seen: dict[str, int] = {}

    def damage(connection, raw):  # noqa: ANN001, ANN202
        index = seen[connection.topic] = seen.get(connection.topic, -1) + 1
        return raw[: len(raw) // 2] if (connection.topic, index) in cut else raw

    _rewritten(tmp_path / "full", tmp_path / "cut", damage)
    reader = RosbagReader(tmp_path / "cut", _settings(framesets[0].rig, sync_window_s=0.05))
    read = list(reader)
    assert [f.name for f in read] == [f"cut:{k}" for k in range(N_FRAMES - 1)] and reader.dropped == 3
    assert [int(f.camera_stamps_ns[0]) for f in read] == [
        int(f.camera_stamps_ns[0]) for f in framesets[:2] + framesets[3:]
    ]
    assert sum(reader.faults.skipped.values()) == 2 and reader.faults.stopped is None
    assert {key.split(": ")[0] for key in reader.faults.skipped} == {"/CAM_1/image_raw", "/RADAR_FRONT/points"}
    assert all(": undecodable sensor_msgs/msg/" in key for key in reader.faults.skipped)
    assert reader.reading_summary()["messages_skipped"] == dict(reader.faults.skipped)


def test_a_camera_topic_with_a_second_type_is_read_as_the_node_subscribes_it(tmp_path, framesets):
    """Clouds recorded on CAM_0's image topic (a second connection of another type): the images are read as the
    node's Image subscription gets them, every set is complete, the clouds are counted as skipped."""
    write_bag(framesets, tmp_path / "full", progress=False)
    with Reader(tmp_path / "full") as reader:
        clouds = [(t, bytes(raw)) for c, t, raw in reader.messages() if c.topic == "/lidar/points"]
    _rewritten(
        tmp_path / "full", tmp_path / "mixed", extra=[("/CAM_0/image_raw", "sensor_msgs/msg/PointCloud2", clouds)]
    )
    reader = RosbagReader(tmp_path / "mixed")
    assert reader.topics["/CAM_0/image_raw"] == "sensor_msgs/msg/Image" and len(list(reader)) == N_FRAMES
    key = "/CAM_0/image_raw: sensor_msgs/msg/PointCloud2 messages on a topic taken as sensor_msgs/msg/Image"
    assert reader.faults.skipped == {key: N_FRAMES}


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (lambda bag: (bag / "metadata.yaml").write_text(""), "Invalid bag metadata"),
        (lambda bag: (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 99}"), "version 99"),
        (lambda bag: os.truncate(bag / "bag.mcap", 1000), "File end magic is invalid"),
        (lambda bag: (bag / "bag.mcap").write_bytes(b""), "seems to be empty"),
        (
            lambda bag: (bag / "metadata.yaml").write_text(
                (bag / "metadata.yaml").read_text().replace("storage_identifier: mcap", "storage_identifier: sqlite3")
            ),
            "Cannot open database",
        ),
        (lambda bag: ((bag / "bag.mcap").unlink(), os.mkfifo(bag / "bag.mcap")), r"bag.mcap'\] are not regular"),
        (
            lambda bag: (bag / "metadata.yaml").write_text(
                "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "rosbag2_bagfile_information: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
            ),
            r"alias \*a is refused",
        ),
    ],
    ids=[
        "empty metadata",
        "version 99",
        "truncated mcap",
        "0-byte mcap",
        "wrong storage",
        "a FIFO (opening blocks)",
        "an alias bomb in the metadata",
    ],
)
def test_a_bag_that_cannot_be_opened_is_a_bag_format_error_naming_the_cause(tmp_path, framesets, damage, cause):
    bag = tmp_path / "bag"
    write_bag(framesets[:2], bag, progress=False)
    damage(bag)
    with pytest.raises(BagFormatError, match=rf"^{bag}: cannot open the bag: .*{cause}"):
        RosbagReader(bag)


def test_a_storage_failing_part_way_ends_the_pass_where_it_fails_and_says_why(tmp_path):
    """An mcap whose 13th of 21 chunks (1 MB images: a chunk each) is broken: the sets before it are read, the pass
    ends there, and `faults.stopped` says after how many messages and what rosbags found."""
    from bag_corruption import break_chunk

    write_bag(make_framesets(5, rig=small_rig(4, 640, 560)), tmp_path / "bag", progress=False)
    break_chunk(tmp_path / "bag", 12)
    reader = RosbagReader(tmp_path / "bag")
    assert [f.name for f in reader] == ["bag:0", "bag:1"]
    assert reader.faults.stopped.startswith("the storage fails after 22 messages read: Truncated record at offset")
    assert "reading stopped early: the storage fails after 22" in reader.faults.describe()


def test_topic_prefix_and_reader_errors(tmp_path, framesets):
    names = TopicNames("vehicle")
    assert names.image("CAM_0") == "/vehicle/CAM_0/image_raw" and names.lidar == "/vehicle/lidar/points"
    assert names.sensor_of("/vehicle/RADAR_FRONT/points") == ("points", "RADAR_FRONT")
    assert names.sensor_of("/CAM_0/image_raw") is None and TopicNames().sensor_of("/CAM_0/image_raw") == (
        "image",
        "CAM_0",
    )
    write_bag(framesets[:2], tmp_path / "ns", topic_names=names, progress=False)
    assert "/vehicle/CAM_3/image_raw" in _read_all(tmp_path / "ns")
    with pytest.raises(BagFormatError, match=r"camera_info topics .* pass rig="):
        RosbagReader(tmp_path / "ns")
    assert len(list(RosbagReader(tmp_path / "ns", topic_names=names))) == 2
    other = small_rig(n_cameras=5)
    with pytest.raises(BagFormatError, match=r"no topic /vehicle/CAM_4/image_raw for camera CAM_4"):
        RosbagReader(tmp_path / "ns", rig=other, topic_names=names)
    with pytest.raises(FileNotFoundError, match="not a rosbag2 directory"):
        RosbagReader(tmp_path / "nothing")
    with pytest.raises(FileExistsError, match="exists already"):
        BagWriter(tmp_path / "ns")
    with pytest.raises(ValueError, match="storage 'zip'"):
        BagWriter(tmp_path / "new", storage="zip")
    with pytest.raises(BagFormatError, match="no transform from 'base_footprint' to 'cam_0_optical_frame'.*unknown"):
        RosbagReader(tmp_path / "ns", _settings(framesets[0].rig, base_frame="base_footprint"), topic_names=names)


def test_poses_are_interpolated_between_tf_samples_and_never_extrapolated(bag, framesets):
    reader = RosbagReader(bag[0])
    a, b = (int(s) for s in framesets[1].camera_stamps_ns[:2])
    middle = reader.pose_at((a + b) // 2)
    T_a, T_b = framesets[1].T_world_base[:2]
    np.testing.assert_allclose(middle[:3, 3], (T_a[:3, 3] + T_b[:3, 3]) / 2, atol=1e-9)
    yaw = [np.arctan2(T[1, 0], T[0, 0]) for T in (T_a, middle, T_b)]
    assert yaw[1] == pytest.approx((yaw[0] + yaw[2]) / 2, abs=1e-9)
    first_pose = framesets[0].radar[0].stamp_ns  # the earliest stamped sensor
    assert reader.pose_at(first_pose - 1) is None
    assert reader.pose_at(int(framesets[-1].camera_stamps_ns.max()) + 1) is None


def test_rosbags_messages_deserialize_in_rclpy(framesets):
    """CDR bytes built with rosbags' classes are what rclpy reads (the replayer publishes them raw)."""
    from rclpy.serialization import deserialize_message, serialize_message

    from surround_depth_ros.conversion.messages import image_rgb
    from surround_depth_ros.ros.messages import MESSAGES, message_class

    kit = MessageKit(lambda name: STORE.types[name], lambda data: np.frombuffer(data, np.uint8))
    rig = framesets[0].rig
    cam, sweep = rig.cameras[1], framesets[0].radar[0]
    cases = [
        ("sensor_msgs/msg/Image", kit.image(framesets[0].images[1], 12345, cam.frame_id, "bgr8")),
        ("sensor_msgs/msg/CameraInfo", kit.camera_info(cam, 12345)),
        ("sensor_msgs/msg/PointCloud2", kit.point_cloud(pointcloud.sweep_to_array(sweep), 7, "radar_front")),
    ]
    # rclpy decodes rosbags' CDR into the message rclpy's own builders make (CDR padding bytes may differ)
    decoded = [deserialize_message(bytes(STORE.serialize_cdr(msg, t)), message_class(t)) for t, msg in cases]
    assert decoded[0] == MESSAGES.image(framesets[0].images[1], 12345, cam.frame_id, "bgr8")
    assert decoded[1] == MESSAGES.camera_info(cam, 12345)
    assert decoded[2] == MESSAGES.point_cloud(pointcloud.sweep_to_array(sweep), 7, "radar_front")
    assert decoded[1] == deserialize_message(serialize_message(decoded[1]), message_class(cases[1][0]))
    np.testing.assert_array_equal(image_rgb(decoded[0]), framesets[0].images[1])
    np.testing.assert_array_equal(camera_from_info(cam.name, decoded[1], cam.T_base_cam).K, cam.K)
    np.testing.assert_array_equal(cloud_points(decoded[2]), pointcloud.sweep_to_array(sweep))


def _check_source_bag(framesets, path) -> None:
    """Every image, camera_info and lidar cloud is in the bag with its type, and RosbagReader gives them back."""
    write_bag(framesets, path, progress=False)
    messages = _read_all(path)
    rig = framesets[0].rig
    for index, cam in enumerate(rig.cameras):
        images = messages[f"/{cam.name}/image_raw"]
        assert {msgtype for _, msgtype, _ in images} == {"sensor_msgs/msg/Image"}
        for frameset, (_, _, msg) in zip(framesets, images, strict=True):
            np.testing.assert_array_equal(msg.data.reshape(cam.height, cam.width, 3), frameset.images[index])
        info = messages[f"/{cam.name}/camera_info"][0][2]
        np.testing.assert_array_equal(info.k.reshape(3, 3), cam.K)
    if framesets[0].lidar is not None:
        clouds = messages["/lidar/points"]
        for frameset, (_, msgtype, msg) in zip(framesets, clouds, strict=True):
            assert msgtype == "sensor_msgs/msg/PointCloud2" and msg.width == len(frameset.lidar)
            points = cloud_points(msg)
            np.testing.assert_array_equal(np.stack([points[a] for a in "xyz"], -1), frameset.lidar.points)
    read = list(RosbagReader(path))
    assert len(read) == len(framesets)
    for got, want in zip(read, framesets, strict=True):
        np.testing.assert_array_equal(got.camera_stamps_ns, want.camera_stamps_ns)
        np.testing.assert_allclose(got.rig.extrinsics(), want.rig.extrinsics(), atol=1e-9)
        np.testing.assert_array_equal(got.rig.intrinsics(), want.rig.intrinsics())
        for image_got, image_want in zip(got.images, want.images, strict=True):
            np.testing.assert_array_equal(image_got, image_want)
        if want.lidar is not None:
            np.testing.assert_array_equal(got.lidar.points, want.lidar.points)
            for name, column in want.lidar.fields.items():
                np.testing.assert_array_equal(got.lidar.fields[name], column)
            if want.lidar.T_base_sensor is not None:
                np.testing.assert_allclose(got.lidar.T_base_sensor, want.lidar.T_base_sensor, atol=1e-9)


def test_nuscenes_keyframe_bag(tmp_path, shared_data_path):
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    framesets = list(NuScenesReader(shared_data_path("nuscenes_sample")))
    assert framesets[0].images[0].shape == (900, 1600, 3)
    _check_source_bag(framesets, tmp_path / "nuscenes")


def test_ddad_scene_bag(tmp_path, shared_data_path):
    from surround_depth_ros.datasets.ddad import DGPSceneReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the DGP test scene's stamps lie past 2262; the reader warns about it
        reader = DGPSceneReader(shared_data_path("ddad_dgp_sample", "scene_01"))
    framesets = list(reader)
    assert len(framesets) == 3 and framesets[0].lidar.stamp_ns < framesets[0].stamp_ns - 200_000_000
    _check_source_bag(framesets, tmp_path / "ddad")


def test_synthetic_world_bag(tmp_path):
    from surround_depth_ros.datasets.synthetic.reader import SyntheticReader
    from surround_depth_ros.sensors.rig import default_rig

    framesets = list(SyntheticReader(default_rig(), seed=3, n_frames=2, image_size=(64, 36), lidar=False))
    _check_source_bag(framesets, tmp_path / "synthetic")
    radar = _read_all(tmp_path / "synthetic")["/RADAR_FRONT/points"][0][2]
    layout = {f.name: f.datatype for f in pointcloud.fields_from_dtype(pointcloud.NUSCENES_RADAR_DTYPE)}
    assert all(layout[f.name] == f.datatype for f in radar.fields)  # the synthetic radar keeps nuScenes types
