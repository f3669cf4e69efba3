"""Running a student on frame sets and scoring it: the benchmark metrics per camera, averaged and per range bin.

Two paths share one metric accumulator (`DepthMetrics`): `evaluate_model` scores a model on
prepared tensors at the training resolution (validation during training, the ablation), and
`evaluate_checkpoints` scores checkpoints the way the node runs them (`DepthEngine`: full images in,
depth at each camera's own size out) against ground truth at full resolution, projected lidar
when the dataset has no dense depth. The scoring and the reports are model-free and live in
`surround_depth_ros/evaluation/` (`scoring.py`, `report.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

from surround_depth_ros.evaluation.ground_truth import ground_truth
from surround_depth_ros.evaluation.metrics import DepthMetrics
from surround_depth_ros.evaluation.scoring import Evaluation, FrameScorer
from surround_depth_ros.network.student import SurroundDepthStudent
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.training.data import PreparedDataset, Sample


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
                images = batch.images.to(device)  # uint8: the student normalises its input
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


def evaluate_checkpoints(
    engines: Sequence[object],
    frames: Iterable[FrameSet],
    min_depth: float = 0.1,
    max_depth: float = 80.0,
    examples: int = 2,
    focal_scaling: bool = True,
    progress: Iterable | None = None,
) -> list[Evaluation]:
    """Run each engine (a `DepthEngine`) on the same frame sets, read once, and score it against
    full-resolution ground truth; one Evaluation per engine.

    Each engine runs as the node runs it, through `SurroundDepthPipeline.process` (no cloud): cameras
    bound to the checkpoint's slots by where they look (so the order a bag or a params file lists them
    in never changes a score), placeholders for slots without a camera, the bound rig's pairs, and,
    with `focal_scaling`, each image placed by its focal length (the canonical camera; only for
    checkpoints that record their rig). Cameras of any sizes mix. Sets with neither depth nor a lidar
    sweep (a bag's first sets before its first sweep) are skipped and counted in the summary.
    """
    from surround_depth_ros.core.pipeline import SurroundDepthPipeline

    pipelines = [SurroundDepthPipeline(engine, cloud=None, canonical_camera=focal_scaling) for engine in engines]
    scorers = [FrameScorer(min_depth, max_depth, examples) for _ in engines]
    for frame in progress if progress is not None else frames:
        gt = ground_truth(frame)
        for pipeline, scorer in zip(pipelines, scorers, strict=True):
            if gt is None:
                scorer.skip()
            else:
                scorer.add(frame, pipeline.process(frame).depth, gt)
    return [scorer.evaluation() for scorer in scorers]


def evaluate_frames(engine: object, frames: Iterable[FrameSet], *args: object, **kwargs: object) -> Evaluation:
    """`evaluate_checkpoints` of one engine."""
    return evaluate_checkpoints([engine], frames, *args, **kwargs)[0]
