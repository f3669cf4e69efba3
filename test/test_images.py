"""Image buffers <-> RGB arrays: every supported encoding, row padding, and clear errors.

Camera-driver encodings (Bayer, YUV 4:2:2, 16-bit) are built here from a known RGB image and checked
against OpenCV's own conversion with the code cv_bridge uses, and against cv_bridge's 16 -> 8 bit rule.
"""

import array
import re

import cv2
import numpy as np
import pytest

from surround_depth_ros.base.images import (
    ENCODINGS,
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
        (("rgb8", 5, 7, 20, bytes(105)), "size", "step 20 is smaller than width x bytes per pixel = 7 x 3 = 21"),
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


# --------------------------------------------------------------------------- camera drivers' encodings

# cv_bridge's conversion table (cv_bridge.cpp, getConversionCodes), towards RGB: ROS's Bayer pattern names the
# top-left 2x2 tile, OpenCV's code names a tile one pixel further, so ROS rggb is OpenCV BG.
BAYER_CODES = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
YUV_CODES = {"yuv422": ("uyvy", cv2.COLOR_YUV2RGB_UYVY), "yuv422_yuy2": ("yuyv", cv2.COLOR_YUV2RGB_YUY2)}
CHANNELS16 = {"rgb16": [0, 1, 2], "bgr16": [2, 1, 0], "rgba16": [0, 1, 2, 3], "bgra16": [2, 1, 0, 3], "mono16": [1]}
DRIVER_ENCODINGS = [
    *(f"bayer_{pattern}{bits}" for bits in (8, 16) for pattern in BAYER_CODES),
    *YUV_CODES,
    *CHANNELS16,
]
SCENE16 = RNG.integers(0, 65536, (32, 48, 3), dtype=np.uint16)


def _to_8bit(samples: np.ndarray) -> np.ndarray:
    """cv_bridge's 16 -> 8 bit rule: convertTo with scale 255 / 65535, rounded to the nearest integer."""
    return np.rint(samples.astype(np.float64) * (255 / 65535)).astype(np.uint8)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """What a sensor behind a `pattern` colour filter (top-left tile, row by row) records of `rgb`."""
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for colour, (row, column) in zip(pattern, [(0, 0), (0, 1), (1, 0), (1, 1)], strict=True):
        raw[row::2, column::2] = rgb[row::2, column::2, "rgb".index(colour)]
    return raw


def _yuv422(rgb: np.ndarray, layout: str) -> np.ndarray:
    """H x W x 2 packed 4:2:2 of `rgb` (BT.601 video range, chroma of each pixel pair averaged), UYVY or YUYV."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 219 / 255 * (0.299 * r + 0.587 * g + 0.114 * b)
    u = 128 + 224 / 255 * (-0.168736 * r - 0.331264 * g + 0.5 * b)
    v = 128 + 224 / 255 * (0.5 * r - 0.418688 * g - 0.081312 * b)
    y, u, v = (
        np.clip(np.rint(c), 0, 255).astype(np.uint8)
        for c in (y, (u[:, 0::2] + u[:, 1::2]) / 2, (v[:, 0::2] + v[:, 1::2]) / 2)
    )
    chroma = np.empty_like(y)
    chroma[:, 0::2], chroma[:, 1::2] = u, v
    return np.stack((chroma, y) if layout == "uyvy" else (y, chroma), axis=2)


def _frame(encoding: str, scene16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the samples a driver publishes of `scene16` in `encoding`, the rgb8 cv_bridge makes of them)."""
    scene = scene16 if encoding.endswith("16") else _to_8bit(scene16)
    if encoding.startswith("bayer_"):
        pattern = encoding[6:10]
        samples = _mosaic(scene, pattern)
        rgb = cv2.cvtColor(samples, BAYER_CODES[pattern])  # OpenCV demosaics the 16-bit samples, then scaling
    elif encoding in YUV_CODES:
        layout, code = YUV_CODES[encoding]
        samples = _yuv422(scene, layout)
        rgb = cv2.cvtColor(samples, code)
    else:
        opaque = np.full(scene.shape[:2] + (1,), 65535, np.uint16)
        samples = np.concatenate([scene, opaque], axis=2)[..., CHANNELS16[encoding]]
        rgb = np.repeat(scene[..., 1:2], 3, axis=2) if encoding == "mono16" else scene
    return samples, _to_8bit(rgb) if rgb.dtype == np.uint16 else rgb


def _message(samples: np.ndarray, pad: int, big: bool = False) -> tuple[int, bytes]:
    """(step, data) of the samples as an Image message carries them: in `big` or little byte order, each row
    followed by `pad` bytes of 0xAB that must not show in the pixels."""
    rows = samples.reshape(samples.shape[0], -1)
    if rows.dtype == np.uint16:
        rows = rows.astype(">u2" if big else "<u2")
    raw = rows.view(np.uint8)
    message = np.full((raw.shape[0], raw.shape[1] + pad), 0xAB, np.uint8)
    message[:, : raw.shape[1]] = raw
    return message.shape[1], message.tobytes()


def test_every_decodable_encoding_is_tested():
    assert set(ENCODINGS) == {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", *DRIVER_ENCODINGS}


@pytest.mark.parametrize("encoding", DRIVER_ENCODINGS)
@pytest.mark.parametrize("big", [False, True])
def test_driver_encodings_decode_as_cv_bridge_makes_rgb8(encoding, big):
    samples, expected = _frame(encoding, SCENE16)
    step, data = _message(samples, pad=6, big=big)
    decoded = decode_rgb(encoding, 32, 48, step, array.array("B", data), is_bigendian=big)
    assert decoded.dtype == np.uint8 and decoded.shape == (32, 48, 3)
    np.testing.assert_array_equal(decoded, expected)
    if samples.dtype == np.uint16:  # the flag is read: the other byte order makes other pixels
        assert (decode_rgb(encoding, 32, 48, step, data, is_bigendian=not big) != expected).any()


@pytest.mark.parametrize(
    ("encoding", "width", "height"),
    [
        ("bayer_rggb8", 1936, 1216),
        ("bayer_grbg16", 1600, 900),
        ("yuv422", 1600, 900),
        ("yuv422_yuy2", 1936, 1216),
        ("bgra16", 1600, 900),
    ],
)
def test_camera_sized_frames(encoding, width, height):
    scene = cv2.resize(SCENE16, (width, height), interpolation=cv2.INTER_LINEAR)
    samples, expected = _frame(encoding, scene)
    step, data = _message(samples, pad=64, big=True)
    np.testing.assert_array_equal(decode_rgb(encoding, height, width, step, data, is_bigendian=True), expected)


@pytest.mark.parametrize("pattern", BAYER_CODES)
@pytest.mark.parametrize("bits", [8, 16])
def test_a_pure_colour_scene_keeps_its_colour_through_each_bayer_pattern(pattern, bits):
    """A swapped pattern name turns red into blue or green: the name must match the mosaic's top-left tile."""
    for colour in ([200, 0, 0], [0, 200, 0], [0, 0, 200]):
        scene = np.full((16, 16, 3), colour, np.uint16) * (257 if bits == 16 else 1)
        step, data = _message(_mosaic(scene.astype(np.uint8 if bits == 8 else np.uint16), pattern), pad=0)
        decoded = decode_rgb(f"bayer_{pattern}{bits}", 16, 16, step, data)
        assert (decoded[2:-2, 2:-2] == colour).all(), (pattern, colour, decoded[8, 8])


@pytest.mark.parametrize("encoding", YUV_CODES)
def test_yuv422_byte_order_keeps_colours(encoding):
    """Pixel pairs sharing their colour survive 4:2:2 sampling: the decode is the scene, up to rounding."""
    pairs = np.repeat(_to_8bit(SCENE16)[:, ::2], 2, axis=1)
    step, data = _message(_yuv422(pairs, YUV_CODES[encoding][0]), pad=0)
    decoded = decode_rgb(encoding, 32, 48, step, data)
    assert np.abs(decoded.astype(int) - pairs).max() <= 3


def test_16_bit_scaling_is_cv_bridges_rounding_over_the_whole_range():
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    grey = decode_rgb("mono16", 256, 256, 512, every.tobytes())[..., 0]
    np.testing.assert_array_equal(grey, (every.astype(np.int64) + 128) // 257)
    assert grey.ravel()[[0, 128, 129, 65535]].tolist() == [0, 0, 1, 255]


def test_8_bit_data_ignores_the_byte_order_flag():
    height, width, step, data = encode_rgb(IMAGE, "rgb8")
    np.testing.assert_array_equal(decode_rgb("rgb8", height, width, step, data, is_bigendian=True), IMAGE)


def test_yuv422_takes_an_odd_height():
    assert decode_rgb("yuv422", 3, 4, 8, bytes(24)).shape == (3, 4, 3)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ("bayer_rggb8", 5, 8, 8, bytes(40)),
            "bayer_rggb8 needs an even width and height (its 2x2 Bayer colour tile), the image is 8x5",
        ),
        (("bayer_bggr16", 4, 7, 14, bytes(56)), "bayer_bggr16 needs an even width and height"),
        (
            ("yuv422", 4, 7, 14, bytes(56)),
            "yuv422 needs an even width (two pixels share one U and one V), the image is 7x4",
        ),
        (("mono16", 5, 7, 13, bytes(70)), "step 13 is smaller than width x bytes per pixel = 7 x 2 = 14 for mono16"),
        (("rgba16", 5, 7, 56, bytes(279)), "rgba16 7x5 with step 56 needs 280 bytes, the message has 279"),
        (("yuv422_yuy2", 2, 4, 8, bytes(15)), "yuv422_yuy2 4x2 with step 8 needs 16 bytes, the message has 15"),
        (("bayer_gbrg16", 2, 2, 4, bytes(7)), "needs 8 bytes, the message has 7"),
    ],
)
def test_driver_encoding_size_errors(args, text):
    with pytest.raises(ImageFormatError, match=re.escape(text)) as info:
        decode_rgb(*args)
    assert info.value.cause == "size"


def test_unknown_encoding_names_every_supported_one():
    with pytest.raises(ImageFormatError, match="unsupported encoding 'bayer_rggb12'") as info:
        decode_rgb("bayer_rggb12", 4, 4, 8, bytes(32))
    assert info.value.cause == "encoding"
    assert all(name in str(info.value) for name in ENCODINGS)
