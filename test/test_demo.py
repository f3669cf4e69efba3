"""The README's main job, small: a synthetic bag replayed through the node, its outputs written."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np

from surround_depth_ros.sensors.visualize import DEPTH_TICKS_M, colorize_depth, depth_colour_bar


def test_demo_replays_a_synthetic_bag_through_the_node(tmp_path):
    out = tmp_path / "demo"
    command = [
        sys.executable,
        "-m",
        "surround_depth_ros.tools.cli",
        "demo",
        "--out",
        str(out),
        "--frames",
        "6",
        "--size",
        "320x180",
        "--rate",
        "0.5",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_sets_in_bag"] == 6 and summary["frame_sets_published"] >= 1
    assert summary["node"]["preset"] == "tiny-camera"
    assert int(summary["node"]["frame sets published"]) == summary["frame_sets_published"]
    accuracy = summary["accuracy_vs_synthetic_truth"]
    assert accuracy is not None and 0 < accuracy["abs_rel"] < 0.5  # the shipped student, on an unseen street
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (6 * 180 + depth_colour_bar(3 * 320).shape[0], 3 * 320, 3)  # the colour bar below
    # the published depth is at the network's size (the default); the pictures show it over the camera's pixels
    assert cv2.imread(str(out / "depth_CAM_FRONT.png")).shape == (180, 320, 3)
    assert summary["node"]["stage upsample ms (mean of last 100)"] == "0.0"
    assert (out / "cloud.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex ")
    assert (out / "bag" / "metadata.yaml").is_file() and "Traceback" not in (out / "node.log").read_text()


def test_colour_bar_shows_the_depth_colours_at_their_ticks():
    bar = depth_colour_bar(960)
    gradient = bar[6].astype(int)  # a row through the colour strip
    below = 4 + int(np.argmax(bar[4:, 480].max(axis=1) == 0))  # the first row under the strip: tick marks
    ticks = np.flatnonzero((bar[below] == 255).all(axis=1))
    assert len(ticks) == len(DEPTH_TICKS_M)
    for tick, x_tick in zip(DEPTH_TICKS_M, ticks, strict=True):
        colour = colorize_depth(np.array([[float(tick)]]))[0, 0]
        x_colour = int(np.argmin(np.abs(gradient - colour).sum(axis=1)))  # where the strip shows this depth's colour
        assert abs(x_colour - x_tick) <= 4, (tick, x_colour, x_tick)
