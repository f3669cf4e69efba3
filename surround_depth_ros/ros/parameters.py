"""Declare the node's parameters from the ROS-free table, with descriptors, and validate them.

Declaring with descriptors (description, constraints, read-only) makes `ros2 param describe`
show the same text as the YAML file and the README; validating all values at once before
anything starts gives a user one message listing every mistake (rclpy's own range check would
stop at the first one, with a less helpful message, so ranges are stated, not enforced, there).
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter

from surround_depth_ros.core.params import NODE_PARAMETERS, ParamSpec, unknown_parameter_message, validate

_ROS_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "str[]": ParameterType.PARAMETER_STRING_ARRAY,
}


class ParameterError(ValueError):
    """Invalid parameter values; the message lists every problem."""


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    constraints = ""
    if spec.choices:
        constraints = f"one of {list(spec.choices)}"
    elif spec.low is not None or spec.high is not None:
        constraints = f"range [{spec.low}, {spec.high}]"
    return ParameterDescriptor(
        name=spec.name,
        type=_ROS_TYPES[spec.type],
        description=spec.description,
        additional_constraints=constraints,
        read_only=True,
        # A wrongly typed scalar must reach validate(), which explains it. Lists are declared
        # with their type instead, as an empty default says nothing about the element type.
        dynamic_typing=spec.type != "str[]",
    )


def _given(node: Node) -> dict[str, Parameter]:
    """The values the command line and parameter files give the node (declared or not)."""
    return getattr(node, "_parameter_overrides", {})  # rclpy keeps them there; no public accessor


def _declare(node: Node, spec: ParamSpec) -> tuple[Any, str | None]:
    """(value, problem): the value given to the node, else the default."""
    if spec.type != "str[]":
        return node.declare_parameter(spec.name, spec.default, _descriptor(spec)).value, None
    try:
        value = node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, _descriptor(spec)).value
    except InvalidParameterTypeException as error:
        return spec.default, f"{spec.name}: expected a list of strings ({error})"
    if value is None:
        # An empty YAML list reaches rclpy untyped, as "not set": it was given, and it is empty.
        return ([] if spec.name in _given(node) else spec.default), None
    return list(value), None


def declare_and_read(node: Node) -> dict[str, Any]:
    """Declare every parameter and return validated values; raise ParameterError listing all problems.

    A given parameter the node does not declare (a typo such as sync_windows_s) is logged as a
    warning with the nearest declared name; rclpy would ignore it silently.
    """
    values, problems = {}, []
    for spec in NODE_PARAMETERS:
        values[spec.name], problem = _declare(node, spec)
        problems += [problem] if problem else []
    for name in sorted(_given(node)):
        if not node.has_parameter(name) and not name.startswith("qos_overrides."):
            node.get_logger().warning(unknown_parameter_message(name))
    problems += validate(values)
    if problems:
        raise ParameterError("invalid parameters:\n  - " + "\n  - ".join(problems))
    return {s.name: float(values[s.name]) if s.type == "float" else values[s.name] for s in NODE_PARAMETERS}
