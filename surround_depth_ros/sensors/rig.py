"""The sensor rig: cameras and radars with their intrinsics and extrinsics in the base frame.

Everything downstream (projection, training, the node's fused cloud) reads geometry from a
`CameraRig`, so that a rig built from YAML, from a dataset's calibration or from TF +
CameraInfo is interchangeable. Frames follow REP 103: `T_base_sensor` maps points from the
sensor frame (optical frame for cameras: z forward, x right, y down) into the base frame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from surround_depth_ros.base import geometry, schema
from surround_depth_ros.base.resources import packaged_file
from surround_depth_ros.base.schema import SchemaError, setting
from surround_depth_ros.base.yaml_file import YamlFileError, load_yaml


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
        object.__setattr__(self, "T_base_radar", _check_rigid(self.T_base_radar, f"radar {self.name}: T_base_radar"))
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

    def scaled(self, width: int, height: int) -> CameraRig:
        """The rig as seen in images resized to width x height (every camera; intrinsics follow `cv2.resize`)."""
        cameras = [resize_camera(cam, width, height) for cam in self.cameras]
        return CameraRig(cameras, self.radars, self.base_frame)

    def overlap_matrix(self, depths: tuple[float, ...] = (30.0, 100.0, 1000.0), grid: int = 24) -> np.ndarray:
        """(N, N) fraction of camera i's view that camera j also sees, from geometry.

        Samples a grid x grid lattice of pixel centres of camera i at each depth in `depths`,
        moves the points into camera j and counts those in front of j inside its image. The
        default depths are far so that the number measures the shared field of view; near the
        car the baseline between cameras (about 1 m on nuScenes) shrinks it.
        """
        n = len(self.cameras)
        fraction = np.eye(n)
        for i, cam in enumerate(self.cameras):
            cols = (np.arange(grid) + 0.5) * cam.width / grid - 0.5
            rows = (np.arange(grid) + 0.5) * cam.height / grid - 0.5
            pixels = np.stack(np.meshgrid(cols, rows), axis=-1).reshape(-1, 2)
            rays = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1) @ np.linalg.inv(cam.K).T
            points_cam = np.concatenate([rays * d for d in depths])
            points_base = geometry.transform_points(cam.T_base_cam, points_cam)
            for j, other in enumerate(self.cameras):
                if j == i:
                    continue
                points_j = geometry.transform_points(geometry.invert_transform(other.T_base_cam), points_base)
                uv, z = geometry.project_points(other.K, points_j)
                with np.errstate(invalid="ignore"):
                    inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < other.width - 0.5)
                    inside &= (uv[:, 1] >= -0.5) & (uv[:, 1] < other.height - 0.5)
                fraction[i, j] = inside.mean()
        return fraction

    def adjacency(self, min_overlap: float = 0.05) -> list[tuple[int, int]]:
        """Pairs (i < j) of cameras whose views overlap by at least `min_overlap` (mean of both directions)."""
        fraction = self.overlap_matrix()
        mutual = 0.5 * (fraction + fraction.T)
        n = len(self.cameras)
        return [(i, j) for i in range(n) for j in range(i + 1, n) if mutual[i, j] >= min_overlap]


# --------------------------------------------------------------------------- YAML rig files

RIG_FILE_HELP = """\
# Sensor rig for surround_depth_ros (load with surround_depth_ros.sensors.rig.load_rig).
# base_frame: the frame every extrinsic is expressed in (REP 103 base_link: x forward, y left, z up).
# cameras: list, in the order the network sees them; each with
#   name, frame_id (the optical frame of its images), width, height (pixels),
#   intrinsics: {fx, fy, cx, cy} in pixels (pixel centres at integer coordinates, as in CameraInfo),
#   extrinsics: pose of the OPTICAL frame (z forward, x right, y down) in base_frame:
#     translation: [x, y, z] in metres, and either
#     quaternion_wxyz: [w, x, y, z]   (note the order: w first)  or
#     rpy_deg: [roll, pitch, yaw] in degrees, R = Rz(yaw) Ry(pitch) Rx(roll) (URDF convention);
#     a forward-looking camera has rpy_deg [-90, 0, -90].
# radars: list; each with name, frame_id and extrinsics as above (pose of the radar frame in base_frame).
"""


class RigFileError(SchemaError):
    """A rig YAML file that cannot be turned into a `CameraRig`; the message names the file and key."""


def resize_camera(camera: Camera, width: int, height: int) -> Camera:
    """The camera as seen in its image resized to width x height (intrinsics follow `cv2.resize`)."""
    K = geometry.resize_intrinsics(camera.K, width / camera.width, height / camera.height)
    return dataclasses.replace(camera, width=int(width), height=int(height), K=K)


def crop_camera(camera: Camera, left: int, top: int, width: int, height: int) -> Camera:
    """The camera as seen in the crop [left, left + width) x [top, top + height) of its image."""
    if left < 0 or top < 0 or width <= 0 or height <= 0 or left + width > camera.width or top + height > camera.height:
        raise ValueError(
            f"camera {camera.name}: crop {width}x{height} at ({left}, {top}) does not fit in "
            f"its {camera.width}x{camera.height} image"
        )
    K = geometry.crop_intrinsics(camera.K, left, top)
    return dataclasses.replace(camera, width=int(width), height=int(height), K=K)


def resize_image_and_camera(image: np.ndarray, camera: Camera, width: int, height: int) -> tuple[np.ndarray, Camera]:
    """Resize an image (area filter when shrinking) and its camera consistently."""
    import cv2

    if image.shape[:2] != (camera.height, camera.width):
        raise ValueError(
            f"camera {camera.name}: image is {image.shape[1]}x{image.shape[0]}, "
            f"camera says {camera.width}x{camera.height}"
        )
    shrinking = width < camera.width and height < camera.height
    resized = cv2.resize(
        image, (int(width), int(height)), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return resized, resize_camera(camera, width, height)


@dataclass(frozen=True)
class IntrinsicsSpec:
    """`intrinsics` of a rig file's camera, in pixels."""

    fx: float = setting(low=0, low_open=True)
    fy: float = setting(low=0, low_open=True)
    cx: float = setting()
    cy: float = setting()
    skew: float = 0.0

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, self.skew, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ExtrinsicsSpec:
    """`extrinsics` of a rig file's sensor: translation and one rotation form (see RIG_FILE_HELP)."""

    translation: tuple[float, ...] = setting(min_items=3, max_items=3)
    quaternion_wxyz: tuple[float, ...] | None = setting(None, min_items=4, max_items=4)
    rpy_deg: tuple[float, ...] | None = setting(None, min_items=3, max_items=3)

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """One of the two rotation forms must be given."""
        if values.get("quaternion_wxyz", 0) is None and values.get("rpy_deg", 0) is None:
            yield "", "missing key 'quaternion_wxyz' or 'rpy_deg' (the rotation)"

    def matrix(self) -> np.ndarray:
        """The 4x4 transform (ValueError for a quaternion of zero length)."""
        if self.quaternion_wxyz is not None:
            rotation = geometry.quaternion_to_matrix(*self.quaternion_wxyz)
        else:
            rotation = geometry.rpy_to_matrix(*np.deg2rad(self.rpy_deg))
        return geometry.make_transform(rotation, np.asarray(self.translation))


@dataclass(frozen=True)
class CameraSpec:
    """A camera of a rig file."""

    name: str
    width: int = setting(low=0, low_open=True)
    height: int = setting(low=0, low_open=True)
    intrinsics: IntrinsicsSpec = setting()
    extrinsics: ExtrinsicsSpec = setting()
    frame_id: str = ""


@dataclass(frozen=True)
class RadarSpec:
    """A radar of a rig file."""

    name: str
    extrinsics: ExtrinsicsSpec
    frame_id: str = ""


@dataclass(frozen=True)
class RigSpec:
    """A rig file (RIG_FILE_HELP): `cameras` in the order the network sees them, `radars` (null: none)."""

    cameras: tuple[CameraSpec, ...] = setting(min_items=1)
    radars: tuple[RadarSpec, ...] | None = None
    base_frame: str = "base_link"


def _transform_to_yaml(T: np.ndarray) -> dict[str, list[float]]:
    return {
        "translation": [float(v) for v in T[:3, 3]],
        "quaternion_wxyz": list(geometry.matrix_to_quaternion(T[:3, :3])),
    }


def rig_from_dict(data: Any, source: str = "rig") -> CameraRig:  # noqa: ANN401 - parsed YAML
    """Build a rig from the parsed YAML structure described in `RIG_FILE_HELP`; a RigFileError lists every
    problem with its key path (`cameras[1] (CAM_FRONT_LEFT).intrinsics: missing key 'fx'`)."""
    spec = schema.build(RigSpec, data, source, RigFileError)
    cameras, radars, problems = [], [], []
    for index, cam in enumerate(spec.cameras):
        try:
            T = cam.extrinsics.matrix()
            cameras.append(Camera(cam.name, cam.width, cam.height, cam.intrinsics.matrix(), T, cam.frame_id))
        except ValueError as error:
            problems.append(f"cameras[{index}] ({cam.name}): {error}")
    for index, radar in enumerate(spec.radars or ()):
        try:
            radars.append(Radar(radar.name, radar.extrinsics.matrix(), radar.frame_id))
        except ValueError as error:
            problems.append(f"radars[{index}] ({radar.name}): {error}")
    if problems:
        raise RigFileError(source, problems)
    try:
        return CameraRig(cameras, radars, spec.base_frame)
    except ValueError as error:
        raise RigFileError(source, [str(error)]) from error


def rig_to_dict(rig: CameraRig) -> dict[str, Any]:
    """The YAML structure of a rig (quaternion form, full float precision so that a round trip is exact)."""
    cameras = []
    for cam in rig.cameras:
        intrinsics = {"fx": float(cam.K[0, 0]), "fy": float(cam.K[1, 1]), "cx": float(cam.K[0, 2])}
        intrinsics["cy"] = float(cam.K[1, 2])
        if cam.K[0, 1] != 0.0:
            intrinsics["skew"] = float(cam.K[0, 1])
        cameras.append(
            {
                "name": cam.name,
                "frame_id": cam.frame_id,
                "width": int(cam.width),
                "height": int(cam.height),
                "intrinsics": intrinsics,
                "extrinsics": _transform_to_yaml(cam.T_base_cam),
            }
        )
    radars = [
        {"name": r.name, "frame_id": r.frame_id, "extrinsics": _transform_to_yaml(r.T_base_radar)} for r in rig.radars
    ]
    return {"base_frame": rig.base_frame, "cameras": cameras, "radars": radars}


class _FlowListDumper(yaml.SafeDumper):
    """Writes number lists on one line ([x, y, z]) so that rig files stay readable."""


_FlowListDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def load_rig(path: str | os.PathLike) -> CameraRig:
    """Read a rig YAML file (format in `RIG_FILE_HELP` and docs/rig_and_geometry.md)."""
    path = Path(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"rig file {path} does not exist") from error
    except YamlFileError as error:
        raise RigFileError(str(error)) from error
    return rig_from_dict(data, str(path))


def save_rig(rig: CameraRig, path: str | os.PathLike) -> None:
    """Write a rig as YAML that `load_rig` reads back to the same numbers."""
    data = rig_to_dict(rig)
    body = yaml.dump({"base_frame": data["base_frame"]}, Dumper=_FlowListDumper, sort_keys=False)
    for key in ("cameras", "radars"):
        items = [yaml.dump(item, Dumper=_FlowListDumper, sort_keys=False, width=200) for item in data[key]]
        body += f"{key}:\n" if items else f"{key}: []\n"
        body += "".join("  - " + item.rstrip("\n").replace("\n", "\n    ") + "\n" for item in items)
    Path(path).write_text(RIG_FILE_HELP + body)


def default_rig() -> CameraRig:
    """The nuScenes-like rig shipped in config/rig_nuscenes.yaml."""
    return load_rig(packaged_file("config", "rig_nuscenes.yaml"))
