"""Image buffers <-> RGB arrays: every supported encoding, row padding, and clear errors."""

import numpy as np
import pytest

from surround_depth_ros.images import ImageFormatError, decode_rgb, encode_rgb

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


def test_compressed_png_round_trip_and_garbage():
    import cv2

    from surround_depth_ros.images import decode_compressed_rgb

    ok, png = cv2.imencode(".png", IMAGE[..., ::-1])
    assert ok
    np.testing.assert_array_equal(decode_compressed_rgb("png", png.tobytes()), IMAGE)
    with pytest.raises(ImageFormatError, match="cannot decode compressed image") as info:
        decode_compressed_rgb("jpeg", b"not an image")
    assert info.value.cause == "encoding"
