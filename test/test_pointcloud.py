"""PointField layouts <-> numpy structured arrays, zero-copy reads, packed rgb, the nuScenes radar layout."""

from __future__ import annotations

import numpy as np
import pytest

from surround_depth_ros.sensors.frameset import PointSweep
from surround_depth_ros.sensors.pointcloud import (
    NUSCENES_RADAR_DTYPE,
    FieldSpec,
    PointCloudError,
    array_to_cloud,
    cloud_to_array,
    dtype_from_fields,
    fields_from_dtype,
    pack_rgb,
    pack_rgb_float,
    sweep_from_array,
    sweep_to_array,
    unpack_rgb,
)


def test_nuscenes_radar_layout_is_the_packed_pcd_layout():
    fields = fields_from_dtype(NUSCENES_RADAR_DTYPE)
    assert NUSCENES_RADAR_DTYPE.itemsize == 43
    assert [f.name for f in fields] == (
        "x y z dyn_prop id rcs vx vy vx_comp vy_comp is_quality_valid ambig_state x_rms y_rms invalid_state pdh0 "
        "vx_rms vy_rms"
    ).split()
    # PCD SIZE 4 4 4 1 2 4 4 4 4 4 1 1 1 1 1 1 1 1, TYPE F F F I I F F F F F I ... -> FLOAT32=7, INT8=1, INT16=3
    assert [f.datatype for f in fields] == [7, 7, 7, 1, 3, 7, 7, 7, 7, 7, 1, 1, 1, 1, 1, 1, 1, 1]
    assert [f.offset for f in fields] == [0, 4, 8, 12, 13, 15, 19, 23, 27, 31, 35, 36, 37, 38, 39, 40, 41, 42]
    assert dtype_from_fields(fields, 43) == NUSCENES_RADAR_DTYPE


def test_real_nuscenes_radar_pcd_matches_the_layout(shared_data_path):
    path = next(shared_data_path("nuscenes_radar_sample").glob("*.pcd"))
    blob = path.read_bytes()
    header, _, body = blob.partition(b"DATA binary\n")
    lines = dict(line.split(" ", 1) for line in header.decode().splitlines() if not line.startswith("#"))
    names = lines["FIELDS"].split()
    sizes = [int(s) for s in lines["SIZE"].split()]
    kinds = lines["TYPE"].split()
    assert names == list(NUSCENES_RADAR_DTYPE.names)
    for name, size, kind in zip(names, sizes, kinds, strict=True):
        dtype = NUSCENES_RADAR_DTYPE.fields[name][0]
        assert dtype.itemsize == size and dtype.kind == {"F": "f", "I": "i", "U": "u"}[kind]
    count = int(lines["POINTS"])
    assert count == 125
    points = cloud_to_array(fields_from_dtype(NUSCENES_RADAR_DTYPE), 43, count, 1, 43 * count, body)
    assert len(points) == 125 and np.shares_memory(points, np.frombuffer(body, np.uint8))
    assert np.all(np.isfinite(points["x"])) and 0 < points["x"].min() and points["x"].max() < 260  # front radar range
    assert np.all(points["z"] == 0)  # nuScenes radar is 2-D
    assert set(np.unique(points["is_quality_valid"])) <= {0, 1}
    assert len(np.unique(points["id"])) == 125


def test_read_is_zero_copy_and_build_round_trips():
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4"), ("normal", "<f8", (3,))])
    points = np.zeros(6, dtype=dtype)
    points["x"] = np.arange(6)
    points["rgb"] = pack_rgb(np.full((6, 3), [255, 128, 1], dtype=np.uint8))
    points["normal"] = np.arange(18).reshape(6, 3)
    fields, point_step, data = array_to_cloud(points)
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
        ("rgb", 12, 6, 1),
        ("normal", 16, 8, 3),
    ]
    assert point_step == 40 and len(data) == 240 and np.shares_memory(np.frombuffer(data, np.uint8), points)
    data = bytes(data)  # as a message holds it
    view = cloud_to_array(fields, point_step, 6, 1, 240, data)
    assert np.shares_memory(view, np.frombuffer(data, np.uint8)) and not view.flags.writeable
    np.testing.assert_array_equal(view, points)
    np.testing.assert_array_equal(view["normal"][5], [15, 16, 17])


def test_organized_cloud_with_row_padding():
    dtype = np.dtype([("x", "<f4"), ("intensity", "<u2")], align=True)  # itemsize 8 with padding
    grid = np.zeros((2, 3), dtype=dtype)
    grid["x"] = [[1, 2, 3], [4, 5, 6]]
    grid["intensity"] = [[10, 20, 30], [40, 50, 60]]
    rows = [grid[r].tobytes() + b"\xee" * 5 for r in range(2)]  # row_step 29 = 3 * 8 + 5 bytes of padding
    points = cloud_to_array(fields_from_dtype(dtype), 8, 3, 2, 29, b"".join(rows))
    np.testing.assert_array_equal(points["x"], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(points["intensity"], [10, 20, 30, 40, 50, 60])


def test_big_endian_cloud():
    fields = [FieldSpec("x", 0, 7), FieldSpec("id", 4, 3)]
    data = np.array([(1.5, -2), (3.25, 7)], dtype=[("x", ">f4"), ("id", ">i2")]).tobytes()
    points = cloud_to_array(fields, 6, 2, 1, 12, data, is_bigendian=True)
    np.testing.assert_array_equal(points["x"], [1.5, 3.25])
    np.testing.assert_array_equal(points["id"], [-2, 7])


def test_bad_clouds_name_what_is_wrong():
    with pytest.raises(PointCloudError, match=r"field 'weird' has datatype 9"):
        dtype_from_fields([FieldSpec("weird", 0, 9)], 4)
    with pytest.raises(PointCloudError, match=r"10x1 points need 120 bytes, the cloud holds 24"):
        cloud_to_array([FieldSpec("x", 0, 7), FieldSpec("y", 4, 7), FieldSpec("z", 8, 7)], 12, 10, 1, 120, bytes(24))
    with pytest.raises(PointCloudError, match=r"do not fit point_step 4"):
        dtype_from_fields([FieldSpec("x", 0, 7), FieldSpec("y", 4, 7)], 4)
    with pytest.raises(PointCloudError, match=r"row_step 10 is smaller"):
        cloud_to_array([FieldSpec("x", 0, 7)], 4, 3, 2, 10, bytes(40))
    with pytest.raises(PointCloudError, match=r"field 'c' has dtype complex64"):
        fields_from_dtype(np.dtype([("c", np.complex64)]))


def test_packed_rgb_uint32_and_float32():
    rgb = np.array([[255, 128, 0], [0, 0, 0], [1, 2, 3], [255, 255, 255]], dtype=np.uint8)
    packed = pack_rgb(rgb)
    assert packed.dtype == np.uint32
    assert packed.tolist() == [0x00FF8000, 0, 0x00010203, 0x00FFFFFF]
    as_float = pack_rgb_float(rgb)
    assert as_float.dtype == np.float32 and as_float.view(np.uint32).tolist() == packed.tolist()
    np.testing.assert_array_equal(unpack_rgb(packed), rgb)
    np.testing.assert_array_equal(unpack_rgb(as_float), rgb)
    with pytest.raises(PointCloudError, match=r"\(N, 3\) uint8"):
        pack_rgb(rgb.astype(np.float32))


def test_sweep_round_trip_keeps_radar_types_and_converts_others():
    rng = np.random.default_rng(3)
    n = 9
    fields = {
        "rcs": rng.normal(size=n),  # float64 in, the nuScenes type float32 out
        "dyn_prop": np.arange(n),  # int64 in -> int8
        "track": np.arange(n, dtype=np.int64) * 1000,  # unknown int64 -> int32
        "valid": np.arange(n) % 2 == 0,  # bool -> uint8
        "power": rng.normal(size=n),  # unknown float64 stays float64
    }
    sweep = PointSweep("RADAR_FRONT", 42, rng.normal(size=(n, 3)), fields)
    array = sweep_to_array(sweep)
    assert [array.dtype[name] for name in array.dtype.names] == [
        np.dtype(t) for t in ("f4", "f4", "f4", "f4", "i1", "i4", "u1", "f8")
    ]
    back = sweep_from_array("RADAR_FRONT", 42, array)
    np.testing.assert_array_equal(back.points, sweep.points)
    np.testing.assert_array_equal(back.fields["rcs"], fields["rcs"].astype(np.float32))
    np.testing.assert_array_equal(back.fields["track"], fields["track"])
    np.testing.assert_array_equal(back.fields["valid"], fields["valid"].astype(np.uint8))
    # a radar column whose values the nuScenes type cannot hold keeps a type of its own instead of wrapping
    wide = sweep_to_array(PointSweep("R", 0, np.zeros((2, 3)), {"id": np.array([3.0, 70000.0], np.float32)}))
    assert wide.dtype["id"] == np.float32 and wide["id"].tolist() == [3.0, 70000.0]
    small = sweep_to_array(PointSweep("R", 0, np.zeros((2, 3)), {"id": np.array([3.0, 7.0], np.float32)}))
    assert small.dtype["id"] == np.int16 and small["id"].tolist() == [3, 7]
    with pytest.raises(PointCloudError, match=r"field 'big' of dtype int64 has no PointField type"):
        sweep_to_array(PointSweep("R", 0, np.zeros((1, 3)), {"big": np.array([2**40])}))
    with pytest.raises(PointCloudError, match=r"clash with the point coordinates"):
        sweep_to_array(PointSweep("R", 0, np.zeros((1, 3)), {"x": np.zeros(1)}))
    with pytest.raises(PointCloudError, match=r"missing \['z'\]"):
        sweep_from_array("R", 0, np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]))
