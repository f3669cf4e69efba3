"""The README's main job, small: a synthetic bag replayed through the node, its outputs written."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2


def test_demo_replays_a_synthetic_bag_through_the_node(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "surround_depth_ros.tools.cli", "demo", "--out", str(out), "--frames", "6",
               "--size", "320x180", "--rate", "0.5"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_sets_in_bag"] == 6 and summary["frame_sets_published"] >= 1
    assert summary["node"]["preset"] == "tiny-camera"
    assert int(summary["node"]["frame sets published"]) == summary["frame_sets_published"]
    accuracy = summary["accuracy_vs_synthetic_truth"]
    assert accuracy is not None and 0 < accuracy["abs_rel"] < 0.5  # the shipped student, on an unseen street
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (6 * 180, 3 * 320, 3)
    assert (out / "cloud.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex ")
    assert (out / "bag" / "metadata.yaml").is_file() and "Traceback" not in (out / "node.log").read_text()
