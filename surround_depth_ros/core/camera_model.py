"""A CameraInfo checked as the pinhole camera model the network uses, before it is trusted.

A CameraInfo with K = 0, fy = 0 or K[2,2] = 0 is well-formed as a message yet makes every
frame set fail inside the network (division by zero, NaN rays), which stops depth for all
cameras. These checks name each problem so that the node excludes that one camera, says why at
ERROR, and serves the others. ROS-free: the fields are passed as plain sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Distortion models of sensor_msgs/distortion_models.h and the coefficient counts each allows (an
# empty D always: no distortion). The node runs the pinhole model K on the images as they come
# (rectified, or nearly so); the coefficients are passed through to the published CameraInfo.
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (5,),
    "rational_polynomial": (8, 12, 14),  # OpenCV's extended forms too
    "equidistant": (4,),
    "": (),
    "none": (),
}
# P's focal lengths may differ from K's (rectification with alpha), but not by more than this factor.
MAX_FOCAL_RATIO = 2.0
_TOLERANCE = 1e-6


def camera_model_problems(
    name: str,
    k: Sequence[float],
    p: Sequence[float],
    d: Sequence[float],
    distortion_model: str,
    width: int,
    height: int,
) -> list[str]:
    """Every reason the camera model is unusable, as sentences naming the camera; [] when usable."""
    if width <= 0 or height <= 0:
        return [f"{name}: camera_info size is {width}x{height}; publish the calibrated image size"]
    K, P, D = (np.asarray(v, dtype=np.float64).ravel() for v in (k, p, d))
    if K.size != 9 or P.size != 12:
        return [f"{name}: camera_info has {K.size} values in K and {P.size} in P, expected 9 and 12"]
    problems = [
        f"{name}: camera_info {field} has non-finite values {values.tolist()}"
        for field, values in (("K", K), ("P", P), ("D", D))
        if not np.isfinite(values).all()
    ]
    if problems:
        return problems
    K, P = K.reshape(3, 3), P.reshape(3, 4)
    if not K.any():
        return [f"{name}: camera_info K is all zero (uncalibrated camera); calibrate it and publish K"]
    problems += _intrinsics_problems(name, "K", K, width, height)
    if P.any():  # all zero: P unset, only K is used
        problems += _intrinsics_problems(name, "P", P[:, :3], width, height)
        if abs(P[2, 3]) > _TOLERANCE:
            problems.append(f"{name}: camera_info P[2,3] = {P[2, 3]:g}, expected 0")
        for axis, label in ((0, "fx"), (1, "fy")):
            if min(P[axis, axis], K[axis, axis]) <= 0:
                continue  # already named
            with np.errstate(over="ignore"):  # absurd values (1e300 / 1e-300) are named below, not warned about
                ratio = P[axis, axis] / K[axis, axis]
            if not 1 / MAX_FOCAL_RATIO <= ratio <= MAX_FOCAL_RATIO:
                problems.append(
                    f"{name}: camera_info P has {label} = {P[axis, axis]:g} but K has {K[axis, axis]:g}: P and K "
                    "must describe the same camera (check the calibration file)"
                )
    counts = DISTORTION_MODELS.get(distortion_model)
    if counts is None:
        problems.append(
            f"{name}: camera_info distortion model {distortion_model!r} is not supported; expected one of "
            f"{sorted(m for m in DISTORTION_MODELS if m)}"
        )
    elif D.size and D.size not in counts:
        problems.append(
            f"{name}: camera_info distortion model {distortion_model!r} takes {' or '.join(map(str, counts)) or 'no'} "
            f"coefficients, D has {D.size}"
        )
    return problems


def _intrinsics_problems(name: str, field: str, M: np.ndarray, width: int, height: int) -> list[str]:
    """Problems of a 3x3 upper-triangular intrinsic matrix (K, or the left 3x3 of P)."""
    problems = []
    for (row, col), label in (((0, 0), "fx"), ((1, 1), "fy")):
        if M[row, col] <= 0:
            problems.append(f"{name}: camera_info {field}[{row},{col}] ({label}) = {M[row, col]:g}, must be > 0")
    if abs(M[2, 2] - 1.0) > _TOLERANCE:
        problems.append(f"{name}: camera_info {field}[2,2] = {M[2, 2]:g}, must be 1")
    lower = {(1, 0): M[1, 0], (2, 0): M[2, 0], (2, 1): M[2, 1]}
    for (row, col), value in lower.items():
        if abs(value) > _TOLERANCE:
            problems.append(f"{name}: camera_info {field}[{row},{col}] = {value:g}, must be 0")
    cx, cy = M[0, 2], M[1, 2]
    if not (0 <= cx <= width and 0 <= cy <= height):
        problems.append(
            f"{name}: camera_info {field} principal point ({cx:g}, {cy:g}) lies outside the {width}x{height} image"
        )
    return problems
