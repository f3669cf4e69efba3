"""TransformBuffer on plain 4x4 matrices and whole TF messages: chains, interpolation, static vs dynamic, clear
errors, tf2's input checks, bounded cost on 10,000-frame trees, and tf2's own test cases (ros2/geometry2
tf2/test/simple_tf2_core.cpp, test_tf2/test/buffer_core_test.cpp and test_static_publisher.cpp) rewritten here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surround_depth_ros.base.geometry import (
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rpy_to_matrix,
)
from surround_depth_ros.core.transforms import (
    FRAME_LIMIT,
    INVALID_FRAME,
    MADE_STATIC,
    MAX_FRAMES,
    NOT_FINITE,
    NOT_UNIT,
    STATIC_ON_TF,
    BackwardExtrapolationError,
    DisconnectedFramesError,
    ExtrapolationError,
    ForwardExtrapolationError,
    TransformBatch,
    TransformBuffer,
    UnknownFrameError,
    slerp,
)

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
    np.testing.assert_allclose(tf.lookup("base_link", "cam_front", 10**6 * S), T_BASE_CAM, atol=1e-12)
    assert tf.can_transform("odom", "base_link", 7 * S) and not tf.can_transform("odom", "base_link", 6 * S)
    warning = tf.set_transform("odom", "base_link", pose([0.0, 0.0, 0.0]), stamp_ns=5 * S)
    assert "older than the cache" in warning and "call clear()" in warning
    tf.clear()  # the clock jumped back: dynamic history goes, static extrinsics stay
    assert tf.frames() == ["base_link", "cam_front"]
    tf.set_transform("odom", "base_link", pose([0.0, 0.0, 0.0]), stamp_ns=5 * S)
    np.testing.assert_allclose(tf.lookup("odom", "cam_front"), T_BASE_CAM, atol=1e-12)


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
    np.testing.assert_allclose(rig_tree.lookup("base_link", "cam_front_optical"), moved @ T_CAM_OPTICAL, atol=1e-12)
    rig_tree.set_transform("odom", "base_link", np.eye(4), stamp_ns=S)
    assert rig_tree.version == version + 2
    rig_tree.clear()
    assert rig_tree.version == version + 3


def test_reparenting_replaces_the_edge_and_warns(rig_tree):
    warning = rig_tree.set_transform("cam_front_left", "radar_front", np.eye(4), static=True)
    assert "'radar_front' now hangs below 'cam_front_left'" in warning and "was below 'base_link'" in warning
    np.testing.assert_allclose(rig_tree.lookup("base_link", "radar_front"), T_BASE_CAM_LEFT, atol=1e-12)
    assert rig_tree.set_transform("base_link", "cam_front_right", np.eye(4), static=True) is None


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


# --------------------------------------------------------------------------- whole messages (set_transforms)


def batch(*transforms) -> TransformBatch:
    """A TFMessage's arrays from (parent, child, T or (quaternion wxyz, translation), stamp_ns) tuples."""
    parents, children, rotations, translations, stamps = [], [], [], [], []
    for parent, child, T, stamp in transforms:
        q, t = (matrix_to_quaternion(T[:3, :3]), T[:3, 3]) if isinstance(T, np.ndarray) else T
        parents.append(parent), children.append(child), stamps.append(stamp)
        rotations.append(q), translations.append(t)
    return TransformBatch(parents, children, np.array(stamps, np.int64), np.array(rotations), np.array(translations))


def test_a_static_edge_also_sent_on_tf_stays_static_when_tf_stops(rig_tree):
    """Issue 22 item 6: a static edge sent once on /tf (here with a quaternion a little off unit length) used to
    turn dynamic, and the camera dropped out as soon as /tf stopped. tf2 in ROS 2 lets the latest message decide
    an edge's kind (so does it lose the camera); here /tf_static decides: /tf only updates the value."""
    moved = pose([1.72, 0.02, 1.51], (0.0, 2.0, 1.0))
    q = 1.002 * np.array(matrix_to_quaternion(moved[:3, :3]))  # squared norm 1.004: within tf2's tolerance
    report = rig_tree.set_transforms(batch(("base_link", "cam_front", (q, moved[:3, 3]), 50 * S)), static=False)
    assert report.stored == 1 and report.counts == {STATIC_ON_TF: 1} and "stays static" in report.first[STATIC_ON_TF]
    for stamp in (0, 50 * S, 10**6 * S, None):  # long after /tf stopped, and before it came
        np.testing.assert_allclose(
            rig_tree.lookup("base_link", "cam_front_optical", stamp), moved @ T_CAM_OPTICAL, atol=1e-12
        )
    rig_tree.clear()  # a clock reset drops dynamic history only: this edge is static
    np.testing.assert_allclose(rig_tree.lookup("base_link", "cam_front", 7 * S), moved, atol=1e-12)


def test_a_dynamic_edge_sent_on_tf_static_turns_static():
    """tf2's LookUp_Static_Transfrom_Fail (simple_tf2_core.cpp): dynamic first, then static: it holds at any time."""
    tf = TransformBuffer()
    tf.set_transforms(batch(("foo", "bar", np.eye(4), 1 * S)))
    assert not tf.can_transform("foo", "bar", 2 * S)
    report = tf.set_transforms(batch(("foo", "bar", np.eye(4), 1 * S)), static=True)
    assert report.counts == {MADE_STATIC: 1}
    assert tf.can_transform("foo", "bar", 2 * S)


def test_leading_slashes_are_stripped_as_tf2_strips_them():
    """tf2's setTransform strips one leading '/' from both frame ids and refuses a frame id that is only '/'
    (NoInsertWithNoFrameID, NoInsertWithNoParentID); a lookup strips it as tf2_ros's MessageFilter does."""
    tf = TransformBuffer()
    report = tf.set_transforms(batch(("/base_link", "/cam", T_BASE_CAM, 0), ("cam", "/cam_optical", T_CAM_OPTICAL, 0)))
    assert report.stored == 2 and tf.frames() == ["base_link", "cam", "cam_optical"]
    np.testing.assert_allclose(tf.lookup("base_link", "/cam_optical"), T_BASE_CAM @ T_CAM_OPTICAL, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("/base_link", "cam"), T_BASE_CAM, atol=1e-12)
    report = tf.set_transforms(batch(("base_link", "/", np.eye(4), 0), ("/", "x", np.eye(4), 0)), static=True)
    assert report.stored == 0 and report.counts == {INVALID_FRAME: 2}
    assert tf.set_transform("/base_link", "cam2", np.eye(4), static=True) is None
    assert tf.frames() == ["base_link", "cam", "cam2", "cam_optical"]


def test_quaternions_are_checked_with_tf2s_tolerance_then_normalised():
    """tf2 refuses a quaternion whose squared norm is 0.01 or more off 1 (setTransformInvalidQuaternion: all zero),
    and a NaN anywhere (NoInsertWithNan), a transform from a frame to itself (NoInsertOnSelfTransform)."""
    tf = TransformBuffer()
    about_z = np.array([np.cos(0.3), 0.0, 0.0, np.sin(0.3)])
    kept = [np.sqrt(1.0099), np.sqrt(0.9901)]
    refused = [np.sqrt(1.0101), np.sqrt(0.9899), 0.0]
    message = batch(
        *[("base", f"kept{i}", (scale * about_z, [1.0, 2.0, 3.0]), S) for i, scale in enumerate(kept)],
        *[("base", f"refused{i}", (scale * about_z, [1.0, 2.0, 3.0]), S) for i, scale in enumerate(refused)],
        ("base", "nan", ([1.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]), S),
        ("base", "inf", ([np.inf, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), S),
        ("base", "base", (about_z, [0.0, 0.0, 0.0]), S),
    )
    report = tf.set_transforms(message)
    assert report.stored == 2 and report.counts == {NOT_UNIT: 3, NOT_FINITE: 2, INVALID_FRAME: 1}
    assert "squared norm 1.0101, not within 0.01 of 1" in report.first[NOT_UNIT]
    assert report.first[INVALID_FRAME] == "a transform needs two different, non-empty frame names, got 'base' -> 'base'"
    assert tf.frames() == ["base", "kept0", "kept1"]
    for child in ("kept0", "kept1"):
        T = tf.lookup("base", child, S)
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)  # normalised
        np.testing.assert_allclose(T[:3, :3], quaternion_to_matrix(*about_z), atol=1e-12)


def test_the_frame_limit_refuses_new_frames_and_keeps_serving_the_known_ones():
    tf = TransformBuffer(max_frames=10)
    report = tf.set_transforms(batch(*[("base_link", f"w{i}", pose([i, 0.0, 0.0]), S) for i in range(20)]))
    assert report.stored == 9 and report.counts == {FRAME_LIMIT: 11}  # base_link and w0..w8
    assert report.first[FRAME_LIMIT] == "transform 'base_link' -> 'w9' would add frames beyond the limit of 10"
    report = tf.set_transforms(batch(*[("base_link", f"w{i}", pose([i, 1.0, 0.0]), 2 * S) for i in range(20)]))
    assert report.stored == 9 and report.ignored() == {FRAME_LIMIT: 11}
    np.testing.assert_allclose(tf.lookup("base_link", "w3", 2 * S)[:3, 3], [3.0, 1.0, 0.0])
    tf.clear()  # dynamic frames gone: room again
    assert tf.set_transforms(batch(("base_link", "w15", np.eye(4), 3 * S))).stored == 1


def _chain(n: int, stamp: int = 0, leaf_first: bool = False) -> TransformBatch:
    edges = [(f"f{i}", f"f{i + 1}", ([1.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0]), stamp) for i in range(n)]
    return batch(*(edges[::-1] if leaf_first else edges))


def _wide(n: int, stamp: int) -> TransformBatch:
    return batch(*[("base_link", f"w{i}", ([1.0, 0.0, 0.0, 0.0], [0.0, 0.1 * i, 0.0]), stamp) for i in range(n)])


class _CountingEdges(dict):
    """The buffer's child -> edge map, counting every read: the steps of every walk up the tree."""

    reads = 0

    def __getitem__(self, key):  # noqa: ANN204
        self.reads += 1
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.reads += 1
        return super().__contains__(key)

    def get(self, key, default=None):  # noqa: ANN201
        self.reads += 1
        return super().get(key, default)


def _reads_per_message(messages: list[TransformBatch], static: bool) -> list[int]:
    """Edge-map reads of each message stored in turn in a buffer without a frame limit."""
    tf = TransformBuffer(max_frames=100_000)
    tf._edges = edges = _CountingEdges()
    counts = []
    for message in messages:
        before = edges.reads
        tf.set_transforms(message, static)
        counts.append(edges.reads - before)
    return counts


@pytest.mark.parametrize("leaf_first", [False, True])
def test_a_deep_static_chain_costs_a_bounded_amount_per_transform(leaf_first):
    """Issue 22 item 4: every insert walked all ancestors (a loop check), so a 10,000-frame chain on /tf_static
    cost seconds, quadratic in its length, and the latched message killed every respawn. Counted, not timed:
    the tree is walked a bounded number of steps per transform, the first time and when re-sent."""
    small = _reads_per_message([_chain(2_000, leaf_first=leaf_first)] * 2, static=True)
    large = _reads_per_message([_chain(10_000, leaf_first=leaf_first)] * 2, static=True)
    assert max(large) <= 3 * 10_000
    for a, b in zip(small, large, strict=True):
        assert b <= 5 * a * 1.2  # five times the transforms: five times the work (quadratic would be 25)


def test_a_wide_dynamic_tree_costs_a_bounded_amount_per_transform():
    small = _reads_per_message([_wide(2_000, k * S // 2) for k in range(3)], static=False)
    large = _reads_per_message([_wide(10_000, k * S // 2) for k in range(3)], static=False)
    assert max(large) <= 3 * 10_000
    for a, b in zip(small, large, strict=True):
        assert b <= 5 * a * 1.2


def test_a_10000_frame_chain_past_the_default_frame_limit_is_refused_by_name():
    tf = TransformBuffer()
    report = tf.set_transforms(_chain(10_000), static=True)
    assert report.stored == MAX_FRAMES - 1 and report.ignored() == {FRAME_LIMIT: 10_000 - MAX_FRAMES + 1}
    np.testing.assert_allclose(tf.lookup("f0", f"f{MAX_FRAMES - 1}")[0, 3], 0.1 * (MAX_FRAMES - 1))
    with pytest.raises(UnknownFrameError, match=rf"'f{MAX_FRAMES}' is unknown; known frames: \[.*\] and 980 more"):
        tf.lookup("f0", f"f{MAX_FRAMES}")


# --------------------------------------------------------------------------- tf2's reference cases, ported


def _tree(edges: dict[str, tuple[str, float, float]], stamp: int, spacing: int = 0) -> TransformBuffer:
    """tf2's test trees (test_tf2/test/buffer_core_test.cpp `setupTree`): child -> (parent, dx, dy), no rotation,
    as two equal samples `spacing` apart around `stamp` (a lookup at `stamp` interpolates) or one static value."""
    tf = TransformBuffer()
    for child, (parent, dx, dy) in edges.items():
        for t in {stamp - spacing // 2, stamp + spacing // 2} if spacing else {stamp}:
            tf.set_transform(parent, child, pose([dx, dy, 0.0]), stamp_ns=t, static=not spacing)
    return tf


I_TREE = {"b": ("a", 1.0, 0.0), "c": ("b", 1.0, 0.0)}
Y_TREE = {**I_TREE, "d": ("b", 0.0, 1.0), "e": ("d", 0.0, 1.0)}
V_TREE = {**I_TREE, "f": ("a", 0.0, 1.0), "g": ("f", 0.0, 1.0)}


@pytest.mark.parametrize("spacing", [0, S // 1000, S // 10, S])
@pytest.mark.parametrize(
    ("tree", "target", "source", "xy"),
    [
        (I_TREE, "a", "c", (2, 0)),
        (I_TREE, "c", "a", (-2, 0)),
        (I_TREE, "b", "c", (1, 0)),
        (Y_TREE, "c", "e", (-1, 2)),
        (Y_TREE, "e", "c", (1, -2)),
        (Y_TREE, "a", "e", (1, 2)),
        (V_TREE, "c", "g", (-2, 2)),
        (V_TREE, "g", "b", (1, -2)),
        (V_TREE, "f", "c", (2, -1)),
    ],
)
def test_tf2_i_y_and_v_configurations(tree, target, source, xy, spacing):
    """tf2's i, y and v configurations: translations add up along the chain, through the common ancestor."""
    tf = _tree(tree, 10 * S, spacing)
    np.testing.assert_allclose(tf.lookup(target, source, 10 * S), pose([*xy, 0.0]), atol=1e-9)


@pytest.mark.parametrize("spacing", [0, S // 1000, S])
def test_tf2_ring_of_45_degree_turns(spacing):
    """tf2's ring_45 configuration: eight edges, each a 45-degree turn along the unit circle, close the circle."""
    frames = "abcdefghi"
    edge = make_transform(rpy_to_matrix(0.0, 0.0, np.pi / 4), [np.sqrt(2) / 2 - 1, np.sqrt(2) / 2, 0.0])
    tf = TransformBuffer()
    for parent, child in zip(frames, frames[1:], strict=False):
        for t in {10 * S - spacing // 2, 10 * S + spacing // 2} if spacing else {0}:
            tf.set_transform(parent, child, edge, stamp_ns=t, static=not spacing)
    np.testing.assert_allclose(tf.lookup("a", "i", 10 * S), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(tf.lookup("i", "a", 10 * S), np.eye(4), atol=1e-9)
    for parent, child in zip(frames, frames[1:], strict=False):
        np.testing.assert_allclose(tf.lookup(parent, child, 10 * S), edge, atol=1e-9)
        back = tf.lookup(child, parent, 10 * S)
        np.testing.assert_allclose(back[:2, 3], [np.sqrt(2) / 2 - 1, -np.sqrt(2) / 2], atol=1e-9)
    np.testing.assert_allclose(tf.lookup("c", "g", 10 * S)[:3, :3], rpy_to_matrix(0, 0, np.pi), atol=1e-9)


def test_tf2_extrapolation_from_one_value_and_then_two():
    """tf2's ExtrapolationFromOneValue and TransformException_Backward_Forward: one sample answers its own time
    only; a second brackets the times between; before the first is the past, after the last the future."""
    tf = TransformBuffer()
    tf.set_transform("parent", "a", np.eye(4), stamp_ns=1000)
    tf.set_transform("parent's parent", "parent", np.eye(4), stamp_ns=1000)
    assert tf.can_transform("parent", "a", 1000)
    with pytest.raises(BackwardExtrapolationError):
        tf.lookup("parent", "a", 10)
    with pytest.raises(ForwardExtrapolationError, match="into the future"):
        tf.lookup("parent", "a", 100_000)
    for stamp in (1, 10_000):
        assert not tf.can_transform("parent's parent", "a", stamp)
    tf.set_transform("parent", "a", np.eye(4), stamp_ns=20_000)
    assert tf.can_transform("parent", "a", 10_000)


def test_tf2_no_extrapolation_above_the_common_parent():
    """tf2's NoExtrapolationExceptionFromParent: a to b through their common parent needs no edge above it."""
    tf = TransformBuffer(cache_s=1e-3)
    for stamp in (1000, 10_000):
        tf.set_transform("parent", "a", np.eye(4), stamp_ns=stamp)
        tf.set_transform("parent", "b", np.eye(4), stamp_ns=stamp)
    tf.set_transform("grandparent", "parent", np.eye(4), stamp_ns=10**9)  # far from 2000
    np.testing.assert_allclose(tf.lookup("b", "a", 2000), np.eye(4))


def test_tf2_latest_common_time():
    """tf2's getLatestCommonTime: without a time, the chain is taken at the latest time all its dynamic edges have,
    counting only the edges between the two frames."""
    tf = TransformBuffer()
    tf.set_transform("parent", "a", pose([0.0, 0.0, 0.0]), stamp_ns=1000)
    tf.set_transform("grandparent", "parent", pose([5.0, 0.0, 0.0]), stamp_ns=2000)
    with pytest.raises(ExtrapolationError):  # 'a' has data at 1000 only, 'parent' at 2000 only
        tf.lookup("grandparent", "a")
    tf.set_transform("parent", "a", pose([0.0, 10.0, 0.0]), stamp_ns=3000)
    np.testing.assert_allclose(tf.lookup("grandparent", "a")[:3, 3], [5.0, 5.0, 0.0])  # at 2000
    tf.set_transform("parent", "b", pose([0.0, 0.0, 1.0]), stamp_ns=2000)
    tf.set_transform("parent", "b", pose([0.0, 0.0, 3.0]), stamp_ns=4000)
    np.testing.assert_allclose(tf.lookup("b", "a")[:3, 3], [0.0, 10.0, -2.0])  # at 3000: 'parent' is common


def test_tf2_repeated_times_replace_the_sample():
    """tf2's RepeatedTimes: a second sample at the same time replaces the first."""
    tf = TransformBuffer()
    tf.set_transform("parent", "b", pose([1.0, 0.0, 0.0]), stamp_ns=4000)
    tf.set_transform("parent", "b", pose([1.0, 1.0, 0.0], (0.0, 0.0, 30.0)), stamp_ns=4000)
    np.testing.assert_allclose(tf.lookup("parent", "b", 4000), pose([1.0, 1.0, 0.0], (0.0, 0.0, 30.0)), atol=1e-12)


def test_tf2_static_publisher_a_to_d_through_one_dynamic_edge():
    """tf2_ros's StaticTransformPublisher a_d_different_times: a static chain a -> b -> c and one sample of c -> d
    at 10 s: a -> d exists at 10 s and as the latest, not at 1 s nor at 1000 s; a -> c at any time."""
    tf = TransformBuffer()
    tf.set_transforms(batch(("a", "b", np.eye(4), 0), ("b", "c", np.eye(4), 0)), static=True)
    tf.set_transforms(batch(("c", "d", np.eye(4), 10 * S)))
    assert all(tf.can_transform("a", "c", t * S) for t in (0, 100, 1000))
    assert tf.can_transform("a", "d") and tf.can_transform("a", "d", 10 * S)
    assert not tf.can_transform("a", "d", 1 * S) and not tf.can_transform("a", "d", 1000 * S)
