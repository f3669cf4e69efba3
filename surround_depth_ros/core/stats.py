"""The one account of a run: what each input sent and had refused, what work was dropped and why, what was
published and how long it took.

The node's /diagnostics and `run-bag`'s summary.json are both translations of this object, so a
cause counted live is counted under the same name offline. Thread-safe: the node's callbacks, decoder,
TF thread and worker write it while the diagnostics timer reads it.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable

import numpy as np

from surround_depth_ros.core.health import InputHealth, Level
from surround_depth_ros.core.ingest import Rejection

# Seconds between two log lines of one input and cause: a refused stream at 30 Hz must not flood the log.
LOG_EVERY_S = 5.0


class PipelineStats:
    """Per-input health, dropped work by cause, and the timings of processed frame sets.

    `window`: how many processed sets the timing means cover (None: all, as an offline run reports).
    Times are monotonic seconds.
    """

    def __init__(self, inputs: Iterable[str], window: int | None = 100) -> None:
        self.inputs = {name: InputHealth(name) for name in inputs}
        self._drops: Counter = Counter()
        self._processed = 0
        self._last_processed: float | None = None
        self._stages: deque = deque(maxlen=window)
        self._times: dict[str, deque] = {key: deque(maxlen=window) for key in ("processing", "latency", "age")}
        self._logged: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # ----- writing -----
    def accept(self, name: str, now: float) -> None:
        with self._lock:
            self.inputs[name].accept(now)

    def reject(self, rejection: Rejection, now: float, arrived: bool = True) -> bool:
        """Count a refusal (`arrived` False: no message brought it); True when it is due to be logged (once per
        `LOG_EVERY_S` per input and cause)."""
        with self._lock:
            self.inputs[rejection.input].reject(rejection.cause, rejection.message, now, arrived)
            return self._due((rejection.input, rejection.cause), now)

    def due(self, key: tuple[str, str], now: float) -> bool:
        """Whether a message about `key` may be logged now (at most every `LOG_EVERY_S`)."""
        with self._lock:
            return self._due(key, now)

    def _due(self, key: tuple[str, str], now: float) -> bool:
        if now - self._logged.get(key, -np.inf) < LOG_EVERY_S:
            return False
        self._logged[key] = now
        return True

    def drop(self, cause: str, count: int = 1) -> None:
        """Work not done, by cause: an image the decoder had no time for, a stale set replaced, a failed set."""
        with self._lock:
            self._drops[cause] += count

    def processed(
        self,
        timings_ms: dict[str, float],
        now: float,
        processing_ms: float | None = None,
        latency_ms: float | None = None,
        age_ms: float | None = None,
    ) -> None:
        """A frame set went through the pipeline and out: its stage timings and, live, its wall-clock figures."""
        with self._lock:
            self._processed += 1
            self._last_processed = now
            self._stages.append(timings_ms)
            for key, value in (("processing", processing_ms), ("latency", latency_ms), ("age", age_ms)):
                if value is not None:
                    self._times[key].append(value)

    # ----- reading -----
    @property
    def processed_count(self) -> int:
        return self._processed

    @property
    def last_processed(self) -> float | None:
        """When the last set went out (monotonic s), None before the first."""
        return self._last_processed

    def drops(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._drops.items()))

    def stage_means_ms(self) -> dict[str, float]:
        """Mean milliseconds per pipeline stage over the window, in the pipeline's order."""
        with self._lock:
            stages = list(self._stages)
        names = dict.fromkeys(stage for timing in stages for stage in timing)
        return {name: float(np.mean([t.get(name, 0.0) for t in stages])) for name in names}

    def time_means_ms(self) -> dict[str, float]:
        """Mean processing, latency (wall clock from the last message) and data age (ROS time), where measured."""
        with self._lock:
            return {key: float(np.mean(values)) for key, values in self._times.items() if values}

    def input_status(
        self, name: str, now: float, expected_rate_hz: float, publishers: int | None
    ) -> tuple[Level, str, dict[str, str]]:
        with self._lock:
            return self.inputs[name].status(now, expected_rate_hz, publishers)

    def sending(self, names: Iterable[str], now: float) -> list[str]:
        """The inputs among `names` that sent anything within their window."""
        with self._lock:
            return [n for n in names if now - self.inputs[n].last_arrival <= self.inputs[n].window_s]

    def recent_errors(self, now: float) -> list[str]:
        """Each input's latest refusal, for those refused within their window."""
        with self._lock:
            return [h.last_error for h in self.inputs.values() if now - h.last_error_time <= h.window_s]

    def rejected(self) -> dict[str, dict[str, int]]:
        """Refused messages per input and cause (inputs with none left out)."""
        with self._lock:
            return {name: dict(sorted(h.rejected.items())) for name, h in self.inputs.items() if h.rejected}

    def summary(self) -> dict:
        """JSON-ready: sets processed, work dropped by cause, refusals per input and cause, mean stage times."""
        return {
            "frame_sets_processed": self._processed,
            "dropped": self.drops(),
            "inputs_rejected": self.rejected(),
            "pipeline_ms_mean": {stage: round(ms, 2) for stage, ms in self.stage_means_ms().items()},
        }
