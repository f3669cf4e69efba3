"""The synthetic surround world: a procedural street with exact depth, lidar and radar for any rig."""

from surround_depth_ros.datasets.synthetic.reader import SyntheticReader, SyntheticWorlds
from surround_depth_ros.datasets.synthetic.sensors import LidarModel, RadarModel, SensorTiming
from surround_depth_ros.datasets.synthetic.world import SyntheticWorld

__all__ = ["LidarModel", "RadarModel", "SensorTiming", "SyntheticReader", "SyntheticWorld", "SyntheticWorlds"]
