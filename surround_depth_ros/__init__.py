"""surround_depth_ros: surround-view metric depth from a distilled student network.

The package root and everything outside `surround_depth_ros.ros` is ROS-free: it imports and
runs without rclpy, so that training, evaluation and tests of the core work anywhere.
"""

__version__ = "0.1.0"
