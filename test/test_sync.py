"""FrameSetSynchronizer on timestamps alone: which messages form which set, and every drop counted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surround_depth_ros.sync import COUNTERS, FrameSetSynchronizer

MS = 1_000_000
PERIOD = 83_333_333  # 12 Hz cameras
RADAR_PERIOD = 76_923_077  # 13 Hz radars
T0 = 1_532_402_927_612_460_000
CAMERAS = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"]
STAGGER_MS = [0, 9, 18, 27, 36, 45]  # nuScenes-like: each camera fires after the previous as the lidar sweeps
RADARS = ["RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT", "RADAR_BACK_RIGHT"]


def camera_messages(frames: int, stagger_ms=STAGGER_MS, start: int = T0, skip=()) -> list[tuple[str, int, tuple]]:
    """(camera, stamp, item) of `frames` frames in stamp order; item = (camera, frame index)."""
    messages = []
    for k in range(frames):
        for name, offset in zip(CAMERAS, stagger_ms, strict=True):
            if (name, k) not in skip:
                messages.append((name, start + k * PERIOD + round(offset * MS), (name, k)))
    return sorted(messages, key=lambda m: m[1])


def feed(sync: FrameSetSynchronizer, messages, radar: bool = False) -> list[tuple[int, object]]:
    """Add messages one by one, polling after each; returns (index of the message that completed it, set)."""
    emitted = []
    for i, (name, stamp, item) in enumerate(messages):
        (sync.add_radar if radar or name in sync.radar_names else sync.add_camera)(name, stamp, item)
        emitted += [(i, s) for s in sync.poll()]
    return emitted


def frame_of(synced) -> dict[str, int]:
    """camera -> frame index of the item it carries."""
    return {name: item[1] for name, (_, item) in synced.cameras.items()}


def drops(sync: FrameSetSynchronizer) -> dict[str, int]:
    return {k: v for k, v in sync.stats().items() if v and k not in ("accepted", "partial")}


@pytest.mark.parametrize("offsets", [None, dict(zip(CAMERAS, [s / 1000 for s in STAGGER_MS], strict=True))])
def test_staggered_rig_emits_every_frame_once_as_soon_as_complete(offsets):
    sync = FrameSetSynchronizer(CAMERAS, offsets_s=offsets)
    messages = camera_messages(40)
    emitted = feed(sync, messages)
    assert [s.anchor_stamp_ns for _, s in emitted] == [T0 + k * PERIOD for k in range(40)]
    for k, (index, synced) in enumerate(emitted):
        assert frame_of(synced) == dict.fromkeys(CAMERAS, k)
        assert list(synced.cameras) == CAMERAS and synced.missing == [] and synced.complete
        assert index == 6 * k + 5  # emitted on the arrival of its last camera, not one frame later
    assert sync.stats()["accepted"] == 40 and drops(sync) == {}
    assert all(length == 0 for length in sync.buffer_lengths().values())


def test_a_camera_firing_before_the_anchor_is_final_on_arrival_once_its_spacing_is_known():
    """CAM_FRONT_LEFT fires 8 ms before the anchor: nothing closer can come within half its 83 ms spacing."""
    sync = FrameSetSynchronizer(CAMERAS)
    emitted = feed(sync, camera_messages(20, [0, -8, 8, 15, 25, 35]))
    assert [frame_of(s) for _, s in emitted] == [dict.fromkeys(CAMERAS, k) for k in range(20)]
    assert [index for index, _ in emitted] == [6, 12] + [6 * k + 5 for k in range(2, 20)]


def test_a_lost_anchor_leaves_messages_that_do_not_steal_the_next_frames_slot():
    """Frame 3's anchor is lost; its CAM_BACK_LEFT message (38 ms before frame 4's anchor) stays unused."""
    offsets = dict(zip(CAMERAS, [s / 1000 for s in STAGGER_MS], strict=True))
    sync = FrameSetSynchronizer(CAMERAS, offsets_s=offsets)
    emitted = [s for _, s in feed(sync, camera_messages(8, skip={("CAM_FRONT", 3)}))]
    assert [frame_of(s) for s in emitted] == [dict.fromkeys(CAMERAS, k) for k in range(8) if k != 3]
    assert drops(sync) == {"out_of_window": 5, **{f"out_of_window:{name}": 1 for name in CAMERAS[1:]}}


def test_real_nuscenes_firing_pattern_with_the_front_camera_as_anchor(shared_data_path):
    from surround_depth_ros.datasets.nuscenes import CAMERA_CHANNELS, NuScenesReader

    frame = NuScenesReader(shared_data_path("nuscenes_sample"))[0]
    stamps = dict(zip(CAMERA_CHANNELS, (int(s) for s in frame.camera_stamps_ns), strict=True))
    offsets_ms = [(stamps[name] - stamps["CAM_FRONT"]) / MS for name in CAMERAS]
    assert min(offsets_ms) < 0 < max(offsets_ms) < 45  # CAM_FRONT_LEFT fires before the front camera
    sync = FrameSetSynchronizer(CAMERAS, anchor="CAM_FRONT")
    emitted = feed(sync, camera_messages(30, offsets_ms, start=stamps["CAM_FRONT"]))
    assert [frame_of(s) for _, s in emitted] == [dict.fromkeys(CAMERAS, k) for k in range(30)]
    # Once two gaps show the cameras' spacing, a camera firing before the anchor is final on arrival.
    assert [index for index, _ in emitted[3:]] == [6 * k + 5 for k in range(3, 30)]


@settings(max_examples=60, deadline=None)
@given(
    delays_ms=st.lists(st.integers(0, 60), min_size=6 * 12, max_size=6 * 12),
    jitter_ms=st.lists(st.integers(-3, 3), min_size=6 * 12, max_size=6 * 12),
)
def test_permuted_arrival_gives_the_same_sets(delays_ms, jitter_ms):
    """Any arrival order that transport delays up to 60 ms can produce (the anchor often last) -> same sets."""
    stamped = [
        (name, stamp + jitter * MS, item)
        for (name, stamp, item), jitter in zip(camera_messages(12), jitter_ms, strict=True)
    ]
    arrival = [m for _, m in sorted(zip(delays_ms, stamped, strict=True), key=lambda x: x[1][1] + x[0] * MS)]
    sync = FrameSetSynchronizer(CAMERAS)
    emitted = [s for _, s in feed(sync, arrival)] + sync.poll(now_stamp_ns=T0 + 100 * PERIOD)
    assert [frame_of(s) for s in emitted] == [dict.fromkeys(CAMERAS, k) for k in range(12)]
    assert [s.cameras[n][0] for s in emitted for n in CAMERAS] == [m[1] for m in sorted(stamped, key=lambda m: m[2][1])]
    assert drops(sync) == {}


def test_window_edge_is_inclusive_and_jitter_beyond_it_is_dropped_and_counted():
    late, edge, early = ("CAM_BACK", 4), ("CAM_BACK", 7), ("CAM_FRONT_LEFT", 9)
    messages = []
    for name, stamp, item in camera_messages(12):
        if item == late:
            stamp = T0 + 4 * PERIOD + 50 * MS + 1  # fires 14 ms late: 1 ns beyond the 50 ms window
        if item == edge:
            stamp = T0 + 7 * PERIOD + 50 * MS  # exactly on the window's edge
        if item == early:
            stamp = T0 + 9 * PERIOD - 50 * MS - 1  # fires 59 ms early: 1 ns before the window
        messages.append((name, stamp, item))
    offsets = dict(zip(CAMERAS, [s / 1000 for s in STAGGER_MS], strict=True))
    sync = FrameSetSynchronizer(CAMERAS, window_s=0.05, offsets_s=offsets)
    emitted = feed(sync, sorted(messages, key=lambda m: m[1]))
    assert [s.anchor_stamp_ns for _, s in emitted] == [T0 + k * PERIOD for k in range(12) if k not in (4, 9)]
    assert all(frame_of(s) == dict.fromkeys(CAMERAS, (s.anchor_stamp_ns - T0) // PERIOD) for _, s in emitted)
    assert drops(sync) == {
        "missing_camera": 2,
        "missing_camera:CAM_BACK": 1,
        "missing_camera:CAM_FRONT_LEFT": 1,
        "out_of_window": 2,  # the stray messages themselves, each counted once its frame is decided
        "out_of_window:CAM_BACK": 1,
        "out_of_window:CAM_FRONT_LEFT": 1,
    }
    assert sync.stats()["accepted"] == 10 and all(length == 0 for length in sync.buffer_lengths().values())


def test_duplicate_stamps_are_ignored_and_counted():
    sync = FrameSetSynchronizer(CAMERAS[:2], ["RADAR_FRONT"])
    assert sync.add_radar("RADAR_FRONT", T0 - 5 * MS, "sweep")
    assert not sync.add_radar("RADAR_FRONT", T0 - 5 * MS, "sweep again")
    assert sync.add_camera("CAM_FRONT", T0, "first")
    assert not sync.add_camera("CAM_FRONT", T0, "second")
    assert sync.add_camera("CAM_FRONT_LEFT", T0 + 9 * MS, "left")
    (synced,) = sync.poll()
    assert synced.cameras == {"CAM_FRONT": (T0, "first"), "CAM_FRONT_LEFT": (T0 + 9 * MS, "left")}
    assert synced.radar == {"RADAR_FRONT": [(T0 - 5 * MS, "sweep")]}
    assert not sync.add_camera("CAM_FRONT_LEFT", T0 + 9 * MS, "left again")  # after use: still a duplicate
    assert drops(sync) == {
        "duplicate_stamp": 3,
        "duplicate_stamp:RADAR_FRONT": 1,
        "duplicate_stamp:CAM_FRONT": 1,
        "duplicate_stamp:CAM_FRONT_LEFT": 1,
    }


def test_a_looping_bag_resets_and_keeps_emitting():
    sync = FrameSetSynchronizer(CAMERAS, reset_threshold_s=1.0)
    first = camera_messages(20)  # 1.6 s of stamps, then the bag starts over
    second = [(name, stamp, ("loop 2", item)) for name, stamp, item in camera_messages(20)]
    emitted = [s for _, s in feed(sync, first + second)]
    assert [s.anchor_stamp_ns for s in emitted] == 2 * [T0 + k * PERIOD for k in range(20)]
    assert all(item[0] == "loop 2" for s in emitted[20:] for _, item in s.cameras.values())
    assert sync.stats()["clock_jump_reset"] == 1 and sync.stats()["accepted"] == 40
    assert drops(sync) == {"clock_jump_reset": 1}


def test_a_small_step_back_is_too_late_not_a_reset():
    sync = FrameSetSynchronizer(CAMERAS[:2])
    feed(sync, [(n, s, i) for n, s, i in camera_messages(3) if n in CAMERAS[:2]])
    assert not sync.add_camera("CAM_FRONT_LEFT", T0 + PERIOD + 9 * MS - 1, "stale")  # frame 1 is decided
    assert not sync.add_camera("CAM_FRONT", T0 + 2 * PERIOD - 1, "anchor of a decided frame")
    assert sync.add_camera("CAM_FRONT", T0 + 2 * PERIOD + 1, "a new anchor")
    assert drops(sync) == {"out_of_order": 2, "out_of_order:CAM_FRONT_LEFT": 1, "out_of_order:CAM_FRONT": 1}
    assert sync.stats()["clock_jump_reset"] == 0


@pytest.mark.parametrize("policy", ["drop", "partial"])
def test_a_silent_camera_under_both_policies(policy):
    wait_s = 0.2
    sync = FrameSetSynchronizer(CAMERAS, wait_s=wait_s, missing_camera_policy=policy, buffer_size=6)
    messages = camera_messages(60, skip={("CAM_BACK", k) for k in range(10, 60)})
    emitted, longest = [], 0
    for name, stamp, item in messages:
        sync.add_camera(name, stamp, item)
        emitted += [(stamp, s) for s in sync.poll()]
        longest = max(longest, *sync.buffer_lengths().values())
    anchors = [s.anchor_stamp_ns for _, s in emitted]
    decided = [k for k in range(60) if T0 + k * PERIOD + wait_s * 1e9 < messages[-1][1]]  # wait_s passed
    if policy == "drop":
        assert anchors == [T0 + k * PERIOD for k in range(10)]
        assert sync.stats()["missing_camera"] == sync.stats()["missing_camera:CAM_BACK"] == len(decided) - 10
    else:
        assert anchors == [T0 + k * PERIOD for k in decided]
        for arrival, synced in emitted[10:]:
            assert synced.missing == ["CAM_BACK"] and "CAM_BACK" not in synced.cameras
            assert wait_s * 1e9 < arrival - synced.anchor_stamp_ns <= wait_s * 1e9 + PERIOD  # after wait_s, no later
        assert sync.stats()["partial"] == sync.stats()["missing_camera:CAM_BACK"] == len(decided) - 10
        assert sync.stats()["missing_camera"] == 0
    # Waiting wait_s holds about wait_s x 12 Hz messages per camera, never more.
    assert longest <= math.ceil(wait_s * 1e9 / PERIOD) + 1
    assert sync.stats()["buffer_overflow"] == 0 and sync.stats()["out_of_window"] == 0


def test_a_silent_anchor_emits_nothing_and_counts_what_the_others_sent():
    sync = FrameSetSynchronizer(CAMERAS[:3], wait_s=0.2, buffer_size=8)
    messages = [(n, s, i) for n, s, i in camera_messages(50) if n in ("CAM_FRONT_LEFT", "CAM_FRONT_RIGHT")]
    longest = 0
    for name, stamp, item in messages:
        sync.add_camera(name, stamp, item)
        assert sync.poll() == []
        longest = max(longest, *sync.buffer_lengths().values())
    # Each message waits wait_s + window (3.6 frames) for an anchor, then counts as unmatched.
    assert longest == 4
    stats = sync.stats()
    for name in ("CAM_FRONT_LEFT", "CAM_FRONT_RIGHT"):
        assert stats[f"out_of_window:{name}"] == 50 - sync.buffer_lengths()[name] >= 50 - 4
    assert stats["buffer_overflow"] == 0


def radar_messages(duration_ns: int) -> list[tuple[str, int, tuple]]:
    """Five 13 Hz radars, each with its own phase."""
    return [
        (name, T0 - 200 * MS + r * 11 * MS + k * RADAR_PERIOD, (name, k))
        for r, name in enumerate(RADARS)
        for k in range((duration_ns + 400 * MS) // RADAR_PERIOD)
    ]


@pytest.mark.parametrize("sweeps, window_s", [(1, 0.1), (3, 0.25)])
def test_radar_sweeps_within_the_window_are_attached_newest_first(sweeps, window_s):
    tolerance = 10 * MS
    sync = FrameSetSynchronizer(CAMERAS, RADARS, radar_sweeps=sweeps, radar_window_s=window_s, radar_tolerance_s=0.01)
    cameras = camera_messages(36)  # 3 s
    radars = radar_messages(3 * 10**9)
    emitted = [s for _, s in feed(sync, sorted(cameras + radars, key=lambda m: m[1]))]
    assert len(emitted) == 36
    for synced in emitted:
        anchor = synced.anchor_stamp_ns
        for name in RADARS:
            expected = sorted(
                (
                    stamp
                    for n, stamp, _ in radars
                    if n == name and anchor - window_s * 1e9 <= stamp <= anchor + tolerance
                ),
                reverse=True,
            )[:sweeps]
            assert [stamp for stamp, _ in synced.radar[name]] == expected
            assert len(expected) == sweeps  # 13 Hz sweeps always fill the window at these settings
    assert drops(sync) == {} and max(sync.buffer_lengths().values()) <= sync.buffer_size


def test_radar_sweep_too_old_for_any_future_set_is_counted():
    sync = FrameSetSynchronizer(CAMERAS[:1], ["RADAR_FRONT"], radar_window_s=0.1)
    sync.add_camera("CAM_FRONT", T0, "a")
    assert len(sync.poll()) == 1
    assert not sync.add_radar("RADAR_FRONT", T0 - 100 * MS, "old")
    assert sync.add_radar("RADAR_FRONT", T0 - 100 * MS + 1, "still useful to the next set")
    assert drops(sync) == {"out_of_order": 1, "out_of_order:RADAR_FRONT": 1}


operation = st.tuples(
    st.sampled_from(CAMERAS[:3] + RADARS[:2] + ["poll"]),
    st.integers(-40, 400),  # stamp step in ms from the previous one (negative: out of order / jump back)
    st.booleans(),  # repeat the previous stamp (duplicate)
)


@settings(max_examples=80, deadline=None)
@given(st.lists(operation, min_size=1, max_size=300), st.sampled_from(["drop", "partial"]))
def test_buffers_stay_bounded_and_sets_stay_consistent_under_a_flood(operations, policy):
    sync = FrameSetSynchronizer(
        CAMERAS[:3], RADARS[:2], buffer_size=4, radar_sweeps=2, radar_window_s=0.3, missing_camera_policy=policy
    )
    stamp, used, epoch, last_anchor = T0, set(), 0, None
    for i, (name, step_ms, repeat) in enumerate(operations):
        if not repeat:
            stamp += step_ms * MS if step_ms < 300 else -3 * 10**9  # big steps become a bag loop
        if name == "poll":
            sets = sync.poll()
        else:
            (sync.add_radar if name in RADARS else sync.add_camera)(name, stamp, (name, i))
            sets = sync.poll()
        assert all(length <= 4 for length in sync.buffer_lengths().values())
        if sync.stats()["clock_jump_reset"] != epoch:
            epoch, last_anchor = sync.stats()["clock_jump_reset"], None
        for synced in sets:
            assert synced.cameras[sync.anchor][0] == synced.anchor_stamp_ns
            assert last_anchor is None or synced.anchor_stamp_ns > last_anchor  # in stamp order
            last_anchor = synced.anchor_stamp_ns
            assert set(synced.cameras) | set(synced.missing) == set(sync.camera_names)
            assert policy == "partial" or not synced.missing
            for stamp_ns, item in synced.cameras.values():
                assert abs(stamp_ns - synced.anchor_stamp_ns) <= 100 * MS
                assert item not in used  # a message serves one set at most
                used.add(item)
            for sweeps in synced.radar.values():
                assert len(sweeps) <= 2 and [s for s, _ in sweeps] == sorted((s for s, _ in sweeps), reverse=True)
    assert set(COUNTERS) <= set(sync.stats())


def test_bad_configuration_and_unknown_inputs_say_what_is_expected():
    with pytest.raises(ValueError, match="anchor camera 'CAM_X' is not one of the cameras"):
        FrameSetSynchronizer(CAMERAS, anchor="CAM_X")
    with pytest.raises(ValueError, match="missing_camera_policy must be one of"):
        FrameSetSynchronizer(CAMERAS, missing_camera_policy="wait")
    with pytest.raises(ValueError, match=r"offsets_s names unknown cameras \['CAM_Y'\]"):
        FrameSetSynchronizer(CAMERAS, offsets_s={"CAM_Y": 0.01})
    with pytest.raises(ValueError, match="repeated: \\['CAM_FRONT'\\]"):
        FrameSetSynchronizer(["CAM_FRONT", "CAM_FRONT"])
    with pytest.raises(ValueError, match="window_s must be >= 0"):
        FrameSetSynchronizer(CAMERAS, window_s=-0.1)
    sync = FrameSetSynchronizer(CAMERAS, RADARS)
    with pytest.raises(KeyError, match="unknown camera 'CAM_SIDE'.*knows cameras"):
        sync.add_camera("CAM_SIDE", T0, None)
    with pytest.raises(KeyError, match="unknown radar 'CAM_FRONT'"):
        sync.add_radar("CAM_FRONT", T0, None)


def test_oldest_pending_anchor_is_reported_until_decided():
    sync = FrameSetSynchronizer(["A", "B"], window_s=0.05, wait_s=0.2)
    assert sync.oldest_pending_ns() is None
    sync.add_camera("A", 1_000_000_000, "a")
    assert sync.poll() == [] and sync.oldest_pending_ns() == 1_000_000_000
    sync.add_camera("B", 1_010_000_000, "b")
    assert len(sync.poll()) == 1 and sync.oldest_pending_ns() is None


def test_a_message_late_behind_other_topics_is_not_a_clock_jump():
    """DDS can deliver one topic seconds late (a retransmitted fragment); only a topic's own clock going back resets."""
    sync = FrameSetSynchronizer(["A", "B"], window_s=0.05, wait_s=0.2, missing_camera_policy="partial")
    sync.add_camera("A", 10_000_000_000, "a0")
    sync.add_camera("A", 12_000_000_000, "a1")  # B of the first frame is still on its way
    sync.add_camera("B", 10_010_000_000, "b0")  # 2 s behind A's newest, but B's own clock went forward
    assert sync.stats()["clock_jump_reset"] == 0
    sync.add_camera("A", 1_000_000_000, "a-loop")  # A's own clock goes back: the bag looped
    assert sync.stats()["clock_jump_reset"] == 1
