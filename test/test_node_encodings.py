"""Camera drivers' raw encodings through real DDS: a Bayer camera and a YUV 4:2:2 camera are served like rgb8 ones.

The two cameras publish real buffers (a mosaic sampled from the image, packed YUYV), so the node decodes
them on its decoder thread exactly as it would a driver's; the other four publish rgb8.
"""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
import test_node_pipeline as node_test
from test_node_pipeline import HEIGHT, OFFSETS_NS, T0, WIDTH, _depth, _images, _ns, _start, _stop

rig, checkpoint = node_test.rig, node_test.checkpoint  # the node tests' fixtures: a tiny student for a 160x90 rig

DRIVER_ENCODINGS = {1: "bayer_rggb8", 4: "yuv422_yuy2"}  # camera index in the rig -> what its driver publishes


def _raw(image: np.ndarray, encoding: str) -> np.ndarray:
    """The samples a camera driver publishes of an RGB `image` in `encoding`."""
    if encoding == "yuv422_yuy2":
        return cv2.cvtColor(image, cv2.COLOR_RGB2YUV_YUY2)
    mosaic = image[..., 1].copy()  # green on the rggb tile's diagonal, red and blue on the others
    mosaic[0::2, 0::2], mosaic[1::2, 1::2] = image[0::2, 0::2, 0], image[1::2, 1::2, 2]
    return mosaic


def test_a_bayer_and_a_yuv422_camera_get_their_depth(tmp_path, checkpoint, rig):
    from surround_depth_ros.ros.messages import MESSAGES

    node, client, out, pub = _start(tmp_path, checkpoint, rig, publish_cloud=False)
    names = {i: rig.cameras[i].name for i in DRIVER_ENCODINGS}
    sent = {i: set() for i in DRIVER_ENCODINGS}
    try:
        pub.publish_tf()
        deadline = time.monotonic() + 60
        for k in itertools.count():
            if all(out.depth[name] for name in names.values()):
                break
            assert time.monotonic() < deadline, f"no depth for the {DRIVER_ENCODINGS} cameras in 60 s"
            for i, image in enumerate(_images(k)):
                stamp = T0 + k * 100_000_000 + OFFSETS_NS[i]
                info, msg = pub.camera_messages(i, image, stamp)
                if i in DRIVER_ENCODINGS:
                    raw = _raw(image, DRIVER_ENCODINGS[i])
                    msg = MESSAGES.image_array(raw, stamp, rig.cameras[i].frame_id, DRIVER_ENCODINGS[i])
                    sent[i].add(stamp)
                pub.publish_messages(i, info, msg)
            time.sleep(0.1)
    finally:
        _stop(node, client)
    for i, name in names.items():
        msg = out.depth[name][0]
        assert _ns(msg.header.stamp) in sent[i] and msg.header.frame_id == rig.cameras[i].frame_id
        assert (msg.width, msg.height) == (WIDTH, HEIGHT) and np.isfinite(_depth(msg)).all()
