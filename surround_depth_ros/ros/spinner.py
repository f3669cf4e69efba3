"""An rclpy node in a private context, spun in a background thread: what the demo, tests and benchmarks listen with.

`close()` ends the spinning thread before it shuts the executor down. rclpy's
`Executor.shutdown()` destroys the executor's guard condition without waiting for a callback in
flight, and the spinning thread then fails on it ("cannot use Destroyable because destruction
was requested"); under load a test client closed while a camera-sized message was being taken
ended that way.
"""

from __future__ import annotations

import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor


class BackgroundNode:
    """`node` in its own context (its own DDS participant), with callbacks run on a daemon thread until `close()`."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        """Stop the thread after its callback in hand, then the executor, the node and the context."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
