"""Frame-set synchronization: which camera images and radar sweeps make one surround frame.

Why our own and not message_filters: that package needs a ROS distribution, cannot express an
anchor camera or optional radar inputs, and drops without saying why. This policy works on
timestamps alone (integer nanoseconds, message time), so the node, the bag reader and the unit
tests drive it identically, and every message it does not use is counted by cause.

The guarantee: **a set never holds two capture instants, from the first set of a stream on.**
The anchor camera's messages are the instants. Every other camera fires at its own offset from
the anchor (nuScenes cameras fire 0-45 ms apart at 12 Hz, as the lidar sweeps past them); its
message at stamp t belongs to the instant nearest t - offset, within `window_s`. Instants whose
anchor message was lost still count, one period after the previous one. So a lost, late or
duplicated message can make a camera missing from a set, never move it to a neighbouring frame.

Where the offsets come from (`core/firing.py`). `offsets_s` gives them; the others are learned from the stream,
never from a guessed pairing. The period is the recurring gap between any camera's successive
stamps (lost frames make longer gaps, which are ignored). Each camera's phase is its stamps'
place within the anchor's period (a circular mean over its recent messages). On the circle of
one period the rig's phases lie on an arc, and the widest gap between neighbouring phases is
where one capture ends and the next begins: each camera's offset is its place on that arc
relative to the anchor. This is message_filters' criterion (the set of least spread) settled
once for the rig instead of per set, and it is exact whenever the cameras fire within half a
period less the stamp jitter. A layout whose widest gap is not clearly the widest (a camera as
near the anchor's previous frame as to its own) is ambiguous: those cameras stay unplaced, out
of the sets and named by `unplaced()`, until `offsets_s` says where they fire. Once placed, a
camera's offset follows the median lag of its matched messages, so slow drift is tracked.

How a set is decided. Until the period is known and a camera is placed, sets wait; after
`wait_s` (plus `max_skew_s` while the period is unknown: a stream of sparse keyframes shows its
rate only at its third frame) they go without the unplaced cameras, never with a guessed frame. A camera's
candidate (its in-slot message nearest to the instant) is final when nothing nearer can come:
it lies within half that camera's spacing of the instant, or the camera's stream has moved
past it. A camera is missing once its stream has passed the slot (each input's messages arrive
in stamp order, as DDS delivers a writer's samples and a bag is read; a message older than one
already decided is counted `out_of_order`), or when message time passes `anchor + wait_s`. A
set whose cameras are all final is emitted at once. Sets are decided in anchor order, and a
decided set consumes every message in or before its slot, so no message serves two sets. Radar
sweeps never hold a set back: a set takes the sweeps that have arrived when it is decided, and
a sweep may serve several sets (accumulation over K sweeps).

Clock sanity. "Message time now" is the median of the cameras' newest stamps, so one sensor
with a skewed clock can neither decide sets early nor expire the others' messages. A stamp
farther than `max_skew_s` behind that consensus is rejected for its input alone
(`clock_skew`), unless most cameras moved back there too: a bag looped or the clock stepped
back, and state is reset (`clock_jump_reset`; also when the anchor steps back by more than 1.5
periods). A stamp as far *ahead* is held until the others show which it is: when most cameras
follow, every input paused and resumed, and the held messages are used; a camera whose clock
runs ahead stays alone, and its held messages count as `clock_skew`. A stamp of zero (a driver
that never sets header.stamp) is rejected as `zero_stamp`.

Not thread-safe: its owner (`FrameAssembler`) serializes calls.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from surround_depth_ros.core.firing import FiringLearner

MISSING_CAMERA_POLICIES = ("drop", "partial")

#: The counters every synchronizer reports, also when zero. Drops also count per input as "kind:name".
COUNTERS = (
    "accepted",  # complete sets emitted
    "partial",  # sets emitted with cameras missing (policy "partial")
    "missing_camera",  # sets dropped because cameras were missing (policy "drop"); per camera: sets that lacked it
    "unplaced_camera",  # per camera: sets decided while its firing offset was not known
    "dropped_with_set",  # messages of the cameras that were there, in a set dropped for missing cameras
    "out_of_window",  # camera messages no set took (no anchor at their instant, or a nearer message won)
    "duplicate_stamp",  # a stamp seen before on the same input
    "out_of_order",  # too late: could only belong to sets already decided
    "buffer_overflow",  # evicted from a full buffer before use
    "zero_stamp",  # header.stamp of zero: the driver does not stamp its messages
    "clock_skew",  # stamp far from the other inputs' consensus time: rejected
    "clock_jump_reset",  # time jumped back (a looping bag, a stepped clock): state was reset
    "cleared_by_reset",  # messages waiting in buffers when a reset happened
)

Stamped = tuple[int, Any]
_STAMP = itemgetter(0)


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


def _count(counts: Counter[str], kind: str, name: str | None = None, times: int = 1) -> None:
    """Add `times` to the counter `kind`, and to "kind:name" for an input."""
    if times:
        counts[kind] += times
        if name is not None:
            counts[f"{kind}:{name}"] += times


def _checked_anchor(
    cameras: list[str], radars: list[str], anchor: str | None, policy: str, radar_sweeps: int, buffer_size: int
) -> str:
    """The anchor camera (the first one by default); ValueError for inputs no synchronizer can work with."""
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
    if policy not in MISSING_CAMERA_POLICIES:
        raise ValueError(f"missing_camera_policy must be one of {MISSING_CAMERA_POLICIES}, got {policy!r}")
    if radar_sweeps < 1:
        raise ValueError(f"radar_sweeps must be >= 1, got {radar_sweeps}")
    if buffer_size < max(2, radar_sweeps if radars else 1):
        raise ValueError(f"buffer_size must be >= 2 and >= radar_sweeps ({radar_sweeps}), got {buffer_size}")
    return anchor


class FrameSetSynchronizer:
    """Groups camera messages around an anchor camera and attaches recent radar sweeps.

    Feed it with `add_camera` / `add_radar` (item is opaque), then `poll()` for the sets decided
    so far and `flush()` at the end of a stream. All times are message time in nanoseconds.
    `buffer_size` should hold (wait_s + window_s) x the camera rate + 1 messages, or waiting sets
    lose members to overflow. This class takes messages in (clock sanity, buffers); `SetDecider`
    decides the sets from its buffers and `FiringLearner` learns where each camera fires.
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
        max_skew_s: float = 1.0,
        offsets_s: Mapping[str, float] | None = None,
    ) -> None:
        cameras, radars = list(camera_names), list(radar_names)
        anchor = _checked_anchor(cameras, radars, anchor, missing_camera_policy, radar_sweeps, buffer_size)
        # The rig's rhythm, kept across resets: a looping bag or a stepped clock does not change the sensors.
        self.firing = FiringLearner(cameras, anchor, offsets_s, history=2 * buffer_size)
        self.camera_names, self.radar_names, self.anchor = cameras, radars, anchor
        self.buffer_size = buffer_size
        self._counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._buffers: dict[str, deque[Stamped]] = {name: deque() for name in cameras + radars}
        self._held: dict[str, deque[Stamped]] = {name: deque() for name in cameras + radars}  # stamps far ahead
        self._skewed: list[tuple[str, int]] = []  # (input, stamp) given up for a clock that is off, not yet taken
        self._recent: dict[str, deque[int]] = {name: deque(maxlen=2 * buffer_size) for name in cameras + radars}
        self._seen: dict[str, int] = {}  # newest stamp offered per camera, accepted or not (clock votes)
        self._newest: dict[str, int] = {}  # newest accepted stamp per input
        self._releasing = False  # offering held messages again: they cannot release others
        self._sets = SetDecider(
            self,
            window=_ns(window_s, "window_s"),
            wait=_ns(wait_s, "wait_s"),
            radar_window=_ns(radar_window_s, "radar_window_s"),
            radar_tolerance=_ns(radar_tolerance_s, "radar_tolerance_s"),
            radar_sweeps=radar_sweeps,
            max_skew=_ns(max_skew_s, "max_skew_s", minimum=1e-3),
            missing_camera_policy=missing_camera_policy,
        )
        self._max_skew = self._sets.max_skew
        self.reset()

    @property
    def missing_camera_policy(self) -> str:
        return self._sets.missing_camera_policy

    def retune(self, *, window_s: float, wait_s: float) -> None:
        """Take a new `window_s` and `wait_s` for the next decisions (sets already decided stay as they were)."""
        self._sets.window, self._sets.wait = _ns(window_s, "window_s"), _ns(wait_s, "wait_s")

    # ------------------------------------------------------------------ input

    def reset(self) -> None:
        """Forget every buffered message and where time stands (counters and the rig's rhythm are kept)."""
        for name in self._buffers:
            _count(self._counts, "cleared_by_reset", name, len(self._buffers[name]) + len(self._held[name]))
        for store in (*self._buffers.values(), *self._held.values(), *self._recent.values()):
            store.clear()
        self.firing.forget_stamps()
        self._seen.clear()
        self._newest.clear()
        self._sets.reset()

    def add_camera(self, name: str, stamp_ns: int, item: Any) -> bool:  # noqa: ANN401 - opaque payload
        """Buffer one camera message; False when it was rejected (counted) or held (see the module docstring)."""
        if name not in self.firing.offset:
            raise KeyError(f"unknown camera {name!r}; the synchronizer knows cameras {self.camera_names}")
        return self._add(name, int(stamp_ns), item, radar=False)

    def add_radar(self, name: str, stamp_ns: int, item: Any) -> bool:  # noqa: ANN401 - opaque payload
        """Buffer one radar sweep; False when it was rejected (counted) or held."""
        if name not in self.radar_names:
            raise KeyError(f"unknown radar {name!r}; the synchronizer knows radars {self.radar_names}")
        return self._add(name, int(stamp_ns), item, radar=True)

    def _add(self, name: str, stamp: int, item: Any, radar: bool) -> bool:  # noqa: ANN401
        if stamp == 0:
            _count(self._counts, "zero_stamp", name)
            return False
        verdict = self._clock_verdict(name, stamp, radar)
        if verdict == "hold":
            self._hold(name, stamp, item)
            return False
        held = [] if verdict == "ok" or self._releasing else self._take_held()
        if verdict == "back":
            self.reset()  # most cameras agree on an earlier time: a bag looped, the clock stepped back
            _count(self._counts, "clock_jump_reset")
        elif name == self.anchor and name in self._newest and stamp < self._newest[name] - self._jump_back_limit():
            self.reset()  # the anchor went back by more than a frame: a (short) bag looped
            _count(self._counts, "clock_jump_reset")
        accepted = self._buffer(name, stamp, item, radar)
        self._releasing = True  # the held messages follow the majority to the new time, oldest first
        try:
            for held_stamp, held_name, held_item in held:
                self._add(held_name, held_stamp, held_item, radar=held_name in self.radar_names)
        finally:
            self._releasing = False
        return accepted

    def _buffer(self, name: str, stamp: int, item: Any, radar: bool) -> bool:  # noqa: ANN401
        if stamp in self._recent[name]:
            _count(self._counts, "duplicate_stamp", name)
            return False
        if self._sets.is_late(name, stamp, radar):
            _count(self._counts, "out_of_order", name)
            return False
        self._recent[name].append(stamp)
        if not radar:
            self.firing.note_stamp(name, stamp)
        self._newest[name] = max(stamp, self._newest.get(name, stamp))
        buffer = self._buffers[name]
        if len(buffer) >= self.buffer_size:
            self._sets.expire(name, self.now())
        if len(buffer) >= self.buffer_size:
            _count(self._counts, "buffer_overflow", name)
            if stamp < buffer[0][0]:
                return False
            buffer.popleft()
        if not buffer or stamp > buffer[-1][0]:
            buffer.append((stamp, item))
        else:  # reordered in transit: keep the buffer in stamp order
            bisect.insort(buffer, (stamp, item), key=_STAMP)
        return True

    def _clock_verdict(self, name: str, stamp: int, radar: bool) -> str:
        """ "ok"; "hold" a stamp far from the others' time; "ahead" or "back" when most cameras moved there."""
        if not radar:
            self._seen[name] = stamp
        now = self.now(excluding=name)
        if now is None or abs(stamp - now) <= self._max_skew:
            return "ok"
        voters = [] if radar else [s for s in self._seen.values() if abs(s - stamp) <= self._max_skew]
        if 2 * len(voters) <= len(self._seen):
            return "hold"
        return "ahead" if stamp > now else "back"

    def _hold(self, name: str, stamp: int, item: Any) -> None:  # noqa: ANN401
        """Keep a stamp far from the others' time until they show whether time moved (a pause, a loop) or not."""
        held = self._held[name]
        if len(held) >= self.buffer_size:
            stamp_off, _ = held.popleft()
            _count(self._counts, "clock_skew", name)  # the others never followed: this clock is off
            self._skewed.append((name, stamp_off))
        held.append((stamp, item))

    def _take_held(self) -> list[tuple[int, str, Any]]:
        """Every held message, oldest first, as (stamp, input, item); the holds are emptied."""
        held = sorted(((s, n, i) for n, q in self._held.items() for s, i in q), key=itemgetter(0))
        for queue in self._held.values():
            queue.clear()
        return held

    def _jump_back_limit(self) -> int:
        period = self.period_ns()
        return self._max_skew if period is None else min(self._max_skew, 3 * period // 2)

    # ------------------------------------------------------------------ time

    def now(self, excluding: str | None = None) -> int | None:
        """Message time now: the median of the cameras' newest stamps (robust to one skewed clock)."""
        newest = [stamp for name, stamp in self._newest.items() if name != excluding and name in self.firing.offset]
        return statistics.median_low(newest) if newest else None

    def period_ns(self) -> int | None:
        """The cameras' frame period, once the stream shows it (`FiringLearner.period_ns`)."""
        return self.firing.period_ns()

    # ------------------------------------------------------------------ output

    def poll(self, now_stamp_ns: int | None = None, stream_ended: bool = False) -> list[SyncedSet]:
        """Sets decided so far, in anchor order. `now_stamp_ns` defaults to the consensus message time.

        `stream_ended` (no more messages are coming: a bag's end, the node's stall timer) decides
        every waiting set, and lets a stream too short to show its period pair each camera's
        nearest message, as message_filters would: a single keyframe has no rhythm to learn from.
        """
        return self._sets.poll(self.now() if now_stamp_ns is None else int(now_stamp_ns), stream_ended)

    def take_skewed(self) -> list[tuple[str, int]]:
        """(input, stamp) of each message given up since the last call because its sensor's clock is off."""
        skewed, self._skewed = self._skewed, []
        return skewed

    def flush(self) -> list[SyncedSet]:
        """End of stream: decide every waiting set and count what is left as unused."""
        decided = self.poll(now_stamp_ns=2**62, stream_ended=True)
        for name in self.camera_names:
            if name != self.anchor:
                _count(self._counts, "out_of_window", name, len(self._buffers[name]))
                self._buffers[name].clear()
        for name, held in self._held.items():
            _count(self._counts, "clock_skew", name, len(held))
            self._skewed += [(name, stamp) for stamp, _ in held]
            held.clear()
        return decided

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, int]:
        """Counters by cause (see COUNTERS), plus "kind:name" per input."""
        return dict(self._counts)

    def offsets_s(self) -> dict[str, float | None]:
        """Each camera's firing offset from the anchor in seconds (given or learned), None while unplaced."""
        return self.firing.offsets_s()

    def unplaced(self) -> dict[str, str]:
        """Cameras whose firing offset the stream has not settled, and why: they are left out of the sets."""
        return self.firing.unplaced()

    def oldest_pending_ns(self) -> int | None:
        """Stamp of the oldest anchor still waiting for its cameras; None when none waits."""
        anchors = self._buffers[self.anchor]
        return anchors[0][0] if anchors else None

    def buffer_lengths(self) -> dict[str, int]:
        """How many messages each input holds now (each is at most `buffer_size`)."""
        return {name: len(buffer) for name, buffer in self._buffers.items()}


class SetDecider:
    """`FrameSetSynchronizer`'s decisions: which buffered messages make each anchor's set, and when (see the module
    docstring). It works on the synchronizer's buffers, newest stamps, counters and `FiringLearner`, and consumes
    what the sets take. Times in ns."""

    def __init__(
        self,
        sync: FrameSetSynchronizer,
        *,
        window: int,
        wait: int,
        radar_window: int,
        radar_tolerance: int,
        radar_sweeps: int,
        max_skew: int,
        missing_camera_policy: str,
    ) -> None:
        self.anchor, self.camera_names, self.radar_names = sync.anchor, sync.camera_names, sync.radar_names
        self.firing = sync.firing
        self._buffers, self._newest, self._counts = sync._buffers, sync._newest, sync._counts
        self._others = [name for name in sync.camera_names if name != sync.anchor]
        self.window, self.wait, self.max_skew = window, wait, max_skew
        self.radar_window, self.radar_tolerance, self.radar_sweeps = radar_window, radar_tolerance, radar_sweeps
        self.missing_camera_policy = missing_camera_policy
        self.reset()

    def reset(self) -> None:
        """Forget the decisions made: time starts anew."""
        self._last_decided: int | None = None
        self._decided_until: int | None = None  # end of the last decided slot, in anchor time

    def is_late(self, name: str, stamp: int, radar: bool) -> bool:
        """Whether the message can only belong to sets already decided."""
        if self._last_decided is None:
            return False
        if radar:  # a sweep serves every anchor after it within radar_window
            return stamp <= self._last_decided - self.radar_window
        offset = self.firing.offset[name]
        return offset is not None and stamp - offset <= self._decided_until

    def poll(self, now: int | None, stream_ended: bool) -> list[SyncedSet]:
        """Sets decided at message time `now` (see `FrameSetSynchronizer.poll`)."""
        decided: list[SyncedSet] = []
        anchors = self._buffers[self.anchor]
        period = self.firing.period_ns()
        if anchors and any(self.firing.offset[name] is None for name in self._others):
            self.firing.place()
        guess = stream_ended and period is None
        offsets = {name: 0 if offset is None and guess else offset for name, offset in self.firing.offset.items()}
        while anchors:
            anchor_stamp, anchor_item = anchors[0]
            low, high, bounded = self._slot(anchor_stamp, anchors[1][0] if len(anchors) > 1 else None, period)
            choice = {
                name: self._candidate(name, offsets[name], anchor_stamp, low, high, bounded, stream_ended)
                for name in self._others
            }
            settled = bounded and all(final for _, final in choice.values())
            if not (settled or stream_ended) and (now is None or now - anchor_stamp <= self._patience()):
                break
            anchors.popleft()
            chosen = {name: c for name, (c, _) in choice.items()}
            synced = self._decide(anchor_stamp, anchor_item, high if bounded else None, chosen, offsets)
            if synced is not None:
                decided.append(synced)
        if now is not None:
            for name in self._others + self.radar_names:
                self.expire(name, now)
        return decided

    def _slot(self, anchor_stamp: int, next_anchor: int | None, period: int | None) -> tuple[int, int, bool]:
        """(low, high]: the anchor-relative stamps nearer to this instant than to its neighbours.

        The third value says whether the neighbouring instants are known, which needs the period:
        before that, a buffered next anchor may be two frames ahead when one is still in transit,
        so only `window_s` bounds the slot.
        """
        previous = self._last_decided
        if period is not None:
            previous = anchor_stamp - period if previous is None else max(previous, anchor_stamp - period)
            next_anchor = anchor_stamp + period if next_anchor is None else min(next_anchor, anchor_stamp + period)
        low = anchor_stamp - self.window - 1
        if previous is not None:
            low = max(low, (previous + anchor_stamp) // 2)
        high = anchor_stamp + self.window
        if next_anchor is not None:
            high = min(high, (anchor_stamp + next_anchor) // 2)
        return low, high, period is not None

    def _candidate(
        self, name: str, offset: int | None, anchor_stamp: int, low: int, high: int, bounded: bool, ended: bool
    ) -> tuple[int | None, bool]:
        """Index of `name`'s in-slot message nearest to the anchor, and whether no later message could change it.

        An unplaced camera has no candidate: final (missing) once its layout was found ambiguous or
        the stream ended, else it waits to be placed. In an unbounded slot a far candidate may
        belong to the next instant: such a set waits for that instant to be known (or for `wait_s`).
        """
        if offset is None:
            return None, ended or self.firing.is_ambiguous(name)
        best, best_distance = None, 0
        for index, (stamp, _) in enumerate(self._buffers[name]):
            relative = stamp - offset
            if relative > high:
                break
            distance = abs(relative - anchor_stamp)
            if relative > low and (best is None or distance < best_distance):
                best, best_distance = index, distance
        newest = self._newest.get(name)
        if newest is None:
            return best, False
        newest -= offset
        if best is not None:
            near = 2 * best_distance < self.firing.spacing(name)
            return best, near or (bounded and newest >= anchor_stamp + best_distance)
        return None, bounded and newest > high

    def _patience(self) -> int:
        """How long (message time) a set waits for its cameras: `wait_s`, and `max_skew_s` more while the rate is
        unknown (a sparse stream, keyframes at 1-2 Hz: its rate places the cameras that `wait_s` would leave out)."""
        return self.wait + (self.max_skew if self.firing.period_ns() is None else 0)

    def _decide(
        self,
        anchor_stamp: int,
        anchor_item: Any,  # noqa: ANN401
        high: int | None,
        chosen: dict[str, int | None],
        offsets: dict[str, int | None],
    ) -> SyncedSet | None:
        """Emit or drop the set; `high` ends its slot, None when the next instant is unknown (start of a stream).

        `offsets` are those the candidates were chosen with (None: unplaced, its messages left alone).
        """
        if high is None:  # consume only what the set used: later messages may be the next instant's
            used = [self._buffers[n][i][0] - offsets[n] for n, i in chosen.items() if i is not None]
            high = max([anchor_stamp, *used])
        self._last_decided, self._decided_until = anchor_stamp, high
        cameras: dict[str, Stamped] = {self.anchor: (anchor_stamp, anchor_item)}
        missing = []
        for name in self._others:
            buffer, index, offset = self._buffers[name], chosen[name], offsets[name]
            if index is None:
                missing.append(name)
                self._counts["missing_camera:" + name] += 1
                if offset is None:
                    _count(self._counts, "unplaced_camera", name)
                    continue  # where its messages belong is not known: they wait, or expire
            else:
                cameras[name] = buffer[index]
                del buffer[index]
                if self.firing.offset[name] is not None:
                    self.firing.learn_lag(name, cameras[name][0] - anchor_stamp)
            # Whatever else lies in or before this slot can serve no later set.
            unused = 0
            while buffer and buffer[0][0] - offset <= high:
                buffer.popleft()
                unused += 1
            _count(self._counts, "out_of_window", name, unused)
        for name in self.radar_names:
            buffer = self._buffers[name]
            while buffer and buffer[0][0] < anchor_stamp - self.radar_window:
                buffer.popleft()
        if missing and self.missing_camera_policy == "drop":
            self._counts["missing_camera"] += 1
            for name in cameras:
                _count(self._counts, "dropped_with_set", name)
            return None
        self._counts["partial" if missing else "accepted"] += 1
        ordered = {name: cameras[name] for name in self.camera_names if name in cameras}
        return SyncedSet(anchor_stamp, ordered, missing, self._radar_for(anchor_stamp))

    def _radar_for(self, anchor_stamp: int) -> dict[str, list[Stamped]]:
        low, high = anchor_stamp - self.radar_window, anchor_stamp + self.radar_tolerance
        attached = {}
        for name in self.radar_names:
            sweeps = [sweep for sweep in self._buffers[name] if low <= sweep[0] <= high]
            attached[name] = sweeps[::-1][: self.radar_sweeps]
        return attached

    def expire(self, name: str, now: int | None) -> None:
        """Drop `name`'s messages that no anchor still waited for (or yet to come) can use."""
        if name == self.anchor or now is None:
            return  # anchors leave through poll's decisions
        radar = name in self.radar_names
        horizon = now - self._patience() - (self.radar_window if radar else self.window)
        buffer = self._buffers[name]
        while buffer and buffer[0][0] < horizon:
            buffer.popleft()
            if not radar:  # a sweep serves several sets: leaving the window is its normal end
                _count(self._counts, "out_of_window", name)
