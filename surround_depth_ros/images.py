"""Raw sensor_msgs/Image buffers <-> numpy, without cv_bridge (which needs a ROS distribution).

Decoding returns zero-copy views wherever the layout allows (rgb8 with any row padding) so that
six 1600x900 images cost microseconds, not milliseconds; a conversion is made only where the
pixels must change (bgr8 -> rgb, mono8 -> rgb). Both the node (rclpy messages) and the bag
readers (rosbags messages) call these with the message's fields.
"""

from __future__ import annotations

import numpy as np

# encoding -> (channels, order of the RGB channels in memory, or None for grey)
COLOR_ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


class ImageFormatError(ValueError):
    """An image that cannot be turned into RGB pixels; the message says what to fix.

    `cause` is a short category ("encoding" or "size") under which diagnostics count it.
    """

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def decode_rgb(encoding: str, height: int, width: int, step: int, data: bytes | memoryview) -> np.ndarray:
    """The image as H x W x 3 uint8 RGB; a view into `data` when it already is rgb8."""
    if encoding not in COLOR_ENCODINGS:
        raise ImageFormatError(
            f"unsupported encoding {encoding!r}: expected one of {sorted(COLOR_ENCODINGS)} "
            "(publish colour images, e.g. set the camera driver's output to rgb8 or bgr8)",
            "encoding",
        )
    channels, order = COLOR_ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"empty image: {width}x{height}", "size")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageFormatError(f"step {step} is smaller than width x channels = {row_bytes} for {encoding}", "size")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < step * (height - 1) + row_bytes:
        raise ImageFormatError(
            f"{encoding} {width}x{height} with step {step} needs {step * height} bytes, the message has {buffer.size}",
            "size",
        )
    pixels = np.lib.stride_tricks.as_strided(
        buffer, shape=(height, width, channels), strides=(step, channels, 1), writeable=False
    )
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2) and channels == 3:
        return pixels
    return np.ascontiguousarray(pixels[..., list(order)])


def encode_rgb(image: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, int, bytes]:
    """(height, width, step, data) of an H x W x 3 uint8 RGB image in `encoding` (rgb8, bgr8, mono8)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageFormatError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}", "size")
    if encoding == "rgb8":
        pixels = image
    elif encoding == "bgr8":
        pixels = image[..., ::-1]
    elif encoding == "mono8":
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = np.clip(image.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)[..., None]
    else:
        raise ImageFormatError(f"cannot encode to {encoding!r}: expected rgb8, bgr8 or mono8", "encoding")
    height, width, channels = pixels.shape
    return height, width, width * channels, np.ascontiguousarray(pixels).tobytes()


def decode_compressed_rgb(format: str, data: bytes | memoryview) -> np.ndarray:  # noqa: A002 - the message field
    """A sensor_msgs/CompressedImage (jpeg or png, as image_transport writes them) as H x W x 3 RGB."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ImageFormatError(
            f"cannot decode compressed image (format {format!r}, {buffer.size} bytes): expected jpeg or png data",
            "encoding",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
