"""Input health counters: rates, rejections by cause, and the level an operator sees."""

import pytest

from surround_depth_ros.core.health import InputHealth, Level, OutputWatchdog, RejoinPolicy, memory_mb


def test_rate_and_levels_over_time():
    health = InputHealth("CAM", window_s=2.0)
    assert health.status(0.0, 10.0)[0] == Level.STALE
    for i in range(21):
        health.accept(i * 0.1)
    level, message, values = health.status(2.0, 10.0)
    assert abs(health.rate_hz(2.0) - 10.0) < 1e-6
    assert level == Level.OK and values["received"] == "21"
    assert health.status(2.0, 30.0)[0] == Level.WARN
    assert health.status(10.0, 10.0)[:2] == (Level.STALE, "silent for more than 2 s")


def test_rejections_are_counted_by_cause_and_expire_from_the_level():
    health = InputHealth("CAM", window_s=1.0)
    health.accept(0.0)
    health.reject("encoding", "CAM: unsupported encoding 'x'", 0.1)
    health.reject("size", "CAM: short", 0.2)
    health.reject("size", "CAM: short", 0.3)
    level, message, values = health.status(0.3, 1.0)
    assert level == Level.ERROR and message == "rejecting input: CAM: short"
    assert values["rejected: encoding"] == "1" and values["rejected: size"] == "2"
    for t in (1.4, 1.5, 1.6):
        health.accept(t)
    assert health.status(1.6, 1.0)[0] == Level.OK
    assert health.status(1.6, 1.0)[2]["rejected: size"] == "2"


def test_matched_publishers_and_nothing_received_is_an_error():
    """Restart deafness: subscribed, matched, silent. Without publishers it stays a plain silence."""
    health = InputHealth("CAM", window_s=2.0)
    assert health.status(0.0, 10.0, publishers=0)[0] == Level.STALE
    assert health.status(1.0, 10.0, publishers=2)[0] == Level.STALE  # matched just now: give it the window
    level, message, values = health.status(3.5, 10.0, publishers=2)
    assert level == Level.ERROR and values["publishers"] == "2"
    assert message.startswith("2 publisher(s) matched but nothing received for 2 s")
    for i in range(30):
        health.accept(3.5 + i * 0.1)
    assert health.status(6.4, 10.0, publishers=2)[0] == Level.OK
    assert health.status(9.0, 10.0, publishers=2)[0] == Level.ERROR  # stopped after arriving
    assert health.status(9.0, 10.0, publishers=0)[:2] == (Level.STALE, "silent for more than 2 s")
    assert health.status(9.5, 10.0, publishers=1)[0] == Level.STALE  # matched again: a new window


def test_output_stall_is_timed_from_when_cameras_send_not_from_start_up():
    """The demo logged "no frame set published for 7 s" at start: the model took 7 s to load, before any camera sent."""
    watchdog = OutputWatchdog("CAM_FRONT", timeout_s=3.0)
    assert watchdog.check(0.0, []) == ("", "")  # vehicle off: nothing to say
    assert watchdog.check(7.0, ["CAM_FRONT", "CAM_BACK"]) == ("", "")  # first cameras after a 7 s load
    assert watchdog.check(9.9, ["CAM_FRONT", "CAM_BACK"]) == ("", "")
    assert watchdog.check(10.5, ["CAM_FRONT", "CAM_BACK"])[1] == "no frame set published for 4 s while 2 cameras send"
    watchdog.published(11.0)
    assert watchdog.check(13.0, ["CAM_FRONT", "CAM_BACK"]) == ("", "")
    anchor, stalled = watchdog.check(14.5, ["CAM_BACK"])
    assert "anchor camera CAM_FRONT is silent while 1 cameras send" in anchor
    assert stalled == "no frame set published for 4 s while 1 cameras send"
    assert watchdog.check(20.0, []) == ("", "")  # all silent: the clock restarts when they come back
    assert watchdog.check(30.0, ["CAM_FRONT"]) == ("", "")
    assert watchdog.check(34.0, ["CAM_FRONT"])[1] == "no frame set published for 4 s while 1 cameras send"


def test_rejoin_when_matched_and_unheard_with_waits_that_double_until_every_input_is_heard():
    policy = RejoinPolicy(after_s=2.0, silent_s=2.0, max_wait_s=4.0, joined=0.0)
    assert policy.check(0.5, {"CAM_FRONT": 0, "CAM_BACK": 0}) == ""  # nothing matched yet: discovery
    assert policy.check(1.0, {"CAM_FRONT": 0, "CAM_BACK": 1}) == ""  # CAM_BACK matched from t=1
    assert policy.check(2.9, {"CAM_FRONT": 0, "CAM_BACK": 1}) == ""
    reason = policy.check(3.0, {"CAM_FRONT": 0, "CAM_BACK": 1})
    assert reason.startswith("CAM_BACK: publishers there but nothing received for 2 s")
    assert reason.endswith("joining again with a new participant")
    policy.rejoined(3.0)
    assert policy.rejoins == 1
    # still deaf (or a driver that advertises and never sends): each try waits longer, 2 s then 4 s (the cap)
    assert policy.check(4.0, {"CAM_BACK": 1}) == ""  # matched again from t=4
    assert policy.check(6.9, {"CAM_BACK": 1}) == ""  # deaf since 6, but 2 s + 2 s after joining is t=7
    assert policy.check(7.0, {"CAM_BACK": 1}).startswith("CAM_BACK")
    policy.rejoined(7.0)
    assert policy.check(8.0, {"CAM_BACK": 1}) == ""
    assert policy.check(12.9, {"CAM_BACK": 1}) == ""  # 2 s + 4 s after joining is t=13
    assert policy.check(13.0, {"CAM_BACK": 1}).startswith("CAM_BACK")
    policy.rejoined(13.0)
    assert policy.check(14.0, {"CAM_BACK": 1}) == ""
    assert policy.check(19.0, {"CAM_BACK": 1}).startswith("CAM_BACK")  # capped: still 2 s + 4 s
    policy.rejoined(19.0)
    assert policy.check(20.0, {}) == ""  # every input heard: the waits start over
    assert policy.check(30.0, {"CAM_BACK": 1}) == ""
    assert policy.check(32.0, {"CAM_BACK": 1}).startswith("CAM_BACK")


def test_rejoin_when_another_process_removed_or_made_anew_a_port_in_use_here():
    """Deaf without matching anything: the participant listens on a port file another process replaced."""
    policy = RejoinPolicy(after_s=2.0, joined=0.0)
    assert policy.check(1.0, {"CAM_FRONT": 0}, stale=["fastdds_port26163"]) == ""  # too soon after joining
    reason = policy.check(2.0, {"CAM_FRONT": 0}, stale=["fastdds_port26163"])
    assert reason.startswith("shared-memory port(s) fastdds_port26163 in use here were removed or made anew")
    assert policy.check(3.0, {"CAM_FRONT": 0}) == ""  # matched nothing, port intact: a vehicle with its cameras off


def test_matched_and_silent_waits_longer_than_a_paused_bag_player_takes_to_start():
    """A replayer matched and paused for a few seconds, then sending: no rejoin (it would lose its first frames)."""
    policy = RejoinPolicy(joined=0.0)
    assert all(policy.check(t, {"CAM_FRONT": 1}) == "" for t in (1.0, 5.0, 9.9))
    assert policy.check(11.0, {"CAM_FRONT": 1}).startswith("CAM_FRONT: publishers there but nothing received for 10 s")


def test_memory_figures_follow_an_allocation_and_its_release():
    """The node's diagnostics report these: "heap in use" must see a camera-sized buffer come and go."""
    np = pytest.importorskip("numpy")
    before = memory_mb()
    if "resident" not in before:
        pytest.skip("no /proc/self/status on this system")
    buffer = np.ones(64 * 2**20, np.uint8)
    during = memory_mb()
    # resident memory need not grow: in a long-lived process the allocator may hand back pages it kept
    assert during["resident"] > 0
    if "heap in use" not in before:
        pytest.skip("no glibc mallinfo2 (glibc >= 2.33): only the resident figure is reported")
    assert 56 < during["heap in use"] - before["heap in use"] < 72  # other threads may allocate meanwhile
    del buffer
    assert abs(memory_mb()["heap in use"] - before["heap in use"]) < 8
