"""Evaluation of a student: the benchmark metrics per camera, averaged and per range bin, metric and median-scaled.

Two paths share one metric accumulator (`DepthMetrics`): `evaluate_model` scores a model on
prepared tensors at the training resolution (validation during training, the ablation), and
`evaluate_frames` scores a checkpoint the way the node runs it (`DepthEngine`: full images in,
depth at each camera's own size out) against ground truth at full resolution, projected lidar
when the dataset has no dense depth. `write_report` writes the JSON and a PNG people look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from surround_depth_ros.frameset import FrameSet
from surround_depth_ros.metrics import DepthMetrics
from surround_depth_ros.network.student import MEAN, STD, SurroundDepthStudent
from surround_depth_ros.training.data import PreparedDataset, Sample, lidar_depth_maps, min_pool_depth

# Depth caps per dataset (nuScenes 0.1-80 m and DDAD 0.1-200 m are the benchmarks' protocols).
EVALUATION_CAPS = {"nuscenes": (0.1, 80.0), "ddad": (0.1, 200.0), "synthetic": (0.1, 80.0), "rosbag": (0.1, 80.0)}


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (..., 3, H, W) -> the network's input normalisation."""
    mean = torch.tensor(MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def predict_batches(
    model: SurroundDepthStudent, dataset: PreparedDataset, device: torch.device | str = "cpu", batch_size: int = 2
) -> Iterator[tuple[Sample, torch.Tensor]]:
    """(batch, predicted depth (B, N, 1, H, W) on the CPU) over a prepared dataset, model in eval mode."""
    was_training = model.training
    model.eval()
    adjacency = dataset.adjacency.to(device)
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                batch = dataset.batch(range(start, min(start + batch_size, len(dataset))))
                images = normalise(batch.images.to(device).float() / 255.0)
                radar = batch.radar.to(device) if batch.radar is not None and model.config.radar else None
                yield batch, model(images, adjacency, radar=radar).depth.float().cpu()
    finally:
        model.train(was_training)


def evaluate_model(
    model: SurroundDepthStudent,
    dataset: PreparedDataset,
    min_depth: float = 0.1,
    max_depth: float = 80.0,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
) -> dict:
    """`DepthMetrics.summary()` of the model on a prepared dataset (ground truth at the training resolution)."""
    metrics = DepthMetrics(dataset.camera_names, min_depth, max_depth)
    for batch, depth in predict_batches(model, dataset, device, batch_size):
        metrics.update(depth, batch.depth)
    return metrics.summary()


@dataclass
class Example:
    """One frame set kept for the PNG report: images, ground truth and prediction per camera."""

    name: str
    images: list[np.ndarray]
    gt: list[np.ndarray]
    pred: list[np.ndarray]


@dataclass
class Evaluation:
    """What an evaluation produced: the metrics summary and a few frames to draw."""

    summary: dict
    examples: list[Example] = field(default_factory=list)


def evaluate_frames(
    engine: object,
    frames: Iterable[FrameSet],
    min_depth: float = 0.1,
    max_depth: float = 80.0,
    examples: int = 2,
    focal_scaling: bool = True,
    progress: Iterable | None = None,
) -> Evaluation:
    """Run `engine` (a `DepthEngine`) on every frame set and score it against full-resolution ground truth.

    `focal_scaling` passes the frame's intrinsics so that cameras whose focal length differs from
    the training rig's are rescaled (the engine's documented behaviour; only for checkpoints that record
    their rig); cameras of any sizes mix.
    """
    metrics: DepthMetrics | None = None
    kept: list[Example] = []
    trained_rig = getattr(engine, "info", None) is not None and engine.info.rig is not None
    for frame in progress if progress is not None else frames:
        gt = frame.depth if frame.depth is not None else lidar_depth_maps(frame)
        gt = [np.asarray(g, dtype=np.float32) for g in gt]
        same_rig = trained_rig and len(engine.info.rig["cameras"]) == len(frame.rig.cameras)
        intrinsics = frame.rig.intrinsics() if focal_scaling and same_rig else None
        pred = [result.depth for result in engine.infer(frame.images, intrinsics=intrinsics)]
        if focal_scaling and trained_rig and not same_rig:
            pred = [d * f for d, f in zip(pred, _focal_factors(engine.info.rig, frame), strict=True)]
        if metrics is None:
            metrics = DepthMetrics(frame.rig.camera_names, min_depth, max_depth)
        metrics.update(pred, gt)  # per camera: sizes may differ, nothing padded to full resolution
        if len(kept) < examples:
            kept.append(Example(frame.name, list(frame.images), gt, pred))
    if metrics is None:
        raise ValueError("no frame sets to evaluate: the dataset is empty")
    return Evaluation(metrics.summary(), kept)


def _focal_factors(trained_rig: dict, frame: FrameSet) -> list[float]:
    """Depth factors for a rig with another camera count than the training rig's (the engine pairs cameras
    one to one): each camera's focal length per image width against the training cameras' mean."""
    trained = np.mean([c["K"][0][0] / c["width"] for c in trained_rig["cameras"]])
    return [float(c.K[0, 0] / c.width / trained) for c in frame.rig.cameras]


# --------------------------------------------------------------------------- report


def _display(depth: np.ndarray, width: int) -> np.ndarray:
    """A depth map shrunk for display keeping sparse points (min-pooling), NaN where empty."""
    height = max(1, round(depth.shape[0] * width / depth.shape[1]))
    small = min_pool_depth(torch.as_tensor(np.nan_to_num(depth, nan=0.0)), (height, width)).numpy()
    return np.where(small > 0, small, np.nan)


def _range_chart(axis: object, summary: dict) -> None:
    labels = [label for label in summary["metric"]["per_range"]]
    x = np.arange(len(labels))
    for offset, mode in ((-0.2, "metric"), (0.2, "median_scaled")):
        values = [(summary[mode]["per_range"][label] or {}).get("abs_rel", np.nan) for label in labels]
        axis.bar(x + offset, values, width=0.4, label=mode.replace("_", "-"))
    axis.set_xticks(x, [f"{label} m" for label in labels])
    axis.set_ylabel("AbsRel")
    axis.set_title("error by ground-truth range")
    axis.legend()


def write_report(evaluation: Evaluation, out_dir: str | Path, title: str = "", display_width: int = 240) -> dict:
    """Write metrics.json and report.png (per example: images, ground truth, prediction, AbsRel map; error by range).

    Returns {"json": path, "png": path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(evaluation.summary, indent=2))
    summary = evaluation.summary
    cams = max((len(e.images) for e in evaluation.examples), default=1)
    rows = 4 * len(evaluation.examples) + 1
    fig, axes = plt.subplots(rows, cams, figsize=(2.4 * cams, 1.5 * rows + 1.5), squeeze=False)
    norm = LogNorm(summary["min_depth"] if summary["min_depth"] > 0 else 0.5, summary["max_depth"])
    names = list(summary["metric"]["per_camera"])
    for e, example in enumerate(evaluation.examples):
        for c in range(cams):
            image_ax, gt_ax, pred_ax, err_ax = (axes[4 * e + r, c] for r in range(4))
            image_ax.imshow(example.images[c])
            image_ax.set_title(f"{names[c] if c < len(names) else c}", fontsize=7)
            gt = _display(example.gt[c], display_width)
            pred = _display(example.pred[c], display_width)
            gt_ax.imshow(gt, cmap="turbo_r", norm=norm, interpolation="nearest")
            pred_ax.imshow(pred, cmap="turbo_r", norm=norm)
            err_ax.imshow(np.abs(pred - gt) / gt, cmap="magma", vmin=0, vmax=0.5, interpolation="nearest")
            if c == 0:
                for ax, label in ((image_ax, example.name[:18]), (gt_ax, "ground truth"), (pred_ax, "prediction"),
                                  (err_ax, "AbsRel (0-0.5)")):  # fmt: skip
                    ax.set_ylabel(label, fontsize=7)
        for ax in axes[4 * e : 4 * e + 4].ravel():
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in axes[-1, 1:]:
        ax.axis("off")
    _range_chart(axes[-1, 0], summary)
    bottom = axes[-1, 0].get_position()
    axes[-1, 0].set_position([bottom.x0, bottom.y0, 0.4, bottom.height])
    mean = summary["metric"]["mean"] or {}
    med = summary["median_scaled"]["mean"] or {}
    fig.suptitle(
        f"{title}  metric AbsRel {mean.get('abs_rel', np.nan):.3f} RMSE {mean.get('rmse', np.nan):.2f} m "
        f"d1 {mean.get('a1', np.nan):.3f} | median-scaled AbsRel {med.get('abs_rel', np.nan):.3f}",
        fontsize=9,
    )
    png_path = out / "report.png"
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return {"json": str(json_path), "png": str(png_path)}
