"""The rig a bag describes: its cameras from their first usable CameraInfo, its radars from their first cloud, all
placed by /tf_static (chains such as base_link -> cam body -> optical frame are composed).

Split from `RosbagReader` so that what the bag holds (this) and the frame sets of a pass stay apart; the reader
names the bag in the errors raised here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from surround_depth_ros.bag import topics
from surround_depth_ros.conversion.messages import camera_from_info
from surround_depth_ros.core.ingest import Rejection
from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.core.transforms import TransformBuffer, TransformError
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar


class RigProblem(ValueError):
    """Why a bag's topics and first messages give no rig; the reader adds the bag and why its reading stopped."""


def sensor_topics(
    names: topics.TopicNames, types: Mapping[str, str], settings: NodeSettings | None
) -> tuple[dict[str, str], dict[str, str]]:
    """{camera: CameraInfo topic} and {radar: PointCloud2 topic}: the sensors `settings` name (a params file's, in
    its order), else all the bag has in the layout. `types`: topic -> the type it is read as."""
    if settings is not None:
        cameras = {name: names.camera_info(name) for name in settings.cameras}
        missing = [t for t in cameras.values() if types.get(t) != topics.CAMERA_INFO_TYPE]
        if missing:
            found = sorted(t for t, m in types.items() if m == topics.CAMERA_INFO_TYPE)
            raise RigProblem(
                f"no CameraInfo topic {missing[0]} (camera_info_topic {names.camera_info_pattern!r}); CameraInfo "
                f"topics in the bag: {found}"
            )
    else:
        found = [(names.sensor_of(t), t) for t, m in types.items() if m == topics.CAMERA_INFO_TYPE]
        cameras = {kind[1]: t for kind, t in found if kind and kind[0] == "camera_info"}
        if not cameras:
            raise RigProblem(
                f"no {names.camera_info('<camera>')} topics to build the rig from; "
                "pass rig=... (e.g. load_rig(config/rig_nuscenes.yaml)) for bags without camera_info"
            )
    clouds = [t for t, m in types.items() if m == topics.POINT_CLOUD_TYPE and t != names.lidar]
    if settings is not None:  # a radar the bag lacks is simply absent, as it is for the node
        radars = {name: names.radar(name) for name in settings.radars if names.radar(name) in clouds}
    else:
        found = [(names.sensor_of(t), t) for t in clouds]
        radars = {kind[1]: t for kind, t in found if kind and kind[0] == "points"}
    return cameras, radars


def place(transforms: TransformBuffer, base_frame: str, frame: str) -> np.ndarray:
    """T_base_frame from the bag's transforms; RigProblem naming both frames when the tree does not join them."""
    try:
        return transforms.lookup(base_frame, frame)
    except TransformError as error:
        raise RigProblem(f"no transform from {base_frame!r} to {frame!r}: {error}") from error


def rig_from_messages(
    messages: Iterable[tuple[str, str, Any]],
    cameras: Mapping[str, str],
    radars: Mapping[str, str],
    transforms: TransformBuffer,
    base_frame: str,
    judge: Callable[[str, Any], Rejection | None],
) -> CameraRig:
    """The rig of `sensor_topics`' topics from their first messages, (topic, type, message) in log order: a camera
    from its first CameraInfo `judge` (`SensorIngest.camera_info`: the node's check) takes, a radar from its first
    cloud (a radar without one is left out, as the node would never hear it)."""
    if not transforms.frames():
        raise RigProblem("no /tf_static transforms to place the cameras; pass rig=...")
    camera_of = {topic: name for name, topic in cameras.items()}
    first: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for topic, _, msg in messages:
        if topic in camera_of and (rejection := judge(camera_of[topic], msg)):
            problems.setdefault(topic, rejection.message)
            continue
        first.setdefault(topic, msg)
        if len(first) == len(cameras) + len(radars):
            break
    placed: list[Camera] = []
    for name, topic in cameras.items():
        if topic not in first:
            raise RigProblem(f"no usable CameraInfo on {topic}: {problems.get(topic, 'none could be read')}")
        msg = first[topic]
        placed.append(camera_from_info(name, msg, place(transforms, base_frame, msg.header.frame_id)))
    found = []
    for name, topic in radars.items():
        if topic in first:
            frame = first[topic].header.frame_id
            found.append(Radar(name, place(transforms, base_frame, frame), frame))
    return CameraRig(placed, found, base_frame)
