"""PointCloud2 buffers <-> numpy structured arrays, without sensor_msgs_py (which needs a ROS distribution).

A cloud's `fields` (name, offset, datatype, count) are exactly a numpy structured dtype, so reading
a cloud is a zero-copy view of its bytes and building one is a single `tobytes()` of a structured
array. Works with rclpy and rosbags messages alike: only the PointField attributes are read.
The nuScenes radar layout (18 fields, 43 packed bytes a point) is kept verbatim so that bags and
the node preserve every radar attribute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from surround_depth_ros.sensors.frameset import PointSweep

# sensor_msgs/PointField datatype constants -> numpy scalar type
POINTFIELD_TYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int16),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int32),
    6: np.dtype(np.uint32),
    7: np.dtype(np.float32),
    8: np.dtype(np.float64),
}
_DATATYPE_OF = {dtype: code for code, dtype in POINTFIELD_TYPES.items()}

# The nuScenes radar .pcd layout (PCD v0.7: SIZE 4 4 4 1 2 4 4 4 4 4 1 1 1 1 1 1 1 1, TYPE F F F I I F ...).
NUSCENES_RADAR_DTYPE = np.dtype(
    [
        ("x", np.float32),
        ("y", np.float32),
        ("z", np.float32),
        ("dyn_prop", np.int8),
        ("id", np.int16),
        ("rcs", np.float32),
        ("vx", np.float32),
        ("vy", np.float32),
        ("vx_comp", np.float32),
        ("vy_comp", np.float32),
        ("is_quality_valid", np.int8),
        ("ambig_state", np.int8),
        ("x_rms", np.int8),
        ("y_rms", np.int8),
        ("invalid_state", np.int8),
        ("pdh0", np.int8),
        ("vx_rms", np.int8),
        ("vy_rms", np.int8),
    ]
)
XYZ = ("x", "y", "z")

# The fused depth cloud's point: 24 bytes, every float at a 4-byte-aligned offset. x y z (metres, base
# frame) and rgb (0x00RRGGBB in a FLOAT32, the PCL/RViz habit) come first so that consumers reading only
# those find the usual prefix; then the index of the camera the point comes from (uint8, followed by three
# zero bytes) and the network's confidence in [0, 1].
FUSED_CLOUD_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "rgb", "camera", "confidence"],
        "formats": [np.float32, np.float32, np.float32, np.float32, np.uint8, np.float32],
        "offsets": [0, 4, 8, 12, 16, 20],
        "itemsize": 24,
    }
)


class PointCloudError(ValueError):
    """A cloud whose fields or buffer do not describe points; the message says which field or size is wrong."""


class FieldSpec(NamedTuple):
    """One sensor_msgs/PointField, ROS-free."""

    name: str
    offset: int
    datatype: int
    count: int = 1


def dtype_from_fields(fields: Iterable[Any], point_step: int, is_bigendian: bool = False) -> np.dtype:
    """The structured dtype of a cloud's points from PointField-like objects (name, offset, datatype, count)."""
    names, formats, offsets = [], [], []
    for f in fields:
        if f.datatype not in POINTFIELD_TYPES:
            raise PointCloudError(
                f"field {f.name!r} has datatype {f.datatype}; expected a PointField constant 1..8 (INT8..FLOAT64)"
            )
        base = POINTFIELD_TYPES[f.datatype].newbyteorder(">" if is_bigendian else "<")
        names.append(f.name)
        formats.append(base if f.count == 1 else (base, (f.count,)))
        offsets.append(f.offset)
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    except ValueError as error:
        raise PointCloudError(
            f"fields {names} at offsets {offsets} do not fit point_step {point_step}: {error}"
        ) from error


def fields_from_dtype(dtype: np.dtype) -> list[FieldSpec]:
    """PointField descriptions of a structured dtype (little-endian scalar fields or fixed-size sub-arrays)."""
    specs = []
    for name in dtype.names or ():
        field_dtype, offset = dtype.fields[name][:2]
        base, count = (field_dtype.base, int(np.prod(field_dtype.shape))) if field_dtype.shape else (field_dtype, 1)
        code = _DATATYPE_OF.get(base.newbyteorder("<"))
        if code is None:
            raise PointCloudError(
                f"field {name!r} has dtype {base}; PointCloud2 holds only int8/16/32, uint8/16/32, float32/64"
            )
        specs.append(FieldSpec(name, int(offset), code, count))
    return specs


def cloud_to_array(
    fields: Sequence[Any],
    point_step: int,
    width: int,
    height: int,
    row_step: int,
    data: bytes | memoryview | np.ndarray,
    is_bigendian: bool = False,
) -> np.ndarray:
    """The points as a flat structured array: a read-only view into `data` (no copy)."""
    dtype = dtype_from_fields(fields, point_step, is_bigendian)
    buffer = np.frombuffer(data, dtype=np.uint8)
    count = width * height
    if row_step < width * point_step:
        raise PointCloudError(f"row_step {row_step} is smaller than width {width} x point_step {point_step}")
    needed = row_step * (height - 1) + width * point_step if count else 0
    if buffer.size < needed:
        raise PointCloudError(f"{width}x{height} points need {needed} bytes, the cloud holds {buffer.size}")
    if row_step == width * point_step or height <= 1:
        return buffer[: count * point_step].view(dtype)
    rows = np.lib.stride_tricks.as_strided(
        buffer, shape=(height, width * point_step), strides=(row_step, 1), writeable=False
    )
    return np.ascontiguousarray(rows).reshape(-1).view(dtype)


def array_to_cloud(points: np.ndarray) -> tuple[list[FieldSpec], int, memoryview]:
    """(fields, point_step, data) of a structured array; `data` views its bytes (copied only if not contiguous)."""
    if points.dtype.names is None:
        raise PointCloudError(f"expected a structured array with named fields, got dtype {points.dtype}")
    return fields_from_dtype(points.dtype), points.dtype.itemsize, memoryview(np.ascontiguousarray(points)).cast("B")


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours as uint32 0x00RRGGBB, the packing rviz and PCL read from an `rgb`/`rgba` field."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 2 or rgb.shape[1] != 3:
        raise PointCloudError(f"expected (N, 3) uint8 colours, got {rgb.dtype} {rgb.shape}")
    c = rgb.astype(np.uint32)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """The same packing reinterpreted as float32, for clouds whose `rgb` field is FLOAT32 (the PCL habit)."""
    return pack_rgb(rgb).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours from a packed `rgb` column (uint32 or float32 holding 0x00RRGGBB)."""
    packed = np.asarray(packed)
    if packed.dtype.itemsize != 4:
        raise PointCloudError(f"a packed rgb field is 4 bytes (float32 or uint32), got {packed.dtype}")
    value = packed.view(np.uint32)
    return np.stack([(value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF], axis=-1).astype(np.uint8)


def _column_type(name: str, column: np.ndarray) -> np.dtype:
    """PointField type of a sweep column: the nuScenes radar type for its names (integer ones only when they hold
    the values exactly: a float `id` of small integers becomes int16), otherwise a type of its own."""
    if name in NUSCENES_RADAR_DTYPE.names:
        radar_type = NUSCENES_RADAR_DTYPE.fields[name][0]
        if radar_type.kind == "f" and column.dtype.kind in "fiub":
            return radar_type
        with np.errstate(invalid="ignore", over="ignore"):
            if np.array_equal(column.astype(radar_type), column):
                return radar_type
    dtype = column.dtype
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype.newbyteorder("<") in _DATATYPE_OF:
        return dtype.newbyteorder("<")
    if dtype.kind in "iu" and (not column.size or (column.min() >= -(2**31) and column.max() < 2**31)):
        return np.dtype(np.int32)  # e.g. int64 ids, which PointField cannot hold
    raise PointCloudError(f"field {name!r} of dtype {dtype} has no PointField type (int8..int32, float32/64)")


def sweep_to_array(sweep: PointSweep) -> np.ndarray:
    """A sweep as a packed structured array: x y z float32, then every field in order (nuScenes radar types kept)."""
    columns = {name: np.asarray(column) for name, column in sweep.fields.items()}
    clash = [name for name in XYZ if name in columns]
    if clash:
        raise PointCloudError(f"{sweep.sensor}: fields {clash} clash with the point coordinates x y z")
    dtype = np.dtype([(n, np.float32) for n in XYZ] + [(n, _column_type(n, c)) for n, c in columns.items()])
    array = np.empty(len(sweep), dtype=dtype)
    for axis, name in enumerate(XYZ):
        array[name] = sweep.points[:, axis]
    for name, column in columns.items():
        array[name] = column
    return array


def sweep_from_array(
    sensor: str,
    stamp_ns: int,
    points: np.ndarray,
    T_world_base: np.ndarray | None = None,
    T_base_sensor: np.ndarray | None = None,
) -> PointSweep:
    """A sweep from a cloud's structured array: x y z become `points`, every other field a column (views)."""
    names = points.dtype.names or ()
    missing = [n for n in XYZ if n not in names]
    if missing:
        raise PointCloudError(f"{sensor}: the cloud has fields {list(names)}, missing {missing}")
    xyz = np.stack([points[n] for n in XYZ], axis=-1).astype(np.float32, copy=False)
    fields = {n: points[n] for n in names if n not in XYZ}
    return PointSweep(sensor, int(stamp_ns), xyz, fields, T_world_base, T_base_sensor)
