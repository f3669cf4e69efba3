"""The node's frame sets over real DDS, with real camera timing: every published set holds one capture.

Six cameras at 12 Hz fire 0 to 42 ms after the anchor, as nuScenes cameras do (the last one half a
period late), each publishing at its firing time. Each image is one colour that encodes its frame
index, so the fused cloud says, for every point, which capture its camera's image came from: the
truth is in the pixels, not in anything the node reports.
"""

from __future__ import annotations

import time

import numpy as np
import test_node_pipeline as node_test
from test_node_pipeline import HEIGHT, T0, WIDTH, _cloud, _ns, _start, _stop

rig, checkpoint = node_test.rig, node_test.checkpoint  # the node tests' fixtures: a tiny student for a 160x90 rig

PERIOD_NS = round(1e9 / 12)
FIRING_MS = [0, 8, 17, 25, 33, 42]  # after the anchor (the first camera), in rig order
FRAMES = 48  # 4 s


def _frame_image(k: int, camera: int) -> np.ndarray:
    """Red says the frame (mod 256), green the camera."""
    return np.broadcast_to(np.array([k % 256, 40 * camera, 200], np.uint8), (HEIGHT, WIDTH, 3)).copy()


def test_every_published_set_holds_one_capture_with_cameras_firing_up_to_42_ms_late(tmp_path, checkpoint, rig):
    node, client, out, pub = _start(tmp_path, checkpoint, rig, cloud_stride=8, publish_confidence=False)
    firing = sorted(range(len(rig.cameras)), key=lambda i: FIRING_MS[i])
    try:
        pub.publish_tf()
        start = time.monotonic() + 0.2
        for k in range(FRAMES):
            for i in firing:
                time.sleep(max(0.0, start + (k * PERIOD_NS + FIRING_MS[i] * 1_000_000) / 1e9 - time.monotonic()))
                pub.publish_camera(i, _frame_image(k, i), T0 + k * PERIOD_NS + FIRING_MS[i] * 1_000_000)
        client.wait_for(
            lambda: len(out.clouds) >= 3 and int(out.status("pipeline").get("sync accepted", 0)) >= FRAMES - 1,
            60,
            "three fused clouds, and every capture but the last synchronized",
        )
        pipeline = out.status("pipeline")
    finally:
        _stop(node, client)
    complete = 0
    for cloud in out.clouds:
        points = _cloud(cloud)
        frames = (points["rgb"].view(np.uint32) >> 16) & 0xFF
        anchor_frame = (_ns(cloud.header.stamp) - T0) // PERIOD_NS
        per_camera = {int(c): set(frames[points["camera"] == c].tolist()) for c in np.unique(points["camera"])}
        assert all(seen == {anchor_frame % 256} for seen in per_camera.values()), (
            f"the set of frame {anchor_frame} holds frames {per_camera} (camera index: frames)"
        )
        complete += len(per_camera) == len(rig.cameras)
    for camera in rig.cameras:  # each depth image keeps its own image's stamp: one per capture, never shifted
        stamps = [_ns(m.header.stamp) for m in out.depth[camera.name]]
        assert all((s - T0) % PERIOD_NS == FIRING_MS[rig.camera_names.index(camera.name)] * 1_000_000 for s in stamps)
    print(f"{pipeline['sync accepted']} complete sets of {FRAMES} captures, {len(out.clouds)} published (CPU)")
    assert complete == len(out.clouds) and "sync partial" not in pipeline, pipeline
    learned = dict(
        entry.split() for entry in pipeline["camera firing offsets after the anchor, ms (given or learned)"].split(", ")
    )
    assert {name: float(ms) for name, ms in learned.items()} == dict(zip(rig.camera_names, FIRING_MS, strict=True))


def test_cameras_stamping_zero_are_named_and_the_stalled_pipeline_says_why(tmp_path, checkpoint, rig):
    """A driver that never sets header.stamp: every camera is refused by name, and the pipeline's ERROR says so."""
    node, client, out, pub = _start(tmp_path, checkpoint, rig, output_timeout_s=1.0)
    unstamped = "header.stamp is 0: the driver does not stamp its messages"

    def named() -> bool:
        pipeline = out.status("pipeline")
        return (
            all(unstamped in out.status(f"input {c}").get("message", "") for c in rig.camera_names)
            and pipeline.get("level") == 2
            and "no frame set published for" in pipeline["message"]
            and unstamped in pipeline["message"]
        )

    try:
        pub.publish_tf()
        deadline = time.monotonic() + 60
        for k in range(10**6):
            if named():
                break
            assert time.monotonic() < deadline, f"not named in 60 s: {out.status('pipeline')}"
            for i in range(len(rig.cameras)):
                pub.publish_camera(i, _frame_image(k, i), 0)
            time.sleep(0.1)
    finally:
        _stop(node, client)
    assert not out.clouds and not any(out.depth.values())
