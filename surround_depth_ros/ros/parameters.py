"""Declare the node's parameters from their ROS-free declaration (`NodeSettings`), with descriptors, and validate them.

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

from surround_depth_ros.base.schema import Entry, SchemaError
from surround_depth_ros.core.params import PARAMETERS, NodeSettings, settings_from_values, unknown_parameter_message

_ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    tuple[str, ...]: ParameterType.PARAMETER_STRING_ARRAY,
}


class ParameterError(SchemaError):
    """Invalid parameter values; the message lists every problem."""


def _is_list(entry: Entry) -> bool:
    return _ROS_TYPES[entry.kind] == ParameterType.PARAMETER_STRING_ARRAY


def _descriptor(entry: Entry) -> ParameterDescriptor:
    return ParameterDescriptor(
        name=entry.name,
        type=_ROS_TYPES[entry.kind],
        description=entry.rule.description,
        additional_constraints=entry.rule.limits(),  # "[low, high]" or "one of [...]"
        read_only=True,
        # A wrongly typed scalar must reach the validation, which explains it. Lists are declared
        # with their type instead, as an empty default says nothing about the element type.
        dynamic_typing=not _is_list(entry),
    )


def _given(node: Node) -> dict[str, Parameter]:
    """The values the command line and parameter files give the node (declared or not)."""
    return getattr(node, "_parameter_overrides", {})  # rclpy keeps them there; no public accessor


def _declare(node: Node, entry: Entry) -> tuple[Any, str | None]:
    """(value, problem): the value given to the node, else the default."""
    if not _is_list(entry):
        return node.declare_parameter(entry.name, entry.default, _descriptor(entry)).value, None
    try:
        value = node.declare_parameter(entry.name, Parameter.Type.STRING_ARRAY, _descriptor(entry)).value
    except InvalidParameterTypeException as error:
        return entry.default, f"{entry.name}: expected a list of strings ({error})"
    if value is None:
        # An empty YAML list reaches rclpy untyped, as "not set": it was given, and it is empty.
        return ([] if entry.name in _given(node) else entry.default), None
    return list(value), None


def declare_and_read(node: Node) -> NodeSettings:
    """Declare every parameter and return validated settings; raise ParameterError listing all problems.

    A given parameter the node does not declare (a typo such as sync_windows_s) is logged as a
    warning with the nearest declared name; rclpy would ignore it silently.
    """
    values, problems = {}, []
    for entry in PARAMETERS:
        values[entry.name], problem = _declare(node, entry)
        problems += [problem] if problem else []
    for name in sorted(_given(node)):
        if not node.has_parameter(name) and not name.startswith("qos_overrides."):
            node.get_logger().warning(unknown_parameter_message(name))
    try:
        settings = settings_from_values(values)
    except SchemaError as error:
        problems += error.problems
    if problems:
        raise ParameterError("invalid parameters", problems)
    return settings
