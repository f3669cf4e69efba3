"""The ROS adapter: the only subpackage that imports rclpy and message types."""
