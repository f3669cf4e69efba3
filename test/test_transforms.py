"""TransformBuffer on plain 4x4 matrices: chains, interpolation, static vs dynamic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surround_depth_ros.core.transforms import (
    DisconnectedFramesError,
    ExtrapolationError,
    TransformBuffer,
    UnknownFrameError,
    slerp,
)
from surround_depth_ros.geometry import invert_transform, make_transform, quaternion_to_matrix, rpy_to_matrix

S = 1_000_000_000


def pose(translation, rpy_deg=(0.0, 0.0, 0.0)) -> np.ndarray:
    return make_transform(rpy_to_matrix(*np.radians(rpy_deg)), translation)


T_BASE_CAM = pose([1.70, 0.02, 1.51], (0.0, 2.0, 1.0))
T_CAM_OPTICAL = pose([0.0, 0.0, 0.0], (-90.0, 0.0, -90.0))  # REP 103 optical frame
T_BASE_CAM_LEFT = pose([1.52, 0.49, 1.51], (0.0, 0.0, 55.0))
T_CAMLEFT_OPTICAL = pose([0.01, 0.0, 0.0], (-90.0, 0.0, -90.0))
T_BASE_RADAR = pose([3.41, 0.0, 0.5], (0.0, 0.0, 0.2))


@pytest.fixture
def rig_tree() -> TransformBuffer:
    """base_link with two camera branches (body frame -> optical frame) and a radar, all static."""
    tf = TransformBuffer()
    tf.set_transform("base_link", "cam_front", T_BASE_CAM, static=True)
    tf.set_transform("cam_front", "cam_front_optical", T_CAM_OPTICAL, static=True)
    tf.set_transform("base_link", "cam_front_left", T_BASE_CAM_LEFT, static=True)
    tf.set_transform("cam_front_left", "cam_front_left_optical", T_CAMLEFT_OPTICAL, static=True)
    tf.set_transform("base_link", "radar_front", T_BASE_RADAR, static=True)
    return tf


def test_a_chain_through_an_intermediate_frame_is_the_product_of_its_edges(rig_tree):
    T = rig_tree.lookup("base_link", "cam_front_optical")
    np.testing.assert_allclose(T, T_BASE_CAM @ T_CAM_OPTICAL, atol=1e-12)
    # The optical axis (z) is the camera body's x axis: forward, yawed 1 degree left, pitched 2 degrees down.
    yaw, pitch = np.radians(1.0), np.radians(2.0)
    np.testing.assert_allclose(T[:3, 2], [np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    np.testing.assert_allclose(
        rig_tree.lookup("cam_front_optical", "base_link"), invert_transform(T_BASE_CAM @ T_CAM_OPTICAL), atol=1e-12
    )
    np.testing.assert_array_equal(rig_tree.lookup("cam_front", "cam_front"), np.eye(4))


def test_between_leaves_of_different_branches(rig_tree):
    T = rig_tree.lookup("cam_front_left_optical", "radar_front")
    expected = invert_transform(T_BASE_CAM_LEFT @ T_CAMLEFT_OPTICAL) @ T_BASE_RADAR
    np.testing.assert_allclose(T, expected, atol=1e-12)
    # A point 10 m ahead of the radar, seen from the left camera, maps back to the same base point.
    point_radar = np.array([10.0, 0.0, 0.0, 1.0])
    point_cam = T @ point_radar
    np.testing.assert_allclose(
        (T_BASE_CAM_LEFT @ T_CAMLEFT_OPTICAL @ point_cam)[:3], (T_BASE_RADAR @ point_radar)[:3], atol=1e-12
    )


def test_dynamic_edges_interpolate_translation_linearly_and_rotation_by_slerp():
    tf = TransformBuffer()
    tf.set_transform("odom", "base_link", pose([0.0, 0.0, 0.0], (0, 0, 0)), stamp_ns=10 * S)
    tf.set_transform("odom", "base_link", pose([2.0, 4.0, 0.0], (0, 0, 90)), stamp_ns=11 * S)
    tf.set_transform("base_link", "cam_front", T_BASE_CAM, static=True)
    halfway, quarter = tf.lookup("odom", "base_link", 10 * S + S // 2), tf.lookup("odom", "base_link", 10 * S + S // 4)
    np.testing.assert_allclose(halfway, pose([1.0, 2.0, 0.0], (0, 0, 45)), atol=1e-12)
    np.testing.assert_allclose(quarter, pose([0.5, 1.0, 0.0], (0, 0, 22.5)), atol=1e-12)
    # The static edge holds at any time; the chain evaluates the dynamic edge at the asked time.
    np.testing.assert_allclose(
        tf.lookup("odom", "cam_front", 10 * S + S // 2), pose([1.0, 2.0, 0.0], (0, 0, 45)) @ T_BASE_CAM, atol=1e-12
    )
    np.testing.assert_allclose(tf.lookup("odom", "base_link"), pose([2.0, 4.0, 0.0], (0, 0, 90)), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 11 * S), pose([2.0, 4.0, 0.0], (0, 0, 90)), atol=1e-12)


def test_latest_lookup_uses_the_latest_time_every_dynamic_edge_has():
    tf = TransformBuffer()
    for t in range(5):
        tf.set_transform("map", "odom", pose([t, 0.0, 0.0]), stamp_ns=t * S)
    for t in range(3):
        tf.set_transform("odom", "base_link", pose([0.0, 10.0 * t, 0.0]), stamp_ns=t * S)
    np.testing.assert_allclose(tf.lookup("map", "base_link")[:3, 3], [2.0, 20.0, 0.0])  # both at t = 2 s


def test_no_extrapolation_and_the_error_says_how_far():
    tf = TransformBuffer()
    tf.set_transform("odom", "base_link", pose([0.0, 0.0, 0.0]), stamp_ns=10 * S)
    tf.set_transform("odom", "base_link", pose([1.0, 0.0, 0.0]), stamp_ns=11 * S)
    with pytest.raises(ExtrapolationError, match=r"'base_link' to 'odom'.*extrapolation into the future by 0\.300 s"):
        tf.lookup("odom", "base_link", 11 * S + 300_000_000)
    with pytest.raises(ExtrapolationError, match=r"'odom' -> 'base_link' has 2 sample.*into the past by 2\.000 s"):
        tf.lookup("odom", "base_link", 8 * S)
    assert not tf.can_transform("odom", "base_link", 12 * S)
    assert tf.can_transform("odom", "base_link", 10 * S + 1)


def test_a_static_edge_is_kept_forever_and_dynamic_history_only_for_the_cache():
    tf = TransformBuffer(cache_s=2.0)
    tf.set_transform("base_link", "cam_front", T_BASE_CAM, stamp_ns=0, static=True)
    for t in range(10):
        tf.set_transform("odom", "base_link", pose([float(t), 0.0, 0.0]), stamp_ns=t * S)
    np.testing.assert_allclose(tf.lookup("base_link", "cam_front", 10**6 * S), T_BASE_CAM)
    assert tf.can_transform("odom", "base_link", 7 * S) and not tf.can_transform("odom", "base_link", 6 * S)
    warning = tf.set_transform("odom", "base_link", pose([0.0, 0.0, 0.0]), stamp_ns=5 * S)
    assert "older than the cache" in warning and "call clear()" in warning
    tf.clear()  # the clock jumped back: dynamic history goes, static extrinsics stay
    assert tf.frames() == ["base_link", "cam_front"]
    tf.set_transform("odom", "base_link", pose([0.0, 0.0, 0.0]), stamp_ns=5 * S)
    np.testing.assert_allclose(tf.lookup("odom", "cam_front"), T_BASE_CAM)


def test_unknown_and_disconnected_frames_are_named(rig_tree):
    with pytest.raises(UnknownFrameError) as error:
        rig_tree.lookup("base_link", "cam_back_optical")
    assert str(error.value) == (
        "no transform from 'cam_back_optical' to 'base_link': 'cam_back_optical' is unknown; known frames: "
        "['base_link', 'cam_front', 'cam_front_left', 'cam_front_left_optical', 'cam_front_optical', 'radar_front']"
    )
    rig_tree.set_transform("odom", "imu", pose([0.0, 0.0, 0.0]), static=True)
    with pytest.raises(DisconnectedFramesError, match="different trees \\(rooted at 'odom' and 'base_link'\\)"):
        rig_tree.lookup("cam_front_optical", "imu")
    assert not rig_tree.can_transform("cam_front_optical", "imu")
    # The missing link arrives: the two trees become one.
    rig_tree.set_transform("odom", "base_link", pose([5.0, 0.0, 0.0]), static=True)
    np.testing.assert_allclose(rig_tree.lookup("imu", "cam_front")[:3, 3], [6.70, 0.02, 1.51])


def test_version_changes_only_when_lookups_may_change(rig_tree):
    version = rig_tree.version
    rig_tree.set_transform("base_link", "cam_front", T_BASE_CAM.copy(), stamp_ns=5 * S, static=True)  # re-sent
    assert rig_tree.version == version
    moved = pose([1.80, 0.02, 1.51], (0.0, 2.0, 1.0))
    rig_tree.set_transform("base_link", "cam_front", moved, static=True)
    assert rig_tree.version == version + 1
    np.testing.assert_allclose(rig_tree.lookup("base_link", "cam_front_optical"), moved @ T_CAM_OPTICAL)
    rig_tree.set_transform("odom", "base_link", np.eye(4), stamp_ns=S)
    assert rig_tree.version == version + 2
    rig_tree.clear()
    assert rig_tree.version == version + 3


def test_reparenting_replaces_the_edge_and_warns(rig_tree, caplog):
    warning = rig_tree.set_transform("cam_front_left", "radar_front", np.eye(4), static=True)
    assert "'radar_front' now hangs below 'cam_front_left'" in warning and "was below 'base_link'" in warning
    assert warning in caplog.text
    np.testing.assert_allclose(rig_tree.lookup("base_link", "radar_front"), T_BASE_CAM_LEFT, atol=1e-12)
    assert rig_tree.set_transform("base_link", "cam_front_right", np.eye(4), static=True) is None
    warning = rig_tree.set_transform("base_link", "cam_front_right", np.eye(4), stamp_ns=S)
    assert warning == "edge 'base_link' -> 'cam_front_right' turns dynamic (it was static)"


def test_bad_transforms_are_rejected_with_the_edge_named(rig_tree):
    with pytest.raises(ValueError, match="'base_link' -> 'cam_x': not a rigid transform"):
        rig_tree.set_transform("base_link", "cam_x", np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="'base_link' -> 'cam_x': transform must have shape \\(4, 4\\)"):
        rig_tree.set_transform("base_link", "cam_x", np.eye(3))
    with pytest.raises(ValueError, match="would close a loop"):
        rig_tree.set_transform("cam_front_optical", "base_link", np.eye(4))
    with pytest.raises(ValueError, match="two different, non-empty frame names"):
        rig_tree.set_transform("base_link", "base_link", np.eye(4))


def test_slerp_keeps_unit_length_and_takes_the_short_way():
    q0 = np.array([1.0, 0.0, 0.0, 0.0])
    q1 = -np.array([np.cos(np.radians(45)), 0.0, 0.0, np.sin(np.radians(45))])  # 90 deg about z, sign flipped
    q = slerp(q0, q1, 0.5)
    np.testing.assert_allclose(abs(q @ np.array([np.cos(np.radians(22.5)), 0, 0, np.sin(np.radians(22.5))])), 1.0)
    np.testing.assert_allclose(np.linalg.norm(slerp(q0, q0 + 1e-5, 0.3)), 1.0)


unit = st.floats(-1.0, 1.0, allow_nan=False)
rigid = st.tuples(st.tuples(unit, unit, unit, unit), st.tuples(unit, unit, unit)).filter(
    lambda q_t: np.linalg.norm(q_t[0]) > 0.1
)


@settings(max_examples=60, deadline=None)
@given(
    parents=st.lists(st.integers(0, 100), min_size=1, max_size=8),
    transforms=st.lists(rigid, min_size=8, max_size=8),
    pair=st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8)),
)
def test_lookups_compose_and_invert_in_any_tree(parents, transforms, pair):
    """Random trees: lookup(a, b) @ lookup(b, a) = I and lookup(a, b) @ lookup(b, c) = lookup(a, c)."""
    tf = TransformBuffer()
    for child, (parent, (q, t)) in enumerate(zip(parents, transforms, strict=False), start=1):
        T = make_transform(quaternion_to_matrix(*q), 5.0 * np.asarray(t))
        tf.set_transform(f"f{parent % child}", f"f{child}", T, static=bool(child % 2), stamp_ns=S)
    a, b, c = (f"f{i % (len(parents) + 1)}" for i in pair)
    np.testing.assert_allclose(tf.lookup(a, b) @ tf.lookup(b, a), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(tf.lookup(a, b) @ tf.lookup(b, c), tf.lookup(a, c), atol=1e-9)
