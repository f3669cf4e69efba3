"""Replay a rosbag2 into live ROS 2 topics, without `ros2 bag play` (which needs a ROS distribution).

Messages go out as the bag's raw CDR bytes (`publisher.publish(bytes)`: no deserialization), on
publishers of the recorded types. QoS: the recorded offered profile when the bag has one, else
reliable keep-last 10, because a reliable publisher serves both reliable subscribers (rviz, a
recorder, a local consumer that must not lose frames) and best-effort ones (the node's sensor-data
QoS), while a best-effort publisher is refused by reliable subscribers. /tf_static is always
reliable + transient local, and all of the bag's /tf_static messages are merged into one published
once at the start, so that subscribers that join late still get every transform.

Rate: `rate` x bag time against the wall clock; `inf` as fast as possible with back-pressure: no
reliable topic gets more than `max_in_flight` messages ahead of what its subscribers acknowledged
(`wait_for_all_acked`). Acknowledged means received by the subscriber's DDS queue, not processed:
a consumer slower than the transport still drops from its keep-last queue, so give it a finite rate.
Loop: starts again at the bag's beginning with the bag's own stamps (time jumps backwards). Time runs
from each loop's first message (not the metadata's start time, which a damaged bag can misstate by years).

A damaged bag (`bag/storage.py`): one that cannot be opened raises BagFormatError; a message whose CDR does
not deserialize (for the types the type store knows) is not published, but counted by topic and cause in
`stats.faults`, as are the messages of a topic recorded with several types but the one it is published as
(that of most of its messages: a DDS topic has one type); a storage failing part way ends the loop there
(`stats.faults.stopped`).

Nothing is lost to discovery or to exiting early: before the first message `run()` waits (up to
`wait_for_subscribers_s`) until every replayed topic has a matched subscriber, or some have and the
set stopped changing, and names the topics without one; after the last message it waits (up to
`delivery_timeout_s`) until the subscribers acknowledged every reliable message
(`wait_for_all_acked`); best-effort messages cannot be acknowledged and get a short drain instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Reader
from tqdm import tqdm

from surround_depth_ros.bag import storage
from surround_depth_ros.bag import topics as layout
from surround_depth_ros.bag.storage import ReadFaults
from surround_depth_ros.ros.messages import MESSAGES, message_class

# After the replayer's publishers see their subscribers, the subscribers' side of discovery (which
# drops data from writers it has not matched yet) finishes within a few discovery messages.
MATCH_GRACE_S = 0.5
SETTLE_S = 2.0  # matched topics unchanged this long: the subscribers that exist have been discovered
BEST_EFFORT_DRAIN_S = 0.5  # best-effort messages are never acknowledged: time for the transport to send them
NO_WAIT_TOPICS = (layout.TF_STATIC_TOPIC, layout.CLOCK_TOPIC)  # latched, or only for use_sim_time consumers
# The types of the global topics, whatever else a damaged bag recorded on them (other topics: that of most messages).
LAYOUT_TYPES = {
    layout.TF_STATIC_TOPIC: layout.TF_TYPE,
    layout.TF_TOPIC: layout.TF_TYPE,
    layout.CLOCK_TOPIC: layout.CLOCK_TYPE,
}

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STREAM = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def qos_from_bag(profiles: list[Qos]) -> QoSProfile:
    """The rclpy profile of a bag's first offered QoS (reliability, durability, history, depth), else STREAM; a
    policy the bag records as unknown (rosbags' answer to a damaged metadata.yaml) or a depth that is no queue
    depth is STREAM's (rcl refuses to make a publisher with an unknown policy)."""
    if not profiles:
        return STREAM
    recorded = profiles[0]
    depth = recorded.depth if isinstance(recorded.depth, int) and 0 < recorded.depth < 2**31 else STREAM.depth
    return QoSProfile(
        history=_known_policy(HistoryPolicy, recorded.history.value, STREAM.history),
        depth=depth,
        reliability=_known_policy(ReliabilityPolicy, recorded.reliability.value, STREAM.reliability),
        durability=_known_policy(DurabilityPolicy, recorded.durability.value, STREAM.durability),
    )


def _known_policy(kind: type[Enum], value: int, fallback: Enum) -> Enum:
    try:
        policy = kind(value)
    except ValueError:
        return fallback
    return fallback if policy.name == "UNKNOWN" else policy


@dataclass
class ReplayStats:
    """What a replay published: per-topic counts, loops completed, bag and wall time covered, delivery."""

    published: Counter = field(default_factory=Counter)
    loops: int = 0
    bag_seconds: float = 0.0
    wall_seconds: float = 0.0
    without_subscriber: list[str] = field(default_factory=list)  # topics nobody subscribed to when replay began
    unacknowledged: list[str] = field(default_factory=list)  # reliable topics not acknowledged at the end
    faults: ReadFaults = field(default_factory=ReadFaults)  # messages not published, and why; a storage failure

    @property
    def achieved_rate(self) -> float:
        """Bag seconds replayed per wall second."""
        return self.bag_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


class BagReplayer:
    """Publishes a bag's messages on a node; `run()` blocks until the bag ends (or `stop()` when looping)."""

    def __init__(
        self,
        path: str | os.PathLike,
        rate: float = 1.0,
        loop: bool = False,
        publish_clock: bool = True,
        topics: list[str] | None = None,
        node: Node | None = None,
        max_in_flight: int = 10,
        ack_timeout_s: float = 2.0,
        wait_for_subscribers_s: float = 10.0,
        delivery_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        if not rate > 0:
            raise ValueError(f"rate must be > 0 (1.0 = real time, inf = as fast as subscribers take), got {rate}")
        self.rate = rate
        self.loop = loop
        self.publish_clock = publish_clock
        self.max_in_flight = max_in_flight
        self.ack_timeout = Duration(seconds=ack_timeout_s)
        self.wait_for_subscribers_s = wait_for_subscribers_s
        self.delivery_timeout_s = delivery_timeout_s
        self.node = node or Node("bag_replayer")
        self._stop = threading.Event()
        self.setup_faults = ReadFaults()  # what the set-up could not use: other types on a topic, /tf_static
        with storage.open_bag(self.path) as reader:
            chosen = [c for c in reader.connections if topics is None or c.topic in topics]
            missing = sorted(set(topics or ()) - {c.topic for c in reader.connections})
            if missing:
                names = sorted({c.topic for c in reader.connections})
                raise ValueError(f"{self.path}: topics {missing} are not in the bag; it has {names}")
            types = storage.main_types(chosen, LAYOUT_TYPES)
            storage.count_other_types(chosen, types, self.setup_faults)
            self.connections = [c for c in chosen if types[c.topic] == c.msgtype]
            self.message_count = sum(
                storage.declared_count(c) for c in self.connections if c.topic != layout.TF_STATIC_TOPIC
            )
            self._static = self._merged_tf_static(reader)
        self.bag_has_clock = any(c.topic == layout.CLOCK_TOPIC for c in self.connections)
        self._publishers: dict[str, Publisher] = {}
        for c in self.connections:
            if c.topic == layout.TF_STATIC_TOPIC or (c.topic == layout.CLOCK_TOPIC and not publish_clock):
                continue
            try:
                kind = message_class(c.msgtype)
            except (ImportError, ValueError) as error:  # a type not installed here (or no type name): not replayed
                self.setup_faults.skip(c.topic, storage.fault_text(error, 120), storage.declared_count(c))
                continue
            qos = qos_from_bag(c.ext.offered_qos_profiles)
            self._publishers[c.topic] = self.node.create_publisher(kind, c.topic, qos)
        self._static_publisher = None
        if self._static is not None:
            self._static_publisher = self.node.create_publisher(
                message_class(layout.TF_TYPE), layout.TF_STATIC_TOPIC, LATCHED
            )
        self._clock_publisher = None
        if publish_clock and not self.bag_has_clock:
            self._clock_publisher = self.node.create_publisher(message_class(layout.CLOCK_TYPE), layout.CLOCK_TOPIC, 10)
        self._in_flight: Counter = Counter()
        self.stats = ReplayStats()

    def _merged_tf_static(self, reader: Reader) -> bytes | None:
        """All /tf_static transforms of the bag in one message (the last one per child frame wins)."""
        connections = [c for c in self.connections if c.topic == layout.TF_STATIC_TOPIC]
        if not connections:
            return None
        tf_class = message_class(layout.TF_TYPE)
        by_child = {}
        for _, _, raw in storage.messages(reader, connections, self.setup_faults, decode=False):
            try:
                message = deserialize_message(raw, tf_class)
            except Exception as error:  # noqa: BLE001 - rclpy's CDR is stricter than rosbags' on damaged bytes
                self.setup_faults.skip(layout.TF_STATIC_TOPIC, f"undecodable by rclpy ({type(error).__name__})")
                continue
            for transform in message.transforms:
                by_child[transform.child_frame_id] = transform
        return serialize_message(MESSAGES.tf_message(list(by_child.values())))

    def stop(self) -> None:
        """Ask `run()` to return after the message it is publishing (thread-safe)."""
        self._stop.set()

    def _publish(self, topic: str, raw: bytes) -> None:
        publisher = self._publishers[topic]
        publisher.publish(raw)
        if self.rate != float("inf") or publisher.qos_profile.reliability != ReliabilityPolicy.RELIABLE:
            return
        self._in_flight[topic] += 1
        if self._in_flight[topic] >= self.max_in_flight:
            publisher.wait_for_all_acked(self.ack_timeout)
            self._in_flight[topic] = 0

    @property
    def publishers(self) -> dict[str, Publisher]:
        """The publisher of each replayed topic, e.g. to wait until a consumer's subscriptions are matched."""
        return dict(self._publishers)

    def _all_publishers(self) -> dict[str, Publisher]:
        extra = {layout.TF_STATIC_TOPIC: self._static_publisher, layout.CLOCK_TOPIC: self._clock_publisher}
        return self._publishers | {topic: p for topic, p in extra.items() if p is not None}

    def wait_for_subscribers(self, timeout_s: float) -> list[str]:
        """Wait until every replayed topic (but the latched /tf_static and /clock) has a matched subscriber, or
        until the matched topics stopped changing for SETTLE_S (a consumer that takes only some topics, such
        as the node without the lidar: its subscriptions are discovered together); the topics without one."""
        now = time.monotonic()
        deadline, changed_at = now + timeout_s, now
        waiting = {t: p for t, p in self._publishers.items() if t not in NO_WAIT_TOPICS}
        missing = sorted(waiting)
        while missing and not self._stop.is_set():
            now = time.monotonic()
            still = sorted(t for t, p in waiting.items() if p.get_subscription_count() == 0)
            if still != missing:
                missing, changed_at = still, now
            elif now >= deadline or (len(missing) < len(waiting) and now - changed_at >= SETTLE_S):
                break
            self._stop.wait(0.05)
        if len(missing) < len(waiting):
            self._stop.wait(MATCH_GRACE_S)
        return missing

    def wait_for_delivery(self, timeout_s: float) -> list[str]:
        """Wait until the matched subscribers acknowledged every reliable message (best-effort topics get a
        short drain); the reliable topics not acknowledged within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        unacknowledged = []
        best_effort = False
        for topic, publisher in self._all_publishers().items():
            if publisher.qos_profile.reliability != ReliabilityPolicy.RELIABLE:
                best_effort = True
            elif not publisher.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic()))):
                unacknowledged.append(topic)
        if best_effort:
            time.sleep(BEST_EFFORT_DRAIN_S)
        return unacknowledged

    def _wait_until(self, wall_target: float) -> None:
        while not self._stop.is_set():
            remaining = wall_target - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(min(remaining, 0.1))

    def run(self, progress: bool = False) -> ReplayStats:
        """Replay (each loop from the bag's start); `self.stats` holds the counts so far, also after Ctrl-C."""
        self.stats = stats = ReplayStats()
        stats.faults.skipped.update(self.setup_faults.skipped)
        stats.without_subscriber = self.wait_for_subscribers(self.wait_for_subscribers_s)
        if stats.without_subscriber:
            self.node.get_logger().warning(
                f"no subscriber after {self.wait_for_subscribers_s:g} s on {', '.join(stats.without_subscriber)}: "
                "replaying anyway, their messages go nowhere"
            )
        if self._static_publisher is not None:
            self._static_publisher.publish(self._static)
            stats.published[layout.TF_STATIC_TOPIC] += 1
        streamed = [c for c in self.connections if c.topic in self._publishers]
        bar = tqdm(total=self.message_count, unit="msg", desc=f"replaying {self.path.name}", disable=not progress)
        wall_begin = time.monotonic()
        loops_s = 0.0  # bag seconds of the loops completed
        try:
            while not self._stop.is_set():
                wall_start, origin, bag_s = time.monotonic(), None, 0.0
                with storage.open_bag(self.path) as reader:
                    for connection, timestamp, raw in storage.messages(reader, streamed, stats.faults, decode=False):
                        origin = timestamp if origin is None else origin
                        bag_s = (timestamp - origin) / 1e9
                        if self.rate != float("inf"):
                            self._wait_until(wall_start + bag_s / self.rate)
                        if self._stop.is_set():
                            break
                        if self._clock_publisher is not None:
                            self._clock_publisher.publish(MESSAGES.clock(timestamp))
                        self._publish(connection.topic, raw)
                        stats.published[connection.topic] += 1
                        stats.bag_seconds = loops_s + bag_s
                        stats.wall_seconds = time.monotonic() - wall_begin
                        bar.update()
                        bar.set_postfix(bag_s=f"{bag_s:.2f}", loop=stats.loops, refresh=False)
                    else:
                        stats.loops += 1
                        loops_s += bag_s
                if not self.loop or stats.faults.stopped:  # a storage that fails fails again: loop no more
                    break
                bar.reset()
            stats.wall_seconds = time.monotonic() - wall_begin  # the replay, without the wait for delivery
            stats.unacknowledged = self.wait_for_delivery(self.delivery_timeout_s)
        finally:
            bar.close()
        return stats
