"""Teachers behind one interface: Depth Anything (relative, foundation model), the project's own large
model (metric, radar-camera), and an on-disk cache of either. `transformers` is imported only when a
Depth Anything teacher is built."""

from surround_depth_ros.teachers.base import Teacher, TeacherOutput
from surround_depth_ros.teachers.cache import CachedTeacher

__all__ = ["CachedTeacher", "DepthAnythingTeacher", "OwnFamilyTeacher", "Teacher", "TeacherOutput"]


def __getattr__(name: str) -> type:
    """Lazy imports: the Depth Anything adapter pulls transformers, the own-family one the network."""
    if name == "DepthAnythingTeacher":
        from surround_depth_ros.teachers.depth_anything import DepthAnythingTeacher

        return DepthAnythingTeacher
    if name == "OwnFamilyTeacher":
        from surround_depth_ros.teachers.own_family import OwnFamilyTeacher

        return OwnFamilyTeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
