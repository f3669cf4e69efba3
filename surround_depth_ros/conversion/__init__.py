"""ROS messages <-> numpy, for rclpy and rosbags alike (the bag reader and writer are in `bag/`)."""
