"""The node in its own process: started with a params file, its output drained, stopped with SIGINT.

`surround-depth demo` and the integration tests (`test/ros_harness.py`) start the node this way, so
the demo runs the node exactly as the tests do. The output is read while the node runs: an
undrained pipe blocks the node once 64 KB of log wait (a storm of Fast DDS errors does that),
which would look like a DDS stall.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

NODE_MODULE = "surround_depth_ros.ros.supervisor"


def write_params(path: Path, values: dict[str, Any]) -> Path:
    """A ROS params file giving `values` to every node (`/**`), as `--params-file` reads it."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    return path


class NodeProcess:
    """`python -m surround_depth_ros.ros.supervisor` with a params file and a namespace, stopped with SIGINT.

    `output` is what the node printed so far (all of it once `stop()` or `wait()` returned); with `log`
    every line also goes to that file as it comes, to follow a long run with `tail -f`.
    """

    def __init__(
        self, params_file: Path, namespace: str = "/", extra: Sequence[str] = (), log: Path | None = None
    ) -> None:
        command = [sys.executable, "-m", NODE_MODULE, "--ros-args", "--params-file", str(params_file)]
        command += ["-r", f"__ns:={namespace}", *extra]
        self._log = None if log is None else Path(log).open("w")
        self._lines: list[str] = []
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self._lines.append(line)
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
        if self._log is not None:  # the pipe closed: the node is gone
            self._log.close()

    @property
    def output(self) -> str:
        """Everything the node printed (stdout and stderr) so far."""
        return "".join(self._lines)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def _collect(self) -> int:
        self._reader.join(timeout=5)
        return self.process.returncode

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (the node's clean shutdown), SIGKILL after `timeout` seconds; the exit code."""
        if self.running:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self._collect()

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code of a node that ends by itself (e.g. refusing its parameters)."""
        self.process.wait(timeout=timeout)
        return self._collect()
