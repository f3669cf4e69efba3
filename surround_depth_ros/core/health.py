"""Per-input health: what arrived, at what rate, and what was rejected and why.

Kept ROS-free so that the node's diagnostics are a plain translation of these counters and the
counting itself is unit-tested. Rejections are counted by cause, never silent: an operator who
sees "wrong encoding: 120" knows what to fix.
"""

from __future__ import annotations

import ctypes
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path


class Level(IntEnum):
    """Same numbering as diagnostic_msgs/DiagnosticStatus."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass
class InputHealth:
    """Counters of one input (a camera, a radar). Times are monotonic seconds."""

    name: str
    window_s: float = 5.0
    received: int = 0
    rejected: Counter = field(default_factory=Counter)
    last_error: str = ""
    last_error_time: float = float("-inf")
    last_arrival: float = float("-inf")
    _arrivals: deque = field(default_factory=deque)
    _matched_since: float | None = None  # since when publishers have been matched, None while there are none

    def accept(self, now: float) -> None:
        self.received += 1
        self.last_arrival = now
        self._arrivals.append(now)
        self._forget(now)

    def reject(self, cause: str, message: str, now: float, arrived: bool = True) -> None:
        """Count a refusal; `arrived` False for one no message brought (a publisher whose QoS cannot match)."""
        self.rejected[cause] += 1
        self.last_error = message
        self.last_error_time = now
        if arrived:
            self.received += 1
            self.last_arrival = now
            self._arrivals.append(now)
            self._forget(now)

    def deaf_for(self, now: float, publishers: int) -> float | None:
        """Seconds with matched publishers and nothing received, once more than the window; else None.

        Subscribed, matched, and receiving nothing is what a node restarted after a crash can show
        when a DDS peer keeps stale state about it: it must be said, not reported as merely silent.
        """
        if publishers <= 0:
            self._matched_since = None
            return None
        if self._matched_since is None:
            self._matched_since = now
        silent = now - max(self._matched_since, self.last_arrival)
        return silent if silent > self.window_s else None

    def rate_hz(self, now: float) -> float:
        """Arrivals per second over the last window (accepted and rejected alike).

        Measured between the first and last arrival in the window, so that a stream that has just
        started reads its true rate, not a fraction of it.
        """
        self._forget(now)
        if len(self._arrivals) < 2:
            return 0.0 if not self._arrivals else 1.0 / self.window_s
        return (len(self._arrivals) - 1) / max(self._arrivals[-1] - self._arrivals[0], 1e-6)

    def _forget(self, now: float) -> None:
        while self._arrivals and self._arrivals[0] < now - self.window_s:
            self._arrivals.popleft()

    def status(
        self, now: float, expected_rate_hz: float, publishers: int | None = None
    ) -> tuple[Level, str, dict[str, str]]:
        """(level, one-line summary, key/values) for a diagnostics message.

        `publishers`: how many publishers the input's subscription is matched with, when known.
        """
        rate = self.rate_hz(now)
        values = {"received": str(self.received), "rate_hz": f"{rate:.2f}"}
        values.update({f"rejected: {cause}": str(n) for cause, n in sorted(self.rejected.items())})
        if self.last_error:
            values["last_error"] = self.last_error
        deaf = None if publishers is None else self.deaf_for(now, publishers)
        if publishers is not None:
            values["publishers"] = str(publishers)
        if deaf is not None:
            return (
                Level.ERROR,
                (
                    f"{publishers} publisher(s) matched but nothing received for {deaf:.0f} s: the driver stopped "
                    "sending, or DDS cannot deliver to this process (after 10 s the node joins DDS again by itself)"
                ),
                values,
            )
        if self.received == 0:
            return Level.STALE, "no messages received yet", values
        if rate == 0.0:
            return Level.STALE, f"silent for more than {self.window_s:.0f} s", values
        if now - self.last_error_time <= self.window_s:
            return Level.ERROR, f"rejecting input: {self.last_error}", values
        if rate < 0.5 * expected_rate_hz:
            return Level.WARN, f"rate {rate:.1f} Hz is below half the expected {expected_rate_hz:.1f} Hz", values
        return Level.OK, f"{rate:.1f} Hz", values


@dataclass
class OutputWatchdog:
    """Whether the node's output stalled while its cameras send, and whether the anchor camera is silent.

    A stall is timed from the last published set or, before the first one and after every silence of
    all cameras, from when cameras began sending again: loading the model, or a vehicle parked with
    its cameras off, is no stall. Nothing is reported while no camera sends. Times are monotonic s.
    """

    anchor: str
    timeout_s: float
    last_published: float | None = None
    sending_since: float | None = None

    def published(self, now: float) -> None:
        self.last_published = now

    def check(self, now: float, sending: list[str]) -> tuple[str, str]:
        """(anchor silent while others send, no set published for timeout_s while cameras send); "" when not so."""
        if not sending:
            self.sending_since = None
            return "", ""
        if self.sending_since is None:
            self.sending_since = now
        silent_anchor = ""
        if self.anchor not in sending:
            silent_anchor = (
                f"anchor camera {self.anchor} is silent while {len(sending)} cameras send: its frames mark "
                "the capture instants, check its driver or set sync_anchor to another camera"
            )
        since = now - max(self.last_published or float("-inf"), self.sending_since)
        if since <= self.timeout_s:
            return silent_anchor, ""
        return silent_anchor, f"no frame set published for {since:.0f} s while {len(sending)} cameras send"


@dataclass
class RejoinPolicy:
    """When to leave DDS and join again with a new participant: the cure for a node deaf after a restart.

    A node restarted after a crash can take the dead one's participant id, hence its shared-memory
    ports, while live publishers still write into their mapping of the dead port: subscribed and
    matched, it hears nothing. A new participant in the same process gets another id and fresh
    ports. The sign is an input with publishers (matched by its reader or, where the reader missed a
    writer's announcement, compatible ones in the ROS graph) that has received nothing since this
    participant joined, for `silent_s` (long: a bag player started paused, or a driver that advertises
    before it sends, looks the same for a while). A driver that advertises and never sends shows the same
    sign, so the waits double after each rejoin that did not help (up to `max_wait_s`) and start
    over once every input was heard. A shared-memory port in use here that another process removed
    or made anew is the other sign. Times are monotonic seconds.
    """

    after_s: float = 2.0
    silent_s: float = 10.0
    max_wait_s: float = 300.0
    joined: float = 0.0
    rejoins: int = 0
    last_reason: str = ""  # why the last rejoin was asked for, for the diagnostics
    _wait_s: float = 0.0
    _matched_since: dict[str, float] = field(default_factory=dict)

    def check(self, now: float, unheard: dict[str, int], stale: Sequence[str] = ()) -> str:
        """A reason to rejoin, or "". `unheard`: the inputs that received nothing since joining, each with the
        number of publishers it should hear (matched, else compatible ones in the ROS graph); `stale`:
        shared-memory ports in use here whose files another process removed or made anew (this process and its
        peers no longer meet there)."""
        matched = {name for name, publishers in unheard.items() if publishers > 0}
        self._matched_since = {name: self._matched_since.get(name, now) for name in matched}
        if not unheard and not stale:
            self._wait_s = 0.0
        deaf = sorted(name for name, since in self._matched_since.items() if now - since >= self.silent_s)
        if not (deaf or stale) or now - self.joined < self.after_s + self._wait_s:
            return ""
        if stale:
            why = f"shared-memory port(s) {', '.join(stale)} in use here were removed or made anew by another process"
        else:
            why = f"{', '.join(deaf)}: publishers there but nothing received for {self.silent_s:g} s or more"
        return f"{why} (DDS state left by a crashed participant): joining again with a new participant"

    def rejoined(self, now: float) -> None:
        self.rejoins += 1
        self.joined = now
        self._wait_s = min(max(2 * self._wait_s, self.after_s), self.max_wait_s)
        self._matched_since.clear()


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc >= 2.33), in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):  # not glibc, or older than 2.33
        return None
    function.restype, function.argtypes = _MallInfo2, []
    return function


_MALLINFO2 = _mallinfo2()


def memory_mb() -> dict[str, float]:
    """This process's resident memory and, on glibc, its heap: in use, and freed but kept by the allocator.

    A leak grows "heap in use". Resident memory also moves by tens of MB as the allocator keeps or
    returns the camera-sized buffers freed after each set ("freed and kept"), which is no leak: the
    soak benchmark measures both slopes. Empty where /proc is not there.
    """
    figures = {}
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return figures
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            figures["resident"] = int(line.split()[1]) / 1024
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        figures["heap in use"] = (info.uordblks + info.hblkhd) / 2**20  # arena chunks + mmapped blocks
        figures["heap freed and kept"] = info.fordblks / 2**20
    return figures
