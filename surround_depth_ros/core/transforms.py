"""A ROS-free transform buffer: the frame tree the node learns from /tf_static and /tf.

Why our own and not tf2_ros: that needs a ROS distribution. The node feeds this buffer with the
transforms it receives; extrinsics are then looked up through chains of intermediate frames
(base_link -> cam_front -> cam_front_optical), with the same semantics tf2 users expect: static
edges hold at any time, dynamic edges are interpolated between their two nearest samples (linear
translation, quaternion slerp) and never extrapolated, a lookup without a time uses the latest
time all dynamic edges of the chain share, and every failure says which frame or time is missing.
Input is checked as tf2's `BufferCore::setTransform` checks it: a leading '/' is stripped from frame
ids, a transform with a NaN, an empty or self-referencing frame id, or a quaternion whose squared
norm is 0.01 or more off 1 is ignored, and the quaternions kept are normalised.

Real trees can be large (a URDF with thousands of links, a swarm on one /tf): a whole TFMessage is
stored in one call (`set_transforms`) whose cost per transform does not grow with the tree, and a
frame limit bounds the tree itself; what is ignored is counted by cause, once per message.

Conventions as in `geometry`: `T_parent_child` maps points from the child frame into the parent
frame; `lookup(target, source)` returns `T_target_source`.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surround_depth_ros.base.geometry import invert_transform, matrix_to_quaternion, quaternion_to_matrix
from surround_depth_ros.conversion.messages import stamp_ns

QUATERNION_TOLERANCE = 0.01
"""tf2's tolerance (QUATERNION_NORMALIZATION_TOLERANCE in tf2/src/buffer_core.cpp): a quaternion whose
squared norm is this far or farther from 1 is refused; the others are normalised."""

MAX_FRAMES = 1000
"""Default frame limit. tf2 gives up on chains deeper than 1000 frames (BufferCore::MAX_GRAPH_DEPTH);
a vehicle's tree has tens of frames. The limit bounds memory and the cost of a lookup (it walks the chain)."""

# Causes of a transform not stored (counted in `TransformReport.counts`, described in `.first`).
INVALID_FRAME = "invalid frame id"
NOT_FINITE = "not finite"
NOT_UNIT = "quaternion not unit"
FRAME_LIMIT = "frame limit"
LOOP = "would close a loop"
TOO_OLD = "older than the cache"
IGNORED = (INVALID_FRAME, NOT_FINITE, NOT_UNIT, FRAME_LIMIT, LOOP, TOO_OLD)
# Causes of a transform stored with a note: the tree changed shape or an edge its kind.
REPARENTED = "re-parented"
MADE_STATIC = "dynamic edge made static"
STATIC_ON_TF = "static edge also on /tf"


class TransformError(Exception):
    """A lookup that cannot be answered; the message says what is missing."""


class UnknownFrameError(TransformError):
    """A frame no transform has mentioned yet."""


class DisconnectedFramesError(TransformError):
    """Both frames are known but lie in different trees."""


class ExtrapolationError(TransformError):
    """A dynamic edge has no data bracketing the requested time."""


class ForwardExtrapolationError(ExtrapolationError):
    """The requested time is after a dynamic edge's newest sample: its transform may not have arrived yet."""


class BackwardExtrapolationError(ExtrapolationError):
    """The requested time is before a dynamic edge's oldest sample (older than the cache, or before it began)."""


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


def _matrix(sample: list[float]) -> np.ndarray:
    """T_parent_child of a stored sample (w, x, y, z, tx, ty, tz)."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(*sample[:4])
    T[:3, 3] = sample[4:]
    return T


def _refuse(report: TransformReport, what: str, quaternion: np.ndarray, norm2: float) -> None:
    """Count a transform whose numbers tf2 would refuse: NaN or infinity, or a quaternion off unit length."""
    if np.isfinite(norm2):
        report.add(
            NOT_UNIT,
            lambda: (
                f"{what}: quaternion (w, x, y, z) = {quaternion.tolist()} has squared norm {norm2:.6g}, not "
                f"within {QUATERNION_TOLERANCE} of 1 (tf2's tolerance): ignored"
            ),
        )
    else:
        report.add(NOT_FINITE, lambda: f"{what} has NaN or infinite values: ignored")


def _frame_id(name: str) -> str:
    """A frame id as tf2 keeps it: without one leading '/' (a ROS 1 habit)."""
    return name[1:] if name.startswith("/") else name


@dataclass(frozen=True)
class TransformBatch:
    """The transforms of one TFMessage as arrays: what `TransformBuffer.set_transforms` takes in one call."""

    parents: list[str]
    children: list[str]
    stamps_ns: np.ndarray  # (N,) int64
    rotations: np.ndarray  # (N, 4) quaternions (w, x, y, z), as received
    translations: np.ndarray  # (N, 3)

    def __len__(self) -> int:
        return len(self.children)


def transform_batch(transforms: Sequence[Any]) -> TransformBatch:
    """The TransformStamped of a TFMessage as arrays, in one pass over the messages (for `set_transforms`).

    Reading the fields is all the per-transform work: checks and normalisation run on the arrays.
    """
    parents, children, stamps, values = [], [], [], []
    for t in transforms:
        header, transform = t.header, t.transform
        r, v = transform.rotation, transform.translation
        parents.append(header.frame_id)
        children.append(t.child_frame_id)
        stamps.append(stamp_ns(header.stamp))
        values.append((r.w, r.x, r.y, r.z, v.x, v.y, v.z))
    array = np.array(values, dtype=np.float64).reshape(-1, 7)
    return TransformBatch(parents, children, np.array(stamps, dtype=np.int64), array[:, :4], array[:, 4:])


@dataclass
class TransformReport:
    """What one `set_transforms` call did: transforms stored, and per cause (IGNORED ones were not stored,
    the others were, with a note) how many and a description of the first."""

    stored: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, cause: str, describe: Callable[[], str]) -> None:
        self.counts[cause] += 1
        if cause not in self.first:
            self.first[cause] = describe()

    def ignored(self) -> dict[str, int]:
        return {cause: n for cause, n in self.counts.items() if cause in IGNORED}


@dataclass(eq=False)
class _Edge:
    """The transform from one child frame to its parent: one static value or a time-sorted history.

    A sample is a list (w, x, y, z, tx, ty, tz) with a unit quaternion: storing one costs a list
    append; matrices are made when a lookup needs them (the newest sample's are kept for the next).
    """

    parent: str
    child: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    samples: list[list[float]] = field(default_factory=list)
    also_on_tf: bool = False  # a static edge a /tf sample has updated (noted once)
    _latest: tuple[list[float], np.ndarray, np.ndarray] | None = None  # (sample, T, T^-1) of samples[-1]

    def at(self, stamp: int | None, inverse: bool = False) -> np.ndarray:
        """T_parent_child (or T_child_parent) at `stamp`, latest when None; ExtrapolationError outside the history."""
        if self.static or stamp is None or stamp == self.stamps[-1]:
            return self._newest(inverse)
        i = bisect.bisect_left(self.stamps, stamp)
        if i == len(self.stamps):
            raise ForwardExtrapolationError(self.describe_gap(stamp))
        if self.stamps[i] == stamp:
            T = _matrix(self.samples[i])
        elif i == 0:
            raise BackwardExtrapolationError(self.describe_gap(stamp))
        else:
            t0, t1 = self.stamps[i - 1], self.stamps[i]
            fraction = (stamp - t0) / (t1 - t0)
            before, after = np.asarray(self.samples[i - 1]), np.asarray(self.samples[i])
            q = slerp(before[:4], after[:4], fraction)
            T = _matrix([*q, *((1 - fraction) * before[4:] + fraction * after[4:])])
        return invert_transform(T) if inverse else T

    def _newest(self, inverse: bool) -> np.ndarray:
        sample = self.samples[-1]
        if self._latest is None or self._latest[0] is not sample:
            T = _matrix(sample)
            self._latest = (sample, T, invert_transform(T))
        return self._latest[2 if inverse else 1]

    def insert(self, stamp: int, sample: list[float], cache: int) -> None:
        """Add a dynamic sample in time order (replacing one with the same stamp); forget those older than the cache."""
        stamps = self.stamps
        if not stamps or stamp > stamps[-1]:
            stamps.append(stamp)
            self.samples.append(sample)
        else:
            i = bisect.bisect_left(stamps, stamp)
            if stamps[i] == stamp:
                self.samples[i] = sample
            else:
                stamps.insert(i, stamp)
                self.samples.insert(i, sample)
        if stamps[0] < stamps[-1] - cache:
            old = bisect.bisect_left(stamps, stamps[-1] - cache)
            del stamps[:old], self.samples[:old]

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
    """Frame tree with static edges (kept forever) and dynamic edges (history bounded by `cache_s`).

    At most `max_frames` frames: a transform that would add more is ignored (counted as FRAME_LIMIT).
    """

    def __init__(self, cache_s: float = 10.0, max_frames: int = MAX_FRAMES) -> None:
        if not cache_s > 0:
            raise ValueError(f"cache_s must be > 0 s, got {cache_s}")
        if max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {max_frames}")
        self._cache = round(cache_s * 1e9)
        self.max_frames = max_frames
        self._edges: dict[str, _Edge] = {}  # child frame -> edge to its parent
        self._children: Counter[str] = Counter()  # frame -> how many edges hang below it
        self._frames: set[str] = set()
        self.version = 0

    # ------------------------------------------------------------------ input

    def set_transforms(self, batch: TransformBatch, static: bool = False) -> TransformReport:
        """Store a whole TFMessage (/tf_static when `static`); the report counts what was ignored and why.

        The checks on numbers run once over the arrays; then each transform costs a dictionary
        lookup and a list append, plus a walk up the tree only when it moves a frame that has
        children to a new parent (the one way a loop can close). `version` increases once when
        anything that lookups return changed.
        """
        report = TransformReport(stored=len(batch))
        rotations = np.asarray(batch.rotations, dtype=np.float64).reshape(-1, 4)
        translations = np.asarray(batch.translations, dtype=np.float64).reshape(-1, 3)
        with np.errstate(all="ignore"):
            norm2 = np.einsum("ij,ij->i", rotations, rotations)
            norm2[~np.isfinite(translations).all(axis=1)] = np.nan  # refused as not finite, with the rotation
            unit = np.abs(norm2 - 1.0) < QUATERNION_TOLERANCE
            samples = np.concatenate([rotations / np.sqrt(norm2)[:, None], translations], axis=1).tolist()
        changed = False
        rows = zip(batch.parents, batch.children, batch.stamps_ns.tolist(), samples, unit.tolist(), strict=True)
        for i, (parent, child, stamp, sample, is_unit) in enumerate(rows):
            parent, child = _frame_id(parent), _frame_id(child)
            if is_unit:
                changed |= self._store(parent, child, stamp, sample, static, report)
            else:
                _refuse(report, f"transform {parent!r} -> {child!r}", rotations[i], float(norm2[i]))
        if changed:
            self.version += 1
        report.stored -= sum(report.ignored().values())
        return report

    def set_transform(
        self, parent: str, child: str, T: np.ndarray, stamp_ns: int = 0, static: bool = False
    ) -> str | None:
        """Store one T_parent_child (a rigid 4x4); returns a note when it re-parents `child`, changes its kind or
        is too old to keep (then it is ignored). ValueError, nothing stored, for anything `set_transforms` ignores
        otherwise, or a matrix that is not rigid. A re-sent identical static transform changes nothing.
        """
        T = _check_rigid(T, f"transform {parent!r} -> {child!r}")
        report = TransformReport()
        sample = [*matrix_to_quaternion(T[:3, :3]), *T[:3, 3].tolist()]
        if self._store(_frame_id(parent), _frame_id(child), int(stamp_ns), sample, static, report):
            self.version += 1
        for cause, description in report.first.items():
            if cause in IGNORED and cause != TOO_OLD:
                raise ValueError(description)
            return description
        return None

    def _store(
        self, parent: str, child: str, stamp: int, sample: list[float], static: bool, report: TransformReport
    ) -> bool:
        """Store one checked sample; whether lookups may now return something else."""
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or (static and not edge.static):
            edge = self._new_edge(parent, child, static, edge, report)
            if edge is None:
                return False
        if edge.static:
            if edge.samples and edge.samples[-1] == sample:  # /tf_static publishers re-send what they have
                return False
            if not static and not edge.also_on_tf:
                edge.also_on_tf = True
                report.add(
                    STATIC_ON_TF,
                    lambda: (
                        f"edge {parent!r} -> {child!r} came on /tf_static and now on /tf: /tf updates its value, "
                        "which holds at any time (it stays static, so it is not lost when /tf stops)"
                    ),
                )
            edge.stamps[:], edge.samples[:] = [stamp], [sample]
            return True
        if edge.stamps and stamp < edge.stamps[-1] - self._cache:
            report.add(
                TOO_OLD,
                lambda: (
                    f"transform {parent!r} -> {child!r} at t={stamp / 1e9:.3f} s is older than the cache "
                    f"({self._cache / 1e9:.1f} s before the newest, t={edge.stamps[-1] / 1e9:.3f} s) and is ignored; "
                    "call clear() when the clock jumps back"
                ),
            )
            return False
        edge.insert(stamp, sample, self._cache)
        return True

    def _new_edge(
        self, parent: str, child: str, static: bool, old: _Edge | None, report: TransformReport
    ) -> _Edge | None:
        """The edge for a new child, a new parent or a dynamic edge turning static; None when it must be ignored."""
        if not parent or not child or parent == child:
            report.add(
                INVALID_FRAME,
                lambda: f"a transform needs two different, non-empty frame names, got {parent!r} -> {child!r}",
            )
            return None
        new_frames = (parent not in self._frames) + (child not in self._frames)
        if new_frames and len(self._frames) + new_frames > self.max_frames:
            report.add(
                FRAME_LIMIT,
                lambda: f"transform {parent!r} -> {child!r} would add frames beyond the limit of {self.max_frames}",
            )
            return None
        if (old is None or old.parent != parent) and self._children[child] and self._is_below(parent, child):
            report.add(
                LOOP,
                lambda: f"transform {parent!r} -> {child!r} would close a loop: {parent!r} is below {child!r}",
            )
            return None
        if old is not None:
            self._children[old.parent] -= 1
            if old.parent != parent:
                report.add(
                    REPARENTED,
                    lambda: (
                        f"frame {child!r} now hangs below {parent!r}; it was below {old.parent!r}: "
                        "the old edge is replaced (a frame has one parent)"
                    ),
                )
            else:
                report.add(MADE_STATIC, lambda: f"edge {parent!r} -> {child!r} came on /tf, now on /tf_static: static")
        self._children[parent] += 1
        self._frames |= {parent, child}
        edge = self._edges[child] = _Edge(parent, child, static)
        return edge

    def _is_below(self, frame: str, ancestor: str) -> bool:
        """Whether `ancestor` is on the way from `frame` to its root: at most one step per frame."""
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame == ancestor:
                return True
        return False

    def clear(self) -> None:
        """Forget dynamic history (for a clock that jumped back); static transforms stay."""
        dynamic = [child for child, edge in self._edges.items() if not edge.static]
        for child in dynamic:
            del self._edges[child]
        if dynamic:
            self._frames = {*self._edges, *(edge.parent for edge in self._edges.values())}
            self._children = Counter(edge.parent for edge in self._edges.values())
            self.version += 1

    # ------------------------------------------------------------------ queries

    def frames(self) -> list[str]:
        """Every frame mentioned so far (since the last `clear` for dynamic ones), sorted."""
        return sorted(self._frames)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source (4x4, maps points in `source_frame` into `target_frame`) at `stamp_ns`.

        Without a stamp, dynamic edges are taken at the latest time they all have (tf2's time 0). A
        leading '/' is stripped from both frames, as tf2_ros's MessageFilter strips a message's frame id.
        """
        target_frame, source_frame = _frame_id(target_frame), _frame_id(source_frame)
        failure = f"no transform from {source_frame!r} to {target_frame!r}"
        for frame in (source_frame, target_frame):
            if frame not in self._frames:
                raise UnknownFrameError(f"{failure}: {frame!r} is unknown; known frames: {self._some_frames()}")
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
            raise type(error)(f"{failure}: {error}") from None
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

    def _some_frames(self, shown: int = 20) -> str:
        """The known frames for an error message: all of a small tree, the first `shown` of a large one."""
        names = sorted(self._frames)
        return str(names) if len(names) <= shown else f"{names[:shown]} and {len(names) - shown} more"

    def _chain(self, frame: str) -> list[str]:
        """The frame and its ancestors up to the root."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain
