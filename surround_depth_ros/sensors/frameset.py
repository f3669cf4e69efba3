"""The unit of work of the whole package: one synchronized set of surround images.

Every reader (synthetic world, nuScenes, DDAD, rosbag2) is a `FrameSource` that yields
`FrameSet`s, the trainer consumes them, and the node builds one per accepted synchronization, so
that one structure carries images, per-sensor stamps, radar, lidar, poses and (when known)
ground truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from surround_depth_ros.sensors.rig import CameraRig


@dataclass
class PointSweep:
    """One radar or lidar sweep in its sensor frame.

    `points` is (P, 3) float xyz; `fields` holds named per-point columns of length P
    (radar: `rcs`, `vx`, `vy`, `vx_comp`, `vy_comp`, ...; lidar: `intensity`, `ring`).
    `T_world_base` is the ego pose at `stamp_ns` when known, for motion compensation;
    `T_base_sensor` the sensor's extrinsic when the source knows it (a lidar is not part of the
    camera rig, yet a bag needs its transform and ground truth needs its chain).
    """

    sensor: str
    stamp_ns: int
    points: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    T_world_base: np.ndarray | None = None
    T_base_sensor: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)
        for name, column in self.fields.items():
            if len(column) != len(self.points):
                raise ValueError(
                    f"{self.sensor}: field {name!r} has {len(column)} values for {len(self.points)} points"
                )

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class FrameSet:
    """Images of every rig camera (H x W x 3 uint8 RGB) with their stamps and optional extras.

    `camera_stamps_ns[i]` is the capture time of `images[i]`; `T_world_base` (N, 4, 4) holds
    the ego pose at each camera's stamp when known. `depth` holds dense or sparse metric ground
    truth per camera (0 or NaN = unknown) when the source has it. A set built from live or bag
    streams (`FrameAssembler`) holds the cameras that had full geometry, and the anchor's stamp.
    """

    rig: CameraRig
    images: list[np.ndarray]
    camera_stamps_ns: np.ndarray
    radar: list[PointSweep] = field(default_factory=list)
    lidar: PointSweep | None = None
    T_world_base: np.ndarray | None = None
    depth: list[np.ndarray] | None = None
    name: str = ""
    anchor_stamp_ns: int | None = None

    def __post_init__(self) -> None:
        n = len(self.rig.cameras)
        if len(self.images) != n:
            raise ValueError(f"frame set {self.name!r}: {len(self.images)} images for a rig of {n} cameras")
        for cam, image in zip(self.rig.cameras, self.images, strict=True):
            if image.shape[:2] != (cam.height, cam.width):
                raise ValueError(
                    f"frame set {self.name!r}: camera {cam.name} image is {image.shape[1]}x{image.shape[0]}, "
                    f"rig says {cam.width}x{cam.height}"
                )
        self.camera_stamps_ns = np.asarray(self.camera_stamps_ns, dtype=np.int64).reshape(n)
        if self.depth is not None and len(self.depth) != n:
            raise ValueError(f"frame set {self.name!r}: {len(self.depth)} depth maps for {n} cameras")

    @property
    def stamp_ns(self) -> int:
        """The set's reference stamp: the synchronizer's anchor camera when known, else the earliest camera."""
        return int(self.camera_stamps_ns.min()) if self.anchor_stamp_ns is None else int(self.anchor_stamp_ns)


@runtime_checkable
class FrameSource(Protocol):
    """What every reader offers, so that training, evaluation and bag writing treat sources alike.

    `rig` is the rig of the source's first (representative) frame set: the one a model trains on and a
    bag announces. `len()` is how many frame sets a pass yields: exact for indexed datasets, the best
    count a streamed source can give before reading (a bag: the fewest images of any camera), so use it
    for progress bars and caps, never to index. Iterating yields the frame sets in time order.
    """

    @property
    def rig(self) -> CameraRig: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[FrameSet]: ...
