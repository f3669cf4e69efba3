"""The RViz 2 view of a node's outputs, written from its parameters and namespace (ROS-free: plain YAML).

A static .rviz file names topics for one rig in one namespace; under `namespace:=/perception` or
for cameras with other names every display of such a file stays empty. The launch file
(`rviz:=true`) and `surround-depth rviz` write the view from the params file instead: the TF tree,
the fused cloud coloured by its `rgb` field, one Image display per camera's depth image and, off
until ticked, each camera's own image, all topics resolved as the node resolves them.
"""

from __future__ import annotations

from typing import Any

import yaml

from surround_depth_ros.core.params import NodeSettings, resolve_topic, topic_problem

DEPTH_RANGE_M = 60.0  # the depth images' colour scale, 0 m black to this white
# Units of one metre in each depth encoding (REP 118): RViz scales the raw values.
_UNITS_PER_METRE = {"32FC1": 1.0, "16UC1": 1000.0}


def _topic(value: str, reliability: str = "Reliable") -> dict[str, Any]:
    return {
        "Value": value,
        "Depth": 5,
        "Reliability Policy": reliability,
        "Durability Policy": "Volatile",
        "History Policy": "Keep Last",
        "Filter size": 10,
    }


def _image(name: str, topic: str, enabled: bool, reliability: str = "Reliable", **options: object) -> dict[str, Any]:
    display = {"Class": "rviz_default_plugins/Image", "Name": name, "Enabled": enabled, "Value": enabled}
    return {**display, "Topic": _topic(topic, reliability), **options}


def _displays(settings: NodeSettings, namespace: str, camera_images: bool) -> list[dict[str, Any]]:
    displays: list[dict[str, Any]] = [
        {
            "Class": "rviz_default_plugins/Grid",
            "Name": "Grid",
            "Enabled": True,
            "Reference Frame": "<Fixed Frame>",
            "Cell Size": 1,
            "Plane Cell Count": 100,
            "Value": True,
        },
        {
            "Class": "rviz_default_plugins/TF",
            "Name": "TF",
            "Enabled": True,
            "Show Names": True,
            "Marker Scale": 1,
            "Value": True,
        },
    ]
    if settings.publish_cloud:
        displays.append(
            {
                "Class": "rviz_default_plugins/PointCloud2",
                "Name": "fused depth cloud",
                "Enabled": True,
                "Value": True,
                "Topic": _topic(resolve_topic("depth/points", namespace)),
                "Color Transformer": "RGB8",
                "Style": "Points",
                "Size (Pixels)": 2,
                "Decay Time": 0,
                "Position Transformer": "XYZ",
                "Queue Size": 5,
            }
        )
    scale = {
        "Normalize Range": False,
        "Min Value": 0,
        "Max Value": DEPTH_RANGE_M * _UNITS_PER_METRE[settings.depth_encoding],
        "Median window": 5,
    }
    displays += [
        _image(f"{camera} depth", resolve_topic(f"{camera}/depth/image", namespace), True, **scale)
        for camera in settings.cameras
    ]
    # The cameras' own images, as the node subscribes them (on ".../compressed" RViz picks the compressed
    # transport); a best-effort driver is only heard by a best-effort subscriber.
    pattern = settings.image_topic + ("/compressed" if settings.image_transport == "compressed" else "")
    reliability = "Best Effort" if settings.input_reliability == "best_effort" else "Reliable"
    displays += [
        _image(f"{camera} image", resolve_topic(pattern.format(camera=camera), namespace), camera_images, reliability)
        for camera in settings.cameras
    ]
    return displays


def rviz_config(settings: NodeSettings, namespace: str = "/", camera_images: bool = False) -> str:
    """The .rviz text (RViz 2's YAML) for a node with `settings` in `namespace` ("" or "/": the root); the
    camera images' displays are there but off unless `camera_images`. ValueError for an invalid namespace."""
    path = "/" + namespace.strip("/")
    problem = topic_problem(path) if path != "/" else ""
    if problem:
        raise ValueError(f"namespace {namespace!r} is not a valid ROS namespace: {problem}")
    config = {
        "Panels": [{"Class": "rviz_common/Displays", "Name": "Displays"}],
        "Visualization Manager": {
            "Class": "",
            "Displays": _displays(settings, path, camera_images),
            "Enabled": True,
            "Global Options": {"Background Color": "48; 48; 48", "Fixed Frame": settings.base_frame, "Frame Rate": 30},
            "Name": "root",
            "Tools": [
                {"Class": "rviz_default_plugins/Interact"},
                {"Class": "rviz_default_plugins/MoveCamera"},
                {"Class": "rviz_default_plugins/Measure"},
            ],
            "Value": True,
            "Views": {
                "Current": {
                    "Class": "rviz_default_plugins/Orbit",
                    "Distance": 40,
                    "Focal Point": {"X": 0, "Y": 0, "Z": 0},
                    "Pitch": 0.8,
                    "Yaw": 3.14,
                    "Name": "Current View",
                    "Target Frame": "<Fixed Frame>",
                    "Value": "Orbit (rviz)",
                },
                "Saved": None,
            },
        },
        "Window Geometry": {"Height": 1000, "Width": 1800},
    }
    header = f"# RViz 2 view of surround_depth_ros in {path}, generated from its parameters (surround-depth rviz).\n"
    return header + yaml.safe_dump(config, sort_keys=False, width=1000)
