"""The one place a source type name becomes a `FrameSource`: training, evaluation and write-bag all open data here.

A spec is anything with a `DatasetConfig`'s fields (`training.config.DatasetConfig`, or what a command line
builds): `type`, `path`, `version` (nuScenes), `seeds`, `frames`, `stride`, `render_size`, `radar` and
`neighbours` (synthetic). Keyword options go to the reader's constructor (e.g. `RosbagReader`'s `settings`,
`SyntheticReader`'s `lidar`), so a caller can tune one reader without a factory of its own. Readers are
imported when their type is opened: a synthetic run needs neither `rosbags` nor OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from surround_depth_ros.sensors.frameset import FrameSource


class SourceSpec(Protocol):
    """The fields of a dataset spec the builders read (see `training.config.DatasetConfig` for their meaning)."""

    type: str
    path: str | None
    version: str
    seeds: Sequence[int]
    frames: int
    stride: int
    render_size: Sequence[int] | None
    radar: bool
    neighbours: Sequence[int]


def _path(spec: SourceSpec) -> str:
    if not spec.path:
        raise ValueError(f"a {spec.type} source needs a path")
    return str(spec.path)


def _synthetic(spec: SourceSpec, **options: Any) -> FrameSource:
    """`SyntheticWorlds` of the spec's seeds, rendered at `render_size`; the `rig` option (default: the packaged
    rig) and the others override what the spec implies."""
    from surround_depth_ros.datasets.synthetic import SyntheticWorlds
    from surround_depth_ros.sensors.rig import default_rig

    rig = options.pop("rig", None) or default_rig()
    size = tuple(spec.render_size) if spec.render_size else None
    options = {"image_size": size, "radar": spec.radar, **options}
    return SyntheticWorlds(rig, spec.seeds, spec.frames, spec.stride, spec.neighbours, **options)


def _nuscenes(spec: SourceSpec, **options: Any) -> FrameSource:
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    return NuScenesReader(_path(spec), spec.version, **options)


def _ddad(spec: SourceSpec, **options: Any) -> FrameSource:
    from surround_depth_ros.datasets.ddad import DGPSceneReader

    return DGPSceneReader(_path(spec), **options)


def _rosbag(spec: SourceSpec, **options: Any) -> FrameSource:
    from surround_depth_ros.bag.reader import RosbagReader

    return RosbagReader(_path(spec), **options)


SOURCES: dict[str, Callable[..., FrameSource]] = {
    "synthetic": _synthetic,
    "nuscenes": _nuscenes,
    "ddad": _ddad,
    "rosbag": _rosbag,
}
SOURCE_TYPES: tuple[str, ...] = tuple(SOURCES)


def open_frame_source(spec: SourceSpec, **options: Any) -> FrameSource:
    """The `FrameSource` a spec names; `options` go to its reader. Raises ValueError for an unknown type."""
    if spec.type not in SOURCES:
        raise ValueError(f"unknown source type {spec.type!r}; known: {', '.join(SOURCE_TYPES)}")
    return SOURCES[spec.type](spec, **options)
