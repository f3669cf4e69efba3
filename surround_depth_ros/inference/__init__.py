"""Inference: one `DepthEngine` (pre/post-processing) over interchangeable backends."""

from surround_depth_ros.inference.backend import BackendUnavailable
from surround_depth_ros.inference.backend_factory import BACKENDS
from surround_depth_ros.inference.engine import DepthEngine

__all__ = ["BACKENDS", "BackendUnavailable", "DepthEngine"]
