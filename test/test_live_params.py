"""Parameters that change while the node runs (issue 25 item 5): rclpy's set-parameters path validates them as at
start and hands them on; the frame assembler and the pipeline take them for their next decisions."""

from __future__ import annotations

import pytest

from surround_depth_ros.core.params import NodeSettings


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
