"""rosbag2 files without a ROS distribution: FrameSets in (writer), FrameSets out (reader), one topic layout."""

from surround_depth_ros.bag.reader import BagFormatError, RosbagReader
from surround_depth_ros.bag.topics import TopicNames
from surround_depth_ros.bag.writer import BagStats, BagWriter, write_bag

__all__ = ["BagFormatError", "BagStats", "BagWriter", "RosbagReader", "TopicNames", "write_bag"]
