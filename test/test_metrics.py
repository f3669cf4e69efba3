"""Metrics against two independent references: a loop over pixels on tiny random images, and a dense
full-image computation with numpy masked arrays on camera-sized sparse lidar-like ground truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from surround_depth_ros.evaluation.metrics import (
    DEFAULT_RANGE_BINS,
    METRIC_NAMES,
    DepthMetrics,
    image_metrics,
    masked_median,
)


def reference_image_metrics(pred, gt, valid):
    """Textbook formulas, one pixel at a time."""
    p = [float(pred[i]) for i in range(len(gt)) if valid[i]]
    g = [float(gt[i]) for i in range(len(gt)) if valid[i]]
    if not g:
        return None
    n = len(g)
    e = [math.log(a) - math.log(b) for a, b in zip(p, g, strict=True)]
    ratio = [max(a / b, b / a) for a, b in zip(p, g, strict=True)]
    return {
        "abs_rel": sum(abs(b - a) / b for a, b in zip(p, g, strict=True)) / n,
        "sq_rel": sum((b - a) ** 2 / b for a, b in zip(p, g, strict=True)) / n,
        "rmse": math.sqrt(sum((b - a) ** 2 for a, b in zip(p, g, strict=True)) / n),
        "rmse_log": math.sqrt(sum(x * x for x in e) / n),
        "a1": sum(r < 1.25 for r in ratio) / n,
        "a2": sum(r < 1.25**2 for r in ratio) / n,
        "a3": sum(r < 1.25**3 for r in ratio) / n,
        "mae": sum(abs(b - a) for a, b in zip(p, g, strict=True)) / n,
        "silog": 100 * math.sqrt(max(sum(x * x for x in e) / n - (sum(e) / n) ** 2, 0.0)),
    }


def reference_summary(pred, gt, mask, min_depth, max_depth, bins, median):
    """Per image, per camera, mean over cameras, per range bin: loops only."""
    B, N = gt.shape[:2]
    per_camera = {n: [] for n in range(N)}
    per_range = {b: [] for b in bins}
    for b in range(B):
        for n in range(N):
            g = gt[b, n].ravel()
            p = pred[b, n].ravel().copy()
            m = mask[b, n].ravel()
            valid = [(min_depth < g[i] < max_depth) and m[i] for i in range(len(g))]
            if median and any(valid):
                scale = np.median(g[valid]) / np.median(p[valid])
                p = p * scale
            p = np.clip(p, min_depth, max_depth)
            res = reference_image_metrics(p, g, valid)
            if res is not None:
                per_camera[n].append(res)
            for lo, hi in bins:
                in_bin = [valid[i] and lo <= g[i] < hi for i in range(len(g))]
                res = reference_image_metrics(p, g, in_bin)
                if res is not None:
                    per_range[(lo, hi)].append(res)
    cams = {n: {k: np.mean([r[k] for r in rs]) for k in METRIC_NAMES} for n, rs in per_camera.items() if rs}
    mean = {k: np.mean([c[k] for c in cams.values()]) for k in METRIC_NAMES}
    ranges = {
        b: ({k: np.mean([r[k] for r in rs]) for k in METRIC_NAMES} if rs else None) for b, rs in per_range.items()
    }
    return mean, cams, ranges


def random_batch(rng, B=2, N=3, H=6, W=7):
    gt = rng.uniform(0.05, 100.0, size=(B, N, 1, H, W))
    gt[rng.random(gt.shape) < 0.3] = 0.0  # sparse lidar
    pred = gt * rng.uniform(0.7, 1.4, size=gt.shape) + rng.uniform(0.2, 3.0, size=gt.shape)
    mask = rng.random(gt.shape) > 0.2
    return pred.astype(np.float32), gt.astype(np.float32), mask


@pytest.mark.parametrize("median", [False, True])
def test_summary_matches_reference(median):
    rng = np.random.default_rng(3)
    bins = ((0.0, 50.0), (50.0, 70.0), (70.0, 80.0), (80.0, math.inf))
    names = ["front", "left", "right"]
    metrics = DepthMetrics(camera_names=names, min_depth=0.1, max_depth=90.0, range_bins=bins)
    batches = [random_batch(rng) for _ in range(2)]
    for pred, gt, mask in batches:
        metrics.update(torch.from_numpy(pred), gt, mask)  # torch and numpy both accepted
    summary = metrics.summary()
    pred = np.concatenate([b[0] for b in batches])[:, :, 0].astype(np.float64)
    gt = np.concatenate([b[1] for b in batches])[:, :, 0].astype(np.float64)
    mask = np.concatenate([b[2] for b in batches])[:, :, 0]
    mean, cams, ranges = reference_summary(pred, gt, mask, 0.1, 90.0, bins, median)
    got = summary["median_scaled" if median else "metric"]
    assert got["images"] == 12
    for k in METRIC_NAMES:
        assert got["mean"][k] == pytest.approx(mean[k], rel=1e-5, abs=1e-6)
        for n, name in enumerate(names):
            assert got["per_camera"][name][k] == pytest.approx(cams[n][k], rel=1e-5, abs=1e-6)
    for (lo, hi), ref in ranges.items():
        label = ">80" if math.isinf(hi) else f"{lo:g}-{hi:g}"
        if ref is None:
            assert got["per_range"][label] is None
        else:
            for k in METRIC_NAMES:
                assert got["per_range"][label][k] == pytest.approx(ref[k], rel=1e-5, abs=1e-6)
    json.dumps(summary)  # serialisable


def test_masked_pixels_do_not_count_and_caps_apply():
    rng = np.random.default_rng(0)
    pred, gt, mask = random_batch(rng, B=1, N=1)
    metrics_a, metrics_b = DepthMetrics(max_depth=80.0), DepthMetrics(max_depth=80.0)
    metrics_a.update(pred, gt, mask)
    changed = pred.copy()
    changed[~mask] = 1e4  # garbage where the mask excludes
    changed[gt >= 80.0] = 1e4  # and beyond the cap
    metrics_b.update(changed, gt, mask)
    assert metrics_a.summary() == metrics_b.summary()


def test_perfect_prediction_and_median_scaling_removes_scale():
    gt = torch.rand(1, 2, 1, 5, 5) * 50 + 1
    metrics = DepthMetrics()
    metrics.update(gt * 1.5, gt)  # stays under the 80 m cap
    s = metrics.summary()
    assert s["median_scaled"]["mean"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert s["median_scaled"]["mean"]["a1"] == 1.0
    assert s["metric"]["mean"]["abs_rel"] == pytest.approx(0.5, rel=1e-6)  # |g - 1.5 g| / g
    assert s["metric"]["mean"]["silog"] == pytest.approx(0.0, abs=1e-5)  # a global scale is invisible to SILog


def test_all_invalid_image_is_skipped_not_nan():
    metrics = DepthMetrics()
    gt = torch.zeros(1, 2, 1, 4, 4)
    gt[0, 0] = 10.0
    metrics.update(torch.full_like(gt, 11.0), gt)
    s = metrics.summary()
    assert s["metric"]["images"] == 1
    assert s["metric"]["per_camera"]["camera_1"] is None
    assert s["metric"]["mean"]["mae"] == pytest.approx(1.0)


def test_masked_median_matches_numpy():
    rng = np.random.default_rng(1)
    values = rng.random((5, 9))
    mask = rng.random((5, 9)) > 0.4
    mask[0] = False
    got = masked_median(torch.from_numpy(values), torch.from_numpy(mask)).numpy()
    assert math.isnan(got[0])
    for i in range(1, 5):
        assert got[i] == pytest.approx(np.median(values[i][mask[i]]))


def test_image_metrics_and_bad_input():
    out = image_metrics(np.ones(4), np.full(4, 2.0))
    assert out.shape == (len(METRIC_NAMES),) and dict(zip(METRIC_NAMES, out, strict=True))["abs_rel"] == 0.5
    with pytest.raises(ValueError, match="same shape"):
        DepthMetrics().update(np.ones((2, 3, 3)), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="camera names"):
        DepthMetrics(camera_names=["a"]).update(np.ones((2, 3, 3)), np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="same length"):
        DepthMetrics().update([np.ones((3, 3))], [np.ones((3, 3)), np.ones((3, 3))])


def dense_reference(pred, gt, mask, min_depth, max_depth, bins):
    """Full images, every pixel kept and masked out with numpy masked arrays.

    ({(mode, camera, bin or "all"): mean over the camera's images}, {(mode, bin): mean over all images with
    ground truth in the bin}), as DepthMetrics reports them; float64 throughout.
    """
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    rows: dict = {}
    for b in range(gt.shape[0]):
        for n in range(gt.shape[1]):
            g = np.ma.masked_array(gt[b, n], ~((gt[b, n] > min_depth) & (gt[b, n] < max_depth) & mask[b, n]))
            p = np.ma.masked_array(np.where(np.isnan(pred[b, n]), min_depth, pred[b, n]), g.mask)
            scales = {"metric": 1.0, "median_scaled": np.ma.median(g) / np.ma.median(p)}
            for mode, scale in scales.items():
                scaled = np.ma.clip(p * scale, min_depth, max_depth)
                for lo, hi in [(None, None), *bins]:
                    where = g.mask if lo is None else g.mask | (gt[b, n] < lo) | (gt[b, n] >= hi)
                    gs, ps = np.ma.masked_array(g.data, where), np.ma.masked_array(scaled.data, where)
                    if gs.count() == 0:
                        continue
                    e = np.ma.log(ps) - np.ma.log(gs)
                    r = np.ma.maximum(ps / gs, gs / ps)
                    row = [
                        np.ma.mean(abs(gs - ps) / gs),
                        np.ma.mean((gs - ps) ** 2 / gs),
                        np.sqrt(np.ma.mean((gs - ps) ** 2)),
                        np.sqrt(np.ma.mean(e**2)),
                        *(np.ma.mean(r < 1.25**k) for k in (1, 2, 3)),
                        np.ma.mean(abs(gs - ps)),
                        100 * np.sqrt(max(np.ma.mean(e**2) - np.ma.mean(e) ** 2, 0)),
                    ]
                    key = (mode, n, "all" if lo is None else (">80" if math.isinf(hi) else f"{lo:g}-{hi:g}"))
                    rows.setdefault(key, []).append(row)
    cams = {k: dict(zip(METRIC_NAMES, np.mean(v, axis=0), strict=True)) for k, v in rows.items()}
    ranges = {}
    for mode, _, label in rows:
        if label != "all":
            stacked = [r for (m, _, lb), v in rows.items() if (m, lb) == (mode, label) for r in v]
            ranges[(mode, label)] = dict(zip(METRIC_NAMES, np.mean(stacked, axis=0), strict=True))
    return cams, ranges


def lidar_like_batch(rng, B=2, N=6, H=120, W=200, density=0.03):
    """Sparse ground truth (a few % of pixels, float32) spanning every range bin, with NaN holes in the
    prediction and ground truth exactly at the float32 of the near cap (valid in float64, not in float32)."""
    gt = np.zeros((B, N, H, W), np.float32)
    hit = rng.random(gt.shape) < density
    gt[hit] = rng.uniform(0.0, 120.0, hit.sum())
    gt[hit & (rng.random(gt.shape) < 0.05)] = np.float32(0.1)
    pred = (gt * rng.uniform(0.6, 1.5, gt.shape) + rng.uniform(0.5, 8.0, gt.shape)).astype(np.float32)
    pred[rng.random(gt.shape) < 0.01] = np.nan
    return pred, gt, rng.random(gt.shape) > 0.1


def test_gathered_metrics_equal_the_dense_computation_per_camera_and_range():
    rng = np.random.default_rng(11)
    names = [f"cam_{n}" for n in range(6)]
    metrics = DepthMetrics(names, 0.1, 100.0)
    batches = [lidar_like_batch(rng) for _ in range(2)]
    for pred, gt, mask in batches:
        metrics.update(torch.from_numpy(pred)[:, :, None], gt, mask)
    summary = metrics.summary()
    pred, gt, mask = (np.concatenate([b[i] for b in batches]) for i in range(3))
    cams, ranges = dense_reference(pred, gt, mask, 0.1, 100.0, DEFAULT_RANGE_BINS)
    for mode in ("metric", "median_scaled"):
        assert summary[mode]["images"] == 24
        for n, name in enumerate(names):
            assert summary[mode]["per_camera"][name] == pytest.approx(cams[(mode, n, "all")], rel=1e-10), (mode, n)
            for label, got in summary[mode]["per_camera_range"][name].items():
                assert got == pytest.approx(cams.get((mode, n, label)), rel=1e-10), (mode, n, label)
        for label, got in summary[mode]["per_range"].items():
            assert got == pytest.approx(ranges[(mode, label)], rel=1e-10), (mode, label)


def test_per_camera_lists_of_any_size_equal_the_batch():
    rng = np.random.default_rng(5)
    pred, gt, mask = lidar_like_batch(rng, B=1, N=3, H=40, W=60)
    batch, lists = DepthMetrics(), DepthMetrics()
    batch.update(pred, gt, mask)
    lists.update(list(pred[0]), [torch.from_numpy(g)[None] for g in gt[0]], list(mask[0]))
    assert lists.summary() == batch.summary()
    small = DepthMetrics()
    small.update([pred[0, 0], pred[0, 1, ::2, ::2]], [gt[0, 0], gt[0, 1, ::2, ::2]])
    assert small.summary()["metric"]["images"] == 2
