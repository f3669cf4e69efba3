"""Frame-set synchronization: which camera images and radar sweeps make one surround frame.

Why our own and not message_filters: that package needs a ROS distribution, cannot express an
anchor camera or optional radar inputs, and drops without saying why. This policy works on
timestamps alone (integer nanoseconds, message time), so the node and the unit tests drive it
identically, and every message it does not use is counted by cause.

How a set forms. The anchor camera triggers: each anchor message opens a set. Every other camera
contributes the unused message closest to `anchor + offset` (its expected firing offset, 0 unless
configured) among those within `window_s` of the anchor. A candidate is final when nothing closer
can still come: it lies within half that camera's message spacing of the expected stamp, or the
camera's stream (in order per topic) has moved past the expected stamp by as much as the
candidate is away from it. A camera is missing once its stream has passed `anchor + window_s` with
no candidate. A set whose cameras are all final is emitted at once; otherwise it is decided once
the message time passes `anchor + wait_s`: emitted partial or dropped by policy. Sets are decided
in anchor order, and a decided set consumes its messages (and every older one of those cameras),
so no message serves two sets. Radar sweeps never hold a set back: a set takes the sweeps that
have arrived when it is decided, and a sweep may serve several sets (accumulation over K sweeps).

Rigs that fire their cameras in sequence (nuScenes: about 45 ms from first to last at 12 Hz) are
matched by closeness, which is unambiguous when no camera fires more than half a frame period away
from the anchor: pick an anchor in the middle of the sequence (CAM_FRONT in nuScenes) or give
`offsets_s`.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

MISSING_CAMERA_POLICIES = ("drop", "partial")

#: The counters every synchronizer reports, also when zero. Drops also count per input as "kind:name".
COUNTERS = (
    "accepted",  # complete sets emitted
    "partial",  # sets emitted with cameras missing (policy "partial")
    "missing_camera",  # sets dropped because cameras were missing (policy "drop"); per camera: sets that lacked it
    "out_of_window",  # camera messages no set took (no anchor within the window, or beaten by a closer one)
    "duplicate_stamp",  # a stamp seen before on the same input
    "out_of_order",  # too late: could only belong to sets already decided
    "buffer_overflow",  # evicted from a full buffer before use
    "clock_jump_reset",  # stamps jumped back (a looping bag): all buffers and state were reset
)

Stamped = tuple[int, Any]


@dataclass
class SyncedSet:
    """One surround frame: the anchor's stamp, the cameras' (stamp, item), radar sweeps newest first."""

    anchor_stamp_ns: int
    cameras: dict[str, Stamped]
    missing: list[str]
    radar: dict[str, list[Stamped]]

    @property
    def complete(self) -> bool:
        return not self.missing


def _ns(seconds: float, what: str, minimum: float = 0.0) -> int:
    if not seconds >= minimum:  # also rejects NaN
        raise ValueError(f"{what} must be >= {minimum} s, got {seconds}")
    return round(seconds * 1e9)


_STAMP = itemgetter(0)


class FrameSetSynchronizer:
    """Groups camera messages around an anchor camera and attaches recent radar sweeps.

    Feed it with `add_camera` / `add_radar` (item is opaque: the node stores decoded images),
    then `poll()` for the sets decided so far. All times are message time in nanoseconds. Not
    thread-safe: callbacks on several threads share it under one lock. `buffer_size` should hold
    (wait_s + window_s) x the camera rate + 1 messages, or waiting sets lose members to overflow.
    """

    def __init__(
        self,
        camera_names: Sequence[str],
        radar_names: Sequence[str] = (),
        *,
        anchor: str | None = None,
        window_s: float = 0.1,
        wait_s: float = 0.2,
        radar_window_s: float = 0.1,
        radar_tolerance_s: float = 0.01,
        radar_sweeps: int = 1,
        missing_camera_policy: str = "drop",
        buffer_size: int = 8,
        reset_threshold_s: float = 1.0,
        offsets_s: Mapping[str, float] | None = None,
    ) -> None:
        cameras, radars = list(camera_names), list(radar_names)
        if not cameras:
            raise ValueError("the synchronizer needs at least one camera name")
        for kind, names in (("camera", cameras), ("radar", radars)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind} names must be unique, repeated: {repeated}")
        shared = sorted(set(cameras) & set(radars))
        if shared:
            raise ValueError(f"names used for both a camera and a radar: {shared}")
        anchor = cameras[0] if anchor is None else anchor
        if anchor not in cameras:
            raise ValueError(f"anchor camera {anchor!r} is not one of the cameras {cameras}")
        if missing_camera_policy not in MISSING_CAMERA_POLICIES:
            raise ValueError(
                f"missing_camera_policy must be one of {MISSING_CAMERA_POLICIES}, got {missing_camera_policy!r}"
            )
        if radar_sweeps < 1:
            raise ValueError(f"radar_sweeps must be >= 1, got {radar_sweeps}")
        if buffer_size < max(2, radar_sweeps if radars else 1):
            raise ValueError(f"buffer_size must be >= 2 and >= radar_sweeps ({radar_sweeps}), got {buffer_size}")
        offsets = dict(offsets_s or {})
        unknown = sorted(set(offsets) - set(cameras))
        if unknown:
            raise ValueError(f"offsets_s names unknown cameras {unknown}; cameras are {cameras}")
        if offsets.get(anchor, 0.0) != 0.0:
            raise ValueError(f"the anchor camera {anchor!r} has offset 0 by definition, got {offsets[anchor]}")

        self.camera_names, self.radar_names, self.anchor = cameras, radars, anchor
        self.missing_camera_policy = missing_camera_policy
        self.buffer_size = buffer_size
        self._others = [name for name in cameras if name != anchor]
        self._window = _ns(window_s, "window_s")
        self._wait = _ns(wait_s, "wait_s")
        self._radar_window = _ns(radar_window_s, "radar_window_s")
        self._radar_tolerance = _ns(radar_tolerance_s, "radar_tolerance_s")
        self._radar_sweeps = radar_sweeps
        self._reset_threshold = _ns(reset_threshold_s, "reset_threshold_s", minimum=1e-9)
        self._offsets = {name: round(float(offsets.get(name, 0.0)) * 1e9) for name in cameras}
        for name, offset in self._offsets.items():
            if abs(offset) > self._window:
                raise ValueError(f"offset of camera {name!r} ({offset / 1e9} s) lies outside window_s ({window_s} s)")
        self._counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._buffers: dict[str, deque[Stamped]] = {name: deque() for name in cameras + radars}
        self._recent: dict[str, deque[int]] = {name: deque(maxlen=buffer_size) for name in cameras + radars}
        self._gaps: dict[str, deque[int]] = {name: deque(maxlen=buffer_size) for name in cameras + radars}
        self.reset()

    # ------------------------------------------------------------------ input

    def reset(self) -> None:
        """Forget every buffered message and all timing state (counters are kept)."""
        for store in (*self._buffers.values(), *self._recent.values(), *self._gaps.values()):
            store.clear()
        self._newest: dict[str, int] = {}
        self._spacing: dict[str, int] = {}
        self._newest_any: int | None = None
        self._last_decided: int | None = None

    def add_camera(self, name: str, stamp_ns: int, item: Any) -> bool:
        """Buffer one camera message; False when it was rejected (and counted)."""
        if name not in self._offsets:
            raise KeyError(f"unknown camera {name!r}; the synchronizer knows cameras {self.camera_names}")
        return self._add(name, int(stamp_ns), item, radar=False)

    def add_radar(self, name: str, stamp_ns: int, item: Any) -> bool:
        """Buffer one radar sweep; False when it was rejected (and counted)."""
        if name not in self.radar_names:
            raise KeyError(f"unknown radar {name!r}; the synchronizer knows radars {self.radar_names}")
        return self._add(name, int(stamp_ns), item, radar=True)

    def _add(self, name: str, stamp: int, item: Any, radar: bool) -> bool:
        # A jump back is judged per input: each topic arrives in order, so only its own clock going
        # back (a looping bag) says so. A message merely late behind other topics is not a jump.
        if name in self._newest and stamp < self._newest[name] - self._reset_threshold:
            self.reset()
            self._count("clock_jump_reset")
        if stamp in self._recent[name]:
            self._count("duplicate_stamp", name)
            return False
        if self._last_decided is not None:
            # Radar sweeps serve every anchor after them within radar_window; a camera message at or
            # before the last decided anchor's expected slot belongs to that set or an older one.
            limit = self._last_decided - self._radar_window if radar else self._last_decided + self._offsets[name]
            if stamp <= limit:
                self._count("out_of_order", name)
                return False
        self._recent[name].append(stamp)
        if name in self._newest and stamp > self._newest[name]:
            self._gaps[name].append(stamp - self._newest[name])
            if len(self._gaps[name]) >= 2:  # one gap may span a lost message
                self._spacing[name] = min(self._gaps[name])
        self._newest[name] = max(stamp, self._newest.get(name, stamp))
        self._newest_any = max(stamp, self._newest_any if self._newest_any is not None else stamp)
        buffer = self._buffers[name]
        if len(buffer) >= self.buffer_size:
            self._expire(name, self._newest_any)
        if len(buffer) >= self.buffer_size:
            self._count("buffer_overflow", name)
            if stamp < buffer[0][0]:
                return False
            buffer.popleft()
        if not buffer or stamp > buffer[-1][0]:
            buffer.append((stamp, item))
        else:
            bisect.insort(buffer, (stamp, item), key=_STAMP)
        return True

    def _count(self, kind: str, name: str | None = None, times: int = 1) -> None:
        if times:
            self._counts[kind] += times
            if name is not None:
                self._counts[f"{kind}:{name}"] += times

    # ------------------------------------------------------------------ output

    def poll(self, now_stamp_ns: int | None = None) -> list[SyncedSet]:
        """Sets decided so far, in anchor order. `now_stamp_ns` defaults to the newest stamp seen."""
        now = self._newest_any if now_stamp_ns is None else int(now_stamp_ns)
        decided: list[SyncedSet] = []
        anchors = self._buffers[self.anchor]
        while anchors:
            anchor_stamp, anchor_item = anchors[0]
            choice = {name: self._candidate(name, anchor_stamp) for name in self._others}
            settled = all(final for _, final in choice.values())
            if not settled and (now is None or now - anchor_stamp <= self._wait):
                break
            anchors.popleft()
            synced = self._decide(anchor_stamp, anchor_item, {name: index for name, (index, _) in choice.items()})
            if synced is not None:
                decided.append(synced)
        if now is not None:
            for name in self._others + self.radar_names:
                self._expire(name, now)
        return decided

    def _candidate(self, name: str, anchor_stamp: int) -> tuple[int | None, bool]:
        """Index of `name`'s best message for the anchor, and whether no later message could change it."""
        expected = anchor_stamp + self._offsets[name]
        best, best_distance = None, 0
        for index, (stamp, _) in enumerate(self._buffers[name]):
            if stamp > anchor_stamp + self._window:
                break
            distance = abs(stamp - expected)
            if stamp >= anchor_stamp - self._window and (best is None or distance < best_distance):
                best, best_distance = index, distance
        horizon = anchor_stamp + self._window
        if best is not None:
            if 2 * best_distance < self._spacing.get(name, 0):
                return best, True  # any other message of this camera is farther from the expected stamp
            horizon = min(horizon, expected + best_distance)
        newest = self._newest.get(name)
        return best, newest is not None and newest >= horizon

    def _decide(self, anchor_stamp: int, anchor_item: Any, chosen: dict[str, int | None]) -> SyncedSet | None:
        self._last_decided = anchor_stamp
        cameras: dict[str, Stamped] = {self.anchor: (anchor_stamp, anchor_item)}
        missing = []
        for name in self._others:
            buffer, index = self._buffers[name], chosen[name]
            if index is None:
                missing.append(name)
                self._counts["missing_camera:" + name] += 1
            else:
                # The chosen message is used up, and older ones can serve no later anchor.
                cameras[name] = buffer[index]
                for _ in range(index + 1):
                    buffer.popleft()
                self._count("out_of_window", name, index)
        for name in self.radar_names:
            buffer = self._buffers[name]
            while buffer and buffer[0][0] < anchor_stamp - self._radar_window:
                buffer.popleft()
        if missing and self.missing_camera_policy == "drop":
            self._counts["missing_camera"] += 1
            return None
        self._counts["partial" if missing else "accepted"] += 1
        ordered = {name: cameras[name] for name in self.camera_names if name in cameras}
        return SyncedSet(anchor_stamp, ordered, missing, self._radar_for(anchor_stamp))

    def _radar_for(self, anchor_stamp: int) -> dict[str, list[Stamped]]:
        low, high = anchor_stamp - self._radar_window, anchor_stamp + self._radar_tolerance
        attached = {}
        for name in self.radar_names:
            sweeps = [sweep for sweep in self._buffers[name] if low <= sweep[0] <= high]
            attached[name] = sweeps[::-1][: self._radar_sweeps]
        return attached

    def _expire(self, name: str, now: int) -> None:
        """Drop `name`'s messages that no anchor still waited for (or yet to come) can use."""
        if name == self.anchor:
            return  # anchors leave through poll's decisions
        radar = name in self.radar_names
        horizon = now - self._wait - (self._radar_window if radar else self._window)
        buffer = self._buffers[name]
        while buffer and buffer[0][0] < horizon:
            buffer.popleft()
            if not radar:  # a sweep serves several sets: leaving the window is its normal end
                self._count("out_of_window", name)

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, int]:
        """Counters by cause (see COUNTERS), plus "kind:name" per input."""
        return dict(self._counts)

    def oldest_pending_ns(self) -> int | None:
        """Stamp of the oldest anchor still waiting for its cameras; None when none waits."""
        anchors = self._buffers[self.anchor]
        return anchors[0][0] if anchors else None

    def buffer_lengths(self) -> dict[str, int]:
        """How many messages each input holds now (each is at most `buffer_size`)."""
        return {name: len(buffer) for name, buffer in self._buffers.items()}
