"""Parameters that change while the node runs (issue 25 item 5): rclpy's set-parameters path validates them as at
start and hands them on; the frame assembler and the pipeline take them for their next decisions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sample_framesets import make_framesets, small_rig

from surround_depth_ros.core.assembler import FrameAssembler, Intrinsics
from surround_depth_ros.core.params import NodeSettings, settings_from_values, settings_with_changes
from surround_depth_ros.core.pipeline import pipeline_from_settings
from surround_depth_ros.core.sync import FrameSetSynchronizer
from surround_depth_ros.core.transforms import TransformBatch


@pytest.fixture
def ros_node():
    """A bare rclpy node in a private context with the node's parameters declared (nothing spins: set_parameters
    runs the callbacks on the caller's thread)."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("live_params_test", context=context)
    yield node
    node.destroy_node()
    context.try_shutdown()


def test_a_live_parameter_is_validated_then_applied_and_a_bad_one_refused_with_why(ros_node):
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter

    from surround_depth_ros.ros.parameters import declare_and_read, watch_live_parameters

    applied: list[NodeSettings] = [declare_and_read(ros_node)]
    watch_live_parameters(ros_node, lambda: applied[-1], applied.append)

    result = ros_node.set_parameters_atomically(
        [Parameter("min_confidence", value=0.4), Parameter("publish_cloud", value=False)]
    )
    assert result.successful, result.reason
    assert (applied[-1].min_confidence, applied[-1].publish_cloud) == (0.4, False)
    assert ros_node.set_parameters([Parameter("sync_wait_s", value=1)])[0].successful  # `ros2 param set ... 1`
    assert applied[-1].sync_wait_s == 1.0 and isinstance(applied[-1].sync_wait_s, float)

    count = len(applied)
    wrong_type, out_of_range = ros_node.set_parameters(
        [Parameter("min_confidence", value="high"), Parameter("cloud_stride", value=99)]
    )
    assert not wrong_type.successful and wrong_type.reason == "min_confidence: expected float, got str 'high'"
    assert out_of_range.reason == "cloud_stride: 99 is outside the allowed range [0, 32]"
    assert len(applied) == count and ros_node.get_parameter("min_confidence").value == 0.4
    assert ros_node.describe_parameter("min_confidence").type == ParameterType.PARAMETER_DOUBLE  # not string

    read_only = ros_node.set_parameters([Parameter("checkpoint", value="other.pt")])[0]
    assert not read_only.successful and "read-only" in read_only.reason  # refused by rclpy before the callback
    description = ros_node.describe_parameter("checkpoint").description
    assert (
        description.endswith("Read-only: loads the model: restart the node.")
        and ros_node.describe_parameter("checkpoint").read_only
    )
    assert not ros_node.describe_parameter("min_confidence").read_only


def test_parameters_rclpy_owns_pass_and_a_failing_apply_is_a_refusal(ros_node):
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.parameter import Parameter

    from surround_depth_ros.ros.parameters import declare_and_read, watch_live_parameters

    settings = declare_and_read(ros_node)

    def broken(_: NodeSettings) -> None:
        raise RuntimeError("no memory for the cloud")

    watch_live_parameters(ros_node, lambda: settings, broken)
    assert ros_node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful
    depth = ros_node.declare_parameter("qos_overrides./tf.subscription.depth", 10, ParameterDescriptor(read_only=True))
    assert depth.value == 10
    result = ros_node.set_parameters([Parameter("cloud_max_range_m", value=50.0)])[0]
    assert not result.successful and result.reason == "could not apply: RuntimeError('no memory for the cloud')"
    assert ros_node.get_parameter("cloud_max_range_m").value == 80.0


MS = 1_000_000
T0 = 1_700_000_000 * 10**9


def _two_camera_assembler(window_s: float) -> FrameAssembler:
    """CAM_A and CAM_B on base_link, both with a CameraInfo; the synchronizer waits 0.2 s."""
    assembler = FrameAssembler(["CAM_A", "CAM_B"], window_s=window_s, wait_s=0.2, missing_camera_policy="partial")
    K = np.array([[20.0, 0.0, 16.0], [0.0, 20.0, 12.0], [0.0, 0.0, 1.0]])
    for name in ("CAM_A", "CAM_B"):
        assembler.set_intrinsics(name, Intrinsics(K, 32, 24, name.lower()))
        edge = TransformBatch(
            ["base_link"], [name.lower()], np.zeros(1, np.int64), np.array([[1.0, 0, 0, 0]]), [[0.0] * 3]
        )
        assembler.add_transforms(edge, static=True)
    return assembler


def test_a_retuned_assembler_pairs_with_the_new_window():
    """Both cameras fire together at 10 Hz; one CAM_B frame comes 30 ms late: outside a 10 ms window, inside 50 ms."""
    image = np.zeros((24, 32, 3), np.uint8)
    assembler = _two_camera_assembler(window_s=0.01)
    settings = settings_from_values({"cameras": ["CAM_A", "CAM_B"], "sync_window_s": 0.01})

    def frame(k: int, lag_b: int) -> list:
        assembler.add_image("CAM_A", T0 + k * 100 * MS, "cam_a", image)
        assembler.add_image("CAM_B", T0 + k * 100 * MS + lag_b, "cam_b", image)
        return assembler.poll()

    sets = [s for k in range(10) for s in frame(k, 0)]
    assert all(s.frame_set.rig.camera_names == ["CAM_A", "CAM_B"] for s in sets) and len(sets) >= 8
    late = frame(10, 30 * MS) + frame(11, 0)
    assert late[-2].left_out == {"CAM_B": "no message in sync"}  # set 10: CAM_B 30 ms off, outside 10 ms
    assembler.retune(settings_with_changes(settings, {"sync_window_s": 0.05}))
    late = frame(12, 30 * MS) + frame(13, 0)
    assert late[-2].frame_set.anchor_stamp_ns == T0 + 1200 * MS
    assert late[-2].frame_set.rig.camera_names == ["CAM_A", "CAM_B"] and not late[-2].left_out


def test_a_retuned_synchronizer_waits_the_new_time():
    """A set whose CAM_B is lost waits sync_wait_s of message time: 0.5 s, then, once retuned, none."""
    sync = FrameSetSynchronizer(["A", "B"], wait_s=0.5, missing_camera_policy="partial")
    for k in range(6):
        sync.add_camera("A", T0 + k * 100 * MS, k)
        sync.add_camera("B", T0 + k * 100 * MS, k)
    decided = sync.poll()
    sync.add_camera("A", T0 + 600 * MS, 6)  # its CAM_B is lost
    assert decided and sync.poll(now_stamp_ns=T0 + 700 * MS) == []  # waits for it: 0.1 s < 0.5 s
    sync.retune(window_s=0.1, wait_s=0.0)
    (lost,) = [s for s in sync.poll(now_stamp_ns=T0 + 700 * MS) if s.anchor_stamp_ns == T0 + 600 * MS]
    assert lost.missing == ["B"]
    with pytest.raises(ValueError, match="wait_s must be >= 0"):
        sync.retune(window_s=0.1, wait_s=-1.0)


@pytest.fixture
def tiny_pipeline(tmp_path_factory):
    """The tiny student for a 4-camera rig on the CPU, started without a cloud, and one frame set of that rig."""
    from ros_harness import tiny_checkpoint

    rig = small_rig()
    values = {
        "cameras": rig.camera_names,
        "checkpoint": str(tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", rig)),
        "backend": "torch",
        "device": "cpu",
        "publish_cloud": False,
    }
    settings = settings_from_values(values)
    frame_set = dataclasses.replace(make_framesets(1, rig)[0], radar=[])  # the sweeps lack the assembler's extrinsics
    return settings, pipeline_from_settings(settings), frame_set


def test_a_retuned_pipeline_masks_with_the_new_threshold_and_builds_the_cloud_it_was_started_without(tiny_pipeline):
    def ranges(cloud: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1), axis=1)

    settings, pipeline, frame_set = tiny_pipeline
    before = pipeline.process(frame_set)
    assert before.cloud is None and pipeline.fusion is None
    confidence = np.concatenate([c.ravel() for c in before.confidence])
    threshold = float(np.median(confidence[confidence > 0]))
    retuned = settings_with_changes(
        settings, {"min_confidence": threshold, "publish_cloud": True, "cloud_max_points": 1000}
    )
    pipeline.retune(retuned)
    after = pipeline.process(frame_set)
    for old_depth, old_confidence, depth in zip(before.depth, before.confidence, after.depth, strict=True):
        assert np.array_equal(np.isnan(depth), np.isnan(old_depth) | (old_confidence < threshold))
    assert after.cloud is not None and 0 < len(after.cloud) <= 1000 and after.cloud["confidence"].min() >= threshold

    fusion = pipeline.fusion
    pipeline.retune(settings_with_changes(retuned, {"cloud_stride": 2, "min_confidence": 0.0}))
    strided = pipeline.process(frame_set)
    assert pipeline.fusion is fusion  # updated in place, keeping its cached camera table
    sampled = sum(len(range(0, d.shape[0], 2)) * len(range(0, d.shape[1], 2)) for d in strided.depth)
    assert 1000 < len(strided.cloud) <= sampled  # every other pixel, no longer the budget of 1000
    near = float(np.median(ranges(strided.cloud)))
    pipeline.retune(settings_with_changes(retuned, {"cloud_max_range_m": near}))
    within = ranges(pipeline.process(frame_set).cloud)
    assert len(within) > 0 and within.max() <= near
    pipeline.retune(settings_with_changes(retuned, {"publish_cloud": False, "min_confidence": 0.0}))
    off = pipeline.process(frame_set)
    unmasked = all(np.array_equal(np.isnan(a), np.isnan(b)) for a, b in zip(off.depth, before.depth, strict=True))
    assert off.cloud is None and pipeline.fusion is None and unmasked
