"""The node's process: start (autostart), spin with a watchdog, join DDS again when deaf, stop on a signal.

rclpy's own signal handlers would invalidate the context while the inference worker may be
publishing; here a signal stops spinning, the worker finishes its set (or is left after
`STOP_WAIT_S`), then rclpy shuts down.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
import traceback
from functools import partial

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from surround_depth_ros.core.params import NODE_NAME
from surround_depth_ros.ros.dds import publishers_to_hear, stale_shm_ports, use_large_image_transport
from surround_depth_ros.ros.node import STOP_WAIT_S, SurroundDepthNode

# Seconds without a turn of the executor (it turns at least every 0.25 s) after which the process ends (exit 1).
EXECUTOR_STUCK_S = 15.0


def _topic_being_taken(error: Exception) -> str:
    """The topic of the subscription rclpy's executor was taking a message from when `error` rose, else "".

    rclpy names it `sub` in the frame that takes (`Executor._take_subscription`); only read here.
    """
    for frame, _ in traceback.walk_tb(error.__traceback__):
        topic = getattr(frame.f_locals.get("sub"), "topic_name", None)
        if isinstance(topic, str):
            return topic
    return ""


def executor_failed(node: SurroundDepthNode, error: Exception) -> None:
    """An exception out of an executor turn: logged, and the node joins DDS again (`last rejoin` says why).

    rclpy failing to take a message (seen with a sample from a shared-memory segment another
    process made anew: "Unable to convert call argument '0' to Python object") leaves the
    subscription's callback group taken for good, and with it every callback of the group: the
    node would turn on, deaf. A new participant makes every subscription and timer anew.
    """
    topic = _topic_being_taken(error)
    cause = f"executor error{f' on {topic}' if topic else ''}: {type(error).__name__}: {error}"
    where = traceback.extract_tb(error.__traceback__)[-1]
    node.get_logger().error(f"{cause} (at {where.filename}:{where.lineno}): joining again with a new participant")
    node.rejoin_policy.last_reason = cause
    node.rejoin_requested.set()


def check_rejoin(node: SurroundDepthNode) -> None:
    """Ask for a new DDS participant when an input is matched and unheard (`RejoinPolicy`); a node timer calls it."""
    if node.rejoin_requested.is_set():
        return
    subscriptions = {
        **node.input_subscriptions,
        **{f"{name} camera_info": s for name, s in node.info_subscriptions.items()},
    }
    unheard = {n: publishers_to_hear(node, s) for n, s in subscriptions.items() if n not in node.heard}
    reason = node.rejoin_policy.check(time.monotonic(), unheard, stale_shm_ports())
    if reason:
        node.get_logger().warning(reason)
        node.rejoin_policy.last_reason = reason
        node.rejoin_requested.set()


def watched(node: SurroundDepthNode) -> SurroundDepthNode:
    """`node` with its rejoin check on a wall-clock timer (inputs it does not subscribe to are never unheard)."""
    node.create_timer(0.5, partial(check_rejoin, node), clock=node.steady)
    return node


def _interrupt(signum: int, frame: object) -> None:
    """Stop spinning on the first SIGINT/SIGTERM; later ones are ignored so that shutdown finishes cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def bring_up(node: SurroundDepthNode) -> str:
    """Configure and activate; "" when active, else why not (the failed transition's reason)."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        return node.transitions.failure or "configure failed"
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        return node.transitions.failure or "activate failed"
    return ""


def rejoin(node: SurroundDepthNode, args: list[str]) -> SurroundDepthNode:
    """The same node on a new DDS participant, with the old one's pipeline, in the old one's state.

    The new participant must be created while the old one still holds its id, so that it gets
    another id and fresh shared-memory ports no peer has stale state about. A participant lives as
    long as a node of its context: a stand-in node keeps the old one while the node itself goes
    first, so that the new node owns its name's /rosout publisher.
    """
    policy, old_context, state = node.rejoin_policy, node.context, node.transitions.state
    pipeline = node.runtime.pipeline if node.runtime is not None else None
    stand_in = rclpy.create_node(f"{NODE_NAME}_rejoining", context=old_context, enable_rosout=False)
    node.release(timeout_s=10.0)  # the pipeline is handed on: the worker must be done with it
    node.destroy_node()
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    policy.rejoined(time.monotonic())
    try:
        fresh = watched(SurroundDepthNode(pipeline=pipeline, rejoin=policy, context=context))
        if state in ("inactive", "active") and fresh.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            if state == "active":
                fresh.trigger_activate()
    finally:
        stand_in.destroy_node()
        rclpy.try_shutdown(context=old_context)
        old_context.destroy()
    return fresh


def _spin_until_rejoin(node: SurroundDepthNode) -> None:
    """Spin until a rejoin is asked for or the context ends, with the executor watchdog armed at every turn.

    Seen under load after a peer's crash: a corrupt shared-memory sample sends Fast DDS's deserializer
    into an exception it never finishes unwinding, on the executor thread, holding the GIL: no Python
    thread can act. faulthandler's watchdog is a C thread: when the executor has not turned for
    `EXECUTOR_STUCK_S` it prints every thread's stack and ends the process with exit code 1, which
    launch's `respawn` restarts.
    """
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while node.context.ok() and not node.rejoin_requested.is_set() and node.transitions.state != "finalized":
            faulthandler.dump_traceback_later(EXECUTOR_STUCK_S, exit=True)
            try:
                executor.spin_once(timeout_sec=0.25)
            except ExternalShutdownException:
                raise
            except Exception as error:  # noqa: BLE001 - a message rclpy cannot take must not stop the node
                executor_failed(node, error)
    finally:
        faulthandler.cancel_dump_traceback_later()
        executor.shutdown()


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C, SIGTERM or a lifecycle shutdown (exit 0); with autostart, exit 2 with what to fix
    on bad parameters or model."""
    args = sys.argv if args is None else args
    profile = use_large_image_transport()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except rclpy_implementation.RCLError as error:  # rcl refuses a params file it cannot parse, or with aliases
        print(f"[{NODE_NAME}] invalid arguments: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    try:
        node = watched(SurroundDepthNode())
        if profile:
            node.get_logger().info(
                f"Fast DDS profile for large images: {profile} (set FASTDDS_DEFAULT_PROFILES_FILE to choose)"
            )
        if node.autostart and (why := bring_up(node)):
            print(f"[{NODE_NAME}] {why}", file=sys.stderr)
            node.destroy_node()
            rclpy.try_shutdown()
            return 2
        if not node.autostart:
            node.get_logger().info("unconfigured: waiting for a lifecycle manager (autostart is false)")
    except KeyboardInterrupt:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
        return 0
    rejoined = abandoned = False
    try:
        while True:
            _spin_until_rejoin(node)
            if not node.context.ok() or node.transitions.state == "finalized":  # a lifecycle manager's shutdown
                break
            old, node, rejoined = node, None, True  # the rejoin disposes of the old node and context, also on failure
            node = rejoin(old, args)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            # A worker inside a forward pass, which cannot be interrupted, is left rather than keep the user (or
            # launch, which escalates to SIGTERM after 5 s) waiting; the set in hand is not published.
            abandoned = not node.release(STOP_WAIT_S)
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
