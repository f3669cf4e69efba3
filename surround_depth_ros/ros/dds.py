"""DDS settings the package needs for camera-sized messages (see config/fastdds_large_images.xml)."""

from __future__ import annotations

import os

from surround_depth_ros.resources import packaged_file

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def use_large_image_transport() -> str | None:
    """Point Fast DDS at the large-image profile unless the user chose one; the path set, else None.

    Must run before rclpy.init (Fast DDS reads the file when it creates the first participant).
    Other RMWs ignore the variable.
    """
    if any(os.environ.get(name) for name in PROFILE_VARIABLES):
        return None
    path = str(packaged_file("config", "fastdds_large_images.xml"))
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = path
    return path
