"""Image buffers <-> RGB arrays: every supported encoding, row padding, and clear errors."""

import array
import re

import numpy as np
import pytest

from surround_depth_ros.images import (
    ImageFormatError,
    compressed_image_size,
    decode_compressed_rgb,
    decode_rgb,
    encode_rgb,
)

RNG = np.random.default_rng(1)
IMAGE = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_colour_round_trip(encoding):
    height, width, step, data = encode_rgb(IMAGE, encoding)
    assert (height, width, step) == (5, 7, 21)
    np.testing.assert_array_equal(decode_rgb(encoding, height, width, step, data), IMAGE)


def test_bgr_bytes_are_reversed_channels():
    _, _, _, data = encode_rgb(IMAGE, "bgr8")
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(5, 7, 3), IMAGE[..., ::-1])


def test_mono_is_luma_replicated():
    height, width, step, data = encode_rgb(IMAGE, "mono8")
    grey = decode_rgb("mono8", height, width, step, data)
    expected = np.clip(np.rint(IMAGE @ np.array([0.299, 0.587, 0.114])), 0, 255)
    assert np.abs(grey[..., 0].astype(int) - expected).max() <= 1
    assert (grey == grey[..., :1]).all()


def test_rgba_and_padded_rows():
    padded = np.zeros((5, 40), np.uint8)
    rgba = np.concatenate([IMAGE, np.full((5, 7, 1), 255, np.uint8)], axis=2)
    padded[:, :28] = rgba.reshape(5, 28)
    np.testing.assert_array_equal(decode_rgb("rgba8", 5, 7, 40, padded.tobytes()), IMAGE)
    padded[:, :28] = rgba[..., [2, 1, 0, 3]].reshape(5, 28)
    np.testing.assert_array_equal(decode_rgb("bgra8", 5, 7, 40, padded.tobytes()), IMAGE)


def test_rgb8_is_a_zero_copy_view():
    data = bytearray(encode_rgb(IMAGE, "rgb8")[3])
    view = decode_rgb("rgb8", 5, 7, 21, data)
    data[0] = (int(IMAGE[0, 0, 0]) + 1) % 256
    assert view[0, 0, 0] == data[0]


@pytest.mark.parametrize(
    ("args", "cause", "text"),
    [
        (("32FC1", 5, 7, 28, bytes(140)), "encoding", "unsupported encoding '32FC1'"),
        (("rgb8", 5, 7, 21, bytes(100)), "size", "needs 105 bytes, the message has 100"),
        (("rgb8", 5, 7, 20, bytes(105)), "size", "step 20 is smaller than width x channels = 21"),
        (("rgb8", 0, 7, 21, b""), "size", "empty image"),
    ],
)
def test_bad_buffers_are_explained(args, cause, text):
    with pytest.raises(ImageFormatError, match=text) as info:
        decode_rgb(*args)
    assert info.value.cause == cause


def test_encode_rejects_non_rgb():
    with pytest.raises(ImageFormatError, match="H x W x 3 uint8"):
        encode_rgb(IMAGE.astype(np.float32))


def _encoded(extension: str, image: np.ndarray = IMAGE) -> bytes:
    import cv2

    ok, data = cv2.imencode(extension, image[..., ::-1])
    assert ok
    return data.tobytes()


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    data = bytearray(_encoded(".jpg", np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_compressed_round_trip_and_header_size(extension):
    data = _encoded(extension)
    kind = "png" if extension == ".png" else "jpeg"
    assert compressed_image_size(data) == (kind, 7, 5)
    decoded = decode_compressed_rgb(kind, data)
    assert decoded.shape == (5, 7, 3)
    if kind == "png":
        np.testing.assert_array_equal(decoded, IMAGE)
    # rclpy hands uint8[] fields over as array.array: read without a copy of its own.
    assert compressed_image_size(array.array("B", data)) == (kind, 7, 5)


def test_629_byte_jpeg_declaring_65000_squared_is_refused_undecoded():
    bomb = _jpeg_declaring(65000, 65000)
    assert len(bomb) < 1000
    assert compressed_image_size(bomb) == ("jpeg", 65000, 65000)
    with pytest.raises(ImageFormatError, match="65000x65000 = 4225000000 pixels, over the budget") as info:
        decode_compressed_rgb("jpeg", bomb)
    assert info.value.cause == "size"
    # Past the budget, the decoder's own refusal (cv2.error: too large) is an ImageFormatError too.
    with pytest.raises(ImageFormatError, match="cannot decode jpeg 65000x65000") as info:
        decode_compressed_rgb("jpeg", bomb, max_pixels=65000 * 65000)
    assert info.value.cause == "encoding" and info.value.__cause__ is not None


def test_20000_squared_jpeg_is_refused_and_budget_is_configurable():
    with pytest.raises(ImageFormatError, match="20000x20000 = 400000000 pixels, over the budget of 16777216"):
        decode_compressed_rgb("jpeg", _jpeg_declaring(20000, 20000))
    with pytest.raises(ImageFormatError, match="7x5 = 35 pixels, over the budget of 34"):
        decode_compressed_rgb("png", _encoded(".png"), max_pixels=34)


def test_size_other_than_camera_info_is_refused_before_decoding():
    with pytest.raises(ImageFormatError, match="png is 7x5 but its camera_info says 1600x900") as info:
        decode_compressed_rgb("png", _encoded(".png"), expected_size=(1600, 900))
    assert info.value.cause == "camera_info mismatch"
    assert decode_compressed_rgb("png", _encoded(".png"), expected_size=(7, 5)).shape == (5, 7, 3)


@pytest.mark.parametrize("extension", [".png", ".jpg"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1])
def test_truncated_data_is_refused(extension, keep):
    data = _encoded(extension, RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cut = data[: int(len(data) * keep)] if keep > 0 else data[:-1]
    with pytest.raises(ImageFormatError, match="truncated|corrupt|neither jpeg nor png"):
        decode_compressed_rgb("jpeg", cut)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "neither jpeg nor png"),
        (b"not an image", "neither jpeg nor png (starts with 6e6f7420616e2069)"),
        (b"BM" + bytes(100), "neither jpeg nor png"),  # a BMP: OpenCV would decode it, unchecked
        (b"\xff\xd8\xff\xda\x00\x08" + bytes(10) + b"\xff\xd9", "image data starts before any frame header"),
        (b"\xff\xd8\xff\xe0\x00\x01" + bytes(10), "segment length 1"),
        (b"\xff\xd8\x00\x00\x00\x00", "no marker at byte 2"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "no IHDR chunk"),
    ],
)
def test_garbage_is_named(data, text):
    with pytest.raises(ImageFormatError, match=re.escape(text)) as info:
        decode_compressed_rgb("jpeg", data)
    assert info.value.cause == "encoding"


def test_empty_declared_size_and_corrupt_pixels():
    with pytest.raises(ImageFormatError, match="declares an empty image: 0x0") as info:
        decode_compressed_rgb("jpeg", _jpeg_declaring(0, 0))
    assert info.value.cause == "size"
    png = bytearray(_encoded(".png"))
    png[40:50] = bytes(10)  # inside the IDAT chunk: checksum and inflate fail
    with pytest.raises(ImageFormatError, match="cannot decode png 7x5"):
        decode_compressed_rgb("png", bytes(png))


def test_decoding_from_worker_threads():
    """The node decodes off the executor thread: concurrent calls give the same pixels."""
    from concurrent.futures import ThreadPoolExecutor

    data = _encoded(".png")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: decode_compressed_rgb("png", data), range(16)))
    for result in results:
        np.testing.assert_array_equal(result, IMAGE)
