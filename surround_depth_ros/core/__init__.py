"""The ROS-free runtime of the node: frame assembly, sync, transforms, pipeline, fusion, health, parameters."""
