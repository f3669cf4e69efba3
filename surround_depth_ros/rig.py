"""The sensor rig: cameras and radars with their intrinsics and extrinsics in the base frame.

Everything downstream (projection, training, the node's fused cloud) reads geometry from a
`CameraRig`, so that a rig built from YAML, from a dataset's calibration or from TF +
CameraInfo is interchangeable. Frames follow REP 103: `T_base_sensor` maps points from the
sensor frame (optical frame for cameras: z forward, x right, y down) into the base frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _as_matrix(value: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values: {array.tolist()}")
    return array


def _check_rigid(transform: np.ndarray, what: str) -> np.ndarray:
    transform = _as_matrix(transform, (4, 4), what)
    rotation = transform[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5) or np.linalg.det(rotation) < 0:
        raise ValueError(f"{what} is not a rigid transform (rotation part is not orthonormal)")
    if not np.allclose(transform[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{what} must have last row [0, 0, 0, 1], got {transform[3].tolist()}")
    return transform


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: `K` is 3x3, `T_base_cam` maps optical-frame points to the base frame."""

    name: str
    width: int
    height: int
    K: np.ndarray
    T_base_cam: np.ndarray
    frame_id: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.name}: image size must be positive, got {self.width}x{self.height}")
        K = _as_matrix(self.K, (3, 3), f"camera {self.name}: K")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"camera {self.name}: focal lengths must be positive, got fx={K[0, 0]} fy={K[1, 1]}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "T_base_cam", _check_rigid(self.T_base_cam, f"camera {self.name}: T_base_cam"))
        if not self.frame_id:
            object.__setattr__(self, "frame_id", f"{self.name.lower()}_optical_frame")


@dataclass(frozen=True)
class Radar:
    """A radar sensor: `T_base_radar` maps radar-frame points to the base frame."""

    name: str
    T_base_radar: np.ndarray
    frame_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "T_base_radar", _check_rigid(self.T_base_radar, f"radar {self.name}: T_base_radar")
        )
        if not self.frame_id:
            object.__setattr__(self, "frame_id", self.name.lower())


@dataclass(frozen=True)
class CameraRig:
    """N cameras and M radars sharing one base frame (REP 103 `base_link` by default)."""

    cameras: tuple[Camera, ...]
    radars: tuple[Radar, ...] = field(default_factory=tuple)
    base_frame: str = "base_link"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "radars", tuple(self.radars))
        if not self.cameras:
            raise ValueError("a rig needs at least one camera")
        names = [c.name for c in self.cameras] + [r.name for r in self.radars]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sensor names must be unique, repeated: {duplicates}")

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def radar_names(self) -> list[str]:
        return [r.name for r in self.radars]

    def camera(self, name: str) -> Camera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"no camera named {name!r}; the rig has {self.camera_names}")

    def radar(self, name: str) -> Radar:
        for radar in self.radars:
            if radar.name == name:
                return radar
        raise KeyError(f"no radar named {name!r}; the rig has {self.radar_names}")

    def intrinsics(self) -> np.ndarray:
        """All camera matrices stacked, shape (N, 3, 3)."""
        return np.stack([c.K for c in self.cameras])

    def extrinsics(self) -> np.ndarray:
        """All camera-to-base transforms stacked, shape (N, 4, 4)."""
        return np.stack([c.T_base_cam for c in self.cameras])
