"""The surround depth node: the ROS face of the package, wiring only.

Subscription callbacks check and decode messages (zero-copy where possible) and hand them to the
`FrameAssembler`, the same ROS-free core `RosbagReader` uses, which emits complete `FrameSet`s; a
worker thread takes the newest one, runs `pipeline.process(frame_set)` and publishes. When
inference is slower than the cameras the newest set wins and the stale one is counted, never
queued. Every rejected input (wrong encoding, size that disagrees with its CameraInfo, missing
transform) is logged with what to fix, counted on /diagnostics, and the other cameras keep
being served.

Threads and who owns what: the executor runs callbacks and timers; image callbacks only check
the declared size and queue the message, so a slow decode never holds up /tf, CameraInfo or the
other cameras; the decoder thread decodes (OpenCV releases the GIL), checks and hands images to
the assembler; TF callbacks take their messages serialized and queue them for the TF thread, which
deserializes and stores them, so a 10,000-frame message never holds up the timers or images (nor
makes the executor watchdog take a busy node for a stuck one); the worker owns the pipeline and
its engine (a clock reset reaches it as a request, `_reset_requested`, never as a call from a
callback). The assembler locks itself. `_lock` guards the node's own shared state: the CameraInfo
messages kept for republishing, the input health counters, the drop counters and the timing
windows, written by callbacks, the decoder, the TF thread and the worker and read by the
diagnostics timer.

Started by `ros2 run surround_depth_ros surround_depth_node`, `ros2 launch surround_depth_ros
surround_depth.launch.py`, or `python -m surround_depth_ros.ros.node --ros-args --params-file F`.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from functools import partial
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage

from surround_depth_ros.base.images import ImageFormatError, decode_compressed_rgb
from surround_depth_ros.conversion.messages import depth_output_messages
from surround_depth_ros.core.assembler import AssembledSet, Intrinsics, assembler_from_settings
from surround_depth_ros.core.binding import BindingError
from surround_depth_ros.core.camera_model import camera_model_problems
from surround_depth_ros.core.health import InputHealth, Level, OutputWatchdog, RejoinPolicy, memory_mb
from surround_depth_ros.core.mailbox import LatestMailbox
from surround_depth_ros.core.params import NODE_NAME
from surround_depth_ros.core.pipeline import STAGES, StartupError, SurroundDepthPipeline, pipeline_from_settings
from surround_depth_ros.core.transforms import FRAME_LIMIT
from surround_depth_ros.ros.dds import (
    compatible_publishers,
    stale_shm_ports,
    type_name,
    use_large_image_transport,
)
from surround_depth_ros.ros.messages import MESSAGES, cloud_points, image_rgb, stamp_ns, transform_batch
from surround_depth_ros.ros.parameters import ParameterError, declare_and_read
from surround_depth_ros.sensors.pointcloud import PointCloudError, sweep_from_array

TF_STATIC_QOS = QoSProfile(
    depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
)
# Wall time without any camera message after which a waiting frame set is decided (end of a stream).
STALL_S = 1.0
# Images waiting for the decoder, per camera: a second of frames at 12 Hz. Beyond that the decoder cannot
# keep up; the oldest image is dropped and counted, so the queue never grows latency without bound.
DECODE_QUEUE_PER_CAMERA = 12
# Seconds a stop (Ctrl-C, SIGTERM) waits for the frame set in hand before leaving it: a user expects the node
# to go at once, and launch escalates to SIGTERM after 5 s. A forward pass cannot be interrupted.
STOP_WAIT_S = 1.0
# TF messages waiting for the TF thread beyond which the oldest /tf ones are dropped: the /tf subscription's depth.
TF_BACKLOG = 100
# Seconds without a turn of the executor (it turns at least every 0.25 s) after which the process ends (exit 1).
EXECUTOR_STUCK_S = 15.0


class SurroundDepthNode(Node):
    """Six cameras (+ radar) in; depth, confidence, camera_info per camera and a fused cloud out."""

    def __init__(
        self,
        pipeline: SurroundDepthPipeline | None = None,
        rejoin: RejoinPolicy | None = None,
        **kwargs,  # noqa: ANN003 - rclpy Node options
    ) -> None:
        """`pipeline` and `rejoin` are handed on when the node joins DDS again (see `rejoin`)."""
        super().__init__(NODE_NAME, **kwargs)
        # First, so that destroy_node works whatever later step of the construction fails.
        self._mailbox: LatestMailbox[tuple[float, AssembledSet]] = LatestMailbox()
        self._worker: threading.Thread | None = None
        self._decoder: threading.Thread | None = None
        self._tf_thread: threading.Thread | None = None
        self._tf_queue: queue.Queue = queue.Queue()
        self._destroyed = False
        s = self.settings = declare_and_read(self)
        self.cameras: list[str] = list(s.cameras)
        self.pipeline = pipeline or pipeline_from_settings(s)
        self.rejoin_policy = rejoin or RejoinPolicy()
        self.rejoin_policy.joined = time.monotonic()
        self.rejoin_requested = threading.Event()
        self._heard: set[str] = set()  # inputs with any message since this participant joined (executor thread)
        self.radars: list[str] = list(s.radars) if self.pipeline.uses_radar else []
        if s.radars and not self.pipeline.uses_radar:
            self.get_logger().warning(
                f"radars {s.radars} are configured but preset {self.pipeline.engine.config.name!r} has no radar "
                "branch: radar topics are not subscribed"
            )
        self.health = {name: InputHealth(name) for name in self.cameras + self.radars}
        self.drops: Counter = Counter()
        self._skewed: Counter = Counter()  # the synchronizer's clock_skew count per input, as last seen
        self._last_logged: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.assembler = assembler_from_settings(s, self.radars)
        self._resets_seen = 0
        self._reset_requested = threading.Event()
        self.camera_info: dict[str, CameraInfo] = {}
        self._latency_ms: deque = deque(maxlen=100)
        self._age_ms: deque = deque(maxlen=100)
        self._processing_ms: deque = deque(maxlen=100)
        self._stage_ms: deque = deque(maxlen=100)  # the pipeline's timings_ms per set
        self._published = 0
        self._watchdog = OutputWatchdog(s.sync_anchor or self.cameras[0], s.output_timeout_s)
        self._binding_error = ""
        self._decode_queue: queue.Queue = queue.Queue(DECODE_QUEUE_PER_CAMERA * len(self.cameras))

        self._create_subscriptions()
        self._create_publishers()
        self._last_arrival: float | None = None  # monotonic time of the newest camera message
        self._stall_seen = False  # the stall timer saw a stall on its previous poll (executor thread only)
        # Wall-clock timers: under use_sim_time a paused or finished bag stops /clock, and the
        # diagnostics and the decision on a stalled set must go on.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics, clock=steady)
        self.create_timer(0.05, self._poll_stalled, clock=steady)
        self.create_timer(0.5, self._check_rejoin, clock=steady)
        self._decoder = threading.Thread(target=self._decode_loop, name="surround_depth_decoder", daemon=True)
        self._tf_thread = threading.Thread(target=self._tf_loop, name="surround_depth_tf", daemon=True)
        self._tf_thread.start()
        self._decoder.start()
        self._worker = threading.Thread(target=self._work, name="surround_depth_inference", daemon=True)
        self._worker.start()
        engine = self.pipeline.engine
        self.get_logger().info(
            f"preset {engine.config.name} on {engine.backend_name}/{engine.device}, input "
            f"{engine.input_size[1]}x{engine.input_size[0]}; listening to {len(self.cameras)} cameras: "
            + ", ".join(self._image_subscriptions[c].topic_name for c in self.cameras)
            + (f"; radars: {', '.join(self.radars)}" if self.radars else "")
        )

    # ----- wiring -----
    def _subscribe(self, kind: type, topic: str, sensor: str, callback: Any) -> Any:  # noqa: ANN401 - rclpy types
        """A sensor subscription whose QoS mismatch with a publisher is logged and counted, never silent."""
        reliability = ReliabilityPolicy.RELIABLE
        if self.settings.input_reliability == "best_effort":
            reliability = ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=self.settings.sync_buffer_size, reliability=reliability)

        def incompatible(info: Any) -> None:  # noqa: ANN401 - rclpy event status
            policy = qos_policy_name_from_kind(info.last_policy_kind)
            self._reject(
                sensor,
                "QoS mismatch",
                f"{sensor}: a publisher on {self.resolve_topic_name(topic)} is "
                f"incompatible with this node's {policy} QoS ({self.settings.input_reliability}): a "
                "best-effort publisher needs input_reliability:=best_effort",
            )

        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        return self.create_subscription(kind, topic, callback, qos, event_callbacks=events)

    def _create_subscriptions(self) -> None:
        s = self.settings
        compressed = s.image_transport == "compressed"
        self._image_subscriptions = {
            camera: self._subscribe(
                CompressedImage if compressed else Image,
                s.image_topic.format(camera=camera) + ("/compressed" if compressed else ""),
                camera,
                partial(self._on_image, camera),
            )
            for camera in self.cameras
        }
        self._info_subscriptions = {
            camera: self._subscribe(
                CameraInfo, s.camera_info_topic.format(camera=camera), camera, partial(self._on_camera_info, camera)
            )
            for camera in self.cameras
        }
        self._radar_subscriptions = {
            radar: self._subscribe(
                PointCloud2, s.radar_topic.format(radar=radar), radar, partial(self._on_radar, radar)
            )
            for radar in self.radars
        }
        # Serialized: rclpy alone takes about 0.15 s to make the objects of 10,000 transforms; the TF thread does.
        self.create_subscription(TFMessage, "/tf_static", partial(self._on_tf, static=True), TF_STATIC_QOS, raw=True)
        self.create_subscription(TFMessage, "/tf", partial(self._on_tf, static=False), TF_BACKLOG, raw=True)

    def _create_publishers(self) -> None:
        # Keyed by topic as `bag.messages.depth_output_messages` names them, so run-bag writes what is published here.
        self._output_pub = {}
        for c in self.cameras:
            self._output_pub[f"{c}/depth/image"] = self.create_publisher(Image, f"{c}/depth/image", 5)
            self._output_pub[f"{c}/depth/camera_info"] = self.create_publisher(CameraInfo, f"{c}/depth/camera_info", 5)
            if self.settings.publish_confidence:
                self._output_pub[f"{c}/depth/confidence"] = self.create_publisher(Image, f"{c}/depth/confidence", 5)
        self._output_pub["depth/points"] = self.create_publisher(PointCloud2, "depth/points", 5)
        self._processing_pub = self.create_publisher(Float64, "~/debug/processing_time_ms", 10)
        self._latency_pub = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", 10)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    # ----- callbacks: check, decode, hand over; never block on the network -----
    def _reject(self, name: str, cause: str, message: str) -> None:
        """Count a rejected input and log it, at most every 5 s per input and cause."""
        now = time.monotonic()
        with self._lock:
            self.health[name].reject(cause, message, now)
            due = now - self._last_logged.get((name, cause), -np.inf) >= 5.0
            if due:
                self._last_logged[(name, cause)] = now
        if due:
            self.get_logger().error(message)

    def _on_image(self, camera: str, msg: Image | CompressedImage) -> None:
        """Refuse a raw image over the pixel budget; queue the rest for the decoder (oldest dropped when full)."""
        self._last_arrival = time.monotonic()
        self._heard.add(camera)
        budget = self.settings.max_image_pixels
        if isinstance(msg, Image) and msg.width * msg.height > budget:
            self._reject(
                camera,
                "size",
                f"{camera}: image is {msg.width}x{msg.height} = {msg.width * msg.height} "
                f"pixels, over the budget of {budget} (parameter max_image_pixels)",
            )
            return
        while True:
            try:
                self._decode_queue.put_nowait((camera, msg))
                return
            except queue.Full:
                try:
                    dropped, _ = self._decode_queue.get_nowait()
                except queue.Empty:
                    continue
                with self._lock:
                    self.drops[f"decoder busy (oldest image dropped): {dropped}"] += 1

    def _decode_loop(self) -> None:
        """The decoder thread: decode and check queued images until `None` arrives; no image can stop it."""
        while (item := self._decode_queue.get()) is not None:
            camera, msg = item
            try:
                self._ingest_image(camera, msg)
            except Exception as error:  # noqa: BLE001 - one image must not stop the decoder
                self._reject(camera, "decode error", f"{camera}: cannot use this image: {error!r}")

    def _ingest_image(self, camera: str, msg: Image | CompressedImage) -> None:
        with self._lock:
            info = self.camera_info.get(camera)
        try:
            if isinstance(msg, CompressedImage):
                expected = None if info is None else (info.width, info.height)
                rgb = decode_compressed_rgb(msg.format, msg.data, self.settings.max_image_pixels, expected)
            else:
                rgb = image_rgb(msg)
        except ImageFormatError as error:
            self._reject(camera, error.cause, f"{camera}: {error}")
            return
        if info is not None and (info.width, info.height) != (rgb.shape[1], rgb.shape[0]):
            size = f"{rgb.shape[1]}x{rgb.shape[0]}"
            self._reject(
                camera,
                "camera_info mismatch",
                (
                    f"{camera}: image is {size} but its camera_info says {info.width}x{info.height}: "
                    "publish the CameraInfo of this image stream (check remappings and the driver's resolution)"
                ),
            )
            return
        stamp = stamp_ns(msg.header.stamp)
        self._account(camera, stamp, self.assembler.add_image(camera, stamp, msg.header.frame_id, rgb))
        self._last_arrival = time.monotonic()
        self._hand_over(self.assembler.poll())

    def _account(self, name: str, stamp: int, accepted: bool) -> None:
        """Count a message for its input; one the synchronizer refused for a skewed clock is a named rejection.

        Other refusals (a duplicate, a message too late) are the synchronizer's ordinary business, counted there.
        """
        if stamp == 0:
            self._reject(
                name,
                "zero stamp",
                f"{name}: header.stamp is 0: the driver does not stamp its messages, so they cannot be synchronized "
                "(set the driver's time stamping, e.g. its use_sim_time or hardware/system clock option)",
            )
            return
        skewed = 0 if accepted else self.assembler.stats().get(f"clock_skew:{name}", 0)
        with self._lock:
            if skewed <= self._skewed[name]:
                self.health[name].accept(time.monotonic())
                return
            self._skewed[name] = skewed
        bound = self.settings.sync_max_skew_s
        self._reject(
            name,
            "clock skew",
            f"{name}: stamp {stamp / 1e9:.3f} s is more than sync_max_skew_s = {bound:g} s from the other cameras' "
            "time: this sensor's clock is off (check its time synchronization, PTP/NTP)",
        )

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        self._heard.add(f"{camera} camera_info")
        problems = camera_model_problems(camera, msg.k, msg.p, msg.d, msg.distortion_model, msg.width, msg.height)
        if problems:
            # The camera is excluded until a valid CameraInfo comes: its last good model would hide the fault.
            self.assembler.forget_intrinsics(camera, "; ".join(problems))
            self._reject(camera, "camera_info invalid", f"{camera}: " + "; ".join(problems))
            return
        with self._lock:
            self.camera_info[camera] = msg
        K = np.asarray(msg.k, np.float64).reshape(3, 3)
        self.assembler.set_intrinsics(camera, Intrinsics(K, msg.width, msg.height, msg.header.frame_id))

    def _on_radar(self, radar: str, msg: PointCloud2) -> None:
        self._heard.add(radar)
        try:
            sweep = sweep_from_array(radar, stamp_ns(msg.header.stamp), cloud_points(msg))
        except (PointCloudError, ValueError) as error:
            self._reject(radar, "bad cloud", f"{radar}: {error}")
            return
        self._account(
            radar, sweep.stamp_ns, self.assembler.add_radar(radar, sweep.stamp_ns, msg.header.frame_id, sweep)
        )
        self._hand_over(self.assembler.poll())

    def _on_tf(self, raw: bytes, static: bool) -> None:
        """Queue a serialized TF message for the TF thread: the executor never waits on a large tree."""
        self._tf_queue.put((raw, static))

    def _tf_loop(self) -> None:
        """The TF thread: deserialize and store queued TF messages, in arrival order, until `None` arrives.

        Behind by more than TF_BACKLOG messages, it drops the oldest /tf ones, counted, as the subscription's
        own depth would (never /tf_static, latched once). No message can stop it.
        """
        while (item := self._tf_queue.get()) is not None:
            raw, static = item
            topic = "/tf_static" if static else "/tf"
            if not static and self._tf_queue.qsize() > TF_BACKLOG:
                with self._lock:
                    self.drops["TF thread busy (oldest /tf message dropped)"] += 1
                continue
            try:
                self._store_tf(deserialize_message(raw, TFMessage), topic)
            except Exception as error:  # noqa: BLE001 - one message must not stop the TF thread
                with self._lock:
                    self.drops[f"{topic} message unusable"] += 1
                self.get_logger().error(f"{topic}: cannot use this message: {error!r}", throttle_duration_sec=5.0)

    def _store_tf(self, msg: TFMessage, topic: str) -> None:
        """Store a whole TF message in one pass (`TransformBuffer.set_transforms`: its cost grows with the message,
        not with the tree); what the buffer ignored is counted and logged by cause, once per message (at most
        every 5 s per cause), never per transform; a set held for a transform may go now."""
        report = self.assembler.add_transforms(transform_batch(msg.transforms), topic == "/tf_static")
        now = time.monotonic()
        with self._lock:
            for cause, count in report.ignored().items():
                self.drops[f"transforms ignored ({cause})"] += count
            due = [cause for cause in report.counts if now - self._last_logged.get((topic, cause), -np.inf) >= 5.0]
            self._last_logged.update(dict.fromkeys(((topic, cause) for cause in due), now))
        for cause in due:
            hint = " (parameter tf_max_frames)" if cause == FRAME_LIMIT else ""
            self.get_logger().warning(
                f"{topic}: {report.counts[cause]} of {len(msg.transforms)} transforms: {cause}{hint}, "
                f"e.g. {report.first[cause]}"
            )
        if self.assembler.holding():
            self._hand_over(self.assembler.poll())

    def _poll_stalled(self) -> None:
        """Decide the waiting sets when every input has been silent for STALL_S of wall time.

        While messages flow, message time decides (a silent camera is outwaited by the others'
        stamps); only the end of a stream needs the wall clock. The synchronizer is told the stream
        ended (every waiting set is decided, a one-frame stream is paired nearest-first) at a message
        time just past the oldest waiting set's wait: further would expire radar sweeps that later
        sets still want, and the cameras' clocks need not agree with this computer's.

        Under load the executor can be late, with messages received but not yet taken or decoded: a
        stall must be seen with the decoder and the TF thread idle, and again on the next poll, after
        the executor has run the subscriptions that were ready together with this timer. Sets held for
        a transform go then too: STALL_S is longer than any tf_wait_s.
        """
        pending = self.assembler.oldest_pending_ns()
        arrival = self._last_arrival
        stalled = pending is not None and arrival is not None and time.monotonic() - arrival > STALL_S
        if not (stalled and self._decode_queue.empty() and self._tf_queue.empty()):
            self._stall_seen = False
        elif not self._stall_seen:
            self._stall_seen = True
        else:
            self._stall_seen = False
            now = pending + int(1e9 * self.settings.sync_wait_s) + 1
            self._hand_over(self.assembler.poll(now, stream_stalled=True))

    def _hand_over(self, sets: list[AssembledSet]) -> None:
        """Keep only the newest set for the worker; on a clock jump, ask it to forget temporal state."""
        resets = self.assembler.clock_resets()
        if resets != self._resets_seen:
            self._resets_seen = resets
            self._reset_requested.set()
            self.get_logger().warning("time jumped (a looping bag, a stepped clock): buffers and temporal state reset")
        arrival = time.monotonic()  # the set's last message has just arrived (or the stall timer decided it)
        for assembled in sets:
            replaced = self._mailbox.put((arrival, assembled))
            if replaced:
                with self._lock:
                    self.drops["inference busy (stale set replaced)"] += 1

    # ----- the worker: inference and publishing -----
    def _work(self) -> None:
        while not self._mailbox.closed:
            taken = self._mailbox.take()
            if taken is None:
                continue
            arrival, assembled = taken
            if self._reset_requested.is_set():
                self._reset_requested.clear()
                self.pipeline.engine.reset()
            try:
                self._process(arrival, assembled)
            except BindingError as error:
                self._binding_error = str(error)
                self.get_logger().error(f"cannot bind the cameras to the model: {error}", throttle_duration_sec=10.0)
            except Exception as error:  # noqa: BLE001 - one bad set must not stop the node
                with self._lock:
                    self.drops["inference error"] += 1
                self.get_logger().error(f"frame set {assembled.frame_set.name} failed: {error!r}")

    def _process(self, arrival: float, assembled: AssembledSet) -> None:
        start = time.perf_counter()
        frame_set = assembled.frame_set
        if self.pipeline.bind(frame_set.rig):
            trained = self.pipeline.trained.camera_names if self.pipeline.trained else []
            self.get_logger().info(
                f"cameras bound to the model's slots: {self.pipeline.binding.describe(trained)}"
                if trained
                else "cameras bound to the model's slots in list order"
            )
        self._binding_error = ""
        outputs = self.pipeline.process(frame_set)
        with self._lock:
            infos = {name: self.camera_info[name] for name in frame_set.rig.camera_names}
        for topic, _, _, msg in depth_output_messages(MESSAGES, frame_set, outputs, infos, self.settings):
            self._output_pub[topic].publish(msg)
        processing_ms = 1000 * (time.perf_counter() - start)
        latency_ms = 1000 * (time.monotonic() - arrival)
        age_ms = (self.get_clock().now().nanoseconds - frame_set.stamp_ns) / 1e6
        with self._lock:
            self._stage_ms.append(outputs.timings_ms)
            self._processing_ms.append(processing_ms)
            self._latency_ms.append(latency_ms)
            self._age_ms.append(age_ms)
            self._published += 1
            self._watchdog.published(time.monotonic())
        self._processing_pub.publish(Float64(data=processing_ms))
        self._latency_pub.publish(Float64(data=latency_ms))

    # ----- diagnostics -----
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        waiting = self.assembler.waiting()
        for name, health in self.health.items():
            subscription = self._image_subscriptions.get(name) or self._radar_subscriptions[name]
            publishers = subscription.get_publisher_count()
            with self._lock:
                level, message, values = health.status(now, self.settings.expected_rate_hz, publishers)
            if name in self._info_subscriptions:
                values["camera_info publishers"] = str(self._info_subscriptions[name].get_publisher_count())
            if name in waiting and level == Level.OK:
                level, message = Level.WARN, waiting[name]
            array.status.append(self._status(f"input {name}", name, level, message, values))
        array.status.append(self._pipeline_status())
        self._diagnostics.publish(array)

    def _status(self, what: str, hardware: str, level: Level, message: str, values: dict) -> DiagnosticStatus:
        return DiagnosticStatus(
            level=bytes([int(level)]),
            name=f"{self.get_fully_qualified_name()}: {what}",
            message=message,
            hardware_id=hardware,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def _pipeline_status(self) -> DiagnosticStatus:
        engine = self.pipeline.engine
        sync = {f"sync {k}": v for k, v in self.assembler.stats().items() if v}
        binding = self.pipeline.binding
        memory = {f"memory: {k} MB": f"{v:.1f}" for k, v in memory_mb().items()}  # reads /proc: outside the lock
        offsets = self.assembler.firing_offsets_s()
        with self._lock:
            values = {
                "preset": engine.config.name,
                "backend": f"{engine.backend_name} on {engine.device}",
                "frame sets published": self._published,
                "camera slots": "not bound yet"
                if binding is None
                else ", ".join(f"{name}->{slot}" for name, slot in zip(binding.names, binding.slots, strict=True)),
                "radar motion compensation": "on (odom -> base on /tf)"
                if self.assembler.motion_compensated
                else "off (no radar, or no odom -> base on /tf)",
                "DDS rejoins (new participant: inputs with publishers but unheard, stale shared-memory ports, or "
                "a message rclpy could not take)": self.rejoin_policy.rejoins,
                "last rejoin": self.rejoin_policy.last_reason or "none",
                "camera firing offsets after the anchor, ms (given or learned)": ", ".join(
                    f"{name} {'unplaced' if offset is None else f'{1000 * offset:.1f}'}"
                    for name, offset in offsets.items()
                ),
                **sync,
                **{f"dropped: {k}": v for k, v in sorted(self.drops.items())},
                **memory,
            }
            if self._latency_ms:
                values["processing_ms (mean of last 100)"] = f"{np.mean(self._processing_ms):.1f}"
                values["pipeline_latency_ms, wall clock from last message (mean of last 100)"] = (
                    f"{np.mean(self._latency_ms):.1f}"
                )
                values["data age ms, ROS time (mean of last 100)"] = f"{np.mean(self._age_ms):.1f}"
                for stage in (*STAGES, "total"):
                    values[f"stage {stage} ms (mean of last 100)"] = (
                        f"{np.mean([t.get(stage, 0.0) for t in self._stage_ms]):.1f}"
                    )
            published = self._published
        waiting = self.assembler.waiting()
        for camera, why in waiting.items():
            self.get_logger().warning(f"{camera} left out of the frame sets: {why}", throttle_duration_sec=5.0)
        level, message = Level.OK, f"{published} frame sets published"
        if not published:
            level, message = Level.WARN, "no frame set published yet"
        if waiting:
            level, message = Level.WARN, "; ".join(f"{k}: {v}" for k, v in sorted(waiting.items()))
        anchor, stalled = self._output_stall(time.monotonic())
        if anchor:
            level, message = Level.WARN, anchor
        if stalled:
            why = self._rejections_now(time.monotonic())
            level, message = Level.ERROR, stalled + (f" ({message})" if level == Level.WARN else "") + why
            self.get_logger().error(stalled, throttle_duration_sec=10.0)
        if self._binding_error:
            level, message = Level.ERROR, f"cameras cannot be bound to the model: {self._binding_error}"
        return self._status("pipeline", "surround_depth", level, message, values)

    def _rejections_now(self, now: float) -> str:
        """Why the inputs are refused, from each one's latest error in its window: "" when none is."""
        with self._lock:
            errors = [h.last_error for h in self.health.values() if now - h.last_error_time <= h.window_s]
        if not errors:
            return ""
        more = f"; and {len(errors) - 1} more input(s) refused" if len(errors) > 1 else ""
        return f": inputs are refused: {errors[0]}{more}"

    def _output_stall(self, now: float) -> tuple[str, str]:
        """The output watchdog's verdict on the cameras sending now (see `OutputWatchdog`)."""
        with self._lock:
            sending = [c for c in self.cameras if now - self.health[c].last_arrival <= self.health[c].window_s]
            return self._watchdog.check(now, sending)

    def _check_rejoin(self) -> None:
        """Ask `main` for a new DDS participant when an input is matched and unheard (see `RejoinPolicy`)."""
        if self.rejoin_requested.is_set():
            return
        subscriptions = {
            **self._image_subscriptions,
            **self._radar_subscriptions,
            **{f"{name} camera_info": s for name, s in self._info_subscriptions.items()},
        }
        unheard = {name: self._publishers_to_hear(s) for name, s in subscriptions.items() if name not in self._heard}
        reason = self.rejoin_policy.check(time.monotonic(), unheard, stale_shm_ports())
        if reason:
            self.get_logger().warning(reason)
            self.rejoin_policy.last_reason = reason
            self.rejoin_requested.set()

    def _publishers_to_hear(self, subscription: Any) -> int:  # noqa: ANN401 - rclpy Subscription
        """Publishers an input should hear: those its reader matched or, while it matched none, the compatible ones
        the ROS graph shows (a reader that missed a writer's announcement is deaf with nothing matched)."""
        return subscription.get_publisher_count() or compatible_publishers(
            self.get_publishers_info_by_topic(subscription.topic_name),
            type_name(subscription.msg_type),
            subscription.qos_profile.reliability == ReliabilityPolicy.RELIABLE,
        )

    def executor_failed(self, error: Exception) -> None:
        """An exception out of an executor turn: logged, and the node joins DDS again (`last rejoin` says why).

        rclpy failing to take a message (seen with a sample from a shared-memory segment another
        process made anew: "Unable to convert call argument '0' to Python object") leaves the
        subscription's callback group taken for good, and with it every callback of the group: the
        node would turn on, deaf. A new participant makes every subscription and timer anew.
        """
        topic = _topic_being_taken(error)
        cause = f"executor error{f' on {topic}' if topic else ''}: {type(error).__name__}: {error}"
        where = traceback.extract_tb(error.__traceback__)[-1]
        self.get_logger().error(f"{cause} (at {where.filename}:{where.lineno}): joining again with a new participant")
        self.rejoin_policy.last_reason = cause
        self.rejoin_requested.set()

    def stop_work(self, timeout_s: float = 10.0) -> bool:
        """Stop the decoder (images still queued are dropped) and the worker, letting it finish the set in hand
        within `timeout_s`: they use the pipeline, which a rejoin hands on. False when the worker is still busy.
        Only the first call waits: `destroy_node` (also called by rclpy's shutdown) does not wait again."""
        if self._mailbox.closed:
            return self._decoder is None and self._worker is None
        self._mailbox.close()
        deadline = time.monotonic() + timeout_s
        if self._decoder is not None:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._decode_queue.get_nowait()
            self._decode_queue.put(None)  # the executor no longer turns: nothing refills the queue
            self._decoder.join(timeout=max(0.0, deadline - time.monotonic()))
            if not self._decoder.is_alive():
                self._decoder = None
        if self._worker is not None:
            self._worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if not self._worker.is_alive():
                self._worker = None
        return self._decoder is None and self._worker is None

    def destroy_node(self) -> None:
        """Idempotent: a signal during a rejoin may find the old node destroyed already."""
        self.stop_work()
        if self._tf_thread is not None:
            self._tf_queue.put(None)  # after what is queued
            self._tf_thread.join(timeout=10)
            self._tf_thread = None
        if not self._destroyed:
            self._destroyed = True
            super().destroy_node()


def _topic_being_taken(error: Exception) -> str:
    """The topic of the subscription rclpy's executor was taking a message from when `error` rose, else "".

    rclpy names it `sub` in the frame that takes (`Executor._take_subscription`); only read here.
    """
    for frame, _ in traceback.walk_tb(error.__traceback__):
        topic = getattr(frame.f_locals.get("sub"), "topic_name", None)
        if isinstance(topic, str):
            return topic
    return ""


def _interrupt(signum: int, frame: object) -> None:
    """Stop spinning on the first SIGINT/SIGTERM; later ones are ignored so that shutdown finishes cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def rejoin(node: SurroundDepthNode, args: list[str]) -> SurroundDepthNode:
    """The same node on a new DDS participant, with the old one's pipeline; the old one is destroyed.

    The new participant must be created while the old one still holds its id, so that it gets
    another id and fresh shared-memory ports no peer has stale state about. A participant lives as
    long as a node of its context: a stand-in node keeps the old one while the node itself goes
    first, so that the new node owns its name's /rosout publisher.
    """
    policy, pipeline, old_context = node.rejoin_policy, node.pipeline, node.context
    stand_in = rclpy.create_node(f"{NODE_NAME}_rejoining", context=old_context, enable_rosout=False)
    node.destroy_node()
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    policy.rejoined(time.monotonic())
    try:
        fresh = SurroundDepthNode(pipeline=pipeline, rejoin=policy, context=context)
    finally:
        stand_in.destroy_node()
        rclpy.try_shutdown(context=old_context)
        old_context.destroy()
    return fresh


def _spin_until_rejoin(node: SurroundDepthNode) -> None:
    """Spin until a rejoin is asked for or the context ends, with the executor watchdog armed at every turn.

    An exception out of a turn is logged and asks for a rejoin (`executor_failed`).
    Seen under load after a peer's crash: a corrupt shared-memory sample sends Fast DDS's deserializer
    into an exception it never finishes unwinding, on the executor thread, holding the GIL: no Python
    thread can act. faulthandler's watchdog is a C thread: when the executor has not turned for
    `EXECUTOR_STUCK_S` it prints every thread's stack and ends the process with exit code 1, which
    launch's `respawn` restarts.
    """
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while node.context.ok() and not node.rejoin_requested.is_set():
            faulthandler.dump_traceback_later(EXECUTOR_STUCK_S, exit=True)
            try:
                executor.spin_once(timeout_sec=0.25)
            except ExternalShutdownException:
                raise
            except Exception as error:  # noqa: BLE001 - a message rclpy cannot take must not stop the node
                node.executor_failed(error)
    finally:
        faulthandler.cancel_dump_traceback_later()
        executor.shutdown()


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or SIGTERM; exit 2 with what to fix on bad parameters or model.

    rclpy's own signal handlers would invalidate the context while the inference worker may be
    publishing; here a signal stops spinning, the worker finishes its set, then rclpy shuts down.
    """
    args = sys.argv if args is None else args
    profile = use_large_image_transport()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except rclpy_implementation.RCLError as error:  # rcl refuses a params file it cannot parse, or with aliases
        print(f"[{NODE_NAME}] invalid arguments: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        node = SurroundDepthNode()
    except (ParameterError, StartupError) as error:
        print(f"[{NODE_NAME}] {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    if profile:
        node.get_logger().info(
            f"Fast DDS profile for large images: {profile} (set FASTDDS_DEFAULT_PROFILES_FILE to choose)"
        )
    rejoined = abandoned = False
    try:
        while True:
            _spin_until_rejoin(node)
            if not node.context.ok():
                break
            old, node, rejoined = node, None, True  # the rejoin disposes of the old node and context, also on failure
            node = rejoin(old, args)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            # A worker inside a forward pass, which cannot be interrupted, is left rather than keep the user (or
            # launch, which escalates to SIGTERM after 5 s) waiting; the set in hand is not published.
            abandoned = not node.stop_work(STOP_WAIT_S)
            if abandoned:
                node.get_logger().warning(
                    f"stopped during inference: the frame set in hand is dropped (waited {STOP_WAIT_S} s)"
                )
            context = node.context
            node.destroy_node()  # DDS says goodbye: no stale shared-memory port for the next start
            rclpy.try_shutdown(context=context)
    if rejoined or abandoned:
        # A participant left on a regenerated shared-memory port keeps a Fast DDS thread that aborts the
        # process in its static destructors ("terminate called without an active exception"); an abandoned
        # forward pass would hold the interpreter's exit. Everything else of ours is shut down by now:
        # leave without them, with the exit code a clean stop has.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
