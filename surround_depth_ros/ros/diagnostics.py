"""The node's /diagnostics: a translation of its lifecycle state, its runtime's stats and its inputs' health.

One DiagnosticStatus for the node's state (the lifecycle state, the last transition and why one
failed), one per input (rate, refusals by cause, publishers heard) and one for the pipeline (sets
published, dropped work by cause, timings, sync, binding, memory). Every count comes from
`PipelineStats`, the object `run-bag`'s summary reads too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode

from surround_depth_ros.core.health import Level, OutputWatchdog, memory_mb
from surround_depth_ros.core.runtime import IDLE

if TYPE_CHECKING:
    from surround_depth_ros.core.runtime import DepthRuntime


@dataclass
class TransitionLog:
    """The lifecycle state and the last transition, for /diagnostics; `failure` says why the last one failed."""

    state: str = "unconfigured"
    last: str = ""
    failure: str = ""
    count: int = 0

    def record(self, transition: str, state: str, failure: str = "") -> None:
        self.state, self.failure, self.count = state, failure, self.count + 1
        self.last = f"{transition}: {'failed: ' + failure if failure else 'ok'}"


class NodeDiagnostics:
    """Publishes the node's DiagnosticArray on each call of `publish` (a wall-clock timer of the node)."""

    def __init__(self, node: LifecycleNode) -> None:
        """`node`: the depth node (its runtime, subscriptions and transitions are read; no import of it here)."""
        self.node = node
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.watchdog: OutputWatchdog | None = None  # made at configure: it needs the anchor camera

    def publish(self) -> None:
        node, runtime = self.node, self.node.runtime
        array = DiagnosticArray()
        array.header.stamp = node.get_clock().now().to_msg()
        array.status.append(self._lifecycle_status())
        if runtime is not None:
            array.status += self._input_statuses(runtime)
            array.status.append(self._pipeline_status(runtime))
        self.publisher.publish(array)

    def _status(self, what: str, hardware: str, level: Level, message: str, values: dict) -> DiagnosticStatus:
        return DiagnosticStatus(
            level=bytes([int(level)]),
            name=f"{self.node.get_fully_qualified_name()}: {what}",
            message=message,
            hardware_id=hardware,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def _lifecycle_status(self) -> DiagnosticStatus:
        log = self.node.transitions
        level = Level.ERROR if log.failure else Level.OK if log.state == "active" else Level.WARN
        message = log.failure or log.state
        values = {"state": log.state, "last transition": log.last or "none", "transitions": log.count}
        return self._status("lifecycle", "surround_depth", level, message, values)

    def _input_statuses(self, runtime: DepthRuntime) -> list[DiagnosticStatus]:
        node, now = self.node, time.monotonic()
        waiting = runtime.assembler.waiting()
        statuses = []
        for name in runtime.stats.inputs:
            subscription = node.input_subscriptions.get(name)
            publishers = None if subscription is None else subscription.get_publisher_count()
            level, message, values = runtime.stats.input_status(
                name, now, runtime.settings.expected_rate_hz, publishers
            )
            if (info := node.info_subscriptions.get(name)) is not None:
                values["camera_info publishers"] = str(info.get_publisher_count())
            if name in waiting and level == Level.OK:
                level, message = Level.WARN, waiting[name]
            statuses.append(self._status(f"input {name}", name, level, message, values))
        return statuses

    def _pipeline_status(self, runtime: DepthRuntime) -> DiagnosticStatus:
        node, stats, assembler = self.node, runtime.stats, runtime.assembler
        engine, binding = runtime.pipeline.engine, runtime.pipeline.binding
        published = stats.processed_count
        values = {
            "preset": engine.config.name,
            "backend": f"{engine.backend_name} on {engine.device}",
            "frame sets published": published,
            "outputs with subscribers": ", ".join(sorted(node.wanted())) or "none",
            "camera slots": "not bound yet"
            if binding is None
            else ", ".join(f"{name}->{slot}" for name, slot in zip(binding.names, binding.slots, strict=True)),
            "radar motion compensation": "on (odom -> base on /tf)"
            if assembler.motion_compensated
            else "off (no radar, or no odom -> base on /tf)",
            "DDS rejoins (new participant: inputs with publishers but unheard, stale shared-memory ports, or "
            "a message rclpy could not take)": node.rejoin_policy.rejoins,
            "last rejoin": node.rejoin_policy.last_reason or "none",
            "camera firing offsets after the anchor, ms (given or learned)": ", ".join(
                f"{name} {'unplaced' if offset is None else f'{1000 * offset:.1f}'}"
                for name, offset in assembler.firing_offsets_s().items()
            ),
            **{f"sync {k}": v for k, v in assembler.stats().items() if v},
            **{f"dropped: {k}": v for k, v in stats.drops().items()},
            **{f"memory: {k} MB": f"{v:.1f}" for k, v in memory_mb().items()},
        }
        times = stats.time_means_ms()
        if times:
            values["processing_ms (mean of last 100)"] = f"{times['processing']:.1f}"
            values["pipeline_latency_ms, wall clock from last message (mean of last 100)"] = f"{times['latency']:.1f}"
            values["data age ms, ROS time (mean of last 100)"] = f"{times['age']:.1f}"
            for stage, ms in stats.stage_means_ms().items():
                values[f"stage {stage} ms (mean of last 100)"] = f"{ms:.1f}"
        level, message = self._pipeline_verdict(runtime, published)
        return self._status("pipeline", "surround_depth", level, message, values)

    def _pipeline_verdict(self, runtime: DepthRuntime, published: int) -> tuple[Level, str]:
        log, now = self.node.get_logger(), time.monotonic()
        waiting = runtime.assembler.waiting()
        for camera, why in waiting.items():
            log.warning(f"{camera} left out of the frame sets: {why}", throttle_duration_sec=5.0)
        level, message = Level.OK, f"{published} frame sets published"
        if not published:
            level, message = Level.WARN, "no frame set published yet"
        if waiting:
            level, message = Level.WARN, "; ".join(f"{k}: {v}" for k, v in sorted(waiting.items()))
        if runtime.idle:
            return Level.OK, f"idle: {IDLE} (inference resumes when one subscribes)"
        anchor, stalled = self._output_stall(runtime, now)
        if anchor:
            level, message = Level.WARN, anchor
        if stalled:
            errors = runtime.stats.recent_errors(now)
            more = f"; and {len(errors) - 1} more input(s) refused" if len(errors) > 1 else ""
            why = f": inputs are refused: {errors[0]}{more}" if errors else ""
            level, message = Level.ERROR, stalled + (f" ({message})" if level == Level.WARN else "") + why
            log.error(stalled, throttle_duration_sec=10.0)
        if runtime.binding_error:
            level, message = Level.ERROR, f"cameras cannot be bound to the model: {runtime.binding_error}"
        return level, message

    def _output_stall(self, runtime: DepthRuntime, now: float) -> tuple[str, str]:
        """The output watchdog's verdict on the cameras sending now (see `OutputWatchdog`)."""
        settings = runtime.settings
        if self.watchdog is None:
            self.watchdog = OutputWatchdog(settings.sync_anchor or settings.cameras[0], settings.output_timeout_s)
        self.watchdog.timeout_s = settings.output_timeout_s  # a run-time parameter
        if runtime.stats.last_processed is not None:
            self.watchdog.published(runtime.stats.last_processed)
        return self.watchdog.check(now, runtime.stats.sending(settings.cameras, now))
