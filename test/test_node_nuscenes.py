"""The node on the real nuScenes keyframe: written as a bag with its real calibration, replayed over DDS.

The outputs must be at the cameras' real size (1600x900) and aligned with the real extrinsics:
every cloud point, taken back through the calibrated_sensor transform of its camera and its
intrinsics, lands on the pixel whose published depth it is.
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_harness import NodeProcess, RosClient, tiny_checkpoint
from test_node_pipeline import Outputs, _cloud, _depth, _ns, _params

from surround_depth_ros import geometry


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
    write_bag([frameset], bag, progress=False)

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
        client.wait_for(lambda: out.clouds and all(out.depth[c] for c in rig.camera_names), 90, "the node's outputs")
    finally:
        client.close()
        code = node.stop()
        print(node.output, out.status("pipeline"))  # shown when the test fails
    assert code == 0 and "Traceback" not in node.output, node.output

    cloud_msg = out.clouds[0]
    assert cloud_msg.header.frame_id == "base_link" and _ns(cloud_msg.header.stamp) == frameset.camera_stamps_ns[0]
    cloud = _cloud(cloud_msg)
    for i, camera in enumerate(rig.cameras):
        (msg,) = out.depth[camera.name]
        assert (msg.width, msg.height, msg.encoding) == (1600, 900, "32FC1")
        assert _ns(msg.header.stamp) == frameset.camera_stamps_ns[i] and msg.header.frame_id == camera.frame_id
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
