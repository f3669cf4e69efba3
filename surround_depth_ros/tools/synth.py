"""Render frame sets of the synthetic street to a folder: camera PNGs, depth/lidar/radar npz, contact sheets.

Mostly for looking at the world a network trains on: each frame set gets a contact sheet
with the cameras (radar returns drawn on them, coloured by compensated radial speed) above
their exact depth maps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from surround_depth_ros.base import geometry
from surround_depth_ros.datasets.synthetic import SyntheticReader
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.radar import radar_points_in_base
from surround_depth_ros.sensors.rig import default_rig, load_rig
from surround_depth_ros.sensors.visualize import colorize_depth, surround_order
from surround_depth_ros.tools.arguments import add_world_arguments, image_size
from surround_depth_ros.tools.errors import UsageError, usage_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--frames", type=int, default=4, help="number of frame sets (default 4)")
    add_world_arguments(parser)
    parser.add_argument("--size", type=image_size, default="640x352", help="image size WIDTHxHEIGHT (default 640x352)")
    parser.add_argument("--no-radar", action="store_true", help="skip the radar sweeps")
    parser.add_argument("--no-lidar", action="store_true", help="skip the lidar sweep")
    parser.add_argument("--no-sheet", action="store_true", help="skip the contact sheet PNGs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _draw_radar(image: np.ndarray, frame: FrameSet, index: int) -> np.ndarray:
    """Radar returns of all sweeps moved to this camera's time and drawn: red approaching, green receding."""
    camera = frame.rig.cameras[index]
    radar = radar_points_in_base(frame.radar, frame.rig, target_pose=frame.T_world_base[index])
    points_cam = geometry.transform_points(geometry.invert_transform(camera.T_base_cam), radar.points_base)
    uv, z = geometry.project_points(camera.K, points_cam)
    out = image.copy()
    radius = max(2, camera.width // 200)
    for (u, v), depth, velocity, point in zip(uv, z, radar.velocity_base, radar.points_base, strict=True):
        if depth <= 0.5 or not (0 <= u < camera.width and 0 <= v < camera.height):
            continue
        radial = velocity @ point[:2] / max(np.linalg.norm(point[:2]), 1e-6)
        color = (255, 40, 40) if radial < -0.5 else (40, 255, 40) if radial > 0.5 else (255, 255, 255)
        cv2.circle(out, (int(round(u)), int(round(v))), radius, color, -1)
    return out


def contact_sheet(frame: FrameSet) -> np.ndarray:
    """RGB image: for each row of cameras, the images (with radar) above their depth maps, names written in."""
    rows = surround_order([c.T_base_cam for c in frame.rig.cameras])
    cams = frame.rig.cameras
    tile_w, tile_h = max(c.width for c in cams), max(c.height for c in cams)
    columns = max(len(r) for r in rows)
    sheet = np.zeros((2 * len(rows) * tile_h, columns * tile_w, 3), dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, i in enumerate(row):
            image = _draw_radar(frame.images[i], frame, i) if frame.radar else frame.images[i]
            depth = colorize_depth(frame.depth[i])
            for k, tile in enumerate((image, depth)):
                y, x = (2 * r + k) * tile_h, c * tile_w
                sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            scale = max(0.4, tile_w / 1000)
            cv2.putText(
                sheet,
                cams[i].name,
                (c * tile_w + 6, 2 * r * tile_h + int(22 * scale)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 0),
                max(1, int(2 * scale)),
            )
    return sheet


def save_frame_set(frame: FrameSet, out: Path, sheet: bool = True) -> None:
    """`out/<name>/<CAMERA>.png`, `out/<name>/data.npz` (depth, poses, calibration, lidar, radar), sheet PNG."""
    folder = out / frame.name
    folder.mkdir(parents=True, exist_ok=True)
    for camera, image in zip(frame.rig.cameras, frame.images, strict=True):
        cv2.imwrite(str(folder / f"{camera.name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    arrays = {
        "camera_names": np.array(frame.rig.camera_names),
        "depth": np.stack(frame.depth),
        "camera_stamps_ns": frame.camera_stamps_ns,
        "T_world_base": frame.T_world_base,
        "K": frame.rig.intrinsics(),
        "T_base_cam": frame.rig.extrinsics(),
    }
    if frame.lidar is not None:
        arrays |= {
            "lidar_points": frame.lidar.points,
            "lidar_stamp_ns": frame.lidar.stamp_ns,
            "lidar_T_world_base": frame.lidar.T_world_base,
        }
        arrays |= {f"lidar_{k}": v for k, v in frame.lidar.fields.items()}
    if frame.radar:
        arrays |= {
            "radar_sensor": np.concatenate([[s.sensor] * len(s) for s in frame.radar]).astype(str),
            "radar_stamp_ns": np.concatenate([np.full(len(s), s.stamp_ns, np.int64) for s in frame.radar]),
            "radar_points": np.concatenate([s.points for s in frame.radar]),
        }
        arrays |= {f"radar_{k}": np.concatenate([s.fields[k] for s in frame.radar]) for k in frame.radar[0].fields}
    np.savez_compressed(folder / "data.npz", **arrays)
    if sheet:
        cv2.imwrite(str(out / f"{frame.name}_sheet.png"), cv2.cvtColor(contact_sheet(frame), cv2.COLOR_RGB2BGR))


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise UsageError(f"--frames must be >= 1, got {args.frames}")
    if args.threads:
        torch.set_num_threads(args.threads)
    with usage_errors(FileNotFoundError, ValueError):
        rig = load_rig(args.rig) if args.rig else default_rig()
    reader = SyntheticReader(
        rig,
        seed=args.seed,
        n_frames=args.frames,
        image_size=args.size,
        radar=not args.no_radar,
        lidar=not args.no_lidar,
        sweeps=args.sweeps,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for frame in tqdm(reader, total=len(reader), desc="synthetic frame sets", unit="set"):
        save_frame_set(frame, args.out, sheet=not args.no_sheet)
    print(f"wrote {len(reader)} frame sets of seed {args.seed} to {args.out}")
    return 0
