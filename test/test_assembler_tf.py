"""FrameAssembler and TF that comes late: a set waits (message time) for a camera's transform, as tf2_ros's
MessageFilter waits, then is decided as before; sets leave in order; and a camera without a usable CameraInfo
says why (issue 22 items 5 and 11a)."""

from __future__ import annotations

import numpy as np

from surround_depth_ros.base.geometry import quaternion_to_matrix, rpy_to_matrix
from surround_depth_ros.core.assembler import FrameAssembler, Intrinsics
from surround_depth_ros.core.transforms import TransformBatch

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
PERIOD = 100 * MS
LAG_B = 5 * MS  # CAM_B fires 5 ms after the anchor
WIDTH, HEIGHT = 32, 24
IMAGE = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
K = np.array([[20.0, 0.0, 16.0], [0.0, 20.0, 12.0], [0.0, 0.0, 1.0]])
Q_MOUNT_CAM = [0.5, -0.5, 0.5, -0.5]  # an optical frame (z forward) on the mount's x axis
R_MOUNT_CAM = quaternion_to_matrix(*Q_MOUNT_CAM)


def _batch(parent: str, child: str, stamp: int, yaw: float = 0.0) -> TransformBatch:
    q = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    return TransformBatch([parent], [child], np.array([stamp], np.int64), np.array([q]), np.array([[1.0, 0.0, 2.0]]))


def _assembler(tf_wait_s: float) -> FrameAssembler:
    """CAM_A on base_link (static); CAM_B on a pan mount whose base_link -> mount comes on /tf at its image stamps."""
    assembler = FrameAssembler(
        ["CAM_A", "CAM_B"], tf_wait_s=tf_wait_s, window_s=0.05, wait_s=0.2, missing_camera_policy="partial"
    )
    for name in ("CAM_A", "CAM_B"):
        assembler.set_intrinsics(name, Intrinsics(K, WIDTH, HEIGHT, name.lower()))
    assembler.add_transforms(_batch("base_link", "cam_a", 0), static=True)
    mount = TransformBatch(["mount"], ["cam_b"], np.zeros(1, np.int64), np.array([Q_MOUNT_CAM]), np.zeros((1, 3)))
    assembler.add_transforms(mount, static=True)
    return assembler


def _frame(assembler: FrameAssembler, k: int, tf: bool = True) -> list:
    """Frame k's two images, then (when `tf`) the mount's transform at CAM_B's stamp: it comes after the images."""
    stamp = T0 + k * PERIOD
    assembler.add_image("CAM_A", stamp, "cam_a", IMAGE)
    assembler.add_image("CAM_B", stamp + LAG_B, "cam_b", IMAGE)
    sets = assembler.poll()
    if tf:
        assembler.add_transforms(_batch("base_link", "mount", stamp + LAG_B, yaw=0.01 * k), static=False)
        sets += assembler.poll()
    return sets


def test_a_camera_whose_transform_comes_just_after_its_image_is_in_the_set():
    """Decided at once, CAM_B missed every set whose transform had not come yet ("extrapolation into the future");
    held for tf_wait_s, it is in every set, with the transform at its own stamp."""
    eager, waiting = _assembler(0.0), _assembler(0.1)
    eager_sets = [s for k in range(12) for s in _frame(eager, k)]
    waiting_sets = [s for k in range(12) for s in _frame(waiting, k)]
    lacking = [s for s in eager_sets if "CAM_B" in s.left_out]
    assert lacking and all("extrapolation into the future" in s.left_out["CAM_B"] for s in lacking)
    assert len(waiting_sets) >= 10
    anchors = [s.frame_set.anchor_stamp_ns for s in waiting_sets]
    assert anchors == sorted(anchors) and len(set(anchors)) == len(anchors)  # sets leave in order, once
    for assembled in waiting_sets:
        assert assembled.frame_set.rig.camera_names == ["CAM_A", "CAM_B"], assembled.left_out
        k = (assembled.frame_set.anchor_stamp_ns - T0) // PERIOD
        T_base_cam = assembled.frame_set.rig.cameras[1].T_base_cam
        np.testing.assert_allclose(T_base_cam[:3, :3], rpy_to_matrix(0, 0, 0.01 * k) @ R_MOUNT_CAM, atol=1e-12)


def test_a_set_waits_at_most_tf_wait_s_of_message_time_then_is_decided_as_before():
    """The mount's /tf stops: each set waits until message time passes CAM_B's stamp + tf_wait_s, then goes
    without CAM_B, saying how long it waited; the sets still leave in order."""
    assembler = _assembler(0.1)
    sets = [s for k in range(6) for s in _frame(assembler, k)]
    last_with_tf = max(s.frame_set.anchor_stamp_ns for s in sets)
    released_after: dict[int, int] = {}
    for k in range(6, 12):
        for assembled in _frame(assembler, k, tf=False):
            released_after[assembled.frame_set.anchor_stamp_ns] = k
            sets.append(assembled)
    late = [s for s in sets if s.frame_set.anchor_stamp_ns > last_with_tf]
    assert late and all(s.frame_set.rig.camera_names == ["CAM_A"] for s in late)
    why = late[0].left_out["CAM_B"]
    assert "extrapolation into the future" in why and "waited 0.1 s of message time" in why
    for anchor, k in released_after.items():
        assert k - (anchor - T0) // PERIOD <= 2  # message time moves 100 ms a frame: 0.1 s is two frames at most
    anchors = [s.frame_set.anchor_stamp_ns for s in sets]
    assert anchors == sorted(anchors)


def test_the_end_of_a_stream_and_a_flush_release_held_sets():
    """Message time stops with the stream: the wall-clock stall (poll with stream_stalled) or a flush decides a
    set still waiting for its transform; while it waits it is the oldest pending set."""
    for end in ("stall", "flush"):
        assembler = _assembler(0.5)
        sets = [s for k in range(5) for s in _frame(assembler, k)]
        assert _frame(assembler, 5, tf=False) == []
        assert assembler.holding() and assembler.oldest_pending_ns() == T0 + 5 * PERIOD
        released = assembler.poll(stream_stalled=True) if end == "stall" else assembler.flush()
        assert [s.frame_set.anchor_stamp_ns for s in released] == [T0 + 5 * PERIOD]
        assert "CAM_B" in released[0].left_out and not assembler.holding()
        assert all(s.frame_set.anchor_stamp_ns < T0 + 5 * PERIOD for s in sets)


def test_a_clock_jump_releases_the_held_sets_with_the_old_timeline_transforms():
    assembler = _assembler(0.5)
    for k in range(5):
        _frame(assembler, k)
    _frame(assembler, 5, tf=False)
    assert assembler.holding()
    released = []
    for k in range(3):  # the bag loops: both cameras back at the start
        stamp = T0 - 10**10 + k * PERIOD
        assembler.add_image("CAM_A", stamp, "cam_a", IMAGE)
        assembler.add_image("CAM_B", stamp + LAG_B, "cam_b", IMAGE)
        released += assembler.poll()
    assert assembler.clock_resets() >= 1
    assert released[0].frame_set.anchor_stamp_ns == T0 + 5 * PERIOD


def test_a_camera_whose_camera_infos_were_all_rejected_says_so_and_why():
    """Issue 22 item 11a: it said "no camera_info: none received yet"."""
    assembler = _assembler(0.1)
    assembler.forget_intrinsics("CAM_B", "K has fx = 0")  # the node's verdict on an invalid CameraInfo
    sets = [s for k in range(6) for s in _frame(assembler, k)]
    why = sets[-1].left_out["CAM_B"]
    assert why == (
        "camera_info rejected: every CameraInfo received since the last valid one (if any) was rejected; "
        "the latest: K has fx = 0"
    )
    assert assembler.waiting()["CAM_B"] == why
    assert assembler.stats()["left out (camera_info rejected: CAM_B)"] == len(sets)
    assembler.set_intrinsics("CAM_B", Intrinsics(K, WIDTH, HEIGHT, "cam_b"))
    assert [s.frame_set.rig.camera_names for s in _frame(assembler, 6) + _frame(assembler, 7)][-1] == ["CAM_A", "CAM_B"]
