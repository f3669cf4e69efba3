"""`SyntheticReader`: frame sets of the synthetic street for any rig, with exact dense depth.

It is a `FrameSource` like the nuScenes and DDAD readers, so training, evaluation and the node
can run on it unchanged; every frame set is a pure function of (rig, seed, index), so a reader
can be indexed in any order, split by seed, and rebuilt identically. `SyntheticWorlds` is the
source a dataset spec names: several worlds (seeds), every `stride`-th frame of each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from surround_depth_ros.datasets.synthetic.appearance import Lighting
from surround_depth_ros.datasets.synthetic.render import DEFAULT_MAX_RANGE_M, render_camera
from surround_depth_ros.datasets.synthetic.sensors import (
    LidarModel,
    RadarModel,
    SensorTiming,
    lidar_sweep,
    radar_sweep,
)
from surround_depth_ros.datasets.synthetic.world import SyntheticWorld
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.rig import CameraRig

_LIDAR_STREAM, _RADAR_STREAM = 0x11DA, 0x7ADA


class SyntheticReader:
    """`n_frames` frame sets of the world built from `seed`, seen by `rig`.

    `image_size` (width, height) rescales the rig's cameras; `sweeps` is how many of the most
    recent sweeps of each radar come with a frame set (oldest first, per radar in rig order).
    `timing` sets the sensor clocks (`SensorTiming(camera_interval_ns=0)` fires all cameras at
    once); the world's other settings go in `world_options` (see `SyntheticWorld`).
    """

    def __init__(
        self,
        rig: CameraRig,
        seed: int,
        n_frames: int,
        image_size: tuple[int, int] | None = None,
        radar: bool = True,
        lidar: bool = True,
        sweeps: int = 1,
        timing: SensorTiming | None = None,
        lidar_model: LidarModel | None = None,
        radar_model: RadarModel | None = None,
        max_range_m: float = DEFAULT_MAX_RANGE_M,
        device: torch.device | str = "cpu",
        **world_options: float,
    ) -> None:
        if n_frames < 1:
            raise ValueError(f"synthetic reader: n_frames must be >= 1, got {n_frames}")
        if sweeps < 1:
            raise ValueError(f"synthetic reader: sweeps must be >= 1, got {sweeps}")
        self._rig = rig.scaled(*image_size) if image_size is not None else rig
        self.seed = int(seed)
        self.n_frames = int(n_frames)
        self.radar, self.lidar, self.sweeps = radar, lidar, int(sweeps)
        self.timing = timing or SensorTiming()
        self.lidar_model = lidar_model or LidarModel()
        self.radar_model = radar_model or RadarModel()
        self.max_range_m = max_range_m
        self.device = device
        duration = (self.n_frames + 1) / self.timing.camera_rate_hz + 1.0
        self.world = SyntheticWorld(self.seed, duration_s=duration, **world_options)
        self.lighting = Lighting.from_seed(self.seed)

    @property
    def rig(self) -> CameraRig:
        """The rig every frame set is rendered with (at `image_size` when one was given)."""
        return self._rig

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[FrameSet]:
        return (self[i] for i in range(self.n_frames))

    def __getitem__(self, index: int) -> FrameSet:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"synthetic reader has {self.n_frames} frame sets, asked for {index}")
        stamps = self.timing.camera_stamps(index, len(self.rig.cameras))
        images, depths, poses = [], [], []
        for camera, stamp in zip(self.rig.cameras, stamps, strict=True):
            t_s = self.timing.seconds(stamp)
            T_world_base = self.world.T_world_base(t_s)
            rgb, depth = render_camera(
                self.world.scene_at(t_s),
                camera,
                T_world_base @ camera.T_base_cam,
                self.lighting,
                self.max_range_m,
                self.device,
            )
            images.append(rgb)
            depths.append(depth)
            poses.append(T_world_base)
        frame_stamp = int(stamps.min())
        return FrameSet(
            self.rig,
            images,
            stamps,
            radar=self.radar_sweeps(frame_stamp) if self.radar else [],
            lidar=self.lidar_sweep(frame_stamp) if self.lidar else None,
            T_world_base=np.stack(poses),
            depth=depths,
            name=f"synthetic-{self.seed}-{index:06d}",
        )

    def lidar_sweep(self, stamp_ns: int) -> PointSweep:
        """The most recent lidar sweep at or before `stamp_ns` (identical whichever frame asks for it)."""
        k, stamp = self.timing.lidar_sweep_before(stamp_ns)
        rng = np.random.default_rng([self.seed, _LIDAR_STREAM, k & 0xFFFFFFFF])
        return lidar_sweep(self.world, self.lidar_model, stamp, self.timing, rng)

    def radar_sweeps(self, stamp_ns: int) -> list[PointSweep]:
        """The `sweeps` most recent sweeps of every rig radar at or before `stamp_ns`."""
        out = []
        for r, radar in enumerate(self.rig.radars):
            for k, stamp in self.timing.radar_sweeps_before(r, stamp_ns, self.sweeps):
                rng = np.random.default_rng([self.seed, _RADAR_STREAM, r, k & 0xFFFFFFFF])
                out.append(radar_sweep(self.world, radar, self.radar_model, stamp, self.timing, rng).sweep)
        return out


class SyntheticWorlds:
    """One synthetic world per seed as one `FrameSource`: `frames` frame sets of each, every `stride`-th frame.

    `neighbours` are offsets in frames of each world's 12 Hz stream; every yielded frame set has them all
    (the worlds are rendered long enough), so that `with_neighbours` never drops an end. The other
    keyword arguments go to every `SyntheticReader`.
    """

    def __init__(
        self,
        rig: CameraRig,
        seeds: Sequence[int],
        frames: int,
        stride: int = 1,
        neighbours: Sequence[int] = (),
        **reader_options: Any,
    ) -> None:
        if not seeds:
            raise ValueError("synthetic worlds: at least one seed is needed")
        self.frames, self.stride, self.neighbours = int(frames), int(stride), list(neighbours)
        self.first = max([0, *(-o for o in self.neighbours)])
        length = self.first + self.frames * self.stride + max([0, *self.neighbours])
        self.readers = [SyntheticReader(rig, seed, length, **reader_options) for seed in seeds]

    @property
    def rig(self) -> CameraRig:
        """The rig of every world (they share it)."""
        return self.readers[0].rig

    def __len__(self) -> int:
        return self.frames * len(self.readers)

    def _indices(self) -> range:
        return range(self.first, self.first + self.frames * self.stride, self.stride)

    def __iter__(self) -> Iterator[FrameSet]:
        return (reader[index] for reader in self.readers for index in self._indices())

    def with_neighbours(self) -> Iterator[tuple[FrameSet, list[FrameSet]]]:
        """Each frame set with the ones at `neighbours` frames of its stream around it (rendered on demand)."""
        for reader in self.readers:
            for index in self._indices():
                yield reader[index], [reader[index + o] for o in self.neighbours]
