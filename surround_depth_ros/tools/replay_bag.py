"""Replay a rosbag2 into live ROS 2 topics: real time, N x, or as fast as the subscribers take it.

/tf_static is published once, latched (transient local), so nodes started later still get the
rig; --loop restarts at the bag's beginning with its own stamps; --clock publishes /clock (the
bag's own, or one generated from bag time) for nodes with use_sim_time. Ctrl-C stops.

Nothing is lost to discovery or to an early exit: the first message waits until every topic has a
subscriber, or some have and no more appeared for 2 s (--wait seconds at most; the topics without
one are named), and the command exits
once the subscribers acknowledged every reliable message. It uses the node's large-image Fast DDS
profile unless FASTDDS_DEFAULT_PROFILES_FILE names another. A damaged bag is replayed as far as it can be
read: messages that do not deserialize, of a type not installed here, or of another type than the rest of
their topic's (a DDS topic has one) are not published, and are listed with their count before the replay
and after it; a bag that cannot be opened is one line and exit status 2. Exit status 1: messages
unacknowledged, or the bag's storage failed before its end.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from surround_depth_ros.tools.errors import usage_errors

if TYPE_CHECKING:
    from surround_depth_ros.bag.storage import ReadFaults


def _rate(text: str) -> float:
    if text == "max":
        return float("inf")
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"rate is a positive factor of real time (1.0, 2, 0.5) or 'max', got {text!r}")
    return rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3)")
    parser.add_argument("--rate", type=_rate, default=1.0, help="1.0 = real time, N = N x, max = back-pressured")
    parser.add_argument("--loop", action="store_true", help="start again at the bag's beginning until Ctrl-C")
    parser.add_argument("--clock", action="store_true", help="publish /clock (for use_sim_time consumers)")
    parser.add_argument("--topics", nargs="+", help="replay only these topics (default: all)")
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for subscribers before the first message and for acknowledgements after the last",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=10, help="with --rate max: unacknowledged messages per topic (default 10)"
    )


def run(args: argparse.Namespace) -> int:
    import rclpy

    from surround_depth_ros.ros.dds import PROFILE_VARIABLES, use_large_image_transport
    from surround_depth_ros.ros.replayer import BagReplayer

    profile = use_large_image_transport()  # before rclpy.init: Fast DDS reads it with the first participant
    chosen = next((f"{name}={os.environ[name]}" for name in PROFILE_VARIABLES if os.environ.get(name)), None)
    print(f"Fast DDS profile: {profile + ' (large images, as the node)' if profile else chosen}")
    rclpy.init()
    replayer = None
    try:
        with usage_errors(FileNotFoundError, ValueError):  # not a bag, or a bad --rate / --topics
            replayer = BagReplayer(
                args.bag,
                rate=args.rate,
                loop=args.loop,
                publish_clock=args.clock,
                topics=args.topics,
                max_in_flight=args.max_in_flight,
                wait_for_subscribers_s=args.wait,
                delivery_timeout_s=args.wait,
            )
        _print_faults("not replayed", replayer.setup_faults)
        replayer.run(progress=True)
    except KeyboardInterrupt:
        pass
    finally:
        if replayer is not None:
            stats = replayer.stats
            print(
                f"published {sum(stats.published.values())} messages on {len(stats.published)} topics, "
                f"{stats.bag_seconds:.2f} s of bag time in {stats.wall_seconds:.2f} s "
                f"({stats.achieved_rate:.2f} x real time), {stats.loops} loop(s) completed"
            )
            if stats.unacknowledged:
                print(f"not acknowledged by the subscribers within {args.wait:g} s: {', '.join(stats.unacknowledged)}")
            _print_faults("not published", stats.faults)
            replayer.node.destroy_node()
        rclpy.try_shutdown()
    return 1 if replayer is not None and (replayer.stats.unacknowledged or replayer.stats.faults.stopped) else 0


def _print_faults(what: str, faults: ReadFaults) -> None:
    """The messages a replay leaves out, per topic and cause, and why reading stopped early, if it did."""
    if faults.skipped or faults.stopped:
        print(f"{what}: {faults.describe()}")
    for cause, count in sorted(faults.skipped.items()):
        print(f"  {count} x {cause}")
