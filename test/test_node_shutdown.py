"""Ctrl-C (or launch's SIGTERM) while the node is inside a forward pass: it leaves at once, cleanly.

A forward pass cannot be interrupted; the node waits `STOP_WAIT_S` for it, then drops the set in
hand and leaves with exit code 0. Under `ros2 launch` the old wait for the whole set overran
launch's 5 s SIGINT timeout. The student here is made slow on purpose (the default preset at
1056x1920) so that the signal surely lands inside its first forward pass on any machine.
"""

from __future__ import annotations

import dataclasses
import signal
import time

import pytest
import test_node_pipeline as node_test
from test_node_pipeline import _drive, _start

from surround_depth_ros.ros.node import STOP_WAIT_S

rig = node_test.rig  # the node tests' 160x90 rig


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory, rig):
    pytest.importorskip("torch")
    from surround_depth_ros.network.checkpoint import save_checkpoint
    from surround_depth_ros.network.student import SurroundDepthStudent, preset

    config = dataclasses.replace(preset("default"), name="slow", input_height=1056, input_width=1920, cross_view=False)
    path = tmp_path_factory.mktemp("model") / "slow.pt"
    save_checkpoint(path, SurroundDepthStudent(config).eval(), config, rig=rig)
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_during_inference_drops_the_set_in_hand_and_exits_0(tmp_path, slow_checkpoint, rig, signum):
    node, client, out, pub = _start(tmp_path, slow_checkpoint, rig, publish_cloud=False)
    try:
        pub.publish_tf()
        deadline = time.monotonic() + 120
        frames = iter(range(10**6))
        while "cameras bound to the model's slots" not in node.output:  # logged as the first forward begins
            assert node.running and time.monotonic() < deadline, f"no frame set reached the worker:\n{node.output}"
            _drive(pub, range(next(frames), next(frames) + 1))
        signalled = time.monotonic()
        node.process.send_signal(signum)
        code = node.wait(60)
        elapsed = time.monotonic() - signalled
    finally:
        client.close()
        if node.running:
            node.stop()
    print(node.output)
    print(f"exit {elapsed:.2f} s after the signal (waits {STOP_WAIT_S} s for the set in hand)")
    assert code == 0, node.output
    assert "stopped during inference: the frame set in hand is dropped" in node.output, node.output
    assert "Traceback" not in node.output and "terminate called" not in node.output, node.output
    assert not any(out.depth.values()), "the set in hand was published after all: the forward was not interrupted"
