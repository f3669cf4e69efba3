"""The node's parameters: one frozen `NodeSettings` dataclass declares each (type, default, range, description).

The declaration is ROS-free, so that the same one validates a params file in a test or for `run-bag`
and `evaluate`, declares ROS parameters with descriptors in the node, and generates the README's
parameter table and the commented `config/surround_depth.param.yaml` (`surround-depth params`).
Validation (`surround_depth_ros.base.schema`) collects every problem at once, naming the parameter, the
value and what is allowed, so that a user fixes a parameters file in one go.
"""

from __future__ import annotations

import functools
import math
import re
import string
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from surround_depth_ros.base import schema
from surround_depth_ros.base.images import DEFAULT_MAX_IMAGE_PIXELS
from surround_depth_ros.base.schema import setting
from surround_depth_ros.base.yaml_file import load_yaml
from surround_depth_ros.core.transforms import MAX_FRAMES

NODE_NAME = "surround_depth"

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


def sensor_names_problems(names: tuple[str, ...]) -> list[str]:
    """Sensor names become tokens of topic names: each valid, none repeated."""
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return [f"repeated entries {repeated}"]
    return [name_problem(n) for n in names if name_problem(n)]


def pattern_problems(pattern: str, placeholder: str, example: str) -> list[str]:
    """A topic pattern must hold its `{placeholder}`, no other, and give valid topic names."""
    field = "{" + placeholder + "}"
    hint = f"e.g. {example!r}"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as error:
        return [f"{pattern!r} is not a valid pattern ({error}); write {field} where each name goes, {hint}"]
    others = sorted({"{" + f + "}" for f in fields if f != placeholder})
    if others:
        return [f"{pattern!r} has the placeholder(s) {others}; the only one is {field}, {hint}"]
    if not fields:
        return [f"{pattern!r} lacks {field}, so every {placeholder} would share one topic; {hint}"]
    problem = topic_problem(pattern.replace(field, "NAME"))
    return [f"{pattern!r} is not a valid topic pattern: {problem}"] if problem else []


def parse_offsets(entries: tuple[str, ...]) -> tuple[dict[str, float], list[str]]:
    """`("CAM_BACK=0.025", ...)` -> ({camera: seconds}, problems): firing offsets after the anchor camera."""
    offsets, problems = {}, []
    for entry in entries:
        name, sep, value = entry.partition("=")
        name = name.strip()
        try:
            seconds = float(value) if sep else math.nan
        except ValueError:
            seconds = math.nan
        if not name or not abs(seconds) < 1.0:
            problems.append(f"{entry!r} is not CAMERA=SECONDS with |SECONDS| < 1, e.g. 'CAM_BACK=0.025'")
        elif name in offsets:
            problems.append(f"{name!r} is given twice")
        else:
            offsets[name] = seconds
    return offsets, problems


def _offsets_problems(entries: tuple[str, ...]) -> list[str]:
    return parse_offsets(entries)[1]


def _pattern(placeholder: str, example: str) -> functools.partial[list[str]]:
    return functools.partial(pattern_problems, placeholder=placeholder, example=example)


# Why a parameter cannot change while the node runs (`ros2 param set` is refused), and what to do instead.
_MODEL = "loads the model: restart the node"
_INPUTS = "changes the subscriptions: restart the node"
_ASSEMBLY = "the frame assembler is built with it: restart the node"
_OUTPUTS = "changes what the depth topics carry under their subscribers: restart the node"
_IMAGE_BOUND = "a memory bound, fixed at start so that it cannot be raised remotely: restart the node"


@dataclass(frozen=True)
class NodeSettings:
    """The node's parameters, validated: what the node, `run-bag` and `evaluate` read (`settings.cameras`)."""

    cameras: tuple[str, ...] = setting(
        ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"),
        description="Camera names, in the order of the rig; {camera} in the topic patterns is replaced by each name.",
        min_items=1,
        check=sensor_names_problems,
        heading="inputs",
        read_only=_INPUTS,
    )
    image_topic: str = setting(
        "{camera}/image_raw",
        description="Topic pattern of each camera's sensor_msgs/Image (relative names resolve in the node's "
        "namespace).",
        check=_pattern("camera", "{camera}/image_raw"),
        read_only=_INPUTS,
    )
    image_transport: str = setting(
        "raw",
        description="raw: sensor_msgs/Image on image_topic; compressed: sensor_msgs/CompressedImage on "
        "image_topic/compressed.",
        choices=("raw", "compressed"),
        read_only=_INPUTS,
    )
    max_image_pixels: int = setting(
        DEFAULT_MAX_IMAGE_PIXELS,
        description="Largest image (width x height) accepted; a compressed image whose header declares more is "
        "refused undecoded. Default 4096 x 4096, twice a 4K camera: raise it only for larger cameras.",
        low=1,
        high=1 << 30,
        read_only=_IMAGE_BOUND,
    )
    camera_info_topic: str = setting(
        "{camera}/camera_info",
        description="Topic pattern of each camera's CameraInfo.",
        check=_pattern("camera", "{camera}/camera_info"),
        read_only=_INPUTS,
    )
    input_reliability: str = setting(
        "reliable",
        description="QoS of camera/radar subscriptions: reliable loses no large image (ros2 bag play, most "
        "drivers); best_effort also matches best-effort publishers. A mismatch is reported, never silent.",
        choices=("reliable", "best_effort"),
        read_only=_INPUTS,
    )
    radars: tuple[str, ...] = setting(
        (),
        description="Radar names ({radar} in radar_topic); empty for camera-only models. Used only by radar presets.",
        check=sensor_names_problems,
        read_only=_INPUTS,
    )
    radar_topic: str = setting(
        "{radar}/points",
        description="Topic pattern of each radar's sensor_msgs/PointCloud2.",
        check=_pattern("radar", "{radar}/points"),
        read_only=_INPUTS,
    )
    base_frame: str = setting(
        "base_link",
        description="Frame of the fused cloud and of the rig extrinsics (REP 103).",
        read_only=_ASSEMBLY,
    )
    tf_wait_s: float = setting(
        0.1,
        description="How long (message time) a frame set waits for a camera's transform that has not arrived yet "
        "(a camera on a moving mount, its /tf just after its image), as tf2_ros's MessageFilter waits; 0: decide "
        "at once. At most 1 s, the wall-clock silence after which a stream counts as ended.",
        low=0.0,
        high=1.0,
        read_only=_ASSEMBLY,
    )
    tf_max_frames: int = setting(
        MAX_FRAMES,
        description="Most TF frames kept; transforms that would add more are ignored and counted on /diagnostics. "
        "A vehicle has tens of frames and tf2 refuses chains deeper than 1000; the limit bounds memory and the "
        "cost of a lookup in a tree that grows without end (a huge URDF, a swarm on one /tf).",
        low=10,
        high=100_000,
        read_only=_ASSEMBLY,
    )
    checkpoint: str = setting(
        "",
        description="Student checkpoint (.pt); empty: the default student shipped in the package "
        "(models/student_default.pt).",
        heading="model",
        read_only=_MODEL,
    )
    backend: str = setting(
        "auto",
        description="Inference back-end; auto picks TensorRT > ONNX Runtime CUDA > torch CUDA > torch CPU.",
        choices=("auto", "torch", "tensorrt", "onnxruntime"),
        read_only=_MODEL,
    )
    device: str = setting(
        "",
        description="Torch device (cpu, cuda, cuda:1); empty: CUDA when available, else CPU.",
        read_only=_MODEL,
    )
    precision: str = setting(
        "fp32",
        description="Network precision (fp16/bf16 on a GPU).",
        choices=("fp32", "fp16", "bf16"),
        read_only=_MODEL,
    )
    min_confidence: float = setting(
        0.0,
        description="Pixels whose confidence is below this get NaN depth (no estimate).",
        low=0.0,
        high=1.0,
        live=True,
    )
    sync_anchor: str = setting(
        "",
        description="Camera whose arrival triggers a frame set; empty: the first camera.",
        heading="synchronization",
        read_only=_ASSEMBLY,
    )
    sync_window_s: float = setting(
        0.15,
        description="A camera belongs to the anchor's set when its stamp is within this of the anchor's.",
        low=0.001,
        high=1.0,
        live=True,
    )
    sync_wait_s: float = setting(
        0.2,
        description="How long (message time) to wait for late cameras after the anchor before deciding.",
        low=0.0,
        high=5.0,
        live=True,
    )
    sync_offsets: tuple[str, ...] = setting(
        (),
        description="Where cameras fire after the anchor, as CAMERA=SECONDS (e.g. CAM_BACK=0.025, negative: "
        "before it); others are learned from the stream's phases. Give them for a rig whose cameras fire about "
        "half a period apart, where the stream cannot tell a camera's own frame from the next one.",
        check=_offsets_problems,
        read_only=_ASSEMBLY,
    )
    sync_max_skew_s: float = setting(
        1.0,
        description="A stamp farther than this from the other cameras' time is rejected for its input alone (a "
        "skewed clock); raise it above the frame period for cameras slower than 1 Hz.",
        low=0.01,
        high=86400.0,
        read_only=_ASSEMBLY,
    )
    missing_camera_policy: str = setting(
        "partial",
        description="partial: run with the cameras that are there (the anchor must be); drop: skip the set.",
        choices=("partial", "drop"),
        read_only=_ASSEMBLY,
    )
    radar_window_s: float = setting(
        0.1,
        description="Radar sweeps up to this old at the anchor's stamp are attached.",
        low=0.0,
        high=2.0,
        read_only=_ASSEMBLY,
    )
    radar_sweeps: int = setting(
        1,
        description="Sweeps per radar accumulated (ego-motion compensated).",
        low=1,
        high=20,
        read_only=_ASSEMBLY,
    )
    sync_buffer_size: int = setting(
        8,
        description="Messages kept per input while waiting for a set.",
        low=2,
        high=256,
        read_only=_INPUTS,
    )
    depth_encoding: str = setting(
        "32FC1",
        description="REP 118 depth: 32FC1 metres (NaN = no estimate) or 16UC1 millimetres (0 = no estimate).",
        choices=("32FC1", "16UC1"),
        heading="outputs",
        read_only=_OUTPUTS,
    )
    publish_confidence: bool = setting(
        True,
        description="Publish {camera}/depth/confidence (32FC1 in [0, 1]).",
        live=True,
    )
    publish_cloud: bool = setting(
        True,
        description="Publish the fused coloured cloud on depth/points.",
        live=True,
    )
    cloud_overlap: str = setting(
        "most_confident",
        description="Where cameras overlap: keep the more confident camera's points, or keep all.",
        choices=("most_confident", "keep_all"),
        live=True,
    )
    depth_resolution: str = setting(
        "network",
        description="network: depth and confidence at the network's output size, which holds all the estimate "
        "has, with the camera_info scaled to match (REP 118); camera: upsampled to each camera's image size, "
        "for consumers that need pixel-aligned depth (at 1600x900 the upsample alone costs about 4x the shipped "
        "student's forward).",
        choices=("camera", "network"),
        read_only=_OUTPUTS,
    )
    cloud_max_points: int = setting(
        200_000,
        description="Point budget of the fused cloud: this many depth pixels (all, when there are fewer) spread "
        "evenly over the cameras' maps in proportion to their areas, at any camera size, so more cameras or a "
        "larger budget never give fewer points (200k points: 4.8 MB a set).",
        low=1000,
        high=50_000_000,
        live=True,
    )
    cloud_stride: int = setting(
        0,
        description="Keep every n-th pixel of the depth maps in both directions for the cloud; 0: spread "
        "cloud_max_points pixels evenly instead.",
        low=0,
        high=32,
        live=True,
    )
    cloud_max_range_m: float = setting(
        80.0,
        description="Drop cloud points farther than this from base.",
        low=0.5,
        high=1000.0,
        live=True,
    )
    cloud_voxel_size_m: float = setting(
        0.0,
        description="Keep one point per voxel of this size; 0: off.",
        low=0.0,
        high=10.0,
        live=True,
    )
    diagnostics_period_s: float = setting(
        1.0,
        description="Period of the diagnostic_msgs/DiagnosticArray on /diagnostics, in seconds.",
        low=0.05,
        high=60.0,
        heading="monitoring",
        live=True,
    )
    expected_rate_hz: float = setting(
        12.0,
        description="Nominal camera rate; diagnostics warn when a camera delivers less than half of it.",
        low=0.1,
        high=1000.0,
        live=True,
    )
    output_timeout_s: float = setting(
        3.0,
        description="Diagnostics go ERROR when cameras send but no frame set was published for this long, with "
        "the reason.",
        low=0.1,
        high=3600.0,
        live=True,
    )
    autostart: bool = setting(
        True,
        description="Configure and activate at start; false leaves the node unconfigured for a lifecycle manager "
        "(nav2 lifecycle_manager, Autoware).",
        heading="lifecycle",
        read_only="applies at start only",
    )

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """So that nothing the node builds from the values (topics, the synchronizer) can fail at start."""
        cameras, radars, anchor = values.get("cameras"), values.get("radars"), values.get("sync_anchor")
        if cameras is not None and anchor and anchor not in cameras:
            yield "sync_anchor", f"{anchor!r} is not one of the cameras {list(cameras)}"
        shared = sorted(set(cameras or ()) & set(radars or ()))
        if shared:
            yield "radars", f"{shared} are also camera names; every sensor needs a name of its own"
        offsets, _ = parse_offsets(values.get("sync_offsets") or ())
        unknown = sorted(set(offsets) - set(cameras or ()))
        if cameras is not None and unknown:
            yield "sync_offsets", f"{unknown} are not cameras; cameras are {list(cameras)}"
        anchor = anchor or (cameras[0] if cameras else "")
        if offsets.get(anchor, 0.0) != 0.0:
            yield "sync_offsets", f"the anchor camera {anchor!r} fires at 0 by definition, got {offsets[anchor]}"

    def firing_offsets(self) -> dict[str, float]:
        """`sync_offsets` as {camera: seconds after the anchor}."""
        return parse_offsets(self.sync_offsets)[0]


PARAMETERS = schema.entries(NodeSettings)


def defaults() -> dict[str, Any]:
    """The default values by name, as a params file writes them (lists), for code that merges partial values."""
    return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(NodeSettings()).items()}


def unknown_parameter_message(name: str) -> str:
    """A line for a parameter the node does not declare, suggesting the nearest declared name."""
    return f"{name}: unknown parameter, ignored ({schema.suggestion(name, defaults())})"


def validate(values: Mapping[str, Any]) -> list[str]:
    """All problems of a full or partial set of values (missing ones take their defaults); unknown names are
    problems too, in the words of the node's warning."""
    unknown = [unknown_parameter_message(name) for name in values if name not in defaults()]
    return unknown + schema.problems(NodeSettings, values, unknown_keys=False)


def settings_from_values(values: Mapping[str, Any], source: str = "invalid parameters") -> NodeSettings:
    """Settings from values by name over the defaults; a SchemaError (a ValueError) lists every problem."""
    return schema.build(NodeSettings, values, source)


def load_params_file(path: str | Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The values a ROS params file gives this node: `/**` first, then sections naming the node."""
    data = load_yaml(path) or {}
    values: dict[str, Any] = {}
    for section, content in data.items():
        if section == "/**" or section.rstrip("/").split("/")[-1] == node_name:
            if not isinstance(content, dict) or "ros__parameters" not in content:
                raise ValueError(f"{path}: section {section!r} has no 'ros__parameters' mapping")
            values.update(content["ros__parameters"])
    return values


def settings_with_changes(settings: NodeSettings, changes: Mapping[str, Any]) -> NodeSettings:
    """`settings` with parameters changed while the node runs, checked as at start (ranges, choices, cross_check);
    a SchemaError lists every problem, a read-only parameter as "name is read-only: why"."""
    return schema.changed(settings, changes, "parameters not changed")


def settings_from_file(path: str | Path | None) -> NodeSettings:
    """The node's settings from a ROS params file over the defaults, read as the node reads them (for `run-bag`
    and `evaluate`): an unknown name is a warning on stderr with the nearest declared one, every invalid value is
    listed in one SchemaError (a ValueError); floats given as integers become floats, as ROS declares them."""
    try:
        values = load_params_file(path) if path is not None else {}
    except (yaml.YAMLError, AttributeError) as error:  # not YAML, or not a mapping of sections
        raise ValueError(f"{path} is not a ROS params file ({type(error).__name__}: {error})") from None
    known = defaults()
    for name in values:
        if name not in known:
            print(f"warning: {path}: {unknown_parameter_message(name)}", file=sys.stderr)
    return settings_from_values({k: v for k, v in values.items() if k in known}, f"invalid parameters in {path}")


# --------------------------------------------------------------------------- generated documentation

YAML_HEADER = """\
# Parameters of the surround_depth node, GENERATED from their declaration (NodeSettings in
# surround_depth_ros/core/params.py) by `surround-depth params --yaml`: edit the declaration, not
# this file. The node validates them all at start and names each mistake. `/**` applies to the
# node in any namespace. Parameters marked live can change while it runs (ros2 param set); the
# others are read-only, each saying why.
"""


def _yaml_value(value: Any) -> str:  # noqa: ANN401 - a parameter value
    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()


def params_yaml() -> str:
    """config/surround_depth.param.yaml: every parameter at its default, with its description and limits."""
    lines = [YAML_HEADER.rstrip("\n"), "/**:", "  ros__parameters:"]
    for entry in PARAMETERS:
        if entry.rule.heading:
            lines.append(f"    # --- {entry.rule.heading} ---")
        limits = entry.rule.limits()
        text = entry.rule.description + (f" Allowed: {limits}." if limits else "") + f" {run_time_note(entry)}."
        lines += textwrap.wrap(text, 110, initial_indent="    # ", subsequent_indent="    # ", break_on_hyphens=False)
        lines.append(f"    {entry.name}: {_yaml_value(entry.default)}")
    return "\n".join(lines) + "\n"


def _type_cell(entry: schema.Entry) -> str:
    if entry.rule.choices is not None:
        return ", ".join(entry.rule.choices)
    name = "string[]" if entry.kind == tuple[str, ...] else {str: "string"}.get(entry.kind, entry.kind.__name__)
    limits = entry.rule.limits()
    return f"{name} {limits}" if limits else name


def run_time_note(entry: schema.Entry) -> str:
    """ "Live" or "Read-only: <why>": a sentence of the generated documentation and of the ROS descriptors."""
    return entry.rule.run_time().capitalize()


def markdown_table() -> str:
    """The README's parameter table: name, type and limits, default, live or read-only (why), description."""
    rows = ["| parameter | type | default | at run time | meaning |", "|---|---|---|---|---|"]
    for entry in PARAMETERS:
        default = f"`{_yaml_value(entry.default)}`"
        cells = (f"`{entry.name}`", _type_cell(entry), default, run_time_note(entry), entry.rule.description)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def resolve_topic(name: str, namespace: str = "/", node_name: str = NODE_NAME) -> str:
    """The absolute topic a node in `namespace` gets for `name`: absolute names stay, relative ones go under the
    namespace, private ones ("~/x") under the node, as rcl resolves them."""
    namespace = "/" + namespace.strip("/")
    base = namespace if namespace == "/" else namespace + "/"
    if name.startswith("/"):
        return name
    if name.startswith("~"):
        return f"{base}{node_name}/{name.removeprefix('~').lstrip('/')}"
    return base + name
