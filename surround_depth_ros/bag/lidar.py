"""Each frame set of a bag gets the lidar sweep nearest its cameras: the ground truth of recorded drives.

A sweep pairs with a set from `MAX_AGE_NS` before its first camera to `SLACK_NS` after its last; the middle of
its camera stamps decides between several. Sweeps come in log order with the images, so a set is settled
once the log is `SLACK_NS` past its last camera, and sweeps older than any set still to come are forgotten
(bounded memory on long bags).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from surround_depth_ros.sensors.frameset import FrameSet, PointSweep

MAX_AGE_NS = 500_000_000
SLACK_NS = 50_000_000


class LidarPairing:
    """The lidar sweeps of a pass that some frame set may still take, and the pairing of a set with its sweep."""

    def __init__(self, sync_window_s: float) -> None:
        self.sweeps: deque[PointSweep] = deque()
        self._window_ns = sync_window_s * 1e9  # how much earlier than a pending camera its set's cameras may be

    def settled(self, frame_set: FrameSet, log_stamp: int) -> bool:
        """Whether no sweep at `log_stamp` or later can be `frame_set`'s."""
        return int(frame_set.camera_stamps_ns.max()) + SLACK_NS < log_stamp

    def add(self, sweep: PointSweep, ready: Iterable[FrameSet], pending_ns: int | None) -> None:
        """Keep `sweep`, forgetting those too old for the sets `ready` and the camera pending since `pending_ns`."""
        self.sweeps.append(sweep)
        oldest = [int(f.camera_stamps_ns.min()) for f in ready] + ([pending_ns] if pending_ns is not None else [])
        if not oldest:
            return
        horizon = min(oldest) - MAX_AGE_NS - self._window_ns
        while len(self.sweeps) > 1 and self.sweeps[0].stamp_ns < horizon:
            self.sweeps.popleft()

    def attach(self, frame_set: FrameSet) -> FrameSet:
        """`frame_set` with the sweep nearest the middle of its cameras (None when no sweep is near enough)."""
        first, last = int(frame_set.camera_stamps_ns.min()), int(frame_set.camera_stamps_ns.max())
        middle = (first + last) // 2
        near = [s for s in self.sweeps if first - MAX_AGE_NS < s.stamp_ns <= last + SLACK_NS]
        frame_set.lidar = min(near, key=lambda s: abs(s.stamp_ns - middle), default=None)
        return frame_set
