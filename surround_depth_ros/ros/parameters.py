"""Declare the node's parameters from their ROS-free declaration (`NodeSettings`), with descriptors, validate them,
and let the live ones change while the node runs.

Declaring with descriptors (description, constraints, read-only and why) makes `ros2 param describe`
show the same text as the YAML file and the README; validating all values at once before
anything starts gives a user one message listing every mistake (rclpy's own range check would
stop at the first one, with a less helpful message, so ranges are stated, not enforced, there).
A change while running goes through the same validation (`watch_live_parameters`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from surround_depth_ros.base.schema import Entry, SchemaError
from surround_depth_ros.core.params import (
    PARAMETERS,
    NodeSettings,
    run_time_note,
    settings_from_values,
    settings_with_changes,
    unknown_parameter_message,
)

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
    live = entry.rule.live
    return ParameterDescriptor(
        name=entry.name,
        type=_ROS_TYPES[entry.kind],
        # rclpy refuses a read-only one before any callback, without saying why: the description does.
        description=entry.rule.description + ("" if live else f" {run_time_note(entry)}."),
        additional_constraints=entry.rule.limits(),  # "[low, high]" or "one of [...]"
        read_only=not live,
        # A wrongly typed scalar must reach the validation, which explains it. Lists are declared
        # with their type instead, as an empty default says nothing about the element type.
        dynamic_typing=not _is_list(entry),
    )


def _given(node: Node) -> dict[str, Parameter]:
    """The values the command line and parameter files give the node (declared or not)."""
    return getattr(node, "_parameter_overrides", {})  # rclpy keeps them there; no public accessor


def _declare(node: Node, entry: Entry) -> str | None:
    """Declare one parameter with the value given to the node, else the default; a problem, or None."""
    if not _is_list(entry):
        node.declare_parameter(entry.name, entry.default, _descriptor(entry))
        return None
    try:
        node.declare_parameter(entry.name, Parameter.Type.STRING_ARRAY, _descriptor(entry))
    except InvalidParameterTypeException as error:
        return f"{entry.name}: expected a list of strings ({error})"
    return None


def _value(node: Node, entry: Entry) -> Any:  # noqa: ANN401 - any parameter type
    if not node.has_parameter(entry.name):  # its declaration was refused: a problem is listed already
        return entry.default
    try:
        value = node.get_parameter(entry.name).value
    except ParameterUninitializedException:  # a list declared by type, with no value given
        value = None
    if _is_list(entry):
        # An empty YAML list reaches rclpy untyped, as "not set": it was given, and it is empty.
        return ([] if entry.name in _given(node) else entry.default) if value is None else list(value)
    return value


def declare_parameters(node: Node) -> list[str]:
    """Declare every parameter (a lifecycle node does so before it is configured, so that `ros2 param` sees them);
    the problems found on the way. A given parameter the node does not declare (a typo such as sync_windows_s) is
    logged as a warning with the nearest declared name; rclpy would ignore it silently."""
    problems = [problem for entry in PARAMETERS if (problem := _declare(node, entry))]
    for name in sorted(_given(node)):
        if not node.has_parameter(name) and not name.startswith("qos_overrides."):
            node.get_logger().warning(unknown_parameter_message(name))
    return problems


def read_settings(node: Node, problems: Iterable[str] = ()) -> NodeSettings:
    """The declared parameters' current values as validated settings; ParameterError lists every problem
    (with `problems` from the declaration)."""
    problems = list(problems)
    try:
        settings = settings_from_values({entry.name: _value(node, entry) for entry in PARAMETERS})
    except SchemaError as error:
        problems += error.problems
    if problems:
        raise ParameterError("invalid parameters", problems)
    return settings


def declare_and_read(node: Node) -> NodeSettings:
    """Declare every parameter and return validated settings (`declare_parameters`, then `read_settings`)."""
    return read_settings(node, declare_parameters(node))


SetCallback = Callable[[list[Parameter]], SetParametersResult]


def watch_live_parameters(
    node: Node, current: Callable[[], NodeSettings], apply: Callable[[NodeSettings], None]
) -> SetCallback:
    """Let `ros2 param set` change the live parameters: each change is validated with the settings `current()`
    returns, as at start; a bad one is refused with every problem as the reason, a good one goes to `apply`
    (before rclpy stores the values). Returns the registered callback, for `remove_on_set_parameters_callback`.

    Parameters rclpy declares itself (use_sim_time, qos_overrides.*) and ours while being declared (start-up
    validates them) pass untouched. `apply` runs on the executor thread that serves the request; when it raises,
    the request is refused with the error (the values stay as they were; what `apply` did first is not undone).
    """
    ours = {entry.name for entry in PARAMETERS}

    def on_set(parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters if p.name in ours and node.has_parameter(p.name)}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            settings = settings_with_changes(current(), changes)
        except SchemaError as error:
            return _refused(node, changes, "; ".join(error.problems))
        try:
            apply(settings)
        except Exception as error:  # noqa: BLE001 - a refused request, not an executor (and node) brought down
            node.get_logger().error(f"could not apply the parameter change {changes}: {error!r}")
            return _refused(node, changes, f"could not apply: {error!r}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return on_set


def _refused(node: Node, names: Iterable[str], reason: str) -> SetParametersResult:
    """A refusal. A dynamically typed parameter's descriptor took the refused value's type before the callback
    ran (rclpy's `_apply_descriptor`): it gets back the type of the value it keeps, so `describe` stays true."""
    for name in names:
        node.describe_parameter(name).type = node.get_parameter(name).type_.value
    return SetParametersResult(successful=False, reason=reason)
