"""The node's parameters: one declaration (type, default, range, description) for each.

The declarations are ROS-free so that the same table validates a YAML file in a test, declares
ROS parameters with descriptors in the node, and reads a params file for `run-bag` and `evaluate`.
Validation collects every problem at once, naming the parameter, the value and what is allowed,
so that a user fixes a parameters file in one go.
"""

from __future__ import annotations

import difflib
import math
import re
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from surround_depth_ros.images import DEFAULT_MAX_IMAGE_PIXELS

NODE_NAME = "surround_depth"

_PY_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "str[]": list}
# A token of a ROS name (between slashes): letters, digits and underscores, not starting with a digit.
_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_problem(name: str) -> str:
    """Why `name` cannot be a sensor name (it becomes a token of topic names), or "" when it can."""
    if _NAME_TOKEN.fullmatch(name):
        return ""
    return (
        f"{name!r} is not a valid ROS name: use letters, digits and underscores, not starting with a digit "
        f"(e.g. {re.sub(r'[^A-Za-z0-9_]', '_', name if name[:1].isalpha() else 'CAM_' + name)!r})"
    )


def topic_problem(topic: str) -> str:
    """Why `topic` is not a valid ROS topic name (relative, absolute or private), or "" when it is."""
    if not topic:
        return "a topic name must not be empty"
    body = topic.removeprefix("~")  # "~/name": private to the node
    tokens = body.removeprefix("/").split("/") if body else []
    if any(not token for token in tokens):
        return "a topic name must not contain '//' nor end with '/'"
    bad = [token for token in tokens if not _NAME_TOKEN.fullmatch(token)]
    if bad:
        return f"token {bad[0]!r} is not letters, digits and underscores starting with a letter or underscore"
    return ""


def unknown_parameter_message(name: str) -> str:
    """A line for a parameter the node does not declare, suggesting the nearest declared name."""
    known = [p.name for p in NODE_PARAMETERS]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"declared: {known}"
    return f"{name}: unknown parameter, ignored ({hint})"


@dataclass(frozen=True)
class ParamSpec:
    """A declared parameter. `low`/`high` bound numbers; `choices` bound strings."""

    name: str
    type: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    min_items: int = 0
    # A topic pattern: `{placeholder}` is replaced by each sensor's name (valid names keep it valid).
    placeholder: str = ""

    def problems(self, value: Any) -> list[str]:
        """What is wrong with `value` for this parameter, as sentences a user can act on."""
        expected = _PY_TYPES[self.type]
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return [f"{self.name}: expected {self.type}, got {type(value).__name__} {value!r}"]
        if self.type == "str[]":
            if not all(isinstance(v, str) and v for v in value):
                return [f"{self.name}: expected a list of non-empty strings, got {value!r}"]
            if len(value) < self.min_items:
                return [f"{self.name}: needs at least {self.min_items} entries, got {len(value)}"]
            repeated = sorted({v for v in value if value.count(v) > 1})
            if repeated:
                return [f"{self.name}: repeated entries {repeated}"]
            return [f"{self.name}: {name_problem(v)}" for v in value if name_problem(v)]
        if self.type == "float" and not math.isfinite(value):
            return [f"{self.name}: must be finite, got {value}"]
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            return [f"{self.name}: {value} is outside the allowed range [{self.low}, {self.high}]"]
        if self.choices is not None and value not in self.choices:
            return [f"{self.name}: {value!r} is not one of {list(self.choices)}"]
        if self.placeholder:
            return self._pattern_problems(value)
        return []

    def _pattern_problems(self, pattern: str) -> list[str]:
        """A topic pattern must hold its placeholder, no other, and give valid topic names."""
        field = "{" + self.placeholder + "}"
        example = f"e.g. {self.default!r}"
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
        except ValueError as error:
            return [
                f"{self.name}: {pattern!r} is not a valid pattern ({error}); write {field} where each name goes, "
                f"{example}"
            ]
        others = sorted({"{" + f + "}" for f in fields if f != self.placeholder})
        if others:
            return [f"{self.name}: {pattern!r} has the placeholder(s) {others}; the only one is {field}, {example}"]
        if not fields:
            shared = f"every {self.placeholder} would share one topic"
            return [f"{self.name}: {pattern!r} lacks {field}, so {shared}; {example}"]
        problem = topic_problem(pattern.replace(field, "NAME"))
        return [f"{self.name}: {pattern!r} is not a valid topic pattern: {problem}"] if problem else []


NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    # inputs
    ParamSpec(
        "cameras",
        "str[]",
        ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"],
        "Camera names, in the order of the rig; {camera} in the topic patterns is replaced by each name.",
        min_items=1,
    ),
    ParamSpec(
        "image_topic",
        "str",
        "{camera}/image_raw",
        "Topic pattern of each camera's sensor_msgs/Image (relative names resolve in the node's namespace).",
        placeholder="camera",
    ),
    ParamSpec(
        "image_transport",
        "str",
        "raw",
        "raw: sensor_msgs/Image on image_topic; compressed: sensor_msgs/CompressedImage on image_topic/compressed.",
        choices=("raw", "compressed"),
    ),
    ParamSpec(
        "max_image_pixels",
        "int",
        DEFAULT_MAX_IMAGE_PIXELS,
        "Largest image (width x height) accepted; a compressed image whose header declares more is refused "
        "undecoded. Default 4096 x 4096, twice a 4K camera: raise it only for larger cameras.",
        low=1,
        high=1 << 30,
    ),
    ParamSpec(
        "camera_info_topic",
        "str",
        "{camera}/camera_info",
        "Topic pattern of each camera's CameraInfo.",
        placeholder="camera",
    ),
    ParamSpec(
        "input_reliability",
        "str",
        "reliable",
        "QoS of camera/radar subscriptions: reliable loses no large image (ros2 bag play, most drivers); "
        "best_effort also matches best-effort publishers. A mismatch is reported, never silent.",
        choices=("reliable", "best_effort"),
    ),
    ParamSpec(
        "radars",
        "str[]",
        [],
        "Radar names ({radar} in radar_topic); empty for camera-only models. Used only by radar presets.",
    ),
    ParamSpec(
        "radar_topic",
        "str",
        "{radar}/points",
        "Topic pattern of each radar's sensor_msgs/PointCloud2.",
        placeholder="radar",
    ),
    ParamSpec("base_frame", "str", "base_link", "Frame of the fused cloud and of the rig extrinsics (REP 103)."),
    # model
    ParamSpec(
        "checkpoint",
        "str",
        "",
        "Student checkpoint (.pt); empty: the default student shipped in the package (models/student_default.pt).",
    ),
    ParamSpec(
        "backend",
        "str",
        "auto",
        "Inference back-end; auto picks TensorRT > ONNX Runtime CUDA > torch CUDA > torch CPU.",
        choices=("auto", "torch", "tensorrt", "onnxruntime"),
    ),
    ParamSpec("device", "str", "", "Torch device (cpu, cuda, cuda:1); empty: CUDA when available, else CPU."),
    ParamSpec("precision", "str", "fp32", "Network precision (fp16/bf16 on a GPU).", choices=("fp32", "fp16", "bf16")),
    ParamSpec(
        "min_confidence",
        "float",
        0.0,
        "Pixels whose confidence is below this get NaN depth (no estimate).",
        low=0.0,
        high=1.0,
    ),
    # synchronization
    ParamSpec("sync_anchor", "str", "", "Camera whose arrival triggers a frame set; empty: the first camera."),
    ParamSpec(
        "sync_window_s",
        "float",
        0.15,
        "A camera belongs to the anchor's set when its stamp is within this of the anchor's.",
        low=0.001,
        high=1.0,
    ),
    ParamSpec(
        "sync_wait_s",
        "float",
        0.2,
        "How long (message time) to wait for late cameras after the anchor before deciding.",
        low=0.0,
        high=5.0,
    ),
    ParamSpec(
        "sync_max_skew_s",
        "float",
        1.0,
        "A stamp farther than this from the other cameras' time is rejected for its input alone (a skewed "
        "clock); raise it above the frame period for cameras slower than 1 Hz.",
        low=0.01,
        high=86400.0,
    ),
    ParamSpec(
        "missing_camera_policy",
        "str",
        "partial",
        "partial: run with the cameras that are there (the anchor must be); drop: skip the set.",
        choices=("partial", "drop"),
    ),
    ParamSpec(
        "radar_window_s", "float", 0.1, "Radar sweeps up to this old at the anchor's stamp are attached.", 0.0, 2.0
    ),
    ParamSpec("radar_sweeps", "int", 1, "Sweeps per radar accumulated (ego-motion compensated).", low=1, high=20),
    ParamSpec("sync_buffer_size", "int", 8, "Messages kept per input while waiting for a set.", low=2, high=256),
    # outputs
    ParamSpec(
        "depth_encoding",
        "str",
        "32FC1",
        "REP 118 depth: 32FC1 metres (NaN = no estimate) or 16UC1 millimetres (0 = no estimate).",
        choices=("32FC1", "16UC1"),
    ),
    ParamSpec("publish_confidence", "bool", True, "Publish {camera}/depth/confidence (32FC1 in [0, 1])."),
    ParamSpec("publish_cloud", "bool", True, "Publish the fused coloured cloud on depth/points."),
    ParamSpec(
        "cloud_overlap",
        "str",
        "most_confident",
        "Where cameras overlap: keep the more confident camera's points, or keep all.",
        choices=("most_confident", "keep_all"),
    ),
    ParamSpec(
        "depth_resolution",
        "str",
        "camera",
        "camera: depth and confidence at each camera's image size; network: at the network's output size with "
        "the camera_info scaled to match (REP 118), several times fewer bytes for consumers that need no more.",
        choices=("camera", "network"),
    ),
    ParamSpec(
        "cloud_max_points",
        "int",
        200_000,
        "Point budget of the fused cloud: the pixel stride is the smallest whose samples fit it, at any camera "
        "size (200k points: 4.8 MB a set).",
        low=1000,
        high=50_000_000,
    ),
    ParamSpec(
        "cloud_stride",
        "int",
        0,
        "Keep every n-th pixel of the depth maps in both directions for the cloud; 0: from cloud_max_points.",
        low=0,
        high=32,
    ),
    ParamSpec(
        "cloud_max_range_m", "float", 80.0, "Drop cloud points farther than this from base.", low=0.5, high=1000.0
    ),
    ParamSpec("cloud_voxel_size_m", "float", 0.0, "Keep one point per voxel of this size; 0: off.", low=0.0, high=10.0),
    # monitoring
    ParamSpec(
        "diagnostics_period_s",
        "float",
        1.0,
        "Period of the diagnostic_msgs/DiagnosticArray on /diagnostics, in seconds.",
        low=0.05,
        high=60.0,
    ),
    ParamSpec(
        "expected_rate_hz",
        "float",
        12.0,
        "Nominal camera rate; diagnostics warn when a camera delivers less than half of it.",
        low=0.1,
        high=1000.0,
    ),
    ParamSpec(
        "output_timeout_s",
        "float",
        3.0,
        "Diagnostics go ERROR when cameras send but no frame set was published for this long, with the reason.",
        low=0.1,
        high=3600.0,
    ),
)


def spec(name: str) -> ParamSpec:
    for candidate in NODE_PARAMETERS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no parameter named {name!r}; declared: {[p.name for p in NODE_PARAMETERS]}")


def defaults() -> dict[str, Any]:
    return {p.name: p.default for p in NODE_PARAMETERS}


def validate(values: Mapping[str, Any]) -> list[str]:
    """All problems of a full or partial set of values; unknown names are problems too.

    Values are checked one by one, then against each other (missing ones taken as their defaults),
    so that nothing the node builds from them (topics, the synchronizer) can fail at start.
    """
    known = {p.name for p in NODE_PARAMETERS}
    problems = [unknown_parameter_message(name) for name in values if name not in known]
    bad = set()
    for name, value in values.items():
        if name in known and spec(name).problems(value):
            problems += spec(name).problems(value)
            bad.add(name)
    merged = {**defaults(), **{k: v for k, v in values.items() if k in known}}
    if {"cameras", "radars"} & bad:
        return problems
    cameras, radars = merged["cameras"], merged["radars"]
    if "sync_anchor" not in bad and merged["sync_anchor"] and merged["sync_anchor"] not in cameras:
        problems.append(f"sync_anchor: {merged['sync_anchor']!r} is not one of the cameras {cameras}")
    shared = sorted(set(cameras) & set(radars))
    if shared:
        problems.append(f"radars: {shared} are also camera names; every sensor needs a name of its own")
    return problems


def load_params_file(path: str | Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The values a ROS params file gives this node: `/**` first, then sections naming the node."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    values: dict[str, Any] = {}
    for section, content in data.items():
        if section == "/**" or section.rstrip("/").split("/")[-1] == node_name:
            if not isinstance(content, dict) or "ros__parameters" not in content:
                raise ValueError(f"{path}: section {section!r} has no 'ros__parameters' mapping")
            values.update(content["ros__parameters"])
    return values


def settings_from_file(path: str | Path | None) -> dict[str, Any]:
    """The node's parameters from a ROS params file over the defaults, read as the node reads them (for `run-bag`
    and `evaluate`): an unknown name is a warning on stderr with the nearest declared one, every invalid value is
    listed in one ValueError; floats given as integers become floats, as ROS declares them."""
    try:
        values = load_params_file(path) if path is not None else {}
    except (yaml.YAMLError, AttributeError) as error:  # not YAML, or not a mapping of sections
        raise ValueError(f"{path} is not a ROS params file ({type(error).__name__}: {error})") from None
    known = {spec.name for spec in NODE_PARAMETERS}
    for name in values:
        if name not in known:
            print(f"warning: {path}: {unknown_parameter_message(name)}", file=sys.stderr)
    given = {name: value for name, value in values.items() if name in known}
    problems = validate(given)
    if problems:
        raise ValueError(f"invalid parameters in {path}:\n  - " + "\n  - ".join(problems))
    settings = {**defaults(), **given}
    return {s.name: float(settings[s.name]) if s.type == "float" else settings[s.name] for s in NODE_PARAMETERS}
