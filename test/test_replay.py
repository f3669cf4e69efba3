"""Replay of a bag into live topics over real DDS: every frame arrives, /tf_static reaches late subscribers,
and `surround-depth replay` into a fresh listener process loses nothing (discovery, exit, DDS profile).

Run as a script (`python test_replay.py listen EXPECTED_JSON`), this file is that listener.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest
from ros_harness import RosClient
from sample_framesets import T_BASE_LIDAR, make_framesets

from surround_depth_ros.bag import write_bag
from surround_depth_ros.conversion.messages import stamp_ns
from surround_depth_ros.ros.dds import PROFILE_VARIABLES

N_FRAMES = 8


@pytest.fixture(scope="module")
def framesets():
    return make_framesets(N_FRAMES, seed=7)


@pytest.fixture(scope="module")
def bag(tmp_path_factory, framesets):
    path = tmp_path_factory.mktemp("replay") / "drive"
    write_bag(framesets, path, T_base_lidar=T_BASE_LIDAR, progress=False)
    return path


@pytest.fixture
def client():
    client = RosClient("replay_test_client")
    yield client
    client.close()


class Recorder:
    """Subscribes to the bag's topics and keeps what arrives.

    Reliable with a deep queue: the test checks what the replayer delivers over DDS, so the test's own
    executor thread (slow when the machine is loaded) must not lose messages from a keep-last queue.
    """

    def __init__(self, client: RosClient, topics: dict[str, type], depth: int = 1000) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.received: dict[str, list] = defaultdict(list)
        self.lock = threading.Lock()
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = [
            client.node.create_subscription(msg_type, topic, lambda msg, t=topic: self._keep(t, msg), qos)
            for topic, msg_type in topics.items()
        ]

    def _keep(self, topic: str, msg: object) -> None:
        with self.lock:
            self.received[topic].append(msg)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.received[topic])


def _stream_topics(framesets) -> dict[str, type]:
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    rig = framesets[0].rig
    topics = {f"/{c}/image_raw": Image for c in rig.camera_names}
    topics |= {f"/{c}/camera_info": CameraInfo for c in rig.camera_names}
    topics |= {f"/{r}/points": PointCloud2 for r in rig.radar_names}
    return topics | {"/lidar/points": PointCloud2, "/tf": TFMessage, "/clock": Clock}


def _replayer(client: RosClient, path, **options):
    import rclpy

    from surround_depth_ros.ros.replayer import BagReplayer

    node = rclpy.create_node("bag_replayer", context=client.context)
    return BagReplayer(path, node=node, **options)


def _wait_for_discovery(client: RosClient, replayer, recorder: Recorder) -> None:
    """Both sides must have matched: a reliable writer drops what it sends before the reader knows it."""
    publishers = replayer._publishers.values()
    client.wait_for(
        lambda: (
            all(p.get_subscription_count() >= 1 for p in publishers)
            and all(s.get_publisher_count() >= 1 for s in recorder.subscriptions)
        ),
        20,
        "subscribers and replayer to match",
    )


def test_replay_at_1x_delivers_every_frame_and_latches_tf_static(client, bag, framesets):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from surround_depth_ros.conversion.messages import image_rgb
    from surround_depth_ros.conversion.messages import transform_matrix as matrix_from_transform

    topics = _stream_topics(framesets)
    recorder = Recorder(client, topics)
    replayer = _replayer(client, bag, rate=1.0)
    _wait_for_discovery(client, replayer, recorder)
    stats = replayer.run()

    rig = framesets[0].rig
    expected = {t: N_FRAMES for t in topics if t not in ("/tf", "/clock")}
    expected["/tf"] = N_FRAMES * (len(rig.cameras) + len(rig.radars) + 1)
    expected["/clock"] = stats.published["/clock"]
    client.wait_for(lambda: all(recorder.count(t) >= n for t, n in expected.items()), 20, "every replayed message")
    assert {t: recorder.count(t) for t in expected} == expected
    assert stats.published["/CAM_0/image_raw"] == N_FRAMES and stats.loops == 1
    # 1x follows bag time: the replay takes at least as long as the bag spans (a rate check, not a speed limit)
    span_s = (framesets[-1].camera_stamps_ns.max() - framesets[0].radar[0].stamp_ns) / 1e9
    assert stats.wall_seconds >= 0.95 * span_s and stats.bag_seconds == pytest.approx(span_s, abs=1e-3)

    for index, cam in enumerate(rig.cameras):
        messages = recorder.received[f"/{cam.name}/image_raw"]
        assert [stamp_ns(m.header.stamp) for m in messages] == [int(f.camera_stamps_ns[index]) for f in framesets]
        np.testing.assert_array_equal(image_rgb(messages[3]), framesets[3].images[index])

    # a subscriber that joins after the replay ended still receives every static transform
    late: list[TFMessage] = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    client.node.create_subscription(TFMessage, "/tf_static", late.append, latched)
    client.wait_for(lambda: late, 20, "/tf_static at a late subscriber")
    transforms = {t.child_frame_id: (t.header.frame_id, matrix_from_transform(t.transform)) for t in late[0].transforms}
    assert len(transforms) == 2 * len(rig.cameras) + len(rig.radars) + 1
    np.testing.assert_allclose(transforms["lidar"][1], T_BASE_LIDAR, atol=1e-12)
    assert transforms["cam_2_optical_frame"][0] == "cam_2"
    replayer.node.destroy_node()


def test_max_rate_delivers_every_message_to_a_reliable_subscriber(client, bag, framesets):
    from sensor_msgs.msg import Image

    topics = {f"/{c}/image_raw": Image for c in framesets[0].rig.camera_names}
    recorder = Recorder(client, topics)
    replayer = _replayer(client, bag, rate=float("inf"), topics=list(topics), max_in_flight=5)
    _wait_for_discovery(client, replayer, recorder)
    stats = replayer.run()
    assert sum(stats.published.values()) == len(topics) * N_FRAMES
    client.wait_for(lambda: all(recorder.count(t) >= N_FRAMES for t in topics), 20, "every image")
    assert all(recorder.count(t) == N_FRAMES for t in topics)
    replayer.node.destroy_node()


def test_loop_restarts_at_the_bag_start_and_stops_on_request(client, bag, framesets):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    topics = {"/CAM_0/image_raw": Image, "/clock": Clock}
    recorder = Recorder(client, topics)
    replayer = _replayer(client, bag, rate=4.0, loop=True, topics=list(topics))
    _wait_for_discovery(client, replayer, recorder)
    runner = threading.Thread(target=replayer.run)
    runner.start()
    client.wait_for(lambda: recorder.count("/CAM_0/image_raw") >= N_FRAMES + 2, 30, "a second loop")
    replayer.stop()
    runner.join(timeout=10)
    assert not runner.is_alive() and replayer.stats.loops >= 1
    clock = [stamp_ns(m.clock) for m in recorder.received["/clock"]]
    backwards = np.flatnonzero(np.diff(clock) < 0)
    assert len(backwards) >= 1 and clock[backwards[0] + 1] == clock[0]  # the clock jumps back to the bag start
    stamps = [stamp_ns(m.header.stamp) for m in recorder.received["/CAM_0/image_raw"]]
    assert stamps[N_FRAMES] == stamps[0] == int(framesets[0].camera_stamps_ns[0])
    replayer.node.destroy_node()


def test_replayer_rejects_bad_arguments(client, bag, tmp_path):
    with pytest.raises(ValueError, match="rate must be > 0"):
        _replayer(client, bag, rate=0.0)
    with pytest.raises(ValueError, match=r"topics \['/nope'\] are not in the bag"):
        _replayer(client, bag, topics=["/nope"])
    with pytest.raises(FileNotFoundError, match="not a rosbag2 directory"):
        _replayer(client, tmp_path)


def test_a_topic_recorded_with_a_second_type_is_replayed_as_one_and_the_rest_named(client, bag, tmp_path, capsys):
    """CAM_0's image topic also holds 8 CompressedImages (a second connection): a DDS topic has one type, so the
    Images are published and reach an Image subscriber, and the 8 others are named with their type and count,
    before the replay and after it (issue 23: they were published on the Image publisher, to nobody)."""
    from rosbags.rosbag2 import Reader, Writer
    from sensor_msgs.msg import Image

    from surround_depth_ros.bag.writer import TYPESTORE
    from surround_depth_ros.tools.cli import main

    mixed = tmp_path / "mixed"
    with Reader(bag) as reader, Writer(mixed, version=9) as writer:
        out = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=TYPESTORE) for c in reader.connections}
        stamps = []
        for connection, timestamp, raw in reader.messages():
            writer.write(out[connection.id], timestamp, raw)
            stamps += [timestamp] if connection.topic == "/CAM_0/image_raw" else []
        compressed = writer.add_connection("/CAM_0/image_raw", "sensor_msgs/msg/CompressedImage", typestore=TYPESTORE)
        message = TYPESTORE.types["sensor_msgs/msg/CompressedImage"]
        for stamp in stamps:
            header = TYPESTORE.types["std_msgs/msg/Header"](TYPESTORE.types["builtin_interfaces/msg/Time"](0, 1), "cam")
            raw = TYPESTORE.serialize_cdr(message(header, "png", np.zeros(8, np.uint8)), message.__msgtype__)
            writer.write(compressed, stamp + 1, raw)
    recorder = Recorder(client, {"/CAM_0/image_raw": Image})
    replayer = _replayer(client, mixed, rate=float("inf"), topics=["/CAM_0/image_raw"])
    _wait_for_discovery(client, replayer, recorder)
    stats = replayer.run()
    key = "/CAM_0/image_raw: sensor_msgs/msg/CompressedImage messages on a topic taken as sensor_msgs/msg/Image"
    assert stats.published["/CAM_0/image_raw"] == N_FRAMES and stats.faults.skipped == {key: N_FRAMES}
    client.wait_for(lambda: recorder.count("/CAM_0/image_raw") >= N_FRAMES, 20, "every Image")
    replayer.node.destroy_node()

    capsys.readouterr()
    assert main(["replay", str(mixed), "--rate", "max", "--wait", "0", "--topics", "/CAM_0/image_raw"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed.count(f"not replayed: {N_FRAMES} messages skipped") == 1
    assert printed.count(f"not published: {N_FRAMES} messages skipped") == 1
    assert printed.count(f"  {N_FRAMES} x {key}") == 2


def test_a_recorded_qos_rcl_cannot_take_is_replaced_by_the_stream_profile(bag, tmp_path, capsys):
    """A metadata.yaml whose offered QoS lost its durability (rosbags reads it as UNKNOWN, which rcl refuses for a
    publisher) and has a depth that is no depth: the topics are published reliable, volatile, keep-last 10 (found
    by the damaged-bag fuzz, test_bag_fuzz.py)."""
    import shutil

    import yaml
    from rosbags.rosbag2 import Reader

    from surround_depth_ros.ros.replayer import STREAM, qos_from_bag
    from surround_depth_ros.tools.cli import main

    damaged = tmp_path / "bag"
    shutil.copytree(bag, damaged)
    metadata = yaml.safe_load((damaged / "metadata.yaml").read_text())
    for topic in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        profile = topic["topic_metadata"]["offered_qos_profiles"][0]
        del profile["durability"]
        profile["depth"] = -5
    (damaged / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    with Reader(damaged) as reader:
        profiles = [qos_from_bag(c.ext.offered_qos_profiles) for c in reader.connections]
    assert all((p.durability, p.depth) == (STREAM.durability, STREAM.depth) for p in profiles)
    assert main(["replay", str(damaged), "--rate", "max", "--wait", "0"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def listen(expected: dict[str, list], timeout_s: float = 90.0) -> None:
    """The fresh listener: subscribes to {topic: [type, count]} (reliable, deep queues; /tf_static latched), spins
    until every count arrived or `timeout_s` passed, and prints the counts received as JSON.

    A watchdog prints every thread's stack and ends the process (exit 1) if it is stuck: before the counts
    (once in CI, a listener gave no answer in 120 s), or for 10 s in rclpy's shutdown after them.
    """
    import faulthandler

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from surround_depth_ros.ros.messages import message_class

    faulthandler.dump_traceback_later(timeout_s + 20, exit=True)
    rclpy.init()
    node = rclpy.create_node("fresh_listener")
    received: Counter = Counter()
    for topic, (msgtype, _) in expected.items():
        durability = DurabilityPolicy.TRANSIENT_LOCAL if topic == "/tf_static" else DurabilityPolicy.VOLATILE
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
        node.create_subscription(message_class(msgtype), topic, lambda _, t=topic: received.update([t]), qos, raw=True)
    deadline = time.monotonic() + timeout_s
    while any(received[t] < n for t, (_, n) in expected.items()) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(dict(received)), flush=True)
    faulthandler.dump_traceback_later(10, exit=True)
    node.destroy_node()
    rclpy.try_shutdown()


def _listener_counts(listener: subprocess.Popen) -> dict[str, int]:
    """The counts the listener printed. Without them, its output (the watchdog's stacks) is the failure's message;
    a listener stuck in shutdown after them is a warning with its stacks, as that is rclpy's, not the replay's."""
    try:
        output, _ = listener.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        listener.kill()
        output, _ = listener.communicate()
    counts = [line for line in output.splitlines() if line.startswith("{")]
    assert counts, f"the listener printed no counts (exit {listener.returncode}):\n{output[-8000:]}"
    if listener.returncode != 0:
        warnings.warn(f"the listener's shutdown failed (exit {listener.returncode}):\n{output[-8000:]}", stacklevel=2)
    return json.loads(counts[-1])


def test_replay_command_delivers_every_message_to_a_fresh_listener_10_times(bag):
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        expected = {c.topic: [c.msgtype, c.msgcount] for c in reader.connections if c.topic != "/clock"}
    expected["/tf_static"][1] = 1  # the replayer merges the bag's /tf_static into one latched message
    without_profile = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    for attempt in range(10):
        listener = subprocess.Popen(
            [sys.executable, __file__, "listen", json.dumps(expected)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            command = [sys.executable, "-m", "surround_depth_ros.tools.cli", "replay", str(bag), "--wait", "60"]
            replay = subprocess.run(command, capture_output=True, text=True, timeout=180, env=without_profile)
            received = _listener_counts(listener)
        finally:
            listener.kill()
        assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
        assert "(large images, as the node)" in replay.stdout  # the tool set the node's profile itself
        assert received == {t: n for t, (_, n) in expected.items()}, f"replay {attempt + 1} of 10"


def test_replay_command_names_the_topics_nobody_subscribes_and_serves_the_others(bag):
    """A consumer of some topics only (the node takes no lidar): the replay starts once the subscriptions that
    exist are matched, rather than after --wait, and says which topics have none."""
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        expected = {c.topic: [c.msgtype, c.msgcount] for c in reader.connections if c.topic.endswith("/image_raw")}
    listener = subprocess.Popen(
        [sys.executable, __file__, "listen", json.dumps(expected)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        command = [sys.executable, "-m", "surround_depth_ros.tools.cli", "replay", str(bag), "--wait", "500"]
        replay = subprocess.run(command, capture_output=True, text=True, timeout=240)  # far below --wait: no full wait
        received = _listener_counts(listener)
    finally:
        listener.kill()
    assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
    assert received == {t: n for t, (_, n) in expected.items()}
    warning = next(line for line in replay.stderr.splitlines() if "no subscriber" in line)
    assert "/lidar/points" in warning and "/CAM_0/camera_info" in warning and "/CAM_0/image_raw" not in warning


if __name__ == "__main__" and sys.argv[1:2] == ["listen"]:
    listen(json.loads(sys.argv[2]))
