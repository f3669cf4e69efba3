"""Every check a sensor message passes before the assembler sees it: one place for the node and the bag reader.

A message is refused with a `Rejection` that names its input, a short cause (what diagnostics count
it under) and a message saying what to fix; the other inputs are untouched. The node and
`RosbagReader` both hand their messages here (rclpy's or rosbags' classes: only field names are
read), so a CameraInfo, an image and a radar cloud are judged the same live and offline. The
synchronizer's own refusals of a sensor clock that is off come back here as rejections too, named,
instead of being found by comparing its counters.

Thread-safe: the node calls it from its executor, decoder and TF threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from surround_depth_ros.base.images import ImageFormatError, decode_compressed_rgb
from surround_depth_ros.conversion.messages import cloud_points, image_rgb, stamp_ns
from surround_depth_ros.core.assembler import FrameAssembler, Intrinsics
from surround_depth_ros.core.camera_model import camera_model_problems
from surround_depth_ros.core.transforms import TransformReport, transform_batch
from surround_depth_ros.sensors.pointcloud import PointCloudError, sweep_from_array


@dataclass(frozen=True)
class Rejection:
    """A refused message: `input` (camera or radar), `cause` (a counter's name), `message` (what to fix)."""

    input: str
    cause: str
    message: str


def _zero_stamp(name: str) -> Rejection:
    return Rejection(
        name,
        "zero stamp",
        f"{name}: header.stamp is 0: the driver does not stamp its messages, so they cannot be synchronized "
        "(set the driver's time stamping, e.g. its use_sim_time or hardware/system clock option)",
    )


class SensorIngest:
    """Checks images, CameraInfos, radar clouds and transforms, and offers what passes to the assembler.

    `max_image_pixels` bounds what one image may cost to decode; `max_skew_s` is only quoted in the
    clock-skew message (the synchronizer applies it).
    """

    def __init__(self, assembler: FrameAssembler, max_image_pixels: int, max_skew_s: float) -> None:
        self.assembler = assembler
        self.max_image_pixels = max_image_pixels
        self.max_skew_s = max_skew_s
        self._infos: dict[str, Any] = {}  # the last usable CameraInfo per camera
        self._lock = threading.Lock()

    def camera_infos(self) -> dict[str, Any]:
        """The last usable CameraInfo message per camera: what a depth image republishes, restamped."""
        with self._lock:
            return dict(self._infos)

    def oversized(self, camera: str, msg: Any) -> Rejection | None:  # noqa: ANN401 - any Image class
        """A raw image over the pixel budget, refused from its header alone (before it is queued or decoded)."""
        if hasattr(msg, "format") or msg.width * msg.height <= self.max_image_pixels:
            return None
        return Rejection(
            camera,
            "size",
            f"{camera}: image is {msg.width}x{msg.height} = {msg.width * msg.height} pixels, over the budget "
            f"of {self.max_image_pixels} (parameter max_image_pixels)",
        )

    def camera_info(self, camera: str, msg: Any) -> Rejection | None:  # noqa: ANN401 - any CameraInfo class
        """Take a CameraInfo as the camera's model, or refuse it and leave the camera out until a usable one comes
        (its last good model would hide the fault)."""
        problems = camera_model_problems(camera, msg.k, msg.p, msg.d, msg.distortion_model, msg.width, msg.height)
        if problems:
            self.assembler.forget_intrinsics(camera, "; ".join(problems))
            return Rejection(camera, "camera_info invalid", f"{camera}: " + "; ".join(problems))
        with self._lock:
            self._infos[camera] = msg
        K = np.asarray(msg.k, np.float64).reshape(3, 3)
        self.assembler.set_intrinsics(camera, Intrinsics(K, msg.width, msg.height, msg.header.frame_id))
        return None

    def image(self, camera: str, msg: Any) -> list[Rejection]:  # noqa: ANN401 - any Image/CompressedImage class
        """Decode and check an image and offer it; the rejections it brought about (none: it was taken)."""
        if rejected := self.oversized(camera, msg):
            return [rejected]
        with self._lock:
            info = self._infos.get(camera)
        try:
            if hasattr(msg, "format"):  # a CompressedImage: its header's size is checked before decoding
                expected = None if info is None else (info.width, info.height)
                rgb = decode_compressed_rgb(msg.format, msg.data, self.max_image_pixels, expected)
            else:
                rgb = image_rgb(msg)
        except ImageFormatError as error:
            return [Rejection(camera, error.cause, f"{camera}: {error}")]
        if info is not None and (info.width, info.height) != (rgb.shape[1], rgb.shape[0]):
            return [
                Rejection(
                    camera,
                    "camera_info mismatch",
                    f"{camera}: image is {rgb.shape[1]}x{rgb.shape[0]} but its camera_info says "
                    f"{info.width}x{info.height}: publish the CameraInfo of this image stream (check remappings "
                    "and the driver's resolution)",
                )
            ]
        stamp = stamp_ns(msg.header.stamp)
        if stamp == 0:
            return [_zero_stamp(camera)]
        self.assembler.add_image(camera, stamp, msg.header.frame_id, rgb)
        return self._skewed()

    def radar(self, radar: str, msg: Any) -> list[Rejection]:  # noqa: ANN401 - any PointCloud2 class
        """Check a radar cloud and offer its sweep; the rejections it brought about."""
        try:
            sweep = sweep_from_array(radar, stamp_ns(msg.header.stamp), cloud_points(msg))
        except (PointCloudError, ValueError) as error:
            return [Rejection(radar, "bad cloud", f"{radar}: {error}")]
        if sweep.stamp_ns == 0:
            return [_zero_stamp(radar)]
        self.assembler.add_radar(radar, sweep.stamp_ns, msg.header.frame_id, sweep)
        return self._skewed()

    def transforms(self, transforms: Sequence[Any], static: bool) -> TransformReport:  # noqa: ANN401
        """Store a TFMessage's transforms in one pass; the report says what was ignored and why."""
        return self.assembler.add_transforms(transform_batch(transforms), static)

    def _skewed(self) -> list[Rejection]:
        """The messages the synchronizer has just given up on because their sensor's clock is off."""
        return [
            Rejection(
                name,
                "clock skew",
                f"{name}: stamp {stamp / 1e9:.3f} s is more than sync_max_skew_s = {self.max_skew_s:g} s from the "
                "other cameras' time: this sensor's clock is off (check its time synchronization, PTP/NTP)",
            )
            for name, stamp in self.assembler.take_skewed()
        ]
