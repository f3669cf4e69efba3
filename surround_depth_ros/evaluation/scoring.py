"""Scoring depth against ground truth a frame set at a time, and comparing two scorings of the same sets.

`FrameScorer` is the accumulator behind `evaluate` (an engine run on each set, training/evaluate.py) and
`run-bag` (the node pipeline's own output); `compare_summaries` is what `evaluate --compare` reports.
Model-free: predictions come in as arrays, the metrics are `DepthMetrics`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from surround_depth_ros.evaluation.metrics import METRIC_NAMES, DepthMetrics
from surround_depth_ros.sensors.frameset import FrameSet

# Depth caps per dataset (nuScenes 0.1-80 m and DDAD 0.1-200 m are the benchmarks' protocols).
EVALUATION_CAPS = {"nuscenes": (0.1, 80.0), "ddad": (0.1, 200.0), "synthetic": (0.1, 80.0), "rosbag": (0.1, 80.0)}


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


class FrameScorer:
    """Scores one predictor's depth against ground truth a frame set at a time, keeping a few sets to draw.

    The accumulator behind `evaluate_checkpoints` and `run-bag` (which scores the node pipeline's own
    output instead of running an engine again). A set may lack some cameras (the node's partial sets):
    each image counts for the camera it belongs to.
    """

    def __init__(self, min_depth: float = 0.1, max_depth: float = 80.0, examples: int = 2) -> None:
        self.metrics = DepthMetrics(None, min_depth, max_depth)
        self.examples: list[Example] = []
        self.max_examples = examples
        self.sets = self.skipped = 0

    def add(self, frame: FrameSet, pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> None:
        """Score the depth per camera of `frame.rig` (at each camera's size; sizes may differ) against `gt`."""
        self.metrics.camera_names = list(frame.rig.camera_names)  # names this update's images by the set's rig
        self.metrics.update(list(pred), list(gt))  # per camera: nothing padded to full resolution
        if len(self.examples) < self.max_examples:
            self.examples.append(Example(frame.name, list(frame.images), list(gt), list(pred)))
        self.sets += 1

    def skip(self) -> None:
        """Count a set without ground truth (a bag's first sets before its first lidar sweep)."""
        self.skipped += 1

    def evaluation(self) -> Evaluation:
        """The summary (`DepthMetrics.summary()` and the set counts) and the kept sets; ValueError with the reason
        when no set had ground truth."""
        if not self.sets:
            reason = (
                f"none of its {self.skipped} frame sets has depth or a lidar sweep"
                if self.skipped
                else ("the dataset is empty")
            )
            raise ValueError(f"no frame sets to evaluate: {reason}")
        counts = {"frame_sets": self.sets, "frame_sets_skipped_without_ground_truth": self.skipped}
        return Evaluation(self.metrics.summary() | counts, self.examples)


HIGHER_IS_BETTER = frozenset({"a1", "a2", "a3"})
MODES = ("metric", "median_scaled")


def _better(name: str, a: float, b: float) -> str:
    """Which checkpoint wins on one metric: "a", "b" or "same" (within 0.5 % of A)."""
    if abs(b - a) <= 0.005 * abs(a):
        return "same"
    return "b" if (b > a) == (name in HIGHER_IS_BETTER) else "a"


def compare_summaries(a: dict, b: dict) -> dict:
    """B against A on the same frame sets: per metric {"a", "b", "difference": b - a, "better"} for the
    means, per camera and per range bin, metric and median-scaled (None where either has no images)."""

    def difference(ma: dict | None, mb: dict | None) -> dict | None:
        if ma is None or mb is None:
            return None
        return {
            k: {"a": ma[k], "b": mb[k], "difference": mb[k] - ma[k], "better": _better(k, ma[k], mb[k])}
            for k in METRIC_NAMES
        }

    result: dict = {"a": a.get("checkpoint"), "b": b.get("checkpoint"), "dataset": a.get("dataset")}
    for mode in MODES:
        result[mode] = {"mean": difference(a[mode]["mean"], b[mode]["mean"])}
        for part in ("per_camera", "per_range"):
            result[mode][part] = {
                key: difference(value, b[mode][part].get(key)) for key, value in a[mode][part].items()
            }
    return result
