"""The node's ROS-free runtime: from a received message to published outputs, on three threads of its own.

Threads and who owns what: the caller's executor hands messages in and returns at once (an image
is only checked against the pixel budget and queued, a TF message is queued serialized); the
decoder thread decodes and checks images (OpenCV releases the GIL) and offers them to the
assembler; the TF thread deserializes and stores transforms, so a 10,000-frame message never holds
up images or timers; the worker takes the newest complete set (a newer one replaces a stale one,
counted, never queued), runs the pipeline and hands the outputs to `publish`. A clock reset reaches
the worker as a request, never as a call from another thread. The assembler, the ingest and the
stats lock themselves.

Work nobody wants is not done: before each set the worker asks `wanted()` for the output topics
that have subscribers; with none it skips the set, without the cloud topic it skips the fusion.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from surround_depth_ros.core.assembler import AssembledSet, assembler_from_settings
from surround_depth_ros.core.binding import BindingError
from surround_depth_ros.core.ingest import Rejection, SensorIngest
from surround_depth_ros.core.mailbox import LatestMailbox
from surround_depth_ros.core.outputs import CLOUD_TOPIC
from surround_depth_ros.core.params import NodeSettings
from surround_depth_ros.core.pipeline import DepthOutputs, SurroundDepthPipeline
from surround_depth_ros.core.stats import PipelineStats
from surround_depth_ros.core.transforms import FRAME_LIMIT

# Wall time without any camera message after which a waiting frame set is decided (end of a stream).
STALL_S = 1.0
# Images waiting for the decoder, per camera: a second of frames at 12 Hz. Beyond that the decoder cannot
# keep up; the oldest image is dropped and counted, so the queue never grows latency without bound.
DECODE_QUEUE_PER_CAMERA = 12
# TF messages waiting for the TF thread beyond which the oldest /tf ones are dropped: the /tf subscription's depth.
TF_BACKLOG = 100
IDLE = "frame sets not processed: no subscriber to any output"


class Log(Protocol):
    """What the runtime needs of a logger (rclpy's and `logging`'s both fit)."""

    def info(self, message: str) -> Any: ...  # noqa: ANN401
    def warning(self, message: str) -> Any: ...  # noqa: ANN401
    def error(self, message: str) -> Any: ...  # noqa: ANN401


class DepthRuntime:
    """Ingest, assembly, inference and hand-over to `publish(assembled, outputs, wanted)`; see the module docstring.

    `deserialize_tf(raw)` turns a serialized TFMessage into one with `.transforms`; `clock_ns()` is the
    node's clock (ROS time: the age of a set is measured in it).
    """

    def __init__(
        self,
        settings: NodeSettings,
        pipeline: SurroundDepthPipeline,
        radars: list[str],
        publish: Callable[[AssembledSet, DepthOutputs, frozenset[str]], None],
        wanted: Callable[[], frozenset[str]],
        log: Log,
        clock_ns: Callable[[], int],
        deserialize_tf: Callable[[bytes], Any],
    ) -> None:
        self.settings, self.pipeline, self.radars = settings, pipeline, radars
        self._publish, self._wanted, self.log, self._clock_ns = publish, wanted, log, clock_ns
        self._deserialize_tf = deserialize_tf
        self.assembler = assembler_from_settings(settings, radars)
        self.ingest = SensorIngest(self.assembler, settings.max_image_pixels, settings.sync_max_skew_s)
        self.stats = PipelineStats([*settings.cameras, *radars])
        self.binding_error = ""
        self.idle = False  # the last set found no subscriber to any output
        self.paused = threading.Event()  # deactivated: sets are taken and left, nothing is published
        self._mailbox: LatestMailbox[tuple[float, AssembledSet]] = LatestMailbox()
        self._decode_queue: queue.Queue = queue.Queue(DECODE_QUEUE_PER_CAMERA * len(settings.cameras))
        self._tf_queue: queue.Queue = queue.Queue()
        self._resets_seen = 0
        self._retune_pipeline: NodeSettings | None = None
        self._reset_requested = threading.Event()
        self._last_arrival: float | None = None  # monotonic time of the newest camera message
        self._stall_seen = False
        self._threads = {
            name: threading.Thread(target=target, name=f"surround_depth_{name}", daemon=True)
            for name, target in (("decoder", self._decode_loop), ("tf", self._tf_loop), ("worker", self._work))
        }
        for thread in self._threads.values():
            thread.start()

    def retune(self, settings: NodeSettings) -> None:
        """Run-time parameters: the next decisions and the next set follow `settings`."""
        self.settings = settings
        self.assembler.retune(settings)
        self._retune_pipeline = settings  # the worker applies it between two sets: `process` is not thread-safe

    # ----- input, from the executor -----
    def refuse(self, rejection: Rejection, arrived: bool = True) -> None:
        """Count a refusal and log it (at most every few seconds per input and cause); `arrived` False for one no
        message brought (a publisher whose QoS cannot match)."""
        if self.stats.reject(rejection, time.monotonic(), arrived):
            self.log.error(rejection.message)

    def _account(self, name: str, rejections: list[Rejection]) -> None:
        if not any(r.input == name for r in rejections):
            self.stats.accept(name, time.monotonic())
        for rejection in rejections:
            self.refuse(rejection)

    def image(self, camera: str, msg: Any) -> None:  # noqa: ANN401 - any Image/CompressedImage class
        """Queue an image for the decoder (the oldest is dropped, counted, when it is full); refuse one over the
        pixel budget at once."""
        self._last_arrival = time.monotonic()
        if rejection := self.ingest.oversized(camera, msg):
            self.refuse(rejection)
            return
        while True:
            try:
                self._decode_queue.put_nowait((camera, msg))
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    dropped, _ = self._decode_queue.get_nowait()
                    self.stats.drop(f"decoder busy (oldest image dropped): {dropped}")

    def camera_info(self, camera: str, msg: Any) -> None:  # noqa: ANN401 - any CameraInfo class
        if rejection := self.ingest.camera_info(camera, msg):
            self.refuse(rejection)

    def radar(self, radar: str, msg: Any) -> None:  # noqa: ANN401 - any PointCloud2 class
        self._account(radar, self.ingest.radar(radar, msg))
        self._hand_over(self.assembler.poll())

    def tf(self, raw: bytes, static: bool) -> None:
        """Queue a serialized TF message for the TF thread: the executor never waits on a large tree."""
        self._tf_queue.put((raw, static))

    def poll_stalled(self) -> None:
        """Decide the waiting sets when every input has been silent for STALL_S of wall time (a timer calls this).

        While messages flow, message time decides (a silent camera is outwaited by the others'
        stamps); only the end of a stream needs the wall clock. The synchronizer is told the stream
        ended at a message time just past the oldest waiting set's wait: further would expire radar
        sweeps that later sets still want, and the cameras' clocks need not agree with this computer's.
        Under load the caller can be late, with messages received but not yet decoded: a stall must
        be seen with the decoder and the TF thread idle, on two polls in a row. Sets held for a
        transform go then too: STALL_S is longer than any tf_wait_s.
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

    # ----- the decoder and TF threads -----
    def _decode_loop(self) -> None:
        """Decode and check queued images until `None` arrives; no image can stop it."""
        while (item := self._decode_queue.get()) is not None:
            camera, msg = item
            try:
                self._account(camera, self.ingest.image(camera, msg))
            except Exception as error:  # noqa: BLE001 - one image must not stop the decoder
                self.refuse(Rejection(camera, "decode error", f"{camera}: cannot use this image: {error!r}"))
                continue
            self._last_arrival = time.monotonic()
            self._hand_over(self.assembler.poll())

    def _tf_loop(self) -> None:
        """Store queued TF messages in arrival order until `None` arrives; behind by more than TF_BACKLOG it drops
        the oldest /tf ones, counted, as the subscription's depth would (never /tf_static, latched once)."""
        while (item := self._tf_queue.get()) is not None:
            raw, static = item
            topic = "/tf_static" if static else "/tf"
            if not static and self._tf_queue.qsize() > TF_BACKLOG:
                self.stats.drop("TF thread busy (oldest /tf message dropped)")
                continue
            try:
                self._store_tf(self._deserialize_tf(raw), topic, static)
            except Exception as error:  # noqa: BLE001 - one message must not stop the TF thread
                self.stats.drop(f"{topic} message unusable")
                if self.stats.due((topic, "unusable"), time.monotonic()):
                    self.log.error(f"{topic}: cannot use this message: {error!r}")

    def _store_tf(self, msg: Any, topic: str, static: bool) -> None:  # noqa: ANN401 - a TFMessage
        """Store a whole TF message in one pass; what the buffer ignored is counted and logged by cause, once per
        message (at most every few seconds per cause); a set held for a transform may go now."""
        report = self.ingest.transforms(msg.transforms, static)
        now = time.monotonic()
        for cause, count in report.ignored().items():
            self.stats.drop(f"transforms ignored ({cause})", count)
        for cause in report.counts:
            if self.stats.due((topic, cause), now):
                hint = " (parameter tf_max_frames)" if cause == FRAME_LIMIT else ""
                self.log.warning(
                    f"{topic}: {report.counts[cause]} of {len(msg.transforms)} transforms: {cause}{hint}, "
                    f"e.g. {report.first[cause]}"
                )
        if self.assembler.holding():
            self._hand_over(self.assembler.poll())

    def _hand_over(self, sets: list[AssembledSet]) -> None:
        """Keep only the newest set for the worker; on a clock jump, ask it to forget temporal state."""
        resets = self.assembler.clock_resets()
        if resets != self._resets_seen:
            self._resets_seen = resets
            self._reset_requested.set()
            self.log.warning("time jumped (a looping bag, a stepped clock): buffers and temporal state reset")
        arrival = time.monotonic()  # the set's last message has just arrived (or the stall timer decided it)
        for assembled in sets:
            if self._mailbox.put((arrival, assembled)):
                self.stats.drop("inference busy (stale set replaced)")

    # ----- the worker -----
    def _work(self) -> None:
        while not self._mailbox.closed:
            taken = self._mailbox.take()
            if taken is None or self.paused.is_set():
                continue
            arrival, assembled = taken
            if (settings := self._retune_pipeline) is not None:
                self._retune_pipeline = None
                self.pipeline.retune(settings)
            if self._reset_requested.is_set():
                self._reset_requested.clear()
                self.pipeline.engine.reset()
            wanted = self._wanted()
            self.idle = not wanted
            if self.idle:
                self.stats.drop(IDLE)
                continue
            try:
                self._process(arrival, assembled, wanted)
            except BindingError as error:
                self.binding_error = str(error)
                if self.stats.due(("pipeline", "binding"), time.monotonic()):
                    self.log.error(f"cannot bind the cameras to the model: {error}")
            except Exception as error:  # noqa: BLE001 - one bad set must not stop the node
                self.stats.drop("inference error")
                self.log.error(f"frame set {assembled.frame_set.name} failed: {error!r}")

    def _process(self, arrival: float, assembled: AssembledSet, wanted: frozenset[str]) -> None:
        start = time.perf_counter()
        frame_set = assembled.frame_set
        if self.pipeline.bind(frame_set.rig):
            trained = self.pipeline.trained.camera_names if self.pipeline.trained else []
            self.log.info(
                f"cameras bound to the model's slots: {self.pipeline.binding.describe(trained)}"
                if trained
                else "cameras bound to the model's slots in list order"
            )
        self.binding_error = ""
        outputs = self.pipeline.process(frame_set, cloud=CLOUD_TOPIC in wanted)
        self._publish(assembled, outputs, wanted)
        self.stats.processed(
            outputs.timings_ms,
            time.monotonic(),
            processing_ms=1000 * (time.perf_counter() - start),
            latency_ms=1000 * (time.monotonic() - arrival),
            age_ms=(self._clock_ns() - frame_set.stamp_ns) / 1e6,
        )

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the threads, letting the worker finish the set in hand within `timeout_s` (images still queued are
        dropped); False when the worker is still busy. Only the first call waits."""
        first = not self._mailbox.closed
        if first:
            self._mailbox.close()
            with contextlib.suppress(queue.Empty):
                while True:
                    self._decode_queue.get_nowait()
            self._decode_queue.put(None)
            self._tf_queue.put(None)  # after what is queued
        deadline = time.monotonic() + (timeout_s if first else 0.0)
        for name, thread in list(self._threads.items()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                del self._threads[name]
        return not self._threads
