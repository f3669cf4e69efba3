"""What people look at after an evaluation: metrics.json and report.png, comparison.json and comparison.png.

Per example frame set the images, ground truth, prediction and signed error with colour bars in metres;
tables per camera and bars by range, metric and median-scaled.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from surround_depth_ros.evaluation.metrics import METRIC_NAMES
from surround_depth_ros.evaluation.scoring import MODES, Evaluation, Example, compare_summaries
from surround_depth_ros.sensors.visualize import DEPTH_FAR_M, DEPTH_NEAR_M, DEPTH_TICKS_M

METRIC_LABELS = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE m",
    "rmse_log": "RMSElog",
    "a1": "d<1.25",
    "a2": "d<1.25^2",
    "a3": "d<1.25^3",
    "mae": "MAE m",
    "silog": "SILog",
}


def _pyplot():  # noqa: ANN202 - the matplotlib.pyplot module
    """pyplot on the Agg back-end (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    """An image or dense depth map resized to `width` for display (area averaging)."""
    width = min(width, image.shape[1])
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)


def _shrink_points(gt: np.ndarray, pred: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and signed error (pred - gt, m) shrunk to `width` keeping sparse points: each display pixel
    shows its nearest measurement and that measurement's error; NaN where there is none."""
    width = min(width, gt.shape[1])
    height = max(1, round(gt.shape[0] * width / gt.shape[1]))
    rows, cols = np.nonzero(np.isfinite(gt) & (gt > 0))
    order = np.argsort(-gt[rows, cols], kind="stable")  # far first: the nearest point is written last and wins
    rows, cols = rows[order], cols[order]
    target = (rows * height // gt.shape[0], cols * width // gt.shape[1])
    gt_small, error_small = np.full((height, width), np.nan), np.full((height, width), np.nan)
    gt_small[target] = gt[rows, cols]
    error_small[target] = pred[rows, cols] - gt[rows, cols]
    return gt_small, error_small


def _nice_limit(values: np.ndarray) -> float:
    """A round colour-bar limit (1, 2, 5, 10, ... m) covering 90 % of |values|."""
    finite = np.abs(values[np.isfinite(values)])
    wanted = float(np.percentile(finite, 90)) if finite.size else 1.0
    return next((v for v in (1, 2, 5, 10, 20, 50, 100, 200) if v >= wanted), 500)


def _draw_rows(subfig: object, rows: list[tuple[str, str, list[np.ndarray]]], names: list[str], limit: float) -> None:
    """A grid of per-camera pictures, one row per (label, kind, maps), kind "image", "depth" or "error",
    with a colour bar in metres right of each depth and error row."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize

    depth_scale = ScalarMappable(LogNorm(DEPTH_NEAR_M, DEPTH_FAR_M), "turbo_r")  # colorize_depth's scale
    error_scale = ScalarMappable(Normalize(-limit, limit), "coolwarm")
    axes = subfig.subplots(len(rows), len(names), squeeze=False)
    for r, (row_label, kind, maps) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if kind == "image":
                ax.imshow(maps[c])
            else:
                scale = depth_scale if kind == "depth" else error_scale
                ax.imshow(maps[c], cmap=scale.cmap, norm=scale.norm, interpolation="nearest")
                ax.set_facecolor("0.15")  # no ground truth
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(names[c], fontsize=8)
        axes[r, 0].set_ylabel(row_label, fontsize=8)
        if kind != "image":
            bar = subfig.colorbar(depth_scale if kind == "depth" else error_scale, ax=list(axes[r]), aspect=8, pad=0.01)
            if kind == "depth":
                bar.set_ticks(DEPTH_TICKS_M, labels=[str(t) for t in DEPTH_TICKS_M])
            bar.set_label("depth m" if kind == "depth" else "pred - truth m", fontsize=7)
            bar.ax.tick_params(labelsize=6)


def _example_rows(examples: dict[str, Example], width: int) -> tuple[list[tuple[str, str, list]], float]:
    """Rows for `_draw_rows` of one frame set predicted by each named checkpoint, and their error limit."""
    first = next(iter(examples.values()))
    rows: list[tuple[str, str, list]] = [(first.name[-24:], "image", [_shrink(i, width) for i in first.images])]
    points = {
        label: [_shrink_points(g, p, width) for g, p in zip(e.gt, e.pred, strict=True)] for label, e in examples.items()
    }
    rows.append(("ground truth", "depth", [gt for gt, _ in next(iter(points.values()))]))
    suffix = {label: f" {label}" if len(examples) > 1 else "" for label in examples}
    rows += [(f"prediction{suffix[k]}", "depth", [_shrink(p, width) for p in e.pred]) for k, e in examples.items()]
    rows += [(f"error{suffix[k]}", "error", [err for _, err in maps]) for k, maps in points.items()]
    limit = _nice_limit(
        np.concatenate([row[2][c].ravel() for row in rows if row[1] == "error" for c in range(len(row[2]))])
    )
    return rows, limit


def _table(ax: object, cells: list[list[str]], rows: list[str], columns: list[str], colours=None) -> None:  # noqa: ANN001
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=rows, colLabels=columns, cellColours=colours, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.25)


def _per_camera_table(ax: object, summary: dict) -> None:
    """Cameras (and their mean) x the headline metrics, metric and median-scaled."""
    columns = [("metric", k) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1")]
    columns += [("median_scaled", k) for k in ("abs_rel", "rmse", "a1")]
    cameras = list(summary["metric"]["per_camera"])
    rows = []
    for camera in [*cameras, None]:
        values = [(summary[m]["mean"] if camera is None else summary[m]["per_camera"][camera]) for m, _ in columns]
        rows.append(["-" if v is None else f"{v[k]:.3f}" for v, (_, k) in zip(values, columns, strict=True)])
    headers = [METRIC_LABELS[k] + (" (med)" if m == "median_scaled" else "") for m, k in columns]
    _table(ax, rows, [*cameras, "mean"], headers)
    ax.set_title(f"per camera ({summary['metric']['images']} images)", fontsize=9)


def _bars(ax: object, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> None:
    """Grouped bars: one group per label, one bar per series."""
    x = np.arange(len(groups))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width=width, label=name)
    ax.set_xticks(x, groups, fontsize=7, rotation=20 if max(map(len, groups)) > 8 else 0)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)


def _metric_of(groups: dict, name: str) -> dict[str, float]:
    """{group: metric} of a per-camera or per-range summary part, NaN for a group without images."""
    return {key: (value or {}).get(name, np.nan) for key, value in groups.items()}


def _filled_ranges(*summaries: dict) -> list[str]:
    """The range bins some summary has images in (a bin beyond the depth cap is always empty)."""
    return [b for b in summaries[0]["metric"]["per_range"] if any(s["metric"]["per_range"][b] for s in summaries)]


def _headline(summary: dict) -> str:
    mean, med = summary["metric"]["mean"] or {}, summary["median_scaled"]["mean"] or {}
    return (
        f"metric AbsRel {mean.get('abs_rel', np.nan):.3f}  RMSE {mean.get('rmse', np.nan):.2f} m  "
        f"d<1.25 {mean.get('a1', np.nan):.3f}  |  median-scaled AbsRel {med.get('abs_rel', np.nan):.3f}  "
        f"d<1.25 {med.get('a1', np.nan):.3f}  |  {summary['metric']['images']} images, "
        f"caps {summary['min_depth']:g}-{summary['max_depth']:g} m"
    )


def write_report(evaluation: Evaluation, out_dir: str | Path, title: str = "", display_width: int = 320) -> dict:
    """Write metrics.json and report.png: per example frame set the images, ground truth, prediction and
    error with colour bars in metres; a per-camera table and the error by range, metric and median-scaled.

    Returns {"json": path, "png": path}."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(evaluation.summary, indent=2))
    summary = evaluation.summary
    names = list(summary["metric"]["per_camera"])
    tile = _tile_inches(evaluation.examples, len(names))
    fig = plt.figure(
        figsize=(tile[0] * len(names) + 1.2, tile[1] * 4 * len(evaluation.examples) + 3.6), layout="constrained"
    )
    blocks = fig.subfigures(
        len(evaluation.examples) + 1, 1, height_ratios=[4 * tile[1]] * len(evaluation.examples) + [3.2]
    )
    for block, example in zip(np.atleast_1d(blocks), evaluation.examples, strict=False):
        rows, limit = _example_rows({"": example}, display_width)
        _draw_rows(block, rows, names, limit)
    table_ax, range_ax = np.atleast_1d(blocks)[-1].subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    _per_camera_table(table_ax, summary)
    bins = _filled_ranges(summary)
    series = {m.replace("_", "-"): [_metric_of(summary[m]["per_range"], "abs_rel")[b] for b in bins] for m in MODES}
    _bars(range_ax, [f"{b} m" for b in bins], series, "AbsRel", "error by ground-truth range")
    fig.suptitle(f"{title}\n{_headline(summary)}", fontsize=10)
    png_path = out / "report.png"
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return {"json": str(json_path), "png": str(png_path)}


def _tile_inches(examples: list[Example], cameras: int) -> tuple[float, float]:
    """Width and height of one camera picture: a 20-inch-wide figure at most, the cameras' aspect ratio."""
    width = min(2.6, 18.0 / max(cameras, 1))
    aspect = examples[0].images[0].shape[0] / examples[0].images[0].shape[1] if examples else 0.6
    return width, width * aspect + 0.15


def write_comparison(
    a: Evaluation, b: Evaluation, out_dir: str | Path, labels: tuple[str, str], display_width: int = 320
) -> dict:
    """Write comparison.json (`compare_summaries`) and comparison.png: per metric A, B and B - A (green where B
    is better), AbsRel per camera and per range for both, and one frame set predicted by both.

    Returns {"json": path, "png": path}."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare_summaries(a.summary, b.summary)
    comparison["labels"] = {"a": labels[0], "b": labels[1]}
    json_path = out / "comparison.json"
    json_path.write_text(json.dumps(comparison, indent=2))
    names = list(a.summary["metric"]["per_camera"])
    tile = _tile_inches(a.examples, len(names))
    height = 3.4 + 3.0 + 6 * tile[1] * bool(a.examples)
    fig = plt.figure(figsize=(max(tile[0] * len(names) + 1.2, 12.0), height), layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[3.4, 3.0, 6 * tile[1] if a.examples else 0.01])
    shades = {"a": "#f4c7c3", "b": "#c8e6c9", "same": "white"}
    for ax, mode in zip(top.subplots(1, 2), MODES, strict=True):
        rows = comparison[mode]["mean"]
        if rows is None:
            ax.axis("off")
            continue
        cells = [[f"{rows[k]['a']:.4f}", f"{rows[k]['b']:.4f}", f"{rows[k]['difference']:+.4f}"] for k in METRIC_NAMES]
        colours = [["white", "white", shades[rows[k]["better"]]] for k in METRIC_NAMES]
        _table(ax, cells, [METRIC_LABELS[k] for k in METRIC_NAMES], ["A", "B", "B - A"], colours)
        ax.set_title(f"{mode.replace('_', '-')} (green: B better)", fontsize=9)
    camera_ax, range_ax = middle.subplots(1, 2)
    for ax, part, groups in ((camera_ax, "per_camera", names), (range_ax, "per_range", _filled_ranges(a.summary))):
        series = {
            f"{key.upper()}: {label}": [_metric_of(run.summary["metric"][part], "abs_rel")[g] for g in groups]
            for key, label, run in (("a", labels[0], a), ("b", labels[1], b))
        }
        ticks = groups if part == "per_camera" else [f"{g} m" for g in groups]
        _bars(ax, ticks, series, "AbsRel (metric)", part.replace("_", " "))
    if a.examples:
        rows, limit = _example_rows({"A": a.examples[0], "B": b.examples[0]}, display_width)
        _draw_rows(bottom, rows, names, limit)
    fig.suptitle(
        f"A: {labels[0]}   vs   B: {labels[1]}\nA {_headline(a.summary)}\nB {_headline(b.summary)}", fontsize=9
    )
    png_path = out / "comparison.png"
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return {"json": str(json_path), "png": str(png_path)}
