"""A ROS-free transform buffer: the frame tree the node learns from /tf_static and /tf.

Why our own and not tf2_ros: that needs a ROS distribution. The node feeds this buffer with the
transforms it receives; extrinsics are then looked up through chains of intermediate frames
(base_link -> cam_front -> cam_front_optical), with the same semantics tf2 users expect: static
edges hold at any time, dynamic edges are interpolated between their two nearest samples (linear
translation, quaternion slerp) and never extrapolated, a lookup without a time uses the latest
time all dynamic edges of the chain share, and every failure says which frame or time is missing.

Conventions as in `geometry`: `T_parent_child` maps points from the child frame into the parent
frame; `lookup(target, source)` returns `T_target_source`.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field

import numpy as np

from surround_depth_ros.geometry import invert_transform, make_transform, matrix_to_quaternion, quaternion_to_matrix

_log = logging.getLogger(__name__)


class TransformError(Exception):
    """A lookup that cannot be answered; the message says what is missing."""


class UnknownFrameError(TransformError):
    """A frame no transform has mentioned yet."""


class DisconnectedFramesError(TransformError):
    """Both frames are known but lie in different trees."""


class ExtrapolationError(TransformError):
    """A dynamic edge has no data bracketing the requested time."""


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (w, x, y, z), along the shorter arc."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    dot = float(q0 @ q1)
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: sin(angle) ~ 0, the linear blend is exact to 1e-7
        q = q0 + fraction * (q1 - q0)
        return q / np.linalg.norm(q)
    angle = np.arccos(dot)
    return (np.sin((1.0 - fraction) * angle) * q0 + np.sin(fraction * angle) * q1) / np.sin(angle)


def _check_rigid(T: np.ndarray, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{what}: transform must have shape (4, 4), got {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{what}: transform contains NaN or infinite values")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0 or not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f"{what}: not a rigid transform (orthonormal rotation, last row [0, 0, 0, 1])")
    return T


@dataclass
class _Edge:
    """The transform from one child frame to its parent: one static value or a time-sorted history."""

    parent: str
    child: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)
    inverses: list[np.ndarray] = field(default_factory=list)  # kept so that walking down a chain never inverts
    quaternions: list[np.ndarray] = field(default_factory=list)

    def at(self, stamp: int | None, inverse: bool = False) -> np.ndarray:
        """T_parent_child (or T_child_parent) at `stamp`, latest when None; ExtrapolationError outside the history."""
        stored = self.inverses if inverse else self.transforms
        if self.static or stamp is None:
            return stored[-1]
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            return stored[i]
        if i == 0 or i == len(self.stamps):
            raise ExtrapolationError(self.describe_gap(stamp))
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        fraction = (stamp - t0) / (t1 - t0)
        q = slerp(self.quaternions[i - 1], self.quaternions[i], fraction)
        translation = (1 - fraction) * self.transforms[i - 1][:3, 3] + fraction * self.transforms[i][:3, 3]
        T = make_transform(quaternion_to_matrix(*q), translation)
        return invert_transform(T) if inverse else T

    def insert(self, stamp: int, T: np.ndarray) -> None:
        """Add a sample in time order, replacing one with the same stamp."""
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.forget(only=i)
        self.stamps.insert(i, stamp)
        self.transforms.insert(i, T)
        self.inverses.insert(i, invert_transform(T))
        self.quaternions.insert(i, np.array(matrix_to_quaternion(T[:3, :3])))

    def forget(self, before: int | None = None, only: int | None = None) -> None:
        """Drop sample `only`, or the samples older than `before`, or all of them."""
        if only is not None:
            doomed = slice(only, only + 1)
        else:
            doomed = slice(0, len(self.stamps) if before is None else bisect.bisect_left(self.stamps, before))
        for samples in (self.stamps, self.transforms, self.inverses, self.quaternions):
            del samples[doomed]

    def describe_gap(self, stamp: int) -> str:
        first, last = self.stamps[0], self.stamps[-1]
        if stamp > last:
            where = f"extrapolation into the future by {(stamp - last) / 1e9:.3f} s"
        else:
            where = f"extrapolation into the past by {(first - stamp) / 1e9:.3f} s"
        return (
            f"edge {self.parent!r} -> {self.child!r} has {len(self.stamps)} sample(s) from t={first / 1e9:.3f} s "
            f"to t={last / 1e9:.3f} s; lookup at t={stamp / 1e9:.3f} s would need {where}"
        )


class TransformBuffer:
    """Frame tree with static edges (kept forever) and dynamic edges (history bounded by `cache_s`)."""

    def __init__(self, cache_s: float = 10.0) -> None:
        if not cache_s > 0:
            raise ValueError(f"cache_s must be > 0 s, got {cache_s}")
        self._cache = round(cache_s * 1e9)
        self._edges: dict[str, _Edge] = {}  # child frame -> edge to its parent
        self._frames: set[str] = set()
        self.version = 0

    # ------------------------------------------------------------------ input

    def set_transform(
        self, parent: str, child: str, T: np.ndarray, stamp_ns: int = 0, static: bool = False
    ) -> str | None:
        """Store T_parent_child; returns (and logs) a warning when it re-parents `child` or is too old to keep.

        `version` increases whenever what lookups return may have changed (a re-sent identical
        static transform, as /tf_static publishers repeat, changes nothing).
        """
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different, non-empty frame names, got {parent!r} -> {child!r}")
        T = _check_rigid(T, f"transform {parent!r} -> {child!r}")
        stamp = int(stamp_ns)
        ancestor = parent
        while ancestor != child and ancestor in self._edges:
            ancestor = self._edges[ancestor].parent
        if ancestor == child:
            raise ValueError(f"transform {parent!r} -> {child!r} would close a loop: {parent!r} is below {child!r}")
        warning = None
        edge = self._edges.get(child)
        if edge is not None and (edge.parent != parent or edge.static != static):
            kinds = ("dynamic", "static")
            if edge.parent == parent:
                warning = f"edge {parent!r} -> {child!r} turns {kinds[static]} (it was {kinds[edge.static]})"
            else:
                warning = (
                    f"frame {child!r} now hangs below {parent!r}; it was below {edge.parent!r}: "
                    "the old edge is replaced (a frame has one parent)"
                )
            _log.warning(warning)
            edge = None
        if edge is None:
            edge = self._edges[child] = _Edge(parent, child, static)
        elif static:
            if np.allclose(edge.transforms[-1], T, rtol=0, atol=1e-12):
                return None
            edge.forget()
        elif edge.stamps and stamp < edge.stamps[-1] - self._cache:
            warning = (
                f"transform {parent!r} -> {child!r} at t={stamp / 1e9:.3f} s is older than the cache "
                f"({self._cache / 1e9:.1f} s before the newest, t={edge.stamps[-1] / 1e9:.3f} s) and is ignored; "
                "call clear() when the clock jumps back"
            )
            _log.warning(warning)
            return warning
        self._frames |= {parent, child}
        edge.insert(stamp, T)
        if not static:
            edge.forget(before=edge.stamps[-1] - self._cache)
        self.version += 1
        return warning

    def clear(self) -> None:
        """Forget dynamic history (for a clock that jumped back); static transforms stay."""
        dynamic = [child for child, edge in self._edges.items() if not edge.static]
        for child in dynamic:
            del self._edges[child]
        if dynamic:
            self._frames = {*self._edges, *(edge.parent for edge in self._edges.values())}
            self.version += 1

    # ------------------------------------------------------------------ queries

    def frames(self) -> list[str]:
        """Every frame mentioned so far (since the last `clear` for dynamic ones), sorted."""
        return sorted(self._frames)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source (4x4, maps points in `source_frame` into `target_frame`) at `stamp_ns`.

        Without a stamp, dynamic edges are taken at the latest time they all have (tf2's time 0).
        """
        failure = f"no transform from {source_frame!r} to {target_frame!r}"
        for frame in (source_frame, target_frame):
            if frame not in self._frames:
                raise UnknownFrameError(f"{failure}: {frame!r} is unknown; known frames: {self.frames()}")
        if source_frame == target_frame:
            return np.eye(4)
        up_source, up_target = self._chain(source_frame), self._chain(target_frame)
        roots = {up_source[-1], up_target[-1]}
        if len(roots) > 1:
            raise DisconnectedFramesError(
                f"{failure}: they lie in different trees (rooted at {up_source[-1]!r} and {up_target[-1]!r}); "
                "a transform connecting them is missing"
            )
        target_ancestors = set(up_target)
        common = next(frame for frame in up_source if frame in target_ancestors)
        up = [self._edges[child] for child in up_source[: up_source.index(common)]]
        down = [self._edges[child] for child in up_target[: up_target.index(common)]]
        if stamp_ns is None:
            dynamic = [edge.stamps[-1] for edge in up + down if not edge.static]
            stamp = min(dynamic) if dynamic else None
        else:
            stamp = int(stamp_ns)
        # T_target_source = T_target_common @ T_common_source: inverses of the target's edges, target
        # side first, then the source's edges from the common frame down to the source.
        try:
            matrices = [edge.at(stamp, inverse=True) for edge in down] + [edge.at(stamp) for edge in reversed(up)]
        except ExtrapolationError as error:
            raise ExtrapolationError(f"{failure}: {error}") from None
        T = matrices[0]
        for matrix in matrices[1:]:
            T = T @ matrix
        return T.copy() if len(matrices) == 1 else T

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        """Whether `lookup` would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformError:
            return False
        return True

    def _chain(self, frame: str) -> list[str]:
        """The frame and its ancestors up to the root."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain
