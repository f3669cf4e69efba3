"""Image decoding speed: `decode_rgb` per encoding at camera sizes, against what cv_bridge would run.

The floor is the bare OpenCV work cv_bridge does to make rgb8 of the same buffer, already shaped as an
array: its `cv2.cvtColor` with the code of its table, then for 16-bit data its scaling by 255 / 65535
(`cv2.convertScaleAbs`, the same rounding as its `convertTo`). For rgb8 the floor is a numpy view. The
ratio says what the checks, the byte order and the view of the message cost on top.

    PYTHONPATH=. python benchmarks/bench_images.py [--repeats 20] [--threads N]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cv2
import numpy as np
from timing import best_ms

from surround_depth_ros.base.images import ENCODINGS, decode_rgb

SIZES = [(1600, 900), (1936, 1216)]  # nuScenes, and a 2.3 MP automotive sensor
SCALE = 255.0 / 65535.0


def floor(encoding: str, pixels: np.ndarray) -> Callable[[], object]:
    """cv_bridge's own OpenCV calls on `pixels`, the samples already as a native array."""
    layout = ENCODINGS[encoding]
    if layout.to_rgb is None:
        if layout.bits == 8:
            return lambda: pixels.view()
        return lambda: cv2.convertScaleAbs(pixels, alpha=SCALE)
    code = getattr(cv2, layout.to_rgb)
    if layout.bits == 8:
        return lambda: cv2.cvtColor(pixels, code)
    return lambda: cv2.convertScaleAbs(cv2.cvtColor(pixels, code), alpha=SCALE)


def bench(encoding: str, width: int, height: int, big: bool, rng: np.random.Generator, repeats: int) -> None:
    layout = ENCODINGS[encoding]
    dtype = np.uint16 if layout.bits == 16 else np.uint8
    shape = (height, width, layout.channels) if layout.channels > 1 else (height, width)
    pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    data = pixels.astype(">u2" if big else "<u2").tobytes() if layout.bits == 16 else pixels.tobytes()
    step = width * layout.channels * layout.bits // 8
    ms = best_ms(lambda: decode_rgb(encoding, height, width, step, data, is_bigendian=big), repeats)
    floor_ms = best_ms(floor(encoding, pixels), repeats)
    name = f"{encoding}{' (big-endian)' if big else ''}"
    print(f"{name:<28} {width}x{height:<5} {ms:8.3f} ms   floor {floor_ms:7.3f} ms   ratio {ms / floor_ms:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; best of {args.repeats}")
    rng = np.random.default_rng(0)
    for width, height in SIZES:
        for encoding in ENCODINGS:
            bench(encoding, width, height, False, rng, args.repeats)
        for encoding in ("rgb16", "mono16", "bayer_rggb16"):
            bench(encoding, width, height, True, rng, args.repeats)


if __name__ == "__main__":
    main()
