"""Helpers for integration tests over real DDS: a node in its own process, a client in this one."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml


def write_params(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    return path


class NodeProcess:
    """`python -m surround_depth_ros.ros.node` with a params file and a namespace, stopped with SIGINT."""

    def __init__(self, params_file: Path, namespace: str = "/", extra: list[str] | None = None) -> None:
        command = [sys.executable, "-m", "surround_depth_ros.ros.node", "--ros-args", "--params-file"]
        command += [str(params_file), "-r", f"__ns:={namespace}", *(extra or [])]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output, _ = self.process.communicate()
        return self.process.returncode

    def wait(self, timeout: float = 60.0) -> int:
        self.output, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode


class RosClient:
    """An rclpy node spun in a background thread, with a private context."""

    def __init__(self, name: str = "test_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `condition()` holds; a liveness bound, not a speed check."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        # Shutting rclpy down while the executor thread spins aborts the process: stop it first.
        self.executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()
