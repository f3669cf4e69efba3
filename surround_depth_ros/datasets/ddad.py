"""DDAD / DGP reader: a DGP scene as `FrameSet`s with lidar ground truth.

DGP stores a calibration (sensor -> vehicle extrinsics, pinhole intrinsics) per sample and a
world pose per datum. The reader builds the rig from the calibration and projects lidar with
the per-datum world poses (lidar -> world -> camera), which also covers vehicle motion between
the lidar and camera timestamps; `T_world_base` per camera is the camera's world pose times
the inverse of its extrinsic.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.datasets.nuscenes import read_image_rgb
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar

INT64_MAX = np.iinfo(np.int64).max


def dgp_pose_to_matrix(pose: dict[str, Any], where: str = "pose") -> np.ndarray:
    """4x4 transform of a DGP pose {rotation: {qw, qx, qy, qz}, translation: {x, y, z}} (missing keys = 0)."""
    try:
        rotation, translation = pose["rotation"], pose.get("translation", {})
        q = [float(rotation.get(k, 0.0)) for k in ("qw", "qx", "qy", "qz")]
        t = [float(translation.get(k, 0.0)) for k in ("x", "y", "z")]
    except (KeyError, AttributeError, TypeError) as error:
        raise ValueError(f"{where}: expected {{rotation: {{qw, qx, qy, qz}}, translation: {{x, y, z}}}}") from error
    return geometry.make_transform(geometry.quaternion_to_matrix(*q), t)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"DGP file {path} does not exist") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error


def _parse_calibration(calibration: dict[str, Any], source: str) -> dict[str, tuple[np.ndarray, dict[str, float]]]:
    """Sensor name -> (T_vehicle_sensor, intrinsics dict) of a DGP calibration table."""
    for key in ("names", "extrinsics", "intrinsics"):
        if key not in calibration:
            raise ValueError(f"{source}: DGP calibration lacks {key!r} (has {sorted(calibration)})")
    names, extrinsics, intrinsics = calibration["names"], calibration["extrinsics"], calibration["intrinsics"]
    if not len(names) == len(extrinsics) == len(intrinsics):
        raise ValueError(
            f"{source}: {len(names)} names, {len(extrinsics)} extrinsics and {len(intrinsics)} intrinsics differ"
        )
    return {
        name: (dgp_pose_to_matrix(pose, f"{source}: extrinsics of {name}"), intrinsic)
        for name, pose, intrinsic in zip(names, extrinsics, intrinsics, strict=True)
    }


def rig_from_dgp(
    calibration_json: str | os.PathLike | dict[str, Any],
    image_sizes: dict[str, tuple[int, int]] | None = None,
    default_size: tuple[int, int] = (1936, 1216),
) -> CameraRig:
    """Rig of a DGP calibration table: sensors named CAMERA_* become cameras, RADAR_* radars.

    DGP calibrations do not store image sizes: `image_sizes` maps a camera name to (width,
    height), others get `default_size` (DDAD's 1936x1216). The base frame is DGP's vehicle frame.
    """
    if isinstance(calibration_json, dict):
        calibration, source = calibration_json, "DGP calibration"
    else:
        source = str(calibration_json)
        calibration = _read_json(Path(calibration_json))
    sensors = _parse_calibration(calibration, source)
    image_sizes = image_sizes or {}
    cameras, radars = [], []
    for name, (T_vehicle_sensor, intrinsic) in sensors.items():
        if name.upper().startswith("CAMERA"):
            try:
                fx, fy, cx, cy = (float(intrinsic[k]) for k in ("fx", "fy", "cx", "cy"))
            except KeyError as error:
                raise ValueError(f"{source}: intrinsics of {name} lack {error.args[0]!r}") from error
            K = np.array([[fx, float(intrinsic.get("skew", 0.0)), cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            width, height = image_sizes.get(name, default_size)
            cameras.append(Camera(name, int(width), int(height), K, T_vehicle_sensor))
        elif name.upper().startswith("RADAR"):
            radars.append(Radar(name, T_vehicle_sensor))
    if not cameras:
        raise ValueError(f"{source}: no CAMERA_* sensor among {list(sensors)}")
    return CameraRig(cameras, radars)


def _stamp_us(datum: dict[str, Any]) -> int:
    """Microseconds since the epoch of a datum's ISO-8601 `id.timestamp`."""
    text = datum["id"]["timestamp"].replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return (moment.toordinal() - datetime(1970, 1, 1).toordinal()) * 86_400_000_000 + (
        (moment.hour * 3600 + moment.minute * 60 + moment.second) * 1_000_000 + moment.microsecond
    )


class DGPSceneReader:
    """Samples of one DGP scene (a `scene_*.json`, or its folder), a `FrameSource`; `reader[i]` is a `FrameSet`.

    Cameras follow the calibration's order, lidar is the sweep of the sensor named `lidar`
    (DDAD: LIDAR) in its own frame with `T_world_base` at lidar time, and `depth` is the lidar
    projected into every camera. Stamps are nanoseconds since the epoch; scenes whose stamps lie
    past 2262 (int64 nanoseconds overflow, as in the DGP toolkit's test scene) get stamps
    relative to the scene's first datum, with a warning.
    """

    def __init__(self, scene: str | os.PathLike, lidar: str = "LIDAR", min_depth: float = 1.0) -> None:
        path = Path(scene)
        if path.is_dir():
            found = sorted(path.glob("scene_*.json"))
            if not found:
                raise FileNotFoundError(f"{path}: no scene_*.json in this folder (expected a DGP scene folder)")
            path = found[0]
        self.scene_json = path
        self.scene_dir = path.parent
        self.lidar = lidar
        self.min_depth = min_depth
        scene = _read_json(path)
        for key in ("samples", "data"):
            if key not in scene:
                raise ValueError(f"{path}: DGP scene lacks {key!r}")
        self.samples = scene["samples"]
        self.data = {datum["key"]: datum for datum in scene["data"]}
        self._calibrations: dict[str, dict[str, Any]] = {}
        first_us = min(_stamp_us(datum) for datum in scene["data"])
        last_us = max(_stamp_us(datum) for datum in scene["data"])
        self.stamp_origin_us = 0
        if last_us * 1000 > INT64_MAX:
            self.stamp_origin_us = first_us
            warnings.warn(
                f"{path}: timestamps lie past 2262 and do not fit int64 nanoseconds; "
                "stamps are given relative to the scene's first datum",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[FrameSet]:
        for index in range(len(self)):
            yield self[index]

    def calibration(self, key: str) -> dict[str, Any]:
        """The parsed calibration table `calibration/<key>.json`."""
        if key not in self._calibrations:
            self._calibrations[key] = _read_json(self.scene_dir / "calibration" / f"{key}.json")
        return self._calibrations[key]

    def _sample_datums(self, index: int) -> dict[str, dict[str, Any]]:
        sample = self.samples[index]
        datums = {}
        for key in sample["datum_keys"]:
            if key not in self.data:
                raise KeyError(f"{self.scene_json}: sample {index} names datum {key} that the scene lacks")
            datums[self.data[key]["id"]["name"]] = self.data[key]
        return datums

    def _stamp_ns(self, datum: dict[str, Any]) -> int:
        return (_stamp_us(datum) - self.stamp_origin_us) * 1000

    @property
    def rig(self) -> CameraRig:
        """The rig of the first sample: what a model trains on and a bag announces."""
        return self.rig_of(0)

    def rig_of(self, index: int) -> CameraRig:
        """The rig of sample `index`: cameras present in the sample, sized from their image datums."""
        datums = self._sample_datums(index)
        sizes = {
            name: (int(d["datum"]["image"]["width"]), int(d["datum"]["image"]["height"]))
            for name, d in datums.items()
            if "image" in d["datum"]
        }
        rig = rig_from_dgp(self.calibration(self.samples[index]["calibration_key"]), image_sizes=sizes)
        cameras = [cam for cam in rig.cameras if cam.name in sizes]
        return CameraRig(cameras, rig.radars, rig.base_frame)

    def lidar_extrinsic(self, index: int = 0) -> np.ndarray:
        """T_vehicle_lidar of sample `index` from its calibration."""
        sensors = _parse_calibration(self.calibration(self.samples[index]["calibration_key"]), str(self.scene_json))
        if self.lidar not in sensors:
            raise KeyError(f"{self.scene_json}: calibration has no sensor {self.lidar!r}; it has {list(sensors)}")
        return sensors[self.lidar][0]

    def datum_pose(self, index: int, sensor: str) -> np.ndarray:
        """T_world_sensor stored with the datum of `sensor` in sample `index`."""
        datums = self._sample_datums(index)
        if sensor not in datums:
            raise KeyError(f"{self.scene_json}: sample {index} has no datum for {sensor!r}; it has {list(datums)}")
        body = next(iter(datums[sensor]["datum"].values()))
        return dgp_pose_to_matrix(body["pose"], f"{self.scene_json}: pose of {sensor} in sample {index}")

    def __getitem__(self, index: int) -> FrameSet:
        datums = self._sample_datums(index)
        rig = self.rig_of(index)
        images, stamps, poses, depth = [], [], [], []
        lidar_datum = datums.get(self.lidar)
        lidar = None
        if lidar_datum is not None:
            cloud = lidar_datum["datum"]["point_cloud"]
            with np.load(self.scene_dir / cloud["filename"]) as npz:
                raw = np.asarray(npz["data"])
            T_world_lidar = self.datum_pose(index, self.lidar)
            T_base_lidar = self.lidar_extrinsic(index)
            T_world_base = T_world_lidar @ geometry.invert_transform(T_base_lidar)
            fields = {
                name.lower(): raw[:, i + 3].astype(np.float32) for i, name in enumerate(cloud["point_format"][3:])
            }
            lidar = PointSweep(self.lidar, self._stamp_ns(lidar_datum), raw[:, :3], fields, T_world_base, T_base_lidar)
        for cam in rig.cameras:
            datum = datums[cam.name]
            images.append(read_image_rgb(self.scene_dir / datum["datum"]["image"]["filename"]))
            stamps.append(self._stamp_ns(datum))
            T_world_cam = self.datum_pose(index, cam.name)
            poses.append(T_world_cam @ geometry.invert_transform(cam.T_base_cam))
            if lidar is not None:
                T_cam_lidar = geometry.invert_transform(T_world_cam) @ T_world_lidar
                points_cam = geometry.transform_points(T_cam_lidar, lidar.points.astype(np.float64))
                depth.append(
                    geometry.points_to_depth_map(points_cam, cam.K, cam.width, cam.height, min_depth=self.min_depth)
                )
        return FrameSet(
            rig=rig,
            images=images,
            camera_stamps_ns=np.asarray(stamps, dtype=np.int64),
            lidar=lidar,
            T_world_base=np.stack(poses),
            depth=depth if lidar is not None else None,
            name=f"{self.scene_json.parent.name}/{index}",
        )
