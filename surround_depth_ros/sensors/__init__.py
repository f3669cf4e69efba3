"""Sensor data without ROS: the rig, one synchronized frame set, radar sweeps, point clouds, and pictures of them."""
