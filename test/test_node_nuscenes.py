"""The node on the real nuScenes keyframe: written as a bag with its real calibration, replayed over DDS.

The outputs must be at the cameras' real size (1600x900) and aligned with the real extrinsics:
every cloud point, taken back through the calibrated_sensor transform of its camera and its
intrinsics, lands on the pixel whose published depth it is.

The keyframe is replayed five times, 1 s apart, as a camera streams, and the first set served with
every camera is checked. A message sent before the node's reader has matched the writer most likely comes
with the writer's next reliable repair, after Fast DDS's 3 s heartbeat: in loaded runs one camera's
camera_info came after a 1 s replay had ended (the node had heard it, so no rejoin, and every set was
decided without it). On failure the test prints every input's status.
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_harness import NodeProcess, RosClient, tiny_checkpoint
from test_node_pipeline import Outputs, _cloud, _depth, _ns, _params

from surround_depth_ros.base import geometry


@pytest.fixture(scope="module")
def frameset(shared_data_path):
    from surround_depth_ros.datasets.nuscenes import NuScenesReader

    return NuScenesReader(shared_data_path("nuscenes_sample"))[0]


def test_real_keyframe_through_bag_replay_and_node(tmp_path, frameset):
    from surround_depth_ros.bag.writer import write_bag
    from surround_depth_ros.ros.replayer import BagReplayer

    rig = frameset.rig
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", rig)
    bag = tmp_path / "nuscenes_bag"
    repeats = [_shifted(frameset, k * 1_000_000_000) for k in range(5)]
    write_bag(repeats, bag, progress=False)

    node = NodeProcess(_params(tmp_path, checkpoint, rig, use_sim_time=True, cloud_stride=8))
    client = RosClient()
    out = Outputs(client, rig.camera_names)
    try:
        replayer = BagReplayer(bag, rate=1.0, node=client.node)

        def node_hears_the_replayer() -> bool:
            """Both sides matched, the node's subscriptions and the replayer's publishers (a writer that has not
            yet matched a reader drops what it sends): the only frame cannot be lost."""
            inputs = [out.status(f"input {name}") for name in rig.camera_names]
            readers = all(
                i.get("publishers", "0") != "0" and i.get("camera_info publishers", "0") != "0" for i in inputs
            )
            cameras = [p for topic, p in replayer.publishers.items() if topic.split("/")[1] in rig.camera_names]
            return (
                readers
                and len(cameras) == 2 * len(rig.camera_names)
                and all(p.get_subscription_count() for p in cameras)
            )

        client.wait_for(node_hears_the_replayer, 90, "the node's subscriptions matching the replayer")
        replayer.run()
        client.wait_for(lambda: _first_served(out, repeats) is not None, 90, "a set served with every camera")
    finally:
        client.close()
        code = node.stop()
        print(node.output, out.status("pipeline"), *(out.status(f"input {c}") for c in rig.camera_names))  # on failure
    assert code == 0 and "Traceback" not in node.output, node.output

    served, cloud_msg = _first_served(out, repeats)
    assert cloud_msg.header.frame_id == "base_link" and _ns(cloud_msg.header.stamp) == served.camera_stamps_ns[0]
    cloud = _cloud(cloud_msg)
    for i, camera in enumerate(rig.cameras):
        (msg,) = [m for m in out.depth[camera.name] if _ns(m.header.stamp) == served.camera_stamps_ns[i]]
        assert (msg.width, msg.height, msg.encoding) == (1600, 900, "32FC1")
        assert msg.header.frame_id == camera.frame_id
        depth = _depth(msg)
        mine = cloud[cloud["camera"] == i]
        assert len(mine) > 1000, camera.name
        points = np.stack([mine["x"], mine["y"], mine["z"]], axis=1).astype(np.float64)
        uv, z = geometry.project_points(
            camera.K, geometry.transform_points(geometry.invert_transform(camera.T_base_cam), points)
        )
        pixels = np.rint(uv).astype(int)
        assert np.abs(uv - pixels).max() < 5e-3, camera.name
        assert (pixels % 8 == 0).all()
        np.testing.assert_allclose(z, depth[pixels[:, 1], pixels[:, 0]], rtol=1e-4)


def _shifted(frameset, offset_ns: int):  # noqa: ANN001, ANN202 - FrameSet
    """The frame set `offset_ns` later: every camera, radar and lidar stamp moved."""
    import dataclasses

    def sweep(s):  # noqa: ANN001, ANN202 - PointSweep
        return dataclasses.replace(s, stamp_ns=s.stamp_ns + offset_ns)

    return dataclasses.replace(
        frameset,
        camera_stamps_ns=np.asarray(frameset.camera_stamps_ns) + offset_ns,
        radar=[sweep(s) for s in frameset.radar],
        lidar=None if frameset.lidar is None else sweep(frameset.lidar),
        anchor_stamp_ns=None if frameset.anchor_stamp_ns is None else frameset.anchor_stamp_ns + offset_ns,
    )


def _first_served(out, repeats):  # noqa: ANN001, ANN202 - Outputs, list[FrameSet]
    """(frame set, cloud) of the first replayed set whose cloud and six depth images all arrived, else None."""
    clouds = {_ns(c.header.stamp): c for c in out.clouds}
    for frame in repeats:
        stamps = frame.camera_stamps_ns
        depth = [{_ns(m.header.stamp) for m in out.depth[name]} for name in frame.rig.camera_names]
        if int(stamps[0]) in clouds and all(int(s) in d for s, d in zip(stamps, depth, strict=True)):
            return frame, clouds[int(stamps[0])]
    return None
