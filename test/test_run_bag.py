"""`surround-depth run-bag` and `evaluate --params` through the command line, on bags whose topics are not the
default layout: the node's outputs read back with rosbags, metrics against an independent lidar projection,
the camera order of the params file changing nothing, and mistakes stopping with exit status 2."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_evaluate import _bag_framesets, _independent_ground_truth, _random_checkpoint, _reference

from surround_depth_ros.bag import write_bag
from surround_depth_ros.bag.topics import TopicNames
from surround_depth_ros.core.params import settings_from_values
from surround_depth_ros.tools.cli import main

# A layout unlike the default one: sensors under /rig, other leaf names, the lidar elsewhere.
NAMESPACE = "/rig"
PATTERNS = {
    "image_topic": "sensing/{camera}/image_rect",
    "camera_info_topic": "sensing/{camera}/info_rect",
    "radar_topic": "sensing/radar/{radar}/cloud",
}
LIDAR = "/sensing/lidar/concatenated"
LAYOUT = TopicNames.from_settings(settings_from_values(PATTERNS), NAMESPACE, LIDAR)
TOPIC_OPTIONS = ("--namespace", NAMESPACE, "--lidar-topic", LIDAR)


def _params(path: Path, cameras: list[str], **values: object) -> Path:
    """A ROS params file for the node: the layout's patterns, `cameras` in that order, CPU torch."""
    parameters = {**PATTERNS, "cameras": cameras, "backend": "torch", "device": "cpu", **values}
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return path


def _read(bag: Path) -> dict[str, list]:
    """Every message of a bag, deserialized by rosbags, per topic in log order."""
    from rosbags.highlevel import AnyReader

    topics = defaultdict(list)
    with AnyReader([bag]) as reader:
        for connection, _, raw in reader.messages():
            topics[connection.topic].append(reader.deserialize(raw, connection.msgtype))
    return dict(topics)


def _depth(msg) -> np.ndarray:  # noqa: ANN001 - a rosbags Image
    dtype = {"32FC1": np.float32, "16UC1": np.uint16}[msg.encoding]
    return np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width)


@pytest.fixture(scope="module")
def small_bags(tmp_path_factory) -> dict[str, Path]:
    """Three sets of a 4-camera rig with a dense lidar, the same without lidar, and without lidar as png
    CompressedImages, in the renamed layout; a tiny student of that rig."""
    folder = tmp_path_factory.mktemp("small")
    bags = {}
    for name, lidar, encoding in (("lidar", True, "rgb8"), ("no_lidar", False, "rgb8"), ("png", False, "png")):
        frames = _bag_framesets(lidar=lidar)
        write_bag(frames, folder / name, topic_names=LAYOUT, encoding=encoding, progress=False)
        bags[name] = folder / name
    bags["checkpoint"] = _random_checkpoint(folder / "student.pt", frames[0].rig)
    return bags


def _evaluate_argv(checkpoint: Path, bag: Path, params: Path, out: Path) -> list[str]:
    """`surround-depth evaluate` on a bag through the same params file and topic options as run-bag."""
    return [
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        "rosbag",
        "--path",
        str(bag),
        "--params",
        str(params),
        *TOPIC_OPTIONS,
        "--out",
        str(out),
    ]


def test_run_bag_writes_the_node_outputs_and_scores_them_like_an_independent_projection(small_bags, tmp_path):
    bag, checkpoint = small_bags["lidar"], small_bags["checkpoint"]
    # the rig is CAM_0..CAM_3 in the bag; the params list it in another order
    params = _params(
        tmp_path / "params.yaml",
        ["CAM_2", "CAM_0", "CAM_3", "CAM_1"],
        checkpoint=str(checkpoint),
        depth_resolution="camera",
    )
    out = tmp_path / "out"
    assert main(["run-bag", str(bag), "--params", str(params), *TOPIC_OPTIONS, "--out", str(out)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_sets_processed"] == 3 and summary["dropped"] == {}
    assert summary["images_in_no_frame_set"] == 0 and summary["frame_sets_per_s"] > 0
    written = _read(out / "depth")
    infos, _, gts = _independent_ground_truth(bag, "/image_rect", "/info_rect", LIDAR)
    names = [info["topic"].split("/")[-2] for info in infos]
    expected = {"/tf_static", "/rig/depth/points"}
    expected |= {f"/rig/{name}/depth/{leaf}" for name in names for leaf in ("image", "confidence", "camera_info")}
    assert set(written) == expected
    assert len(written["/tf_static"]) == 1 and len(written["/rig/depth/points"]) == 3
    cloud_fields = [f.name for f in written["/rig/depth/points"][0].fields]
    assert cloud_fields == ["x", "y", "z", "rgb", "camera", "confidence"]
    for name, info in zip(names, infos, strict=True):
        images = written[f"/rig/{name}/depth/image"]
        assert len(images) == 3 and len(written[f"/rig/{name}/depth/confidence"]) == 3  # one per camera per set
        assert all((m.encoding, m.height, m.width) == ("32FC1", *info["size"]) for m in images)
        assert all(m.header.frame_id == info["frame"] for m in images)
        for camera_info in written[f"/rig/{name}/depth/camera_info"]:
            np.testing.assert_allclose(np.reshape(camera_info.k, (3, 3)), info["K"])

    # the metrics are those of the depth the node published against the lidar projected independently
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frame_sets"] == 3 and metrics["metric"]["images"] == 12 and (out / "report.png").is_file()
    for mode, median in (("metric", False), ("median_scaled", True)):
        for c, name in enumerate(names):
            depth = [_depth(m) for m in written[f"/rig/{name}/depth/image"]]
            rows = [_reference(pred, set_gt[c], 0.1, 80.0, median) for pred, set_gt in zip(depth, gts, strict=True)]
            for key in ("abs_rel", "rmse", "a1"):
                want = np.mean([row[key] for row in rows])
                assert metrics[mode]["per_camera"][name][key] == pytest.approx(want, rel=1e-6), (mode, name, key)

    # evaluate through the same params file: the same layout, the same cameras bound to the same slots
    evaluated = tmp_path / "evaluate"
    argv = _evaluate_argv(checkpoint, bag, params, evaluated)
    assert main(argv) == 0
    scores = json.loads((evaluated / "metrics.json").read_text())
    for mode in ("metric", "median_scaled"):
        for name in names:
            for key, value in metrics[mode]["per_camera"][name].items():
                assert scores[mode]["per_camera"][name][key] == pytest.approx(value, rel=1e-6), (mode, name, key)


def test_run_bag_on_the_nuscenes_keyframe_does_not_depend_on_the_params_camera_order(tmp_path, shared_data_path):
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    frame_set = NuScenesReader(shared_data_path("nuscenes_sample"))[0]
    bag = tmp_path / "nuscenes"
    write_bag([frame_set], bag, topic_names=LAYOUT, progress=False)
    depth = []
    for label, order in (("a", [0, 1, 2, 3, 4, 5]), ("b", [3, 5, 1, 0, 4, 2])):
        params = _params(tmp_path / f"{label}.yaml", [frame_set.rig.camera_names[i] for i in order])
        assert main(["run-bag", str(bag), "--params", str(params), *TOPIC_OPTIONS, "--out", str(tmp_path / label)]) == 0
        written = _read(tmp_path / label / "depth")
        depth.append({topic: _depth(msgs[0]) for topic, msgs in written.items() if topic.endswith("/depth/image")})
        assert all(len(msgs) == 1 for topic, msgs in written.items() if topic.endswith("/depth/image"))
    topics = [f"/rig/{name}/depth/image" for name in sorted(frame_set.rig.camera_names)]
    assert sorted(depth[0]) == sorted(depth[1]) == topics
    for topic, a in depth[0].items():
        assert a.shape == (128, 224)  # the shipped student's output size (default depth_resolution: network)
        np.testing.assert_allclose(depth[1][topic], a, rtol=0, atol=1e-6, err_msg=topic)


def test_run_bag_without_lidar_writes_depth_and_evaluate_stops_in_one_line(small_bags, tmp_path, capsys):
    bag, checkpoint = small_bags["no_lidar"], small_bags["checkpoint"]
    params = _params(
        tmp_path / "params.yaml",
        ["CAM_0", "CAM_1", "CAM_2", "CAM_3"],
        checkpoint=str(checkpoint),
        depth_encoding="16UC1",
        publish_confidence=False,
        publish_cloud=False,
    )
    out = tmp_path / "out"
    assert main(["run-bag", str(bag), "--params", str(params), *TOPIC_OPTIONS, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_sets_processed"] == 3 and summary["metrics"].startswith(f"not scored: no lidar topic {LIDAR}")
    assert not (out / "metrics.json").exists()
    written = _read(out / "depth")
    assert not [t for t in written if t.endswith("/confidence") or t.endswith("/points")]
    assert all(_depth(m).dtype == np.uint16 for m in written["/rig/CAM_0/depth/image"])
    capsys.readouterr()
    argv = _evaluate_argv(checkpoint, bag, params, tmp_path / "evaluate")
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith("surround-depth evaluate: error: ")
        and "\n" not in error
        and f"no topic {LIDAR}" in error
        and str(bag) in error
    )


def test_run_bag_reads_compressed_images_as_the_node_does(small_bags, tmp_path):
    """image_transport: compressed takes <image_topic>/compressed; png images give the raw bag's depth, bit for bit."""
    checkpoint, depth = small_bags["checkpoint"], []
    for name, transport in (("no_lidar", "raw"), ("png", "compressed")):
        params = _params(
            tmp_path / f"{name}.yaml",
            ["CAM_0", "CAM_1", "CAM_2", "CAM_3"],
            checkpoint=str(checkpoint),
            image_transport=transport,
            publish_cloud=False,
        )
        out = tmp_path / name
        assert main(["run-bag", str(small_bags[name]), "--params", str(params), *TOPIC_OPTIONS, "--out", str(out)]) == 0
        assert json.loads((out / "summary.json").read_text())["frame_sets_processed"] == 3
        depth.append({t: [_depth(m) for m in msgs] for t, msgs in _read(out / "depth").items() if "depth/image" in t})
    assert "/rig/sensing/CAM_0/image_rect/compressed" in _read(small_bags["png"])
    assert depth[0].keys() == depth[1].keys() and len(depth[0]) == 4
    for topic, maps in depth[0].items():
        for a, b in zip(maps, depth[1][topic], strict=True):
            np.testing.assert_array_equal(a, b)


def test_run_bag_names_every_mistake_and_exits_2(small_bags, tmp_path, capsys):
    bag, checkpoint = small_bags["lidar"], small_bags["checkpoint"]
    bad = _params(
        tmp_path / "bad.yaml",
        ["CAM_0"],
        checkpoint=str(checkpoint),
        sync_window_s=7.0,
        depth_encoding="8UC1",
        sync_windw_s=0.1,
    )
    assert main(["run-bag", str(bag), "--params", str(bad), *TOPIC_OPTIONS, "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err
    assert "sync_window_s: 7.0 is outside the allowed range" in error and "depth_encoding: '8UC1'" in error
    assert "sync_windw_s: unknown parameter, ignored (did you mean 'sync_window_s'?)" in error
    absent = _params(tmp_path / "absent.yaml", ["CAM_0", "CAM_9"], checkpoint=str(checkpoint))
    assert main(["run-bag", str(bag), "--params", str(absent), *TOPIC_OPTIONS, "--out", str(tmp_path / "b")]) == 2
    assert "no CameraInfo topic /rig/sensing/CAM_9/info_rect" in capsys.readouterr().err
    # without --namespace the patterns resolve at the root: the reader says what it looked for
    assert main(["run-bag", str(bag), "--params", str(absent), "--out", str(tmp_path / "c")]) == 2
    assert "no CameraInfo topic /sensing/CAM_0/info_rect" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_run_bag_at_the_network_resolution_publishes_scaled_camera_info_and_scores_at_that_size(small_bags, tmp_path):
    bag, checkpoint = small_bags["lidar"], small_bags["checkpoint"]
    params = _params(
        tmp_path / "params.yaml",
        ["CAM_0", "CAM_1", "CAM_2", "CAM_3"],
        checkpoint=str(checkpoint),
        publish_cloud=False,  # and depth_resolution left at its default, network
    )
    out = tmp_path / "out"
    assert main(["run-bag", str(bag), "--params", str(params), *TOPIC_OPTIONS, "--out", str(out)]) == 0
    written = _read(out / "depth")
    cameras = _independent_ground_truth(bag, "/image_rect", "/info_rect", LIDAR)[0]
    infos = {info["topic"].split("/")[-2]: info for info in cameras}
    for name, info in infos.items():
        image, camera_info = written[f"/rig/{name}/depth/image"][0], written[f"/rig/{name}/depth/camera_info"][0]
        assert (image.height, image.width) != info["size"]  # the network's size, not the camera's
        assert (camera_info.height, camera_info.width) == (image.height, image.width)
        scale = np.diag([image.width / info["size"][1], image.height / info["size"][0], 1.0])
        np.testing.assert_allclose(np.reshape(camera_info.k, (3, 3))[:2, :2], (scale @ info["K"])[:2, :2])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frame_sets"] == 3 and metrics["metric"]["images"] == 12


def test_depth_output_messages_are_the_same_built_for_the_bag_and_for_rclpy():
    """`output_messages` with rosbags' classes (run-bag) and with rclpy's (the node): rclpy reads the bag's
    CDR back as the very message it builds itself, for every topic of one set."""
    from rclpy.serialization import deserialize_message
    from sample_framesets import make_framesets

    from surround_depth_ros.bag.writer import TYPESTORE
    from surround_depth_ros.conversion.messages import MessageKit
    from surround_depth_ros.core.outputs import output_messages
    from surround_depth_ros.core.pipeline import DepthOutputs
    from surround_depth_ros.ros.messages import MESSAGES, message_class
    from surround_depth_ros.sensors import pointcloud

    frame_set = make_framesets(1)[0]
    rng = np.random.default_rng(0)
    depth = [rng.uniform(1, 90, (c.height, c.width)).astype(np.float32) for c in frame_set.rig.cameras]
    depth[0][:3] = np.nan
    confidence = [rng.random((c.height, c.width)).astype(np.float32) for c in frame_set.rig.cameras]
    cloud = np.zeros(50, pointcloud.FUSED_CLOUD_DTYPE)
    cloud["x"], cloud["camera"] = rng.normal(size=50), rng.integers(0, 4, 50)
    outputs = DepthOutputs(depth, confidence, list(frame_set.rig.cameras), cloud)
    kit = MessageKit(lambda name: TYPESTORE.types[name], lambda data: np.frombuffer(data, np.uint8))
    camera = frame_set.rig.cameras[1]
    for encoding in ("32FC1", "16UC1"):
        settings = settings_from_values({"depth_encoding": encoding})
        infos = ({camera.name: kit.camera_info(camera, 5)}, {camera.name: MESSAGES.camera_info(camera, 5)})
        bag = output_messages(kit, frame_set, outputs, infos[0], settings)
        node = output_messages(MESSAGES, frame_set, outputs, infos[1], settings)
        assert [(t, m, s) for t, m, s, _ in bag] == [(t, m, s) for t, m, s, _ in node]
        assert len(bag) == 3 * len(frame_set.rig.cameras) + 1
        for (_, msgtype, _, ours), (_, _, _, theirs) in zip(bag, node, strict=True):
            assert deserialize_message(bytes(TYPESTORE.serialize_cdr(ours, msgtype)), message_class(msgtype)) == theirs
    millimetres = np.frombuffer(bag[0][3].data, np.uint16).reshape(depth[0].shape)
    assert (millimetres[:3] == 0).all()  # no estimate; beyond 65.535 m the largest value
    assert np.array_equal(millimetres[3:], np.minimum(np.rint(depth[0][3:] * 1000), 65535))


def test_run_bag_limit_processes_that_many_sets_and_writes_the_summary(small_bags, tmp_path, capsys):
    """--limit 2 of 3 sets: two sets' depth in the bag, scored, and a summary of that pass (issue 23: it used to
    fail on the synchronizer's counters of a pass cut short, writing no summary)."""
    bag, checkpoint = small_bags["lidar"], small_bags["checkpoint"]
    params = _params(tmp_path / "params.yaml", ["CAM_0", "CAM_1", "CAM_2", "CAM_3"], checkpoint=str(checkpoint))
    out = tmp_path / "out"
    assert main(["run-bag", str(bag), "--params", str(params), *TOPIC_OPTIONS, "--out", str(out), "--limit", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_sets_processed"] == 2 and summary["limit"] == 2 and summary["interrupted"] is None
    assert summary["images_in_no_frame_set"] == 0 and summary["sync"]["accepted"] >= 2
    assert len(_read(out / "depth")["/rig/CAM_0/depth/image"]) == 2
    assert json.loads((out / "metrics.json").read_text())["frame_sets"] == 2
    with pytest.raises(SystemExit):  # argparse: a usage error
        main(["run-bag", str(bag), "--out", str(tmp_path / "zero"), "--limit", "0"])
    assert "--limit: must be at least 1, got '0'" in capsys.readouterr().err


def test_run_bag_on_a_storage_failing_part_way_processes_what_came_before_and_exits_1(tmp_path, capsys):
    """A broken mcap chunk past the first sets: those are processed and written, the summary and one line on
    stderr say why reading stopped, the exit status is 1."""
    from bag_corruption import break_chunk
    from ros_harness import tiny_checkpoint
    from sample_framesets import make_framesets, small_rig

    frames = make_framesets(5, rig=small_rig(4, 640, 560))
    write_bag(frames, tmp_path / "bag", progress=False)
    break_chunk(tmp_path / "bag", 12)
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", frames[0].rig)
    params = tmp_path / "params.yaml"
    values = {
        "checkpoint": str(checkpoint),
        "cameras": list(frames[0].rig.camera_names),
        "backend": "torch",
        "device": "cpu",
    }
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    out = tmp_path / "out"
    assert main(["run-bag", str(tmp_path / "bag"), "--params", str(params), "--out", str(out)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_sets_processed"] == 2 and "Truncated record" in summary["read_stopped"]
    assert len(_read(out / "depth")["/CAM_0/depth/image"]) == 2
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("surround-depth ")]
    assert said == [f"surround-depth run-bag: {tmp_path / 'bag'}: reading stopped early: {summary['read_stopped']}"]
