"""The surround depth node: the ROS face of `DepthRuntime`, wiring only, as a managed (lifecycle) node.

Transitions, as nav2 and Autoware bring perception up:
- configure validates the parameters, loads the model and warms the back-end, and makes the publishers;
- activate subscribes to the sensors and starts the flow;
- deactivate stops the flow (subscriptions go) and keeps the model;
- cleanup releases the model; shutdown from any state does what is left.
The parameter `autostart` (default true) makes the node configure and activate itself at start
(`supervisor.main`); false leaves it unconfigured for a lifecycle manager. Transitions, and why
one failed, are on /diagnostics.

Every check of an input, the threads and the inference are in the ROS-free `core/runtime.py`; the
counts in `core/stats.py`; /diagnostics in `diagnostics.py`; the process (signals, rejoin,
watchdog) in `supervisor.py`. Started by `ros2 run surround_depth_ros surround_depth_node`,
`ros2 launch surround_depth_ros surround_depth.launch.py`, or `python -m surround_depth_ros.ros.supervisor`.
"""

from __future__ import annotations

import gc
import threading
import time
from functools import partial
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage

from surround_depth_ros.core.assembler import AssembledSet
from surround_depth_ros.core.health import RejoinPolicy
from surround_depth_ros.core.ingest import Rejection
from surround_depth_ros.core.outputs import output_messages, output_topics
from surround_depth_ros.core.params import NODE_NAME, NodeSettings
from surround_depth_ros.core.pipeline import DepthOutputs, StartupError, SurroundDepthPipeline, pipeline_from_settings
from surround_depth_ros.core.runtime import TF_BACKLOG, DepthRuntime
from surround_depth_ros.ros.diagnostics import NodeDiagnostics, TransitionLog
from surround_depth_ros.ros.messages import MESSAGES, message_class
from surround_depth_ros.ros.parameters import ParameterError, declare_parameters, read_settings, watch_live_parameters

TF_STATIC_QOS = QoSProfile(
    depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
)
# Seconds a stop (Ctrl-C, SIGTERM, cleanup) waits for the frame set in hand before leaving it: a forward pass
# cannot be interrupted, and launch escalates to SIGTERM after 5 s.
STOP_WAIT_S = 1.0
# `ros2 param set`, `ros2 lifecycle set` and the launch file may name these; QoS of every input and output.
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()


class SurroundDepthNode(LifecycleNode):
    """Six cameras (+ radar) in; depth, confidence, camera_info per camera and a fused cloud out."""

    def __init__(
        self,
        pipeline: SurroundDepthPipeline | None = None,
        rejoin: RejoinPolicy | None = None,
        **kwargs,  # noqa: ANN003 - rclpy Node options
    ) -> None:
        """`pipeline` and `rejoin` are handed on when the node joins DDS again (`supervisor.rejoin`)."""
        super().__init__(NODE_NAME, **kwargs)
        self.settings: NodeSettings | None = None
        self.runtime: DepthRuntime | None = None
        self._handed_pipeline = pipeline
        self.rejoin_policy = rejoin or RejoinPolicy()
        self.rejoin_policy.joined = time.monotonic()
        self.rejoin_requested = threading.Event()
        self.heard: set[str] = set()  # inputs with any message since this participant joined
        self.transitions = TransitionLog()
        self.input_subscriptions: dict[str, Any] = {}
        self.info_subscriptions: dict[str, Any] = {}
        self._tf_subscriptions: list[Any] = []
        self._outputs: dict[str, Any] = {}  # lifecycle publishers by topic, as `core.outputs` names them
        self._flow_timers: list[Any] = []
        self._declare_problems = declare_parameters(self)
        # Only an explicit false waits: any other value starts, and configure names a wrongly typed one (exit 2).
        self.autostart = self.get_parameter("autostart").value is not False
        self.diagnostics = NodeDiagnostics(self)
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)  # timers that go on when a bag's /clock stops
        # Until configure has validated the parameters, at the default period: a bad value is reported, not used.
        period = NodeSettings().diagnostics_period_s
        self._diagnostics_timer = self.create_timer(period, self.diagnostics.publish, clock=self.steady)
        self._processing_pub = self.create_publisher(Float64, "~/debug/processing_time_ms", 10)
        self._latency_pub = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", 10)
        watch_live_parameters(self, self._current_settings, self._retune)

    # ----- lifecycle -----
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters, load and warm the model (unless handed on by a rejoin), make the publishers."""
        try:
            settings = read_settings(self, self._declare_problems)
            pipeline = self._handed_pipeline or pipeline_from_settings(settings)
        except (ParameterError, StartupError) as error:
            return self._configure_failed(str(error))
        except Exception as error:  # noqa: BLE001 - a lifecycle manager gets FAILURE and the reason, not a traceback
            return self._configure_failed(f"configure failed: {error!r}")
        self._handed_pipeline, self.settings = None, settings
        radars = list(settings.radars) if pipeline.uses_radar else []
        if settings.radars and not radars:
            self.get_logger().warning(
                f"radars {settings.radars} are configured but preset {pipeline.engine.config.name!r} has no radar "
                "branch: radar topics are not subscribed"
            )
        self.runtime = DepthRuntime(
            settings,
            pipeline,
            radars,
            self._publish,
            self.wanted,
            self.get_logger(),
            lambda: self.get_clock().now().nanoseconds,
            partial(deserialize_message, message_type=TFMessage),
        )
        self.runtime.paused.set()
        self.diagnostics.watchdog = None
        self._make_publishers()
        self._diagnostics_timer.timer_period_ns = int(1e9 * settings.diagnostics_period_s)
        engine = pipeline.engine
        self.get_logger().info(
            f"configured: preset {engine.config.name} on {engine.backend_name}/{engine.device}, input "
            f"{engine.input_size[1]}x{engine.input_size[0]}, {len(settings.cameras)} cameras"
            + (f", radars: {', '.join(radars)}" if radars else "")
        )
        self.transitions.record("configure", "inactive")
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, why: str) -> TransitionCallbackReturn:
        self.get_logger().error(why)
        self.transitions.record("configure", "unconfigured", why)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the sensors and let the flow go."""
        self._subscribe_all()
        self._flow_timers = [self.create_timer(0.05, self.runtime.poll_stalled, clock=self.steady)]
        self.runtime.paused.clear()
        self.get_logger().info(
            f"active: listening to {len(self.settings.cameras)} cameras: "
            + ", ".join(self.input_subscriptions[c].topic_name for c in self.settings.cameras)
        )
        self.transitions.record("activate", "active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the flow and keep the model: no subscriptions, no timers of the flow, nothing published."""
        self._stop_flow()
        self.transitions.record("deactivate", "inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, the threads and the publishers."""
        self.release()
        self.transitions.record("cleanup", "unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_flow()
        self.release()
        self.transitions.record("shutdown", "finalized")
        return TransitionCallbackReturn.SUCCESS

    def _stop_flow(self) -> None:
        if self.runtime is not None:
            self.runtime.paused.set()
        for entity in self._flow_timers:
            self.destroy_timer(entity)
        for subscription in [*self.input_subscriptions.values(), *self.info_subscriptions.values()]:
            self.destroy_subscription(subscription)
        for subscription in self._tf_subscriptions:
            self.destroy_subscription(subscription)
        self._flow_timers, self._tf_subscriptions = [], []
        self.input_subscriptions, self.info_subscriptions = {}, {}

    def release(self, timeout_s: float = STOP_WAIT_S) -> bool:
        """Stop the runtime's threads (the set in hand gets `timeout_s`), drop the publishers and the model.
        False when the worker was inside a forward pass and is left behind."""
        finished = True
        if self.runtime is not None:
            finished = self.runtime.stop(timeout_s)
            if not finished:
                self.get_logger().warning(
                    f"stopped during inference: the frame set in hand is dropped (waited {timeout_s} s)"
                )
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs, self.runtime, self.settings = {}, None, None
        gc.collect()  # the model's tensors go now, not at some later collection
        return finished

    # ----- wiring -----
    def _subscribe(self, kind: type, topic: str, sensor: str, callback: Any) -> Any:  # noqa: ANN401 - rclpy types
        """A sensor subscription (QoS from input_reliability, then `qos_overrides.<topic>.subscription.*`) whose QoS
        mismatch with a publisher is logged and counted, never silent."""
        reliability = ReliabilityPolicy.RELIABLE
        if self.settings.input_reliability == "best_effort":
            reliability = ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=self.settings.sync_buffer_size, reliability=reliability)

        def incompatible(info: Any) -> None:  # noqa: ANN401 - rclpy event status
            policy = qos_policy_name_from_kind(info.last_policy_kind)
            self.runtime.refuse(
                Rejection(
                    sensor,
                    "QoS mismatch",
                    f"{sensor}: a publisher on {self.resolve_topic_name(topic)} is incompatible with this node's "
                    f"{policy} QoS: a best-effort publisher needs input_reliability:=best_effort (or "
                    f"qos_overrides.{self.resolve_topic_name(topic)}.subscription.reliability: best_effort)",
                ),
                arrived=False,
            )

        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        return self.create_subscription(
            kind, topic, callback, qos, event_callbacks=events, qos_overriding_options=QOS_OVERRIDES
        )

    def _heard(self, name: str, handle: Any, msg: Any) -> None:  # noqa: ANN401 - a runtime method, a message
        self.heard.add(name)
        handle(name.removesuffix(" camera_info"), msg)

    def _subscribe_all(self) -> None:
        s, runtime = self.settings, self.runtime
        compressed = s.image_transport == "compressed"
        for camera in s.cameras:
            topic = s.image_topic.format(camera=camera) + ("/compressed" if compressed else "")
            image = CompressedImage if compressed else Image
            self.input_subscriptions[camera] = self._subscribe(
                image, topic, camera, partial(self._heard, camera, runtime.image)
            )
            self.info_subscriptions[camera] = self._subscribe(
                CameraInfo,
                s.camera_info_topic.format(camera=camera),
                camera,
                partial(self._heard, f"{camera} camera_info", runtime.camera_info),
            )
        for radar in runtime.radars:
            self.input_subscriptions[radar] = self._subscribe(
                PointCloud2, s.radar_topic.format(radar=radar), radar, partial(self._heard, radar, runtime.radar)
            )
        # Serialized: rclpy alone takes about 0.15 s to make the objects of 10,000 transforms; the TF thread does.
        self._tf_subscriptions = [
            self.create_subscription(TFMessage, topic, partial(runtime.tf, static=static), qos, raw=True)
            for topic, static, qos in (("/tf_static", True, TF_STATIC_QOS), ("/tf", False, TF_BACKLOG))
        ]

    def _make_publishers(self) -> None:
        """A lifecycle publisher for each output the settings switch on that has none yet (a run-time parameter may
        switch one on while active: it is activated at once)."""
        for topic, msgtype in output_topics(self.settings.cameras, self.settings):
            if topic not in self._outputs:
                publisher = self.create_lifecycle_publisher(
                    message_class(msgtype), topic, 5, qos_overriding_options=QOS_OVERRIDES
                )
                if self.transitions.state == "active":
                    publisher.on_activate(None)
                self._outputs[topic] = publisher

    def wanted(self) -> frozenset[str]:
        """The outputs that have subscribers now (the settings switch them on): the work worth doing."""
        on = {topic for topic, _ in output_topics(self.settings.cameras, self.settings)} if self.settings else set()
        return frozenset(t for t, p in list(self._outputs.items()) if t in on and p.get_subscription_count() > 0)

    def _publish(self, assembled: AssembledSet, outputs: DepthOutputs, wanted: frozenset[str]) -> None:
        """The worker's hand-over: the wanted messages of one set, then the debug timings."""
        infos = self.runtime.ingest.camera_infos()
        for topic, _, _, msg in output_messages(MESSAGES, assembled.frame_set, outputs, infos, self.settings, wanted):
            self._outputs[topic].publish(msg)
        times = self.runtime.stats.time_means_ms()
        if times:
            self._processing_pub.publish(Float64(data=times["processing"]))
            self._latency_pub.publish(Float64(data=times["latency"]))

    # ----- run-time parameters -----
    def _current_settings(self) -> NodeSettings:
        return self.settings if self.settings is not None else read_settings(self, self._declare_problems)

    def _retune(self, settings: NodeSettings) -> None:
        """A validated `ros2 param set`: the next frame set follows it."""
        if self.settings is None:  # unconfigured: configure reads the parameters
            return
        self.settings = settings
        self.runtime.retune(settings)
        self._make_publishers()
        self._diagnostics_timer.timer_period_ns = int(1e9 * settings.diagnostics_period_s)
