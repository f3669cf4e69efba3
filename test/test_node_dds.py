"""The node over real DDS, in its own process: parameters, image checks, diagnostics, shutdown."""

from __future__ import annotations

import numpy as np
from ros_harness import NodeProcess, RosClient, write_params

from surround_depth_ros.images import encode_rgb


def _image_msg(camera: str, image: np.ndarray, encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    height, width, step, data = encode_rgb(image, "rgb8")
    return Image(height=height, width=width, step=step, data=data, encoding=encoding, is_bigendian=0)


def _statuses(array) -> dict[str, dict]:
    """hardware_id -> {'level', 'message', and the key/values}."""
    return {
        s.hardware_id: {"level": s.level[0], "message": s.message, **{kv.key: kv.value for kv in s.values}}
        for s in array.status
    }


def test_node_serves_good_camera_and_reports_bad_one(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    params = write_params(
        tmp_path / "params.yaml",
        {"cameras": ["CAM_A", "CAM_B"], "diagnostics_period_s": 0.2, "expected_rate_hz": 10.0},
    )
    node = NodeProcess(params, namespace="/rig1")
    client = RosClient()
    try:
        latest: list = []
        client.node.create_subscription(DiagnosticArray, "/diagnostics", latest.append, 10)
        good = client.node.create_publisher(Image, "/rig1/CAM_A/image_raw", 10)
        bad = client.node.create_publisher(Image, "/rig1/CAM_B/image_raw", 10)
        client.wait_for(lambda: good.get_subscription_count() and bad.get_subscription_count(), 30, "the node")
        image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)

        def published_and_reported() -> bool:
            good.publish(_image_msg("CAM_A", image))
            bad.publish(_image_msg("CAM_B", image, encoding="32FC1"))
            if not latest:
                return False
            status = _statuses(latest[-1])
            return int(status["CAM_A"]["received"]) >= 5 and int(status["CAM_B"].get("rejected: encoding", 0)) >= 5

        client.wait_for(published_and_reported, 30, "diagnostics counting both cameras")
        status = _statuses(latest[-1])
        assert status["CAM_A"]["level"] == 0, status["CAM_A"]
        assert "rejected: encoding" not in status["CAM_A"]
        assert status["CAM_B"]["level"] == 2, status["CAM_B"]
        assert "unsupported encoding '32FC1'" in status["CAM_B"]["message"]
        assert float(status["CAM_A"]["rate_hz"]) > 0
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.output
    assert "Traceback" not in node.output, node.output
    assert "listening to 2 cameras: /rig1/CAM_A/image_raw, /rig1/CAM_B/image_raw" in node.output
    assert "CAM_B: unsupported encoding '32FC1'" in node.output


def test_node_refuses_bad_parameters_naming_each(tmp_path):
    params = write_params(
        tmp_path / "params.yaml",
        {"cameras": ["CAM_A", "CAM_A"], "diagnostics_period_s": -1.0, "expected_rate_hz": "fast"},
    )
    node = NodeProcess(params)
    code = node.wait()
    assert code == 2, node.output
    assert "cameras: repeated entries ['CAM_A']" in node.output
    assert "diagnostics_period_s: -1.0 is outside the allowed range [0.05, 60.0]" in node.output
    assert "expected_rate_hz: expected float, got str 'fast'" in node.output
    assert "Traceback" not in node.output
