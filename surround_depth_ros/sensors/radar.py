"""Radar input: the nuScenes PCD reader and the sparse per-camera maps the radar branch consumes.

Radar-camera depth networks (LiRCDepth, XD-RCDepth) take radar as image-aligned sparse maps
with channels depth, rcs and velocity; building them in one place keeps training (nuScenes
files) and the node (PointCloud2 sweeps) feeding the network identically.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.sensors.frameset import PointSweep
from surround_depth_ros.sensors.rig import CameraRig

RADAR_CHANNELS = ("depth", "rcs", "vx", "vy")  # the channels of a radar map, in order (the network's radar input)

# PCD TYPE letter -> numpy kind; SIZE gives the byte count.
_PCD_KINDS = {"F": "f", "I": "i", "U": "u"}


def _parse_pcd_header(data: bytes, path: Path) -> tuple[dict[str, list[str]], int]:
    """Header keywords -> values, and the byte offset where the point data starts."""
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = data.find(b"\n", offset)
        if end < 0:
            raise ValueError(f"{path}: PCD header has no DATA line (not a PCD file, or truncated)")
        line = data[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            return header, offset
        if len(header) > 64:
            raise ValueError(f"{path}: no DATA line in the first lines: not a PCD file")


def _pcd_dtype(header: dict[str, list[str]], path: Path) -> np.dtype:
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in header:
            raise ValueError(f"{path}: PCD header lacks the {key} line")
    names, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
    counts = header.get("COUNT", ["1"] * len(names))
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise ValueError(
            f"{path}: PCD header has {len(names)} FIELDS but {len(sizes)} SIZE, {len(types)} TYPE, {len(counts)} COUNT"
        )
    columns = []
    for name, size, kind, count in zip(names, sizes, types, counts, strict=True):
        if kind.upper() not in _PCD_KINDS:
            raise ValueError(f"{path}: field {name!r} has PCD TYPE {kind!r}, expected F, I or U")
        fmt = f"<{_PCD_KINDS[kind.upper()]}{int(size)}"
        columns.append((name, fmt) if int(count) == 1 else (name, fmt, (int(count),)))
    return np.dtype(columns)


def read_nuscenes_radar_pcd(
    path: str | os.PathLike, sensor: str | None = None, stamp_ns: int | None = None
) -> PointSweep:
    """Read a nuScenes radar sweep (PCD v0.7, DATA binary) into a `PointSweep` in the radar frame.

    Field layout comes from the header (FIELDS/SIZE/TYPE/COUNT); bytes after the last point are
    ignored, as nuScenes files carry some. Sensor and stamp default to what the nuScenes file
    name says (`..__RADAR_FRONT__<microseconds>.pcd`).
    """
    path = Path(path)
    data = path.read_bytes()
    header, offset = _parse_pcd_header(data, path)
    encoding = header["DATA"][0].lower() if header["DATA"] else ""
    if encoding != "binary":
        raise ValueError(f"{path}: PCD DATA is {encoding!r}; only 'binary' (as nuScenes writes radar) is supported")
    dtype = _pcd_dtype(header, path)
    if "POINTS" in header:
        count = int(header["POINTS"][0])
    else:
        count = int(header.get("WIDTH", ["0"])[0]) * int(header.get("HEIGHT", ["1"])[0])
    needed = count * dtype.itemsize
    if len(data) - offset < needed:
        raise ValueError(
            f"{path}: truncated: header announces {count} points of {dtype.itemsize} bytes ({needed} bytes), "
            f"file has {len(data) - offset} bytes after the header"
        )
    table = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    missing = [axis for axis in "xyz" if axis not in dtype.names]
    if missing:
        raise ValueError(f"{path}: PCD has no field(s) {missing}; fields are {list(dtype.names)}")
    match = re.search(r"__([A-Z0-9_]+)__(\d+)\.pcd$", path.name)
    if sensor is None:
        sensor = match.group(1) if match else path.stem
    if stamp_ns is None:
        stamp_ns = int(match.group(2)) * 1000 if match else 0
    points = np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32)
    fields = {name: np.ascontiguousarray(table[name]) for name in dtype.names if name not in ("x", "y", "z")}
    return PointSweep(sensor=sensor, stamp_ns=stamp_ns, points=points, fields=fields)


@dataclass
class RadarPoints:
    """Radar returns of one or more sweeps in the base frame at the target time."""

    points_base: np.ndarray  # (P, 3) float64
    rcs: np.ndarray  # (P,) float32
    velocity_base: np.ndarray  # (P, 2) float32: x (forward) and y (left) velocity in the target base frame

    def __len__(self) -> int:
        return len(self.points_base)


def radar_points_in_base(
    sweeps: list[PointSweep],
    rig: CameraRig,
    target_pose: np.ndarray | None = None,
    radar_extrinsics: dict[str, np.ndarray] | None = None,
) -> RadarPoints:
    """All returns of `sweeps` moved radar -> base(t_sweep) [-> world -> base(t_target)].

    With `target_pose` (T_world_base at the target time) every sweep must carry its own
    `T_world_base`, and older sweeps are compensated for ego motion. Velocities use the
    ego-motion-compensated `vx_comp`/`vy_comp` when present, else `vx`/`vy` (0 when neither),
    rotated from the radar frame into the target base frame. `radar_extrinsics` maps a sensor
    name to T_base_radar, for radars not (or differently) in the rig.
    """
    extrinsics = {radar.name: radar.T_base_radar for radar in rig.radars}
    extrinsics.update(radar_extrinsics or {})
    T_target_world = None if target_pose is None else geometry.invert_transform(np.asarray(target_pose))
    points, rcs, velocity = [np.zeros((0, 3))], [np.zeros(0, np.float32)], [np.zeros((0, 2), np.float32)]
    for sweep in sweeps:
        if sweep.sensor not in extrinsics:
            raise KeyError(
                f"radar sweep from {sweep.sensor!r} has no extrinsics: the rig has radars {rig.radar_names}; "
                "pass radar_extrinsics={name: T_base_radar}"
            )
        T = np.asarray(extrinsics[sweep.sensor], dtype=np.float64)
        if T_target_world is not None:
            if sweep.T_world_base is None:
                raise ValueError(
                    f"radar sweep from {sweep.sensor} at {sweep.stamp_ns} ns has no T_world_base, "
                    "needed to compensate ego motion to the target pose"
                )
            T = T_target_world @ np.asarray(sweep.T_world_base, dtype=np.float64) @ T
        if len(sweep) == 0:
            continue
        points.append(geometry.transform_points(T, sweep.points.astype(np.float64)))
        rcs.append(np.asarray(sweep.fields.get("rcs", np.zeros(len(sweep))), dtype=np.float32))
        vx_name, vy_name = ("vx_comp", "vy_comp") if "vx_comp" in sweep.fields else ("vx", "vy")
        v_radar = np.zeros((len(sweep), 3))
        if vx_name in sweep.fields and vy_name in sweep.fields:
            v_radar[:, 0], v_radar[:, 1] = sweep.fields[vx_name], sweep.fields[vy_name]
        velocity.append((v_radar @ T[:3, :3].T)[:, :2].astype(np.float32))
    return RadarPoints(np.concatenate(points), np.concatenate(rcs), np.concatenate(velocity))


def radar_to_maps(
    sweeps: list[PointSweep],
    rig: CameraRig,
    image_size: tuple[int, int] | None = None,
    target_pose: np.ndarray | None = None,
    radar_extrinsics: dict[str, np.ndarray] | None = None,
    max_depth: float | None = None,
) -> np.ndarray:
    """Sparse radar maps (N_cams, 4, H, W) float32 with channels `RADAR_CHANNELS`, 0 = no return.

    Every return of every sweep is projected into every camera (see `radar_points_in_base` for
    motion compensation); the nearest return wins a pixel and brings its rcs and base-frame
    velocity. `image_size` = (width, height) of the network input; the rig's size by default.
    """
    if image_size is not None:
        rig = rig.scaled(*image_size)
    width, height = rig.cameras[0].width, rig.cameras[0].height
    if any((cam.width, cam.height) != (width, height) for cam in rig.cameras):
        raise ValueError("rig cameras differ in image size; pass image_size=(width, height) for the maps")
    radar = radar_points_in_base(sweeps, rig, target_pose, radar_extrinsics)
    values = np.concatenate([radar.rcs[:, None], radar.velocity_base], axis=1)
    maps = np.zeros((len(rig.cameras), len(RADAR_CHANNELS), height, width), dtype=np.float32)
    for i, cam in enumerate(rig.cameras):
        points_cam = geometry.transform_points(geometry.invert_transform(cam.T_base_cam), radar.points_base)
        maps[i, 0], maps[i, 1:] = geometry.points_to_depth_map(
            points_cam, cam.K, width, height, max_depth=max_depth, values=values
        )
    return maps
