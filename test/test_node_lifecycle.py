"""The node as a managed (lifecycle) node, its run-time parameters, QoS overrides and lazy work, over real DDS.

The node runs in its own process (`NodeProcess`, the supervisor); the test client drives it only through the
standard ROS interfaces a lifecycle manager and `ros2 param` use: `<node>/change_state`, `<node>/get_state`,
`<node>/set_parameters`, the params file's `qos_overrides.*`, and what it publishes (/diagnostics included).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import test_node_pipeline as node_test
from ros_harness import NodeProcess, RigPublisher, RosClient
from test_node_pipeline import Outputs, _depth, _drive, _ns, _params, _start, _stop

rig, checkpoint = node_test.rig, node_test.checkpoint  # the node tests' fixtures: a tiny student for a 160x90 rig

NODE = "/surround_depth"
SERVICE_TIMEOUT_S = 60  # a configure loads and warms the model: seconds on a busy machine


def _call(client: RosClient, srv_type, name: str, request, what: str):  # noqa: ANN001, ANN202 - rclpy types
    """Call the service `name` of type `srv_type` and wait for its answer (a liveness bound)."""
    service = client.node.create_client(srv_type, name)
    try:
        assert service.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S), f"no service {name}"
        future = service.call_async(request)
        client.wait_for(future.done, SERVICE_TIMEOUT_S, what)
        return future.result()
    finally:
        client.node.destroy_client(service)


def _state(client: RosClient, node: str = NODE) -> str:
    from lifecycle_msgs.srv import GetState

    return _call(client, GetState, f"{node}/get_state", GetState.Request(), "get_state").current_state.label


def _transition(client: RosClient, transition: int, node: str = NODE) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition))
    return _call(client, ChangeState, f"{node}/change_state", request, f"transition {transition}").success


def _set(client: RosClient, **values):  # noqa: ANN003, ANN202 - SetParametersResult
    """`ros2 param set`, one request for all `values`: the results, in order."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return _call(client, SetParameters, f"{NODE}/set_parameters", request, f"set {values}").results


def _get(client: RosClient, name: str):  # noqa: ANN202 - a parameter value
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    answer = _call(client, GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=[name]), "get")
    return parameter_value_to_python(answer.values[0])


class Rig:
    """Frames of the node tests' rig published one after the other at 10 Hz, remembering which frame each stamp is
    of, so that an output can be told to come from a frame published after some change."""

    def __init__(self, client: RosClient, pub: RigPublisher) -> None:
        self.client, self.pub = client, pub
        self.next = 0  # the index of the next frame to publish
        self.frame_of: dict[int, int] = {}

    def drive(self, n: int = 1) -> None:
        for k, stamps in _drive(self.pub, range(self.next, self.next + n)).items():
            self.frame_of.update(dict.fromkeys(stamps, k))
        self.next += n

    def until(self, condition, timeout: float, what: str) -> None:  # noqa: ANN001
        """Publish frame after frame until `condition()` holds: wait for the node, not for a duration."""

        def holds_else_one_more_frame() -> bool:
            if condition():
                return True
            self.drive()
            return False

        self.client.wait_for(holds_else_one_more_frame, timeout, what)

    def since(self, messages: list, first: int) -> list:
        """The messages of frames `first` and later (those stamped with a stamp this test published)."""
        return [m for m in messages if self.frame_of.get(_ns(m.header.stamp), -1) >= first]


class Listener:
    """/diagnostics from the start; an output only once `subscribe` asks for it."""

    status = Outputs.status

    def __init__(self, client: RosClient) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.node, self.diagnostics, self.got = client.node, [], defaultdict(list)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)

    def subscribe(self, msgtype: type, topic: str) -> list:
        self.node.create_subscription(msgtype, topic, self.got[topic].append, 50)
        return self.got[topic]


def _values(status) -> dict:  # noqa: ANN001 - DiagnosticStatus
    return {kv.key: kv.value for kv in status.values}


def _stage_cloud(status: dict) -> str | None:
    return status.get("stage cloud ms (mean of last 100)")


# ----- 1. lifecycle over the real services -----


def test_lifecycle_over_the_services(tmp_path, checkpoint, rig):
    from lifecycle_msgs.msg import Transition
    from sensor_msgs.msg import Image

    node = NodeProcess(_params(tmp_path, checkpoint, rig, autostart=False))
    client = RosClient()
    try:
        out = Outputs(client, rig.camera_names)
        pub = RigPublisher(client, rig)
        frames = Rig(client, pub)
        inputs = [*pub.images.values(), *pub.infos.values()]
        depth_topic = client.node.create_subscription(Image, "/CAM_FRONT/depth/image", lambda _: None, 1)

        def lifecycle(state: str, last: str) -> bool:
            status = out.status(f"{NODE}: lifecycle")
            return status.get("state") == state and status.get("last transition") == last

        # Unconfigured: it answers, and neither listens to the cameras nor has made its outputs.
        assert _state(client) == "unconfigured"
        client.wait_for(lambda: lifecycle("unconfigured", "none"), 30, "diagnostics saying unconfigured")
        assert not any(p.get_subscription_count() for p in inputs)
        assert not client.node.get_subscriptions_info_by_topic("/CAM_FRONT/image_raw")
        assert depth_topic.get_publisher_count() == 0
        assert "waiting for a lifecycle manager (autostart is false)" in node.output

        # Configure: the model is loaded and the (lifecycle) publishers exist, but nothing is subscribed yet.
        assert _transition(client, Transition.TRANSITION_CONFIGURE)
        assert _state(client) == "inactive"
        client.wait_for(lambda: depth_topic.get_publisher_count() > 0, 30, "the node's depth publisher")
        client.wait_for(lambda: lifecycle("inactive", "configure: ok"), 30, "diagnostics saying configured")
        assert not any(p.get_subscription_count() for p in inputs)
        assert not client.node.get_subscriptions_info_by_topic("/CAM_FRONT/image_raw")
        pub.publish_tf()
        frames.drive(3)
        assert not out.depth["CAM_FRONT"]

        # Activate: it subscribes and serves.
        assert _transition(client, Transition.TRANSITION_ACTIVATE)
        assert _state(client) == "active"
        client.wait_for(lambda: all(p.get_subscription_count() for p in inputs), 60, "the camera subscriptions")
        client.wait_for(lambda: lifecycle("active", "activate: ok"), 30, "diagnostics saying active")
        first = frames.next
        frames.until(lambda: frames.since(out.depth["CAM_FRONT"], first), 60, "depth once active")

        # Deactivate: the subscriptions go, frames keep coming and nothing more is published.
        assert _transition(client, Transition.TRANSITION_DEACTIVATE)
        assert _state(client) == "inactive"
        client.wait_for(lambda: not any(p.get_subscription_count() for p in inputs), 30, "the subscriptions gone")
        client.wait_for(lambda: lifecycle("inactive", "deactivate: ok"), 30, "diagnostics saying deactivated")
        assert depth_topic.get_publisher_count() > 0  # the publishers (and the model) are kept
        diagnostics = len(out.diagnostics)
        client.wait_for(lambda: len(out.diagnostics) > diagnostics + 2, 30, "diagnostics once unsubscribed")
        received = out.status("input CAM_FRONT")["received"]
        published = int(out.status("pipeline")["frame sets published"])
        assert published > 0
        inactive_from = frames.next
        frames.drive(10)
        diagnostics = len(out.diagnostics)
        client.wait_for(lambda: len(out.diagnostics) > diagnostics + 2, 30, "diagnostics after those frames")
        assert not frames.since(out.depth["CAM_FRONT"], inactive_from), "depth published while inactive"
        assert not frames.since(out.clouds, inactive_from), "a cloud published while inactive"
        assert out.status("input CAM_FRONT")["received"] == received, "images taken while inactive"

        # Activate again: it serves again with the model it kept (configured, and warmed up, once).
        assert _transition(client, Transition.TRANSITION_ACTIVATE)
        assert _state(client) == "active"
        client.wait_for(lambda: all(p.get_subscription_count() for p in inputs), 60, "the camera subscriptions again")
        again = frames.next
        frames.until(lambda: frames.since(out.depth["CAM_FRONT"], again), 60, "depth once active again")
        # The same runtime and model: its count of sets goes on from where it was (a runtime made anew would count
        # from 0 and, with no more frames sent, never get past the sets it published since).
        client.wait_for(
            lambda: (
                int(out.status("pipeline")["frame sets published"]) >= published + len(frames.since(out.clouds, again))
            ),
            30,
            "the count of sets going on",
        )
        assert node.output.count("configured: preset") == 1, node.output
        assert "warming up" not in node.output.split("active: listening", 1)[1], node.output

        # Deactivate and clean up: unconfigured, publishers gone, the runtime's statuses with them.
        assert _transition(client, Transition.TRANSITION_DEACTIVATE)
        assert _transition(client, Transition.TRANSITION_CLEANUP)
        assert _state(client) == "unconfigured"
        client.wait_for(lambda: depth_topic.get_publisher_count() == 0, 30, "the depth publisher gone")
        client.wait_for(lambda: lifecycle("unconfigured", "cleanup: ok"), 30, "diagnostics saying cleaned up")
        cleaned = [
            a for a in out.diagnostics if any(_values(s).get("last transition") == "cleanup: ok" for s in a.status)
        ]
        # A cleaned-up node has no runtime left to report on: only its lifecycle status.
        assert [s.name for s in cleaned[-1].status] == [f"{NODE}: lifecycle"], cleaned[-1]

        status = out.status(f"{NODE}: lifecycle")
        assert status["transitions"] == "6" and status["level"] == 1, status  # WARN: not active, no failure

        # Shutdown from a lifecycle manager: finalized, and the process ends by itself, cleanly.
        assert _transition(client, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert node.wait(timeout=30) == 0, node.output
    finally:
        _stop(node, client)


# ----- 2. autostart, and a configure that fails -----


def test_autostart_activates_and_a_failed_configure_leaves_the_node_unconfigured_saying_why(tmp_path, checkpoint, rig):
    from lifecycle_msgs.msg import Transition

    missing = tmp_path / "no_such_model.pt"
    (tmp_path / "auto").mkdir()
    (tmp_path / "manual").mkdir()
    # Both at once, each in its own namespace (its lifecycle services under it): the default, autostart true, which
    # the launch file's autostart:=true passes; and autostart false with a checkpoint that is not there.
    auto = NodeProcess(_params(tmp_path / "auto", checkpoint, rig, autostart=None), namespace="/auto")
    manual = NodeProcess(_params(tmp_path / "manual", missing, rig, autostart=False), namespace="/manual")
    client = RosClient()
    try:
        out = Listener(client)
        assert _state(client, f"/auto{NODE}") == "active"  # no service call brought it there
        client.wait_for(
            lambda: out.status(f"/auto{NODE}: lifecycle").get("state") == "active", 30, "/auto saying active"
        )
        assert out.status(f"/auto{NODE}: lifecycle")["level"] == 0

        assert _state(client, f"/manual{NODE}") == "unconfigured"
        assert not _transition(client, Transition.TRANSITION_CONFIGURE, f"/manual{NODE}")
        assert _state(client, f"/manual{NODE}") == "unconfigured"

        def failure_reported() -> bool:
            status = out.status(f"/manual{NODE}: lifecycle")
            return status.get("last transition", "").startswith("configure: failed")

        client.wait_for(failure_reported, 30, "the failed configure on /diagnostics")
        status = out.status(f"/manual{NODE}: lifecycle")
        assert status["level"] == 2 and status["state"] == "unconfigured", status
        assert str(missing) in status["message"] and str(missing) in status["last transition"], status
        assert manual.running and auto.running  # a failed configure is an answer, not an exit
        assert _state(client, f"/manual{NODE}") == "unconfigured"  # and it still answers
    finally:
        client.close()
        codes = manual.stop(), auto.stop()
        print(manual.output, auto.output)
    assert codes == (0, 0), (manual.output, auto.output)
    assert str(missing) in manual.output and "Traceback" not in manual.output


# ----- 3. run-time parameters over the real parameter services -----


def test_live_parameters_over_the_parameter_services(tmp_path, checkpoint, rig):
    node, client, out, pub = _start(tmp_path, checkpoint, rig)
    try:
        frames = Rig(client, pub)
        pub.publish_tf()
        confidence_topic = "CAM_FRONT/depth/confidence"

        def depth_of(first: int, count: int = 2) -> list[np.ndarray]:
            """CAM_FRONT's depth of frames `first` and later, once `count` of them and a cloud after them came."""
            frames.until(
                lambda: (
                    len(frames.since(out.depth["CAM_FRONT"], first)) >= count
                    and len(frames.since(out.clouds, first)) >= count
                ),
                60,
                f"{count} sets from frame {first} on",
            )
            return [_depth(m) for m in frames.since(out.depth["CAM_FRONT"], first)]

        before = depth_of(0)
        assert all(np.isfinite(d).all() for d in before)  # min_confidence 0: every pixel has an estimate

        # min_confidence 1.0: no pixel of the untrained student is that confident, so every depth pixel is NaN from
        # the next set on; back to 0.0, every pixel has a depth again.
        assert all(r.successful for r in _set(client, min_confidence=1.0))
        masked = depth_of(frames.next)
        assert all(np.isnan(d).all() for d in masked), [float(np.isnan(d).mean()) for d in masked]
        assert all(r.successful for r in _set(client, min_confidence=0.0))
        assert all(np.isfinite(d).all() for d in depth_of(frames.next))

        # publish_confidence false: the confidence topics stop (depth goes on); true: they start again.
        assert all(r.successful for r in _set(client, publish_confidence=False))
        without = frames.next
        depth_of(without, count=3)
        assert not frames.since(out.confidence["CAM_FRONT"], without)
        assert confidence_topic not in out.status("pipeline")["outputs with subscribers"].split(", ")
        assert all(r.successful for r in _set(client, publish_confidence=True))
        with_again = frames.next
        frames.until(lambda: frames.since(out.confidence["CAM_FRONT"], with_again), 60, "confidence again")

        # Bad values are refused with a reason naming the parameter, and change nothing; read-only ones too.
        (out_of_range,) = _set(client, min_confidence=5.0)
        assert not out_of_range.successful and "min_confidence" in out_of_range.reason, out_of_range
        (wrong_type,) = _set(client, min_confidence="abc")
        assert not wrong_type.successful and "min_confidence" in wrong_type.reason, wrong_type
        assert _get(client, "min_confidence") == 0.0
        (read_only,) = _set(client, checkpoint=str(tmp_path / "other.pt"))
        assert not read_only.successful and "read-only" in read_only.reason, read_only
        assert _get(client, "checkpoint") == str(checkpoint)
        assert all(np.isfinite(d).all() for d in depth_of(frames.next))  # still served, as before
    finally:
        _stop(node, client)


# ----- 4. QoS overrides from the params file -----


def test_qos_overrides_make_best_effort_cameras_work(tmp_path, checkpoint, rig):
    """Best-effort image publishers on every camera: the five whose image subscription the params file overrides
    to best effort are served; CAM_BACK_RIGHT, not overridden, stays reliable and its publisher is refused (QoS
    mismatch), so the override is what made the others work. An output publisher's override applies too."""
    from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    overridden, plain = rig.camera_names[:5], rig.camera_names[5]
    overrides = {f"qos_overrides./{c}/image_raw.subscription.reliability": "best_effort" for c in overridden}
    overrides["qos_overrides./CAM_BACK_RIGHT/depth/image.publisher.reliability"] = "best_effort"
    node = NodeProcess(_params(tmp_path, checkpoint, rig, **overrides))
    client = RosClient()
    try:
        out = Outputs(client, rig.camera_names)
        pub = RigPublisher(client, rig)
        pub.images = {
            c: client.node.create_publisher(Image, f"/{c}/image_raw", qos_profile_sensor_data) for c in pub.images
        }
        client.wait_for(lambda: all(p.get_subscription_count() for p in pub.infos.values()), 60, "the node")

        def reliability(endpoints) -> set:  # noqa: ANN001 - TopicEndpointInfo list
            return {e.qos_profile.reliability for e in endpoints if e.node_name == "surround_depth"}

        def subscription(camera: str) -> set:
            return reliability(client.node.get_subscriptions_info_by_topic(f"/{camera}/image_raw"))

        def publisher(topic: str) -> set:
            return reliability(client.node.get_publishers_info_by_topic(topic))

        depth_topics = ("/CAM_BACK_RIGHT/depth/image", "/CAM_FRONT/depth/image")
        client.wait_for(
            lambda: all(map(subscription, rig.camera_names)) and all(map(publisher, depth_topics)),
            30,
            "the node's image subscriptions and depth publishers in the graph",
        )
        for camera in overridden:
            assert subscription(camera) == {ReliabilityPolicy.BEST_EFFORT}, camera
        assert subscription(plain) == {ReliabilityPolicy.RELIABLE}
        assert publisher("/CAM_BACK_RIGHT/depth/image") == {ReliabilityPolicy.BEST_EFFORT}
        assert publisher("/CAM_FRONT/depth/image") == {ReliabilityPolicy.RELIABLE}

        frames = Rig(client, pub)
        pub.publish_tf()
        frames.until(
            lambda: (
                all(out.depth[c] for c in overridden)
                and int(out.status(f"input {plain}").get("rejected: QoS mismatch", 0)) > 0
            ),
            60,
            "depth from the best-effort cameras and the QoS mismatch of the plain one",
        )
        assert not out.depth[plain]
    finally:
        _stop(node, client)
    assert f"qos_overrides./{plain}/image_raw.subscription.reliability: best_effort" in node.output


# ----- 5. lazy work -----


def test_no_inference_without_subscribers_and_no_cloud_without_its_subscriber(tmp_path, checkpoint, rig):
    from sensor_msgs.msg import Image, PointCloud2

    node = NodeProcess(_params(tmp_path, checkpoint, rig))
    client = RosClient()
    try:
        out = Listener(client)
        pub = RigPublisher(client, rig)
        client.wait_for(lambda: all(p.get_subscription_count() for p in pub.images.values()), 60, "the node")
        frames = Rig(client, pub)
        pub.publish_tf()
        idle_key = "dropped: frame sets not processed: no subscriber to any output"

        def idle_drops() -> int:
            return int(out.status("pipeline").get(idle_key, 0))

        # Nobody listens to any output: sets are assembled, counted as not processed, and nothing is published.
        frames.until(lambda: idle_drops() >= 3, 60, "sets skipped for want of a subscriber")
        pipeline = out.status("pipeline")
        assert pipeline["frame sets published"] == "0" and pipeline["message"].startswith("idle: "), pipeline
        assert pipeline["outputs with subscribers"] == "none"
        assert _stage_cloud(pipeline) is None  # nothing ran
        count = idle_drops()
        frames.until(lambda: idle_drops() > count, 60, "more sets skipped")
        assert out.status("pipeline")["frame sets published"] == "0"

        # One depth image wanted: inference resumes, for that topic only, without fusing a cloud.
        depth = out.subscribe(Image, "/CAM_FRONT/depth/image")
        frames.until(lambda: depth and int(out.status("pipeline")["frame sets published"]) >= 3, 60, "CAM_FRONT depth")
        pipeline = out.status("pipeline")
        assert pipeline["outputs with subscribers"] == "CAM_FRONT/depth/image", pipeline
        assert not pipeline["message"].startswith("idle"), pipeline
        assert _stage_cloud(pipeline) in ("0.0", None), pipeline  # the fusion did not run
        assert np.isfinite(_depth(depth[-1])).all()

        # The cloud wanted too: clouds come, and the fusion's time shows.
        clouds = out.subscribe(PointCloud2, "/depth/points")
        frames.until(lambda: len(clouds) >= 2, 60, "clouds once subscribed")
        client.wait_for(
            lambda: float(_stage_cloud(out.status("pipeline")) or 0) > 0, 30, "the fusion's time in the diagnostics"
        )
    finally:
        _stop(node, client)
