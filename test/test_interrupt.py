"""SIGINT once, SIGINT twice 0.3 s apart, and SIGTERM, sent to a real `run-bag`, `write-bag` and `evaluate` process
once it shows progress: each exits with 128 + the signal's number, without a traceback, leaving a readable output
bag (write-bag, run-bag) and a summary (summary.json; evaluate's metrics.json) that says it was interrupted.

Issue 23 item 3: one Ctrl-C left a traceback and no summary, two left a bag without its metadata.yaml.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ros_harness import tiny_cpu_params
from sample_framesets import T_BASE_LIDAR, make_framesets

from surround_depth_ros.bag import write_bag
from surround_depth_ros.sensors.frameset import PointSweep
from surround_depth_ros.tools.interrupt import StopSignals

SETS = 120  # far more than a run gets through between its first progress and the signal
PROGRESS = re.compile(r"(?<![\d.])([1-9]\d*)/(\d+) \[")  # tqdm's "12/120 [" once a set is done
PATTERNS = {
    "SIGINT": [signal.SIGINT],
    "SIGINT twice": [signal.SIGINT, signal.SIGINT],
    "SIGTERM": [signal.SIGTERM],
}


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory) -> dict[str, Path]:
    """SETS sets of the 4-camera sample rig with radar and a 2,000-point lidar, its tiny student, a params file."""
    folder = tmp_path_factory.mktemp("long")
    frames = make_framesets(SETS, seed=3)
    rng = np.random.default_rng(3)
    for frame in frames:
        angle, distance = rng.uniform(0, 2 * np.pi, 2000), rng.uniform(3.0, 60.0, 2000)
        points = np.stack([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(-1.5, 2.0, 2000)], 1)
        frame.lidar = PointSweep("lidar", frame.lidar.stamp_ns, points, T_world_base=frame.lidar.T_world_base)
    write_bag(frames, folder / "bag", T_base_lidar=T_BASE_LIDAR, progress=False)
    checkpoint, params = tiny_cpu_params(folder, frames[0].rig)
    return {"bag": folder / "bag", "checkpoint": checkpoint, "params": params}


class Output:
    """What a process writes to one of its pipes, read as it comes (tqdm redraws with carriage returns)."""

    def __init__(self, pipe) -> None:  # noqa: ANN001 - a binary file object
        self.chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:  # noqa: ANN001
        while chunk := os.read(pipe.fileno(), 65536):
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def join(self) -> str:
        self._thread.join(timeout=30)
        return self.text


def interrupt(argv: list[str], signals: list[int]) -> tuple[int, str]:
    """Start `surround-depth ARGV`, wait until it shows a set done, send `signals` 0.3 s apart (while it lives);
    (exit status, stderr)."""
    command = [sys.executable, "-m", "surround_depth_ros.tools.cli", *argv]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = Output(process.stdout), Output(process.stderr)
    try:
        deadline = time.monotonic() + 240  # a liveness bound: the start (torch, the model's warm-up) on busy cores
        while not PROGRESS.search(stderr.text):
            assert process.poll() is None, f"exited {process.returncode} before any progress: {stderr.text[-3000:]}"
            assert time.monotonic() < deadline, f"no progress in 240 s: {stderr.text[-3000:]}"
            time.sleep(0.05)
        for index, signum in enumerate(signals):
            if index:
                time.sleep(0.3)
            process.send_signal(signum)  # nothing once it exited
        code = process.wait(timeout=240)
    finally:
        process.kill()
    stdout.join()
    return code, stderr.join()


def _check_stop(command: str, code: int, stderr: str, signals: list[int]) -> str:
    """The exit status and stderr of an interrupted command (a second signal may have come while it finished, or
    after: either way the same answer); the signal's name."""
    name = signal.Signals(signals[0]).name
    assert code == 128 + signals[0], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert f"surround-depth {command}: interrupted ({name}): " in stderr
    return name


def _messages(bag: Path) -> dict[str, int]:
    """Messages per topic of a bag, every one read by rosbags (the reference reader)."""
    from rosbags.rosbag2 import Reader

    counts: dict[str, int] = {}
    with Reader(bag) as reader:
        for connection, _, _ in reader.messages():
            counts[connection.topic] = counts.get(connection.topic, 0) + 1
    return counts


@pytest.mark.parametrize("pattern", PATTERNS)
def test_run_bag_interrupted_leaves_a_readable_bag_and_a_summary(long_bag, tmp_path, pattern):
    out, signals = tmp_path / "out", PATTERNS[pattern]
    argv = ["run-bag", str(long_bag["bag"]), "--params", str(long_bag["params"]), "--out", str(out)]
    code, stderr = interrupt([*argv, "--examples", "0"], signals)
    name = _check_stop("run-bag", code, stderr, signals)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == name and 1 <= summary["frame_sets_processed"] < SETS
    assert _messages(out / "depth")["/CAM_0/depth/image"] == summary["frame_sets_processed"]
    assert json.loads((out / "metrics.json").read_text())["frame_sets"] == summary["frame_sets_processed"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_write_bag_interrupted_leaves_a_readable_bag_and_a_summary(tmp_path, pattern):
    out, signals = tmp_path / "bag", PATTERNS[pattern]
    argv = ["write-bag", "--source", "synthetic", "--frames", str(SETS), "--image-size", "160x96", "--out", str(out)]
    code, stderr = interrupt(argv, signals)
    name = _check_stop("write-bag", code, stderr, signals)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == name and 1 <= summary["frame_sets"] < SETS
    assert _messages(out)["/CAM_FRONT/image_raw"] == summary["frame_sets"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_evaluate_interrupted_scores_the_sets_done_and_says_so(long_bag, tmp_path, pattern):
    out, signals = tmp_path / "out", PATTERNS[pattern]
    argv = [
        *("evaluate", "--checkpoint", str(long_bag["checkpoint"]), "--dataset", "rosbag"),
        *("--path", str(long_bag["bag"]), "--params", str(long_bag["params"]), "--out", str(out), "--examples", "0"),
    ]
    code, stderr = interrupt([*argv, "--device", "cpu"], signals)
    name = _check_stop("evaluate", code, stderr, signals)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] == name and 1 <= metrics["frame_sets"] < SETS and (out / "report.png").is_file()


@pytest.fixture
def restore_signals():
    """StopSignals leaves the signals ignored once one stopped the work (the process is ending): not this one."""
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_signal_while_reading_ends_the_stream_there_and_later_ones_are_answered(restore_signals, capfd):
    def items():  # noqa: ANN202
        yield "first"
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the second is read
        yield "second"

    with StopSignals("test") as stop:
        taken = list(stop.frames(items()))
        os.kill(os.getpid(), signal.SIGINT)  # while the command finishes: answered, never raised
        os.kill(os.getpid(), signal.SIGTERM)
    assert taken == ["first"] and stop.signal_name == "SIGINT" and stop.exit_status == 130
    err = capfd.readouterr().err
    assert "surround-depth test: SIGINT: already stopping" in err and "surround-depth test: SIGTERM: already" in err
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # to the process's exit


def test_a_signal_during_the_work_on_an_item_lets_it_finish_and_ends_the_stream(restore_signals):
    done = []
    with StopSignals("test") as stop:
        for item in stop.frames(range(5)):
            if item == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            done.append(item)
    assert done == [0, 1] and stop.signal_name == "SIGTERM" and stop.exit_status == 143


def test_without_a_signal_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals("test") as stop:
        assert list(stop.frames(range(3))) == [0, 1, 2]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before and stop.exit_status is None
