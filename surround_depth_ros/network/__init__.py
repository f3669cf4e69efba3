"""The student network: encoders, attention, decoders, bin head, radar branch, assembled presets."""

from surround_depth_ros.network.student import (
    MEAN,
    PRESETS,
    STD,
    ExportableStudent,
    ImageNormalisation,
    StudentConfig,
    StudentOutput,
    SurroundDepthStudent,
    preset,
)

__all__ = [
    "MEAN",
    "PRESETS",
    "STD",
    "ExportableStudent",
    "ImageNormalisation",
    "StudentConfig",
    "StudentOutput",
    "SurroundDepthStudent",
    "preset",
]
