"""nuScenes reader: keyframes of a nuScenes dataroot as `FrameSet`s with lidar ground truth.

Reads the devkit JSON tables directly (the nuscenes-devkit is not a dependency), so that the
rig, the ego poses at each sensor's own timestamp and the lidar-to-camera chain
(lidar -> ego(t_lidar) -> global -> ego(t_cam) -> camera) are computed by this package's
geometry and can be tested against the tables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.sensors.frameset import FrameSet, PointSweep
from surround_depth_ros.sensors.radar import read_nuscenes_radar_pcd
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar

CAMERA_CHANNELS = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
RADAR_SENSORS = (  # nuScenes calls sensors "channels"; these are the five radars
    "RADAR_FRONT",
    "RADAR_FRONT_LEFT",
    "RADAR_FRONT_RIGHT",
    "RADAR_BACK_LEFT",
    "RADAR_BACK_RIGHT",
)
LIDAR_CHANNEL = "LIDAR_TOP"
TABLES = ("sensor", "calibrated_sensor", "ego_pose", "sample_data", "sample")


def pose_to_matrix(record: dict[str, Any]) -> np.ndarray:
    """4x4 transform of a nuScenes record with `translation` [x, y, z] and `rotation` [w, x, y, z]."""
    return geometry.make_transform(geometry.quaternion_to_matrix(*record["rotation"]), record["translation"])


def read_image_rgb(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (OpenCV decodes BGR)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path} (missing or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_lidar_bin(
    path: Path, stamp_ns: int, T_world_base: np.ndarray, T_base_lidar: np.ndarray | None = None
) -> PointSweep:
    """A nuScenes `.pcd.bin` lidar sweep (float32 x y z intensity ring) in the lidar frame."""
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 5:
        raise ValueError(f"{path}: {raw.size} floats is not a multiple of 5 (x y z intensity ring)")
    raw = raw.reshape(-1, 5)
    fields = {"intensity": raw[:, 3].copy(), "ring": raw[:, 4].copy()}
    return PointSweep(LIDAR_CHANNEL, stamp_ns, raw[:, :3], fields, T_world_base, T_base_lidar)


class NuScenesReader:
    """Keyframes (samples) of a nuScenes dataroot, a `FrameSource`; `reader[i]` is a `FrameSet`.

    Each frame set has the rig from `calibrated_sensor`, RGB images, camera stamps, the ego pose
    at every camera stamp, the LIDAR_TOP sweep in the lidar frame (with the ego pose at lidar
    time; `lidar_extrinsic` gives T_base_lidar), radar sweeps whose files exist, and sparse lidar
    depth per camera (points nearer than `min_depth` metres, on the car itself, are left out).
    """

    def __init__(self, dataroot: str | os.PathLike, version: str = "v1.0-mini", min_depth: float = 1.0) -> None:
        self.dataroot = Path(dataroot)
        self.min_depth = min_depth
        table_dir = self.dataroot / version
        if not table_dir.is_dir():
            raise FileNotFoundError(
                f"{table_dir} does not exist: expected a nuScenes dataroot with a {version}/ folder"
            )
        tables = {}
        for name in TABLES:
            path = table_dir / f"{name}.json"
            if not path.is_file():
                raise FileNotFoundError(f"nuScenes table {path} is missing (needed: {', '.join(TABLES)})")
            tables[name] = {record["token"]: record for record in json.loads(path.read_text())}
        self._tables = tables
        self.samples = sorted(tables["sample"].values(), key=lambda record: record["timestamp"])
        self._keyframes: dict[str, dict[str, dict[str, Any]]] = {}
        for record in tables["sample_data"].values():
            if record.get("is_key_frame", True):
                channel = self._channel(record)
                self._keyframes.setdefault(record["sample_token"], {})[channel] = record

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[FrameSet]:
        for index in range(len(self)):
            yield self[index]

    @property
    def sample_tokens(self) -> list[str]:
        return [sample["token"] for sample in self.samples]

    def _channel(self, sample_data: dict[str, Any]) -> str:
        calibration = self._tables["calibrated_sensor"][sample_data["calibrated_sensor_token"]]
        return self._tables["sensor"][calibration["sensor_token"]]["channel"]

    def _sample_data(self, sample_token: str) -> dict[str, dict[str, Any]]:
        if sample_token not in self._keyframes:
            raise KeyError(f"no keyframe sample_data for sample {sample_token!r} in {self.dataroot}")
        records = self._keyframes[sample_token]
        missing = [channel for channel in (*CAMERA_CHANNELS, LIDAR_CHANNEL) if channel not in records]
        if missing:
            raise KeyError(f"sample {sample_token}: no keyframe sample_data for {missing}")
        return records

    def _calibration(self, sample_data: dict[str, Any]) -> dict[str, Any]:
        return self._tables["calibrated_sensor"][sample_data["calibrated_sensor_token"]]

    def ego_pose(self, sample_data: dict[str, Any]) -> np.ndarray:
        """T_world_base at the timestamp of a sample_data record."""
        return pose_to_matrix(self._tables["ego_pose"][sample_data["ego_pose_token"]])

    def lidar_extrinsic(self, sample_token: str | None = None) -> np.ndarray:
        """T_base_lidar of the LIDAR_TOP calibration used by a sample (the first one by default)."""
        token = sample_token or self.sample_tokens[0]
        return pose_to_matrix(self._calibration(self._sample_data(token)[LIDAR_CHANNEL]))

    @property
    def rig(self) -> CameraRig:
        """The rig of the first keyframe (a nuScenes log keeps its calibration): what a model trains on."""
        return self.rig_of(self.sample_tokens[0])

    def rig_of(self, sample_token: str) -> CameraRig:
        """The six cameras (CAMERA_CHANNELS order) and the radars calibrated for one sample."""
        records = self._sample_data(sample_token)
        cameras = []
        for channel in CAMERA_CHANNELS:
            record = records[channel]
            calibration = self._calibration(record)
            cameras.append(
                Camera(
                    name=channel,
                    width=int(record["width"]),
                    height=int(record["height"]),
                    K=np.asarray(calibration["camera_intrinsic"], dtype=np.float64),
                    T_base_cam=pose_to_matrix(calibration),
                )
            )
        radars = [
            Radar(channel, pose_to_matrix(self._calibration(records[channel])))
            for channel in RADAR_SENSORS
            if channel in records
        ]
        return CameraRig(cameras, radars)

    def __getitem__(self, index: int) -> FrameSet:
        sample = self.samples[index]
        token = sample["token"]
        records = self._sample_data(token)
        rig = self.rig_of(token)
        images = [read_image_rgb(self.dataroot / records[c]["filename"]) for c in CAMERA_CHANNELS]
        stamps_ns = np.array([records[c]["timestamp"] * 1000 for c in CAMERA_CHANNELS], dtype=np.int64)
        T_world_base = np.stack([self.ego_pose(records[c]) for c in CAMERA_CHANNELS])

        lidar_record = records[LIDAR_CHANNEL]
        T_base_lidar = pose_to_matrix(self._calibration(lidar_record))
        lidar = read_lidar_bin(
            self.dataroot / lidar_record["filename"],
            lidar_record["timestamp"] * 1000,
            self.ego_pose(lidar_record),
            T_base_lidar,
        )
        depth = []
        for i, cam in enumerate(rig.cameras):
            T_cam_lidar = (
                geometry.invert_transform(cam.T_base_cam)
                @ geometry.invert_transform(T_world_base[i])
                @ lidar.T_world_base
                @ T_base_lidar
            )
            points_cam = geometry.transform_points(T_cam_lidar, lidar.points.astype(np.float64))
            depth.append(
                geometry.points_to_depth_map(points_cam, cam.K, cam.width, cam.height, min_depth=self.min_depth)
            )

        radar = []
        for channel in RADAR_SENSORS:
            record = records.get(channel)
            if record is not None and (self.dataroot / record["filename"]).is_file():
                sweep = read_nuscenes_radar_pcd(self.dataroot / record["filename"], channel, record["timestamp"] * 1000)
                sweep.T_world_base = self.ego_pose(record)
                radar.append(sweep)
        return FrameSet(
            rig=rig,
            images=images,
            camera_stamps_ns=stamps_ns,
            radar=radar,
            lidar=lidar,
            T_world_base=T_world_base,
            depth=depth,
            name=token,
        )


def rig_from_nuscenes(
    dataroot: str | os.PathLike, sample_token: str | None = None, version: str = "v1.0-mini"
) -> CameraRig:
    """The calibrated rig of one nuScenes sample (the first keyframe by default)."""
    reader = NuScenesReader(dataroot, version)
    return reader.rig if sample_token is None else reader.rig_of(sample_token)
