"""Where each camera of a rig fires: the frame period and each camera's firing offset after the anchor camera.

`FrameSetSynchronizer` (core/sync.py, whose docstring says how sets are decided) asks this class
where a camera's message belongs; this class learns it from the stream, never from a guessed
pairing. The period is the recurring gap between any camera's successive stamps (lost frames make
longer gaps, which are ignored). Each camera's phase is its stamps' place within the anchor's
period (a circular mean over its recent messages). On the circle of one period the rig's phases
lie on an arc, and the widest gap between neighbouring phases is where one capture ends and the
next begins: each camera's offset is its place on that arc relative to the anchor. A layout
whose widest gap is not clearly the widest leaves those cameras unplaced, with the reason, until
given offsets say where they fire. Once placed, a camera's offset follows the median lag of its
matched messages, so slow drift is tracked.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence


def circular_phase(stamps: Sequence[int], anchors: Sequence[int], period: int) -> tuple[float, float]:
    """(phase, spread) in ns: where `stamps` fall within the period after their nearest anchor stamp.

    The phase is a circular mean, so stamps on both sides of the wrap average correctly; the
    spread is the circular standard deviation (0 for one stamp; large for stamps of another rate).
    `anchors` must be sorted and non-empty.
    """
    x = y = 0.0
    for stamp in stamps:
        i = bisect.bisect(anchors, stamp)
        nearest = min(anchors[max(i - 1, 0) : i + 1], key=lambda a: abs(stamp - a))
        angle = 2 * math.pi * ((stamp - nearest) % period) / period
        x, y = x + math.cos(angle), y + math.sin(angle)
    length = min(1.0, math.hypot(x, y) / len(stamps))
    spread = math.sqrt(-2 * math.log(length)) if length > 0 else math.inf
    return (math.atan2(y, x) % (2 * math.pi)) * period / (2 * math.pi), spread * period / (2 * math.pi)


def rig_layout(phases: Mapping[str, tuple[float, float]], anchor: str, period: int) -> dict[str, float] | None:
    """Each camera's offset from the anchor (ns) on the most compact arc of their phases; None when ambiguous.

    The widest gap between neighbouring phases on the circle separates one capture from the next;
    it must be wider than every other gap by twice the largest spread plus 1 % of the period (so
    that rounding never decides a tie), or the layout is not known.
    """
    order = sorted(phases, key=lambda name: phases[name][0])
    if len(order) < 2:
        return {name: 0.0 for name in order}
    places = [phases[name][0] for name in order]
    gaps = [after - before for before, after in zip(places, places[1:] + [places[0] + period], strict=True)]
    widest = max(range(len(gaps)), key=gaps.__getitem__)
    others = gaps[:widest] + gaps[widest + 1 :]
    margin = 2 * max(spread for _, spread in phases.values()) + period / 100
    if not gaps[widest] - max(others) > margin:
        return None
    start = phases[order[(widest + 1) % len(order)]][0]  # the first camera to fire in a capture
    origin = (phases[anchor][0] - start) % period
    return {name: (phase - start) % period - origin for name, (phase, _) in phases.items()}


class FiringLearner:
    """The rig's rhythm: its period and each camera's firing offset (ns) after `anchor`, given or learned.

    Fed with every accepted camera stamp (`note_stamp`) and the lag of every matched message
    (`learn_lag`); `place()` settles the cameras not placed yet. `history` stamps and gaps are kept
    per camera. The rhythm outlives `forget_stamps` (a synchronizer's reset): a looping bag or a
    stepped clock does not change the sensors.
    """

    def __init__(
        self, cameras: Sequence[str], anchor: str, offsets_s: Mapping[str, float] | None, history: int
    ) -> None:
        offsets = dict(offsets_s or {})
        unknown = sorted(set(offsets) - set(cameras))
        if unknown:
            raise ValueError(f"offsets_s names unknown cameras {unknown}; cameras are {list(cameras)}")
        if offsets.get(anchor, 0.0) != 0.0:
            raise ValueError(f"the anchor camera {anchor!r} has offset 0 by definition, got {offsets[anchor]}")
        for name, value in offsets.items():
            if not abs(value) < 1.0:  # also rejects NaN
                raise ValueError(f"offsets_s[{name!r}] must be a finite offset under 1 s, got {value}")
        self.cameras, self.anchor, self.history = list(cameras), anchor, history
        #: Each camera's offset after the anchor in ns, None while unplaced.
        self.offset: dict[str, int | None] = {name: None for name in cameras}
        self.offset.update({name: round(float(value) * 1e9) for name, value in offsets.items()})
        self.offset[anchor] = 0
        self._lags: dict[str, deque[int]] = {name: deque(maxlen=16) for name in cameras}  # matched stamp - anchor
        self._gaps: dict[str, deque[int]] = {name: deque(maxlen=history) for name in cameras}
        self._unplaced: dict[str, str] = {}  # camera -> why its offset is not known yet
        self._stamps: dict[str, list[int]] = {name: [] for name in cameras}  # recent accepted stamps, sorted
        self._period: tuple[int | None] | None = None  # cached (period_ns or None,) until new gaps come

    def forget_stamps(self) -> None:
        """Forget the recent stamps (a reset of time); the period's gaps and the offsets stay."""
        for stamps in self._stamps.values():
            stamps.clear()

    def note_stamp(self, name: str, stamp: int) -> None:
        """Keep the camera's recent stamps sorted, and the gaps to their neighbours (immune to reordering)."""
        stamps = self._stamps[name]
        index = bisect.bisect(stamps, stamp)
        self._gaps[name].extend(abs(stamp - stamps[i]) for i in (index - 1, index) if 0 <= i < len(stamps))
        stamps.insert(index, stamp)
        del stamps[: -self.history]
        if name == self.anchor or self._period == (None,):
            self._period = None  # estimated anew when asked: at the anchor's rate once known (it is costly)

    def place(self) -> None:
        """Learn the offsets of the cameras not placed yet from the stream's phases (see the module docstring)."""
        period, anchors = self.period_ns(), self._stamps[self.anchor]
        if period is None or not anchors:
            return
        phases = {
            name: (offset % period, 0.0) if offset is not None else circular_phase(self._stamps[name], anchors, period)
            for name, offset in self.offset.items()
            if offset is not None or self._stamps[name]
        }
        layout = rig_layout(phases, self.anchor, period)
        for name in phases:
            if self.offset[name] is not None:
                continue
            if layout is None:
                self._unplaced[name] = (
                    "its firing offset is ambiguous: its frames lie about as near the anchor's previous frame as "
                    "to its own; give it in the sync_offsets parameter"
                )
            else:
                self.offset[name] = round(layout[name])
                self._unplaced.pop(name, None)

    def learn_lag(self, name: str, lag: int) -> None:
        """Follow a placed camera's firing time by the median lag of its matched messages (tracks drift)."""
        lags = self._lags[name]
        lags.append(lag)
        if len(lags) >= 3:
            self.offset[name] = round(statistics.median(lags))

    def period_ns(self) -> int | None:
        """The cameras' frame period: the median of the shortest cluster of gaps that recurs.

        Gaps are between neighbouring stamps of each camera. A cluster is the gaps within 25 % above
        its shortest; the first holding a quarter of all gaps, two of them from one camera, is the
        period. So lost frames (longer gaps), a stray stamp (one odd short gap) and a pause of every
        input (one long gap per camera) do not move it. Gaps outlive a reset, as the rig's rate does.
        """
        if self._period is None:
            self._period = (self._estimate_period(),)
        return self._period[0]

    def _estimate_period(self) -> int | None:
        pooled = sorted((gap, name) for name in self.cameras for gap in self._gaps[name] if gap > 0)
        gaps = [gap for gap, _ in pooled]
        need = max(2, len(gaps) // 4)
        for i, shortest in enumerate(gaps):
            cluster = pooled[i : bisect.bisect_left(gaps, 1.25 * shortest)]
            names = [name for _, name in cluster]
            if len(cluster) >= need and len(set(names)) < len(names):
                return cluster[len(cluster) // 2][0]
        return None

    def spacing(self, name: str) -> int:
        """The camera's own smallest gap between stamps (its rate), else the rig's period, else 0."""
        gaps = self._gaps[name]
        return min(gaps) if len(gaps) >= 2 else (self.period_ns() or 0)

    def is_ambiguous(self, name: str) -> bool:
        """Whether the stream showed that it cannot place this camera (it waits for a given offset)."""
        return name in self._unplaced

    def offsets_s(self) -> dict[str, float | None]:
        """Each camera's firing offset from the anchor in seconds (given or learned), None while unplaced."""
        return {name: None if offset is None else offset / 1e9 for name, offset in self.offset.items()}

    def unplaced(self) -> dict[str, str]:
        """Cameras whose firing offset the stream has not settled, and why: they are left out of the sets."""
        return dict(self._unplaced)
