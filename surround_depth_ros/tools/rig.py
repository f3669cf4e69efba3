"""Show, convert and draw a sensor rig: from a rig YAML, a nuScenes dataroot or a DGP calibration.

Prints every camera's intrinsics and pose, the overlapping camera pairs computed from geometry,
and optionally writes the rig as YAML (`--save`) and a top view with camera fields of view and
radars as a PNG (`--png`), so a calibration can be checked by eye before training on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from surround_depth_ros.sensors.rig import CameraRig, default_rig, load_rig, save_rig
from surround_depth_ros.tools.errors import usage_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rig", type=Path, help="rig YAML file (default: the packaged config/rig_nuscenes.yaml)")
    source.add_argument("--nuscenes", type=Path, metavar="DATAROOT", help="nuScenes dataroot (first keyframe's rig)")
    source.add_argument("--dgp", type=Path, metavar="CALIBRATION_JSON", help="DGP / DDAD calibration JSON")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes table version folder (default v1.0-mini)")
    parser.add_argument("--min-overlap", type=float, default=0.05, help="overlap fraction for adjacent cameras")
    parser.add_argument("--save", type=Path, metavar="YAML", help="write the rig in the rig YAML format")
    parser.add_argument("--png", type=Path, help="write a top view of the rig (fields of view to 5 m, radars)")


def load_source(args: argparse.Namespace) -> CameraRig:
    """The rig named by the command line."""
    if args.nuscenes is not None:
        from surround_depth_ros.datasets.nuscenes import rig_from_nuscenes

        return rig_from_nuscenes(args.nuscenes, version=args.version)
    if args.dgp is not None:
        from surround_depth_ros.datasets.ddad import rig_from_dgp

        return rig_from_dgp(args.dgp)
    return load_rig(args.rig) if args.rig is not None else default_rig()


def describe(rig: CameraRig, min_overlap: float) -> str:
    """A table of cameras and radars with the adjacent pairs."""
    lines = [f"base frame: {rig.base_frame}", f"{'camera':<16} {'size':>9} {'fx':>8} {'fy':>8} {'cx':>7} {'cy':>7}"]
    lines[-1] += f" {'x':>6} {'y':>6} {'z':>6} {'yaw':>6}  frame_id"
    for cam in rig.cameras:
        x, y, z = cam.T_base_cam[:3, 3]
        yaw = np.degrees(np.arctan2(cam.T_base_cam[1, 2], cam.T_base_cam[0, 2]))
        lines.append(
            f"{cam.name:<16} {cam.width:>4}x{cam.height:<4} {cam.K[0, 0]:8.1f} {cam.K[1, 1]:8.1f} {cam.K[0, 2]:7.1f} "
            f"{cam.K[1, 2]:7.1f} {x:6.2f} {y:6.2f} {z:6.2f} {yaw:6.1f}  {cam.frame_id}"
        )
    for radar in rig.radars:
        x, y, z = radar.T_base_radar[:3, 3]
        yaw = np.degrees(np.arctan2(radar.T_base_radar[1, 0], radar.T_base_radar[0, 0]))
        lines.append(f"{radar.name:<16} {'radar':>9} {'':>33} {x:6.2f} {y:6.2f} {z:6.2f} {yaw:6.1f}  {radar.frame_id}")
    overlap = rig.overlap_matrix()
    names = rig.camera_names
    pairs = rig.adjacency(min_overlap)
    lines.append(f"adjacent cameras (overlap >= {min_overlap:.2f}):")
    lines += [f"  {names[i]} - {names[j]}: {0.5 * (overlap[i, j] + overlap[j, i]):.3f}" for i, j in pairs]
    return "\n".join(lines)


def draw_top_view(rig: CameraRig, path: Path, reach: float = 5.0) -> None:
    """PNG of the rig seen from above: x forward up the page, each camera's horizontal field of view."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 7))
    colors = plt.get_cmap("tab10")
    for index, cam in enumerate(rig.cameras):
        rays = np.array([[-cam.K[0, 2] - 0.5, 0.0], [cam.width - 0.5 - cam.K[0, 2], 0.0]]) / cam.K[0, 0]
        corners = [cam.T_base_cam[:3, :3] @ np.array([r[0], 0.0, 1.0]) for r in rays]
        origin = cam.T_base_cam[:3, 3]
        fan = [origin[:2]] + [origin[:2] + reach * c[:2] / np.linalg.norm(c[:2]) for c in corners]
        xy = np.array(fan)
        axes.fill(-xy[:, 1], xy[:, 0], alpha=0.25, color=colors(index % 10), label=cam.name)
        axes.plot(-origin[1], origin[0], "o", color=colors(index % 10))
    for radar in rig.radars:
        x, y = radar.T_base_radar[:2, 3]
        heading = radar.T_base_radar[:2, 0]
        axes.arrow(-y, x, -0.6 * heading[1], 0.6 * heading[0], width=0.04, color="black")
        axes.annotate(radar.name, (-y, x), fontsize=6)
    axes.add_patch(plt.Rectangle((-0.95, -1.0), 1.9, 4.6, fill=False, linestyle="--", color="gray"))
    axes.set_aspect("equal")
    axes.set_xlabel("-y (right) [m]")
    axes.set_ylabel("x (forward) [m]")
    axes.set_title(f"rig top view ({rig.base_frame}); fields of view drawn to {reach:g} m")
    axes.legend(loc="upper right", fontsize=7)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    with usage_errors(FileNotFoundError, ValueError):  # a missing or malformed rig, dataroot or calibration
        rig = load_source(args)
    print(describe(rig, args.min_overlap))
    if args.save is not None:
        save_rig(rig, args.save)
        print(f"wrote {args.save}")
    if args.png is not None:
        draw_top_view(rig, args.png)
        print(f"wrote {args.png}")
    return 0
