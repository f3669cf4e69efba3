"""Depth metrics, the scoring of predictions against lidar truth, and the reports people look at."""
