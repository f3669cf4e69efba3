"""Frame-set synchronization: which camera images and radar sweeps make one surround frame.

Why our own and not message_filters: that package needs a ROS distribution, cannot express an
anchor camera or optional radar inputs, and drops without saying why. This policy works on
timestamps alone (integer nanoseconds, message time), so the node, the bag reader and the unit
tests drive it identically, and every message it does not use is counted by cause.

The guarantee: **a message only ever joins the set of the capture instant it is nearest to.**
The anchor camera's messages are the instants. A camera's message at stamp t (minus its
expected firing offset) belongs to anchor a only when it lies in a's *slot*: nearer to a than
to the previous and the next instant, and within `window_s`. Instants whose anchor message was
lost still count, at a + the anchor period measured from its stream. So a lost, late or
duplicated message can make a camera missing from a set, never move it to a neighbouring frame.

How a set is decided. A camera's candidate (its in-slot message nearest to the anchor) is final
when nothing nearer can come: it lies within half that camera's spacing of the anchor, or the
camera's stream has moved past it. A camera is missing once its stream has passed the slot by
one more period (so a message swapped with its successor in transit still makes it), or when
message time passes `anchor + wait_s`. A set whose cameras are all final is emitted at once;
else, after `wait_s`, it is emitted partial or dropped by policy. Sets are decided in anchor
order, and a decided set consumes every message in or before its slot, so no message serves
two sets. Radar sweeps never hold a set back: a set takes the sweeps that have arrived when it
is decided, and a sweep may serve several sets (accumulation over K sweeps).

Clock sanity. "Message time now" is the median of the cameras' newest stamps, so one sensor
with a skewed clock can neither decide sets early nor expire the others' messages: a stamp
farther than `max_skew_s` from that consensus is rejected and counted for its input alone.
When most cameras agree on a new time (a bag looped, the clock was stepped), that is a clock
jump: state is reset. A jump back of the anchor by more than 1.5 anchor periods (a short bag
looping) is a reset too; smaller steps back are late messages.

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

MISSING_CAMERA_POLICIES = ("drop", "partial")

#: The counters every synchronizer reports, also when zero. Drops also count per input as "kind:name".
COUNTERS = (
    "accepted",  # complete sets emitted
    "partial",  # sets emitted with cameras missing (policy "partial")
    "missing_camera",  # sets dropped because cameras were missing (policy "drop"); per camera: sets that lacked it
    "dropped_with_set",  # messages of the cameras that were there, in a set dropped for missing cameras
    "out_of_window",  # camera messages no set took (no anchor at their instant, or a nearer message won)
    "duplicate_stamp",  # a stamp seen before on the same input
    "out_of_order",  # too late: could only belong to sets already decided
    "buffer_overflow",  # evicted from a full buffer before use
    "clock_skew",  # stamp far from the other inputs' consensus time: rejected
    "clock_jump_reset",  # time jumped (a looping bag, a stepped clock): state was reset
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


class FrameSetSynchronizer:
    """Groups camera messages around an anchor camera and attaches recent radar sweeps.

    Feed it with `add_camera` / `add_radar` (item is opaque), then `poll()` for the sets decided
    so far and `flush()` at the end of a stream. All times are message time in nanoseconds.
    `buffer_size` should hold (wait_s + window_s) x the camera rate + 1 messages, or waiting sets
    lose members to overflow.
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
        self._max_skew = _ns(max_skew_s, "max_skew_s", minimum=1e-3)
        self._offsets = {name: round(float(offsets.get(name, 0.0)) * 1e9) for name in cameras}
        self._counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._buffers: dict[str, deque[Stamped]] = {name: deque() for name in cameras + radars}
        self._recent: dict[str, deque[int]] = {name: deque(maxlen=2 * buffer_size) for name in cameras + radars}
        self._gaps: dict[str, deque[int]] = {name: deque(maxlen=buffer_size) for name in cameras + radars}
        self._seen: dict[str, int] = {}  # newest stamp offered per camera, accepted or not (clock-jump votes)
        self._lags: dict[str, deque[int]] = {name: deque(maxlen=16) for name in cameras}  # matched stamp - anchor
        self._spacing: dict[str, int] = {}
        self._shift: dict[str, int] = dict.fromkeys(self._offsets, 0)
        self._anchor_stamps: list[int] = []  # recent anchor stamps, sorted
        self._anchor_gaps: deque[int] = deque(maxlen=2 * buffer_size)  # between stamp-order neighbours
        self.reset()

    # ------------------------------------------------------------------ input

    def reset(self) -> None:
        """Forget every buffered message and where time stands (counters and the rig's rhythm are kept).

        The rhythm (message spacings, the anchor's period, each camera's firing lag) survives a
        loop or a clock step: the sensors did not change, only the stamps.
        """
        for name, buffer in self._buffers.items():
            self._count("cleared_by_reset", name, len(buffer))
        for store in (*self._buffers.values(), *self._recent.values()):
            store.clear()
        self._seen.clear()
        self._newest: dict[str, int] = {}
        self._anchor_stamps.clear()
        self._last_decided: int | None = None
        self._decided_until: int | None = None  # end of the last decided slot, in anchor time

    def add_camera(self, name: str, stamp_ns: int, item: Any) -> bool:  # noqa: ANN401 - opaque payload
        """Buffer one camera message; False when it was rejected (and counted)."""
        if name not in self._offsets:
            raise KeyError(f"unknown camera {name!r}; the synchronizer knows cameras {self.camera_names}")
        return self._add(name, int(stamp_ns), item, radar=False)

    def add_radar(self, name: str, stamp_ns: int, item: Any) -> bool:  # noqa: ANN401 - opaque payload
        """Buffer one radar sweep; False when it was rejected (and counted)."""
        if name not in self.radar_names:
            raise KeyError(f"unknown radar {name!r}; the synchronizer knows radars {self.radar_names}")
        return self._add(name, int(stamp_ns), item, radar=True)

    def _add(self, name: str, stamp: int, item: Any, radar: bool) -> bool:  # noqa: ANN401
        if not self._clock_accepts(name, stamp, radar):
            return False
        if name == self.anchor and name in self._newest and stamp < self._newest[name] - self._jump_back_limit():
            self.reset()  # the anchor went back by more than a frame: a (short) bag looped
            self._count("clock_jump_reset")
        if stamp in self._recent[name]:
            self._count("duplicate_stamp", name)
            return False
        if self._is_late(name, stamp, radar):
            self._count("out_of_order", name)
            return False
        self._recent[name].append(stamp)
        if name == self.anchor:
            self._note_anchor(stamp)
        if name in self._newest and stamp > self._newest[name]:
            self._gaps[name].append(stamp - self._newest[name])
            if len(self._gaps[name]) >= 2:  # one gap may span a lost message
                self._spacing[name] = min(self._gaps[name])
        self._newest[name] = max(stamp, self._newest.get(name, stamp))
        buffer = self._buffers[name]
        if len(buffer) >= self.buffer_size:
            self._expire(name, self.now())
        if len(buffer) >= self.buffer_size:
            self._count("buffer_overflow", name)
            if stamp < buffer[0][0]:
                return False
            buffer.popleft()
        if not buffer or stamp > buffer[-1][0]:
            buffer.append((stamp, item))
        else:  # reordered in transit: keep the buffer in stamp order
            bisect.insort(buffer, (stamp, item), key=_STAMP)
        return True

    def _clock_accepts(self, name: str, stamp: int, radar: bool) -> bool:
        """False (counted) for a stamp far from the consensus time, unless most cameras moved there: a jump."""
        if not radar:
            self._seen[name] = stamp
        now = self.now(excluding=name)
        if now is None or abs(stamp - now) <= self._max_skew:
            return True
        voters = [] if radar else [s for s in self._seen.values() if abs(s - stamp) <= self._max_skew]
        if 2 * len(voters) <= len(self._seen):
            self._count("clock_skew", name)
            return False
        self.reset()  # most cameras agree on a time far from the old one: the clock jumped
        self._count("clock_jump_reset")
        return True

    def _jump_back_limit(self) -> int:
        period = self._anchor_period()
        return self._max_skew if period is None else min(self._max_skew, 3 * period // 2)

    def _note_anchor(self, stamp: int) -> None:
        stamps = self._anchor_stamps
        index = bisect.bisect(stamps, stamp)
        self._anchor_gaps.extend(abs(stamp - stamps[i]) for i in (index - 1, index) if 0 <= i < len(stamps))
        stamps.insert(index, stamp)
        del stamps[: -2 * self.buffer_size]

    def _is_late(self, name: str, stamp: int, radar: bool) -> bool:
        """Whether the message can only belong to sets already decided."""
        if self._last_decided is None:
            return False
        if radar:  # a sweep serves every anchor after it within radar_window
            return stamp <= self._last_decided - self._radar_window
        return self._relative(name, stamp) <= self._decided_until

    def _relative(self, name: str, stamp: int) -> int:
        """A camera's stamp in anchor time: minus its configured offset and its learned firing lag."""
        return stamp - self._offsets[name] - self._shift[name]

    def _learn_lag(self, name: str, lag: int) -> None:
        """Track where a camera's matched messages sit around the anchor, so slots centre on its firing time.

        The shift is bounded by a quarter period: it can follow a camera that fires 30 ms after the
        anchor, never walk a camera over to a neighbouring frame.
        """
        lags, period = self._lags[name], self._anchor_period()
        lags.append(lag)
        if period is not None and len(lags) >= 3:
            bound = period // 4
            self._shift[name] = max(-bound, min(bound, round(statistics.median(lags))))

    def _count(self, kind: str, name: str | None = None, times: int = 1) -> None:
        if times:
            self._counts[kind] += times
            if name is not None:
                self._counts[f"{kind}:{name}"] += times

    # ------------------------------------------------------------------ time

    def now(self, excluding: str | None = None) -> int | None:
        """Message time now: the median of the cameras' newest stamps (robust to one skewed clock)."""
        newest = [stamp for name, stamp in self._newest.items() if name != excluding and name in self._offsets]
        return statistics.median_low(newest) if newest else None

    def _anchor_period(self) -> int | None:
        """The anchor's frame period: the smallest recent gap between neighbouring stamps.

        Gaps are taken between neighbours in stamp order (immune to reordering in transit), and the
        smallest one ignores the double gaps of lost frames; they outlive a reset, as the rig's rate does.
        """
        return min(self._anchor_gaps) if len(self._anchor_gaps) >= 2 else None

    # ------------------------------------------------------------------ output

    def poll(self, now_stamp_ns: int | None = None) -> list[SyncedSet]:
        """Sets decided so far, in anchor order. `now_stamp_ns` defaults to the consensus message time."""
        now = self.now() if now_stamp_ns is None else int(now_stamp_ns)
        decided: list[SyncedSet] = []
        anchors = self._buffers[self.anchor]
        period = self._anchor_period()
        while anchors:
            anchor_stamp, anchor_item = anchors[0]
            low, high, bounded = self._slot(anchor_stamp, anchors[1][0] if len(anchors) > 1 else None, period)
            choice = {name: self._candidate(name, anchor_stamp, low, high, bounded, period) for name in self._others}
            settled = bounded and all(final for _, final in choice.values())
            if not settled and (now is None or now - anchor_stamp <= self._wait):
                break
            anchors.popleft()
            chosen = {name: c for name, (c, _) in choice.items()}
            synced = self._decide(anchor_stamp, anchor_item, high if bounded else None, chosen)
            if synced is not None:
                decided.append(synced)
        if now is not None:
            for name in self._others + self.radar_names:
                self._expire(name, now)
        return decided

    def flush(self) -> list[SyncedSet]:
        """End of stream: decide every waiting set and count what is left as unused."""
        decided = self.poll(now_stamp_ns=2**62)
        for name in self._others:
            self._count("out_of_window", name, len(self._buffers[name]))
            self._buffers[name].clear()
        return decided

    def _slot(self, anchor_stamp: int, next_anchor: int | None, period: int | None) -> tuple[int, int, bool]:
        """(low, high]: the anchor-relative stamps nearer to this instant than to its neighbours.

        The third value says whether the neighbouring instants are known, which needs the
        anchor's period (three anchor stamps): before that, a buffered next anchor may be two
        frames ahead when one is still in transit, so only `window_s` bounds the slot.
        """
        previous = self._last_decided
        if period is not None:
            previous = anchor_stamp - period if previous is None else max(previous, anchor_stamp - period)
            next_anchor = anchor_stamp + period if next_anchor is None else min(next_anchor, anchor_stamp + period)
        low = anchor_stamp - self._window - 1
        if previous is not None:
            low = max(low, (previous + anchor_stamp) // 2)
        high = anchor_stamp + self._window
        if next_anchor is not None:
            high = min(high, (anchor_stamp + next_anchor) // 2)
        return low, high, period is not None

    def _candidate(
        self, name: str, anchor_stamp: int, low: int, high: int, bounded: bool, period: int | None
    ) -> tuple[int | None, bool]:
        """Index of `name`'s in-slot message nearest to the anchor, and whether no later message could change it.

        In an unbounded slot a far candidate may belong to the next instant: such a set waits for
        that instant to be known (or for `wait_s`).
        """
        best, best_distance = None, 0
        for index, (stamp, _) in enumerate(self._buffers[name]):
            relative = self._relative(name, stamp)
            if relative > high:
                break
            distance = abs(relative - anchor_stamp)
            if relative > low and (best is None or distance < best_distance):
                best, best_distance = index, distance
        newest = self._newest.get(name)
        if newest is None:
            return best, False
        newest = self._relative(name, newest)
        if best is not None:
            near = 2 * best_distance < self._spacing.get(name, 0)
            return best, near or (bounded and newest >= anchor_stamp + best_distance)
        margin = self._spacing.get(name, period if period is not None else self._window)
        return None, newest >= high + margin

    def _decide(
        self,
        anchor_stamp: int,
        anchor_item: Any,
        high: int | None,
        chosen: dict[str, int | None],  # noqa: ANN401
    ) -> SyncedSet | None:
        """Emit or drop the set; `high` ends its slot, None when the next instant is unknown (start of a stream)."""
        if high is None:  # consume only what the set used: later messages may be the next instant's
            used = [self._relative(n, self._buffers[n][i][0]) for n, i in chosen.items() if i is not None]
            high = max([anchor_stamp, *used])
        self._last_decided, self._decided_until = anchor_stamp, high
        cameras: dict[str, Stamped] = {self.anchor: (anchor_stamp, anchor_item)}
        missing = []
        for name in self._others:
            buffer, index = self._buffers[name], chosen[name]
            if index is None:
                missing.append(name)
                self._counts["missing_camera:" + name] += 1
            else:
                cameras[name] = buffer[index]
                del buffer[index]
                self._learn_lag(name, cameras[name][0] - self._offsets[name] - anchor_stamp)
            # Whatever else lies in or before this slot can serve no later set.
            unused = 0
            while buffer and self._relative(name, buffer[0][0]) <= high:
                buffer.popleft()
                unused += 1
            self._count("out_of_window", name, unused)
        for name in self.radar_names:
            buffer = self._buffers[name]
            while buffer and buffer[0][0] < anchor_stamp - self._radar_window:
                buffer.popleft()
        if missing and self.missing_camera_policy == "drop":
            self._counts["missing_camera"] += 1
            for name in cameras:
                self._count("dropped_with_set", name)
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

    def _expire(self, name: str, now: int | None) -> None:
        """Drop `name`'s messages that no anchor still waited for (or yet to come) can use."""
        if name == self.anchor or now is None:
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
