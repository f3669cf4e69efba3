"""Raw sensor_msgs/Image buffers <-> numpy, without cv_bridge (which needs a ROS distribution).

Decoding returns zero-copy views wherever the layout allows (rgb8 with any row padding) so that
six 1600x900 images cost microseconds, not milliseconds; a conversion is made only where the
pixels must change. Every other encoding is converted the way cv_bridge converts it to rgb8 (the
same OpenCV colour conversion, the same 16 -> 8 bit scaling), with OpenCV, which releases the GIL
while the node's decoder thread converts. Both the node (rclpy messages) and the bag readers
(rosbags messages) call these with the message's fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageLayout:
    """How an encoding stores its pixels, and the OpenCV conversion cv_bridge applies to make rgb8 of it."""

    channels: int  # samples per pixel in memory
    bits: int  # 8 or 16 per sample
    to_rgb: str | None  # name of the cv2.COLOR_* code, None when the samples already are R, G, B
    tile: tuple[int, int] = (1, 1)  # (rows, columns) the image size must be a multiple of


def _layouts() -> dict[str, ImageLayout]:
    """Every decodable encoding: each colour order in 8 and 16 bits, Bayer mosaics and packed YUV 4:2:2."""
    table = {}
    for bits in (8, 16):
        table |= {
            f"rgb{bits}": ImageLayout(3, bits, None),
            f"bgr{bits}": ImageLayout(3, bits, "COLOR_BGR2RGB"),
            f"rgba{bits}": ImageLayout(4, bits, "COLOR_RGBA2RGB"),
            f"bgra{bits}": ImageLayout(4, bits, "COLOR_BGRA2RGB"),
            f"mono{bits}": ImageLayout(1, bits, "COLOR_GRAY2RGB"),
        }
        # ROS names a Bayer pattern by the 2x2 tile at the top left; OpenCV by the second and third pixels of
        # the second row, so ROS's rggb is OpenCV's BG (cv_bridge's table; tested with a pure red scene).
        for pattern, opencv in (("rggb", "BG"), ("bggr", "RG"), ("gbrg", "GR"), ("grbg", "GB")):
            table[f"bayer_{pattern}{bits}"] = ImageLayout(1, bits, f"COLOR_Bayer{opencv}2RGB", (2, 2))
    # Two pixels share one U and one V: yuv422 is U Y0 V Y1 (UYVY), yuv422_yuy2 is Y0 U Y1 V.
    table["yuv422"] = ImageLayout(2, 8, "COLOR_YUV2RGB_UYVY", (1, 2))
    table["yuv422_yuy2"] = ImageLayout(2, 8, "COLOR_YUV2RGB_YUY2", (1, 2))
    return table


ENCODINGS: dict[str, ImageLayout] = _layouts()
_TILE_REASON = {(2, 2): "its 2x2 Bayer colour tile", (1, 2): "two pixels share one U and one V"}
# cv_bridge's 16 -> 8 bit rule: convertTo with scale 255 / 65535, rounded to nearest (v / 257 rounded).
_SCALE_16_TO_8 = 255.0 / 65535.0


class ImageFormatError(ValueError):
    """An image that cannot be turned into RGB pixels; the message says what to fix.

    `cause` is a short category ("encoding" or "size") under which diagnostics count it.
    """

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def _pixels(layout: ImageLayout, height: int, width: int, step: int, data: bytes | memoryview, big: bool) -> np.ndarray:
    """The samples of `data` as H x W (x channels) in native byte order; a view unless bytes must be swapped."""
    row_bytes = width * layout.channels * layout.bits // 8
    rows = np.lib.stride_tricks.as_strided(
        np.frombuffer(data, dtype=np.uint8), shape=(height, row_bytes), strides=(step, 1), writeable=False
    )
    if layout.bits == 16:
        rows = rows.view(">u2" if big else "<u2")
        if not (rows.dtype.isnative and rows.flags.aligned):  # other-endian, or an odd step or buffer address
            rows = rows.astype(np.uint16)
    return rows.reshape(height, width, layout.channels) if layout.channels > 1 else rows


def decode_rgb(
    encoding: str, height: int, width: int, step: int, data: bytes | memoryview, *, is_bigendian: bool = False
) -> np.ndarray:
    """The image as H x W x 3 uint8 RGB, as cv_bridge makes rgb8 of it; a view into `data` when it is rgb8.

    `is_bigendian` (the message's field) gives the byte order of 16-bit samples; 8-bit data ignores it.
    """
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ImageFormatError(
            f"unsupported encoding {encoding!r}: expected one of {', '.join(ENCODINGS)} "
            "(publish camera images, e.g. set the camera driver's output to rgb8, bgr8 or its Bayer pattern)",
            "encoding",
        )
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"empty image: {width}x{height}", "size")
    tile_rows, tile_columns = layout.tile
    if height % tile_rows or width % tile_columns:
        even = "width and height" if tile_rows == 2 else "width"
        raise ImageFormatError(
            f"{encoding} needs an even {even} ({_TILE_REASON[layout.tile]}), the image is {width}x{height}", "size"
        )
    pixel_bytes = layout.channels * layout.bits // 8
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than width x bytes per pixel = {width} x {pixel_bytes} = {row_bytes} "
            f"for {encoding}",
            "size",
        )
    size = memoryview(data).nbytes
    if size < step * (height - 1) + row_bytes:
        raise ImageFormatError(
            f"{encoding} {width}x{height} with step {step} needs {step * height} bytes, the message has {size}",
            "size",
        )
    pixels = _pixels(layout, height, width, step, data, bool(is_bigendian))
    if layout.to_rgb is None and layout.bits == 8:
        return pixels
    import cv2

    if layout.bits == 16 and layout.tile != (2, 2):
        # Moving channels commutes with scaling each sample: scale first and convert the smaller 8-bit image.
        pixels = cv2.convertScaleAbs(pixels, alpha=_SCALE_16_TO_8)
    if layout.to_rgb is not None:
        pixels = cv2.cvtColor(pixels, getattr(cv2, layout.to_rgb))
    if pixels.dtype == np.uint16:  # a 16-bit mosaic, demosaiced in 16 bits first as cv_bridge does
        pixels = cv2.convertScaleAbs(pixels, alpha=_SCALE_16_TO_8)
    return pixels


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


# Pixels a compressed image may declare before it is refused undecoded: 4096 x 4096, twice a 4K camera
# (the node's `max_image_pixels`). Decoding costs time and memory in proportion to the declared size,
# which a 629-byte file can set to 65000 x 65000.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_END_MARKERS = {"jpeg": b"\xff\xd9", "png": b"IEND\xae\x42\x60\x82"}  # EOI; the IEND chunk and its CRC
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): not C4 (DHT), C8 (JPG), CC (DAC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers without a length field: TEM and the restart markers RST0-7 (SOI is consumed before the loop).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _jpeg_size(data: memoryview) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment, walking segment headers only."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageFormatError(f"corrupt jpeg: no marker at byte {i} before the frame header", "encoding")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            raise ImageFormatError("corrupt jpeg: image data starts before any frame header (SOF)", "encoding")
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            raise ImageFormatError(f"corrupt jpeg: segment length {length} at byte {i}", "encoding")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            return int.from_bytes(data[i + 7 : i + 9], "big"), height
        i += 2 + length
    raise ImageFormatError(f"truncated jpeg: no frame header (SOF) in {len(data)} bytes", "encoding")


def compressed_image_size(data: bytes | memoryview) -> tuple[str, int, int]:
    """("jpeg" | "png", width, height) read from the header, without decoding any pixel.

    The format comes from the bytes, not from CompressedImage.format, which a sender may set to
    anything; anything but jpeg and png is refused, as nothing else has a checked header here.
    """
    view = memoryview(data).cast("B")
    head = bytes(view[:24])
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageFormatError(f"truncated or corrupt png: no IHDR chunk in {len(view)} bytes", "encoding")
        kind, width, height = "png", int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    elif head.startswith(b"\xff\xd8"):
        kind, (width, height) = "jpeg", _jpeg_size(view)
    else:
        raise ImageFormatError(
            f"compressed image of {len(data)} bytes is neither jpeg nor png (starts with {head[:8].hex()}): "
            "publish jpeg or png (image_transport's compressed plugin)",
            "encoding",
        )
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"{kind} header declares an empty image: {width}x{height}", "size")
    # Decoders fill a truncated image with grey and call it a success: require the end marker.
    if not bytes(view[-64:]).rstrip(b"\0").endswith(_END_MARKERS[kind]):
        what = f"truncated {kind} {width}x{height}"
        raise ImageFormatError(f"{what}: {len(view)} bytes without its end marker", "encoding")
    return kind, width, height


def decode_compressed_rgb(
    format: str,  # noqa: A002 - the message field
    data: bytes | memoryview,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    expected_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg or png) as H x W x 3 RGB, checked before it is decoded.

    Untrusted bytes: the header's size must fit `max_pixels` and, when given, equal `expected_size`
    (width, height, from the camera's CameraInfo), so no message costs more than that budget. Every
    decoder failure becomes an ImageFormatError. Safe to call from a worker thread: OpenCV releases
    the GIL while decoding and keeps no state between calls.
    """
    import cv2

    kind, width, height = compressed_image_size(data)
    if width * height > max_pixels:
        raise ImageFormatError(
            f"{kind} declares {width}x{height} = {width * height} pixels, over the budget of {max_pixels} "
            "(parameter max_image_pixels): refused without decoding",
            "size",
        )
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise ImageFormatError(
            f"{kind} is {width}x{height} but its camera_info says {expected_size[0]}x{expected_size[1]}: "
            "publish the CameraInfo of this image stream",
            "camera_info mismatch",
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        what = f"{kind} {width}x{height} (format {format!r})"
        raise ImageFormatError(f"cannot decode {what}: {reason}", "encoding") from error
    if image is None:
        raise ImageFormatError(
            f"cannot decode {kind} {width}x{height} (format {format!r}, {len(data)} bytes): corrupt or truncated data",
            "encoding",
        )
    if image.shape[:2] != (height, width):
        decoded = f"{image.shape[1]}x{image.shape[0]}"
        raise ImageFormatError(f"{kind} decoded to {decoded}, its header says {width}x{height}", "encoding")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
