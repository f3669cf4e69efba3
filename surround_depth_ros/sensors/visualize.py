"""Pictures people look at: coloured depth maps, camera contact sheets, PLY clouds.

Shared by the synthetic-world tool, the demo and evaluation, so that every depth picture of the
project uses one colour scale (log depth, near red, far blue, black where there is no estimate).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from surround_depth_ros.sensors.pointcloud import unpack_rgb

DEPTH_NEAR_M, DEPTH_FAR_M = 1.0, 120.0  # the one depth colour scale: a colour means the same distance everywhere
DEPTH_TICKS_M = (1, 2, 5, 10, 20, 50, 100)


def colorize_depth(depth: np.ndarray, near: float = DEPTH_NEAR_M, far: float = DEPTH_FAR_M) -> np.ndarray:
    """RGB uint8 view of a depth map on a log scale (near red, far blue), black where invalid (0 or NaN).

    The same as matplotlib's "turbo_r" colour map under LogNorm(near, far), which the reports use."""
    valid = np.isfinite(depth) & (depth > 0)
    clipped = np.clip(np.where(valid, depth, near), near, far)
    log_depth = np.log(clipped / near) / np.log(far / near)
    colored = cv2.applyColorMap(((1 - log_depth) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    return np.where(valid[..., None], colored, 0).astype(np.uint8)


def depth_colour_bar(width: int, near: float = DEPTH_NEAR_M, far: float = DEPTH_FAR_M) -> np.ndarray:
    """An RGB strip `width` wide: the `colorize_depth` scale from near to far with ticks labelled in metres."""
    scale = max(0.4, width / 2000)
    bar_height, text_height = max(12, int(28 * scale)), max(14, int(34 * scale))
    margin = int(60 * scale)
    strip = np.zeros((bar_height + text_height + 8, width, 3), np.uint8)
    depth = near * (far / near) ** np.linspace(0.0, 1.0, width - 2 * margin)
    strip[4 : 4 + bar_height, margin : width - margin] = colorize_depth(np.tile(depth, (bar_height, 1)), near, far)
    for tick in (t for t in DEPTH_TICKS_M if near <= t <= far):
        x = margin + round(np.log(tick / near) / np.log(far / near) * (width - 2 * margin - 1))
        strip[4 + bar_height : 10 + bar_height, x] = 255
        text = f"{tick} m" if tick in (DEPTH_TICKS_M[0], DEPTH_TICKS_M[-1]) else str(tick)
        (text_width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(2 * scale)))
        origin = (int(np.clip(x - text_width // 2, 0, width - text_width)), strip.shape[0] - 4)
        cv2.putText(strip, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(2 * scale)))
    return strip


def surround_order(T_base_cams: list[np.ndarray]) -> list[list[int]]:
    """Camera indices as a viewer expects them: front row left to right, back row left to right."""
    yaw = [np.degrees(np.arctan2(T[1, 2], T[0, 2])) for T in T_base_cams]
    front = sorted((i for i, a in enumerate(yaw) if abs(a) <= 90), key=lambda i: -yaw[i])
    back = sorted((i for i, a in enumerate(yaw) if abs(a) > 90), key=lambda i: yaw[i] % 360)
    return [row for row in (front, back) if row]


def label(image: np.ndarray, text: str, row: int = 0) -> np.ndarray:
    """`image` with `text` written in its top-left corner (in place), scaled to the image width."""
    scale = max(0.4, image.shape[1] / 1000)
    origin = (6, int((22 + 26 * row) * scale))
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), max(1, int(2 * scale)))
    return image


def tile(rows: list[list[np.ndarray]]) -> np.ndarray:
    """One RGB image of equally sized tiles laid out row by row (shorter rows left-aligned)."""
    height = max(t.shape[0] for row in rows for t in row)
    width = max(t.shape[1] for row in rows for t in row)
    sheet = np.zeros((height * len(rows), width * max(len(r) for r in rows), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet[r * height : r * height + image.shape[0], c * width : c * width + image.shape[1]] = image
    return sheet


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def write_ply(path: str | Path, cloud: np.ndarray) -> Path:
    """A binary PLY of a structured cloud with x, y, z and a packed `rgb` field (what viewers open)."""
    vertices = np.empty(
        len(cloud), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    for axis in "xyz":
        vertices[axis] = cloud[axis]
    rgb = unpack_rgb(cloud["rgb"])
    vertices["red"], vertices["green"], vertices["blue"] = rgb.T
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + vertices.tobytes())
    return path
